package controller

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/cloudprovider/fake"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// TestRun drives the whole loop through informers and the work queue: a Pod makes an instance,
// its Node is bound, and once the Pod is gone and the idle TTL has passed on the clock, the
// instance and the Node are reaped.
func TestRun(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clk := testingclock.NewFakeClock(t0)
	kube := k8sfake.NewClientset()
	provider := fake.New(clk)
	cfg := isolation.DefaultConfig()
	pods, nodes := NewInformerFactories(kube, cfg)
	c, err := New(kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), provider, record.NewFakeRecorder(1000), Options{
		Config: cfg, IdleTTL: testIdleTTL, ProviderResync: testResync, Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	pods.Start(ctx.Done())
	nodes.Start(ctx.Done())
	done := make(chan error)
	go func() { done <- c.Run(ctx, 2) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		pods.Shutdown()
		nodes.Shutdown()
	}()

	f := &fixture{cfg: cfg}
	n := f.nodeName("a")
	poll := func(what string, cond func() bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return cond(), nil
		})
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	liveInstances := func() []cloudprovider.Instance {
		insts, err := provider.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return insts
	}

	pod, err := kube.CoreV1().Pods("team").Create(ctx, f.pod("p1", "a", t0), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll("an instance", func() bool { return len(liveInstances()) == 1 })
	inst := liveInstances()[0]
	if inst.NodeName != n {
		t.Fatalf("instance for %q, want %q", inst.NodeName, n)
	}

	// The instance boots and its kubelet registers the Node.
	if _, err := kube.CoreV1().Nodes().Create(ctx, f.node(n, inst.ProviderID, clk.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("the binding label", func() bool {
		node, err := kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		return err == nil && node.Labels[isolation.BindingLabel] == n
	})

	// The class goes away; only the clock makes the idle TTL pass.
	if err := kube.CoreV1().Pods("team").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("the idle mark", func() bool {
		node, err := kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		return err == nil && node.Annotations[AnnotationIdleSince] != ""
	})
	poll("reaping", func() bool {
		clk.Step(time.Minute)
		_, err := kube.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		return err != nil && len(liveInstances()) == 0
	})
	if got := provider.CallCount("create"); got != 1 {
		t.Errorf("create calls = %d, want 1", got)
	}

	// The class comes back.
	if _, err := kube.CoreV1().Pods("team").Create(ctx, f.pod("p2", "a", clk.Now()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("a new instance", func() bool {
		insts := liveInstances()
		return len(insts) == 1 && insts[0].ID != inst.ID
	})
}
