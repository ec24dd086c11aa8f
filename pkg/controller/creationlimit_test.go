package controller

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
)

// limitedFixture is a fixture whose controller limits creations to qps per namespace, in bursts
// of burst.
func limitedFixture(t *testing.T, qps float64, burst int) *fixture {
	f := newFixture(t)
	f.createQPS, f.createBurst = qps, burst
	f.newController()
	f.list()
	return f
}

// podIn returns a Pod of class in namespace, pinned as the webhook pins it.
func (f *fixture) podIn(namespace, name, class string, created time.Time) *corev1.Pod {
	p := f.pod(name, class, created)
	p.Namespace = namespace
	p.UID = types.UID("uid-" + namespace + "-" + name)
	p.Spec.NodeSelector[isolation.BindingLabel] = f.cfg.NodeName(namespace, class)
	return p
}

// rateLimitedEvents drains the recorder and returns the messages of its CreationRateLimited
// Events.
func (f *fixture) rateLimitedEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			if strings.HasPrefix(e, corev1.EventTypeWarning+" "+ReasonCreationRateLimited+" ") {
				out = append(out, strings.TrimPrefix(e, corev1.EventTypeWarning+" "+ReasonCreationRateLimited+" "))
			}
		default:
			return out
		}
	}
}

// rateLimitedTotal reads ipp_creation_rate_limited_total.
func rateLimitedTotal(t *testing.T) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ipp_creation_rate_limited_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("ipp_creation_rate_limited_total is not registered")
	return 0
}

// TestCreationRateLimit: with bursts of 2 at 0.1 per second, four classes of one namespace get
// two instances at once, the third 10 s later and the fourth 20 s later; their Pods are told why
// they wait, once. Another namespace has a bucket of its own.
func TestCreationRateLimit(t *testing.T) {
	f := limitedFixture(t, 0.1, 2)
	before := rateLimitedTotal(t)
	names := map[string]string{}
	for _, class := range []string{"a", "b", "c", "d"} {
		f.addPod(f.pod("p-"+class, class, t0))
		names[class] = f.nodeName(class)
	}
	for _, class := range []string{"a", "b"} {
		f.mustSync(names[class])
	}
	diff(t, "provider calls of the burst", []string{"create " + names["a"], "create " + names["b"]}, f.calls())
	f.events()

	diff(t, "requeue of the third", 10*time.Second, f.mustSync(names["c"]))
	diff(t, "requeue of the fourth", 20*time.Second, f.mustSync(names["d"]))
	diff(t, "provider calls beyond the burst", []string(nil), f.calls())
	got := f.rateLimitedEvents()
	want := []string{
		fmt.Sprintf("Namespace team may have IPP create 0.1 instances per second, in bursts of 2; the instance for dedicated node %s may be created at %s (in 10s)", names["c"], t0.Add(10*time.Second).Format(time.RFC3339)),
		fmt.Sprintf("Namespace team may have IPP create 0.1 instances per second, in bursts of 2; the instance for dedicated node %s may be created at %s (in 20s)", names["d"], t0.Add(20*time.Second).Format(time.RFC3339)),
	}
	diff(t, "CreationRateLimited Events", want, got)
	diff(t, "ipp_creation_rate_limited_total", 2.0, rateLimitedTotal(t)-before)

	// Another namespace is not held back.
	other := f.cfg.NodeName("other", "e")
	f.addPod(f.podIn("other", "p-e", "e", t0))
	f.mustSync(other)
	diff(t, "provider calls of another namespace", []string{"create " + other}, f.calls())

	// Reconciles before their time create nothing and say nothing again.
	f.clock.Step(5 * time.Second)
	diff(t, "requeue of the third, early", 5*time.Second, f.mustSync(names["c"]))
	f.clock.Step(5 * time.Second)
	f.mustSync(names["c"])
	diff(t, "requeue of the fourth, early", 10*time.Second, f.mustSync(names["d"]))
	diff(t, "provider calls at 10 s", []string{"create " + names["c"]}, f.calls())
	f.clock.Step(10 * time.Second)
	f.mustSync(names["d"])
	diff(t, "provider calls at 20 s", []string{"create " + names["d"]}, f.calls())
	diff(t, "CreationRateLimited Events after", []string(nil), f.rateLimitedEvents())
	diff(t, "ipp_creation_rate_limited_total after", 2.0, rateLimitedTotal(t)-before)
}

// TestCreationRetryIsNotChargedAgain: a creation that fails is retried on its first charge.
func TestCreationRetryIsNotChargedAgain(t *testing.T) {
	f := limitedFixture(t, 0.1, 2)
	a, b := f.nodeName("a"), f.nodeName("b")
	f.addPod(f.pod("p-a", "a", t0))
	f.addPod(f.pod("p-b", "b", t0))
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindTransient, "create", "503", errors.New("unavailable")))
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindTransient, "create", "503", errors.New("unavailable")))
	for range 2 {
		if _, err := f.sync(a); err == nil {
			t.Fatal("sync succeeded, want the injected Create error")
		}
	}
	f.mustSync(a)
	f.mustSync(b)
	diff(t, "provider calls", []string{"create " + a, "create " + a, "create " + a, "create " + b}, f.calls())
	diff(t, "CreationRateLimited Events", []string(nil), f.rateLimitedEvents())
}

// TestReplacementInstanceIsCharged: an instance replaced after the registration timeout is a
// new creation, charged anew.
func TestReplacementInstanceIsCharged(t *testing.T) {
	f := limitedFixture(t, 1.0/3600, 1) // one an hour
	n := f.nodeName("a")
	f.addPod(f.pod("p-a", "a", t0))
	f.mustSync(n)
	diff(t, "provider calls", []string{"create " + n}, f.calls())

	f.clock.Step(testRegTimeout)
	f.list()
	f.mustSync(n)
	diff(t, "provider calls at the registration timeout", []string{"delete " + n}, f.calls())
	after := f.mustSync(n)
	diff(t, "provider calls of the replacement", []string(nil), f.calls())
	diff(t, "requeue of the replacement", time.Hour-testRegTimeout, after)
	if got := f.rateLimitedEvents(); len(got) != 1 {
		t.Errorf("CreationRateLimited Events = %q, want one", got)
	}

	f.clock.Step(after)
	f.mustSync(n)
	diff(t, "provider calls an hour after the first", []string{"create " + n}, f.calls())
}

// TestCreationTokenGivenBackWhenDemandGoes: a class whose Pods go while their creation waits
// gives its token back, so the next class waits no longer than it would have.
func TestCreationTokenGivenBackWhenDemandGoes(t *testing.T) {
	f := limitedFixture(t, 0.1, 2)
	for _, class := range []string{"a", "b"} {
		f.addPod(f.pod("p-"+class, class, t0))
		f.mustSync(f.nodeName(class))
	}
	c := f.pod("p-c", "c", t0)
	f.addPod(c)
	diff(t, "requeue of the third", 10*time.Second, f.mustSync(f.nodeName("c")))

	f.clock.Step(time.Second)
	f.deletePod(c)
	f.mustSync(f.nodeName("c"))

	f.addPod(f.pod("p-d", "d", f.clock.Now()))
	diff(t, "requeue of the fourth", 9*time.Second, f.mustSync(f.nodeName("d")))
	f.clock.Step(9 * time.Second)
	f.mustSync(f.nodeName("c"))
	f.mustSync(f.nodeName("d"))
	diff(t, "provider calls", []string{"create " + f.nodeName("a"), "create " + f.nodeName("b"), "create " + f.nodeName("d")}, f.calls())
}

// TestNoCreationLimit: a zero rate (the Options default) limits nothing.
func TestNoCreationLimit(t *testing.T) {
	f := newFixture(t)
	f.list()
	if f.c.createLimiter != nil {
		t.Fatal("a limiter with no rate")
	}
	var want []string
	for i := range 50 {
		class := fmt.Sprintf("c%d", i)
		f.addPod(f.pod("p-"+class, class, t0))
		f.mustSync(f.nodeName(class))
		want = append(want, "create "+f.nodeName(class))
	}
	diff(t, "provider calls", want, f.calls())
	diff(t, "CreationRateLimited Events", []string(nil), f.rateLimitedEvents())
}

func TestValidateCreationLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		qps   float64
		burst int
		ok    bool
	}{
		{"off", 0, 0, true},
		{"default", DefaultNamespaceCreateQPS, DefaultNamespaceCreateBurst, true},
		{"negative", -1, 20, false},
		{"infinite", math.Inf(1), 20, false},
		{"NaN", math.NaN(), 20, false},
		{"no burst", 0.2, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateCreationLimit(tc.qps, tc.burst); (err == nil) != tc.ok {
				t.Errorf("ValidateCreationLimit(%v, %d) = %v, want ok %v", tc.qps, tc.burst, err, tc.ok)
			}
		})
	}
}

// TestCreationLimiterForgetsFullBuckets: the limiter keeps a bucket only while it is not full,
// so the namespaces that ever created an instance do not pile up.
func TestCreationLimiterForgetsFullBuckets(t *testing.T) {
	l, err := newCreationLimiter(0.1, 2)
	if err != nil {
		t.Fatal(err)
	}
	reserve := func(ns string, at time.Time) {
		t.Helper()
		if _, err := l.reserve(ns, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		reserve(fmt.Sprintf("ns-%d", i), t0) // one token left each
	}
	for range 3 {
		reserve("busy", t0) // one token owed
	}
	diff(t, "buckets at t0", 101, l.len())

	reserve("late", t0.Add(10*time.Second))
	diff(t, "buckets at 10 s (busy is at 0 tokens, late at 1)", 2, l.len())

	reserve("last", t0.Add(30*time.Second))
	diff(t, "buckets at 30 s (busy and late full again)", 1, l.len())

	// A forgotten bucket comes back full: a full burst at once.
	l2, _ := newCreationLimiter(0.1, 2)
	for i, at := range []time.Time{t0, t0, t0.Add(20 * time.Second), t0.Add(20 * time.Second)} {
		r, err := l2.reserve("ns", at)
		if err != nil {
			t.Fatal(err)
		}
		if d := r.DelayFrom(at); d != 0 {
			t.Errorf("reservation %d at %v waits %v, want none", i, at.Sub(t0), d)
		}
	}
}
