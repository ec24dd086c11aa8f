package leader

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/klog/v2/ktesting"
)

func fastConfig(id string) Config {
	return Config{
		Enabled: true, Namespace: "ipp-system", Name: "ipp-controller", Identity: id,
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 50 * time.Millisecond,
	}
}

func poll(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func holder(ctx context.Context, kube *k8sfake.Clientset) string {
	l, err := kube.CoordinationV1().Leases("ipp-system").Get(ctx, "ipp-controller", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// blockUntilDone is a run function that counts its calls and returns when its context ends.
func blockUntilDone(calls *atomic.Int32) func(context.Context) error {
	return func(ctx context.Context) error {
		calls.Add(1)
		<-ctx.Done()
		return nil
	}
}

func TestRunDisabled(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	want := errors.New("boom")
	got := Run(ctx, k8sfake.NewClientset(), Config{}, func(context.Context) error { return want })
	if !errors.Is(got, want) {
		t.Errorf("Run = %v, want run's error", got)
	}
}

func TestFailover(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	kube := k8sfake.NewClientset()
	var aCalls, bCalls atomic.Int32

	ctxA, cancelA := context.WithCancel(ctx)
	defer cancelA()
	doneA := make(chan error, 1)
	go func() { doneA <- Run(ctxA, kube, fastConfig("a"), blockUntilDone(&aCalls)) }()
	poll(t, ctx, "a to lead", func() bool { return aCalls.Load() == 1 && holder(ctx, kube) == "a" })

	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	doneB := make(chan error, 1)
	go func() { doneB <- Run(ctxB, kube, fastConfig("b"), blockUntilDone(&bCalls)) }()

	// a stops: it releases the Lease once its run has returned, and b takes over without
	// waiting out the lease duration.
	cancelA()
	if err := <-doneA; err != nil {
		t.Errorf("Run(a) = %v, want nil after cancel", err)
	}
	poll(t, ctx, "b to lead", func() bool { return bCalls.Load() == 1 && holder(ctx, kube) == "b" })
	if got := aCalls.Load(); got != 1 {
		t.Errorf("a ran %d times, want 1", got)
	}

	cancelB()
	if err := <-doneB; err != nil {
		t.Errorf("Run(b) = %v, want nil after cancel", err)
	}
}

func TestRunStopsBeforeLeading(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	kube := k8sfake.NewClientset()
	var aCalls, bCalls atomic.Int32
	ctxA, cancelA := context.WithCancel(ctx)
	defer cancelA()
	doneA := make(chan error, 1)
	go func() { doneA <- Run(ctxA, kube, fastConfig("a"), blockUntilDone(&aCalls)) }()
	poll(t, ctx, "a to lead", func() bool { return aCalls.Load() == 1 })

	ctxB, cancelB := context.WithCancel(ctx)
	doneB := make(chan error, 1)
	go func() { doneB <- Run(ctxB, kube, fastConfig("b"), blockUntilDone(&bCalls)) }()
	cancelB()
	if err := <-doneB; err != nil {
		t.Errorf("Run(b) = %v, want nil", err)
	}
	if got := bCalls.Load(); got != 0 {
		t.Errorf("b ran %d times while a led", got)
	}
	cancelA()
	<-doneA
}

func TestLeadershipLost(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	kube := k8sfake.NewClientset()
	var calls atomic.Int32
	var failRenew atomic.Bool
	kube.PrependReactor("update", "leases", func(core.Action) (bool, runtime.Object, error) {
		if failRenew.Load() {
			return true, nil, errors.New("apiserver unreachable")
		}
		return false, nil, nil
	})
	done := make(chan error, 1)
	go func() { done <- Run(ctx, kube, fastConfig("a"), blockUntilDone(&calls)) }()
	poll(t, ctx, "a to lead", func() bool { return calls.Load() == 1 })
	failRenew.Store(true)
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeadershipLost) {
			t.Errorf("Run = %v, want ErrLeadershipLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the Lease could not be renewed")
	}
}

func TestValidate(t *testing.T) {
	ok := fastConfig("a")
	tests := []struct {
		name   string
		mutate func(*Config)
		want   bool
	}{
		{"valid", func(*Config) {}, true},
		{"disabled ignores the rest", func(c *Config) { *c = Config{} }, true},
		{"no namespace", func(c *Config) { c.Namespace = "" }, false},
		{"no name", func(c *Config) { c.Name = "" }, false},
		{"renew deadline not above retry period", func(c *Config) { c.RenewDeadline = c.RetryPeriod }, false},
		{"lease not above renew deadline", func(c *Config) { c.LeaseDuration = c.RenewDeadline }, false},
		{"zero retry period", func(c *Config) { c.RetryPeriod = 0 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			if err := c.Validate(); (err == nil) != tc.want {
				t.Errorf("Validate() = %v, want valid %v", err, tc.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}
