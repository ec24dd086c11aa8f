package tests

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// Creation rate limit of TestCreationRateLimit: bursts of 2, then one instance every 10 s.
const (
	rateTestQPS   = 0.1
	rateTestBurst = 2
	rateInterval  = 10 * time.Second
	// rateSlack covers the time from a creation's charge to the cloud recording the instance
	// (minting its join token, the Create call).
	rateSlack = time.Second
	// atOnce bounds the spread of creations the limit lets through together: well below
	// rateInterval, with room for a busy machine.
	atOnce = 7 * time.Second
)

// TestCreationRateLimit: with a creation rate limit of bursts of 2 at 0.1 per second, four classes
// of one namespace get two instances at once, the third 10 s after the first and the fourth 20 s
// after, judged by the cloud's creation times; the two that wait tell their Pods with a
// CreationRateLimited Event. A class of another namespace, arriving meanwhile, is not held back.
// It runs its own IPP (two must not share the control plane at once), so it is not parallel.
func TestCreationRateLimit(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "e2e-rate-" + provider
		// --placement=admission: the creation times are read by each class's dedicated node
		// name (cfg.NodeName).
		cfg.Placement = isolation.PlacementAdmission
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{
			Provider:             provider,
			Config:               &cfg,
			NamespaceCreateQPS:   rateTestQPS,
			NamespaceCreateBurst: rateTestBurst,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })

		ns, other := namespace(t, "rate"), namespace(t, "rate-other")
		classes := []string{"c0", "c1", "c2", "c3"}
		for _, class := range classes {
			createPod(t, ns, pod(class, withClass(cfg, class)))
		}
		createPod(t, other, pod("elsewhere", withClass(cfg, "elsewhere")))

		created := map[string]time.Time{} // by class
		for _, class := range classes {
			if _, err := framework.WaitForPodRunning(ctx, cluster.Client, ns, class, ippTimeout); err != nil {
				t.Fatalf("Pod of class %s: %v", class, err)
			}
			created[class] = createdAt(t, ipp, cfg.NodeName(ns, class))
		}
		if _, err := framework.WaitForPodRunning(ctx, cluster.Client, other, "elsewhere", ippTimeout); err != nil {
			t.Fatalf("Pod of the other namespace: %v", err)
		}
		elsewhere := createdAt(t, ipp, cfg.NodeName(other, "elsewhere"))

		sort.Slice(classes, func(i, j int) bool { return created[classes[i]].Before(created[classes[j]]) })
		first := created[classes[0]]
		since := func(class string) time.Duration { return created[class].Sub(first) }
		for _, class := range classes {
			t.Logf("Instance of %s created at +%v", class, since(class).Round(10*time.Millisecond))
		}
		t.Logf("Instance of the other namespace's class created at +%v", elsewhere.Sub(first).Round(10*time.Millisecond))

		if d := since(classes[1]); d > atOnce {
			t.Errorf("The second instance came %v after the first; the burst of %d should let both through at once", d, rateTestBurst)
		}
		if d := since(classes[2]); d < rateInterval-rateSlack {
			t.Errorf("The third instance came %v after the first, before the limit allows (%v)", d, rateInterval)
		}
		if d := since(classes[3]); d < 2*rateInterval-rateSlack {
			t.Errorf("The fourth instance came %v after the first, before the limit allows (%v)", d, 2*rateInterval)
		}
		if d := elsewhere.Sub(first); d > atOnce {
			t.Errorf("The other namespace's instance came %v after the first; its own bucket was full", d)
		}

		for i, class := range classes {
			if i < rateTestBurst {
				continue
			}
			pollUntil(t, "a "+controller.ReasonCreationRateLimited+" Event on the Pod of "+class, func() bool {
				return rateLimitedEventNamesNamespace(t, ns, class)
			})
		}
		for i, class := range classes[:rateTestBurst] {
			if hasEvent(t, ns, "Pod", class, controller.ReasonCreationRateLimited) {
				t.Errorf("Pod of %s, created in the burst (#%d), got a %s Event", class, i+1, controller.ReasonCreationRateLimited)
			}
		}
		if hasEvent(t, other, "Pod", "elsewhere", controller.ReasonCreationRateLimited) {
			t.Errorf("Pod of the other namespace got a %s Event", controller.ReasonCreationRateLimited)
		}
	})
}

// createdAt returns when the cloud created the live instance of the dedicated node name.
func createdAt(t *testing.T, ipp *framework.IPP, name string) time.Time {
	t.Helper()
	inst, ok := ipp.Cloud.Instance(name)
	if !ok {
		t.Fatalf("No instance %s", name)
	}
	if inst.CreatedAt.IsZero() {
		t.Fatalf("Instance %s has no creation time", name)
	}
	return inst.CreatedAt
}

// rateLimitedEventNamesNamespace reports whether the Pod has a CreationRateLimited Event whose
// message names its namespace.
func rateLimitedEventNamesNamespace(t *testing.T, namespace, pod string) bool {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": pod, "reason": controller.ReasonCreationRateLimited}.AsSelector().String()
	events, err := cluster.Client.CoreV1().Events(namespace).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatalf("Listing events: %v", err)
	}
	for _, e := range events.Items {
		if strings.Contains(e.Message, "Namespace "+namespace+" ") {
			return true
		}
	}
	return false
}
