package controller

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
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
	pods, nodes := newInformerFactories(kube, cfg)
	c, err := newWithInformers(kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), provider, record.NewFakeRecorder(1000), Options{
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
		return err == nil && node.Labels[isolation.IdleSinceLabel] != ""
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

// TestSettledClusterCostsNoReconciles checks what wakes the controller once everything is in
// place: updates that change nothing it reads (a kubelet's status heartbeat, a Pod's conditions,
// another component's annotation) and provider Lists that show nothing new enqueue nothing, while
// a change it does read still does. Barrier objects, whose events the informers deliver after the
// ones before them, make "nothing was enqueued" something the test can observe.
func TestSettledClusterCostsNoReconciles(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clk := testingclock.NewFakeClock(t0)
	provider := fake.New(clk)
	cfg := isolation.DefaultConfig()
	f := &fixture{cfg: cfg}
	n := f.nodeName("a")
	inst, err := provider.Create(ctx, cloudprovider.InstanceSpec{NodeName: n, Class: "a", Namespace: "team", IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	pod := f.pod("p1", "a", t0)
	pod.Spec.NodeName = n
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	node := bound(f.node(n, inst.ProviderID, t0), n)
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(t0)}}
	kube := k8sfake.NewClientset(pod, node)

	pods, nodes := newInformerFactories(kube, cfg)
	c, err := newWithInformers(kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), provider, record.NewFakeRecorder(1000), Options{
		Config: cfg, IdleTTL: testIdleTTL, ProviderResync: testResync, Clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.queue.ShutDown)
	pods.Start(ctx.Done())
	nodes.Start(ctx.Done())
	defer func() {
		cancel()
		pods.Shutdown()
		nodes.Shutdown()
	}()

	// queued waits until the queue holds want names, then empties it and returns them.
	queued := func(want int) map[string]bool {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return c.queue.Len() >= want, nil
		})
		if err != nil {
			t.Fatalf("waiting for %d queued names (have %d): %v", want, c.queue.Len(), err)
		}
		got := map[string]bool{}
		for c.queue.Len() > 0 {
			name, _ := c.queue.Get()
			got[name] = true
			c.queue.Done(name)
		}
		return got
	}
	// barrier makes both informers deliver one more event, each enqueueing a name that is not n.
	round := 0
	barrier := func() (podName, nodeName string) {
		t.Helper()
		round++
		class := fmt.Sprintf("barrier-%d", round)
		if _, err := kube.CoreV1().Pods("team").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: class, Labels: map[string]string{cfg.PodLabel: class},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		other := f.node(class, "", t0)
		if _, err := kube.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return f.nodeName(class), other.Name
	}

	// The informers' initial Lists and the provider's first List enqueue n.
	if err := c.syncInstances(ctx); err != nil {
		t.Fatal(err)
	}
	bp, bn := barrier()
	if diff := cmp.Diff(map[string]bool{n: true, bp: true, bn: true}, queued(3)); diff != "" {
		t.Fatalf("after start, queued (-want +got):\n%s", diff)
	}

	// Nothing the controller reads changes.
	node.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(t0.Add(time.Minute))
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
	if node, err = kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(time.Minute))
	if _, err := kube.CoreV1().Pods("team").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := c.syncInstances(ctx); err != nil {
			t.Fatal(err)
		}
	}
	bp, bn = barrier()
	if diff := cmp.Diff(map[string]bool{bp: true, bn: true}, queued(2)); diff != "" {
		t.Errorf("after updates that change nothing read and three Lists, queued (-want +got):\n%s", diff)
	}

	// A change it reads: the idle clock.
	node.Labels[isolation.IdleSinceLabel] = strconv.FormatInt(t0.Unix(), 10)
	if _, err := kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	bp, bn = barrier()
	if diff := cmp.Diff(map[string]bool{n: true, bp: true, bn: true}, queued(3)); diff != "" {
		t.Errorf("after the idle clock changed, queued (-want +got):\n%s", diff)
	}

	// An instance that changes outside the controller.
	provider.SetState(n, cloudprovider.StateStopping)
	if err := c.syncInstances(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{n: true}, queued(1)); diff != "" {
		t.Errorf("after the instance changed, queued (-want +got):\n%s", diff)
	}
}
