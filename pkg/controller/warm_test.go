package controller

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// warmPool returns a NodeClass whose warm pool has size nodes.
func warmPool(name string, size int32) *ippv1alpha1.NodeClass {
	return &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       ippv1alpha1.NodeClassSpec{Warm: &ippv1alpha1.WarmPool{Size: size}},
	}
}

// setWarmSize changes the warm.size of NodeClass name and runs its pool's sync.
func (f *fixture) setWarmSize(name string, size int32) {
	f.t.Helper()
	nc, err := f.ipp.IppV1alpha1().NodeClasses().Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	nc.Spec.Warm.Size = size
	if _, err := f.ipp.IppV1alpha1().NodeClasses().Update(f.ctx, nc, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
	if err := f.c.syncWarm(f.ctx, name); err != nil {
		f.t.Fatalf("syncWarm(%s): %v", name, err)
	}
}

// addWarm gives NodeClass pool (whose warm.size is 1) the warm instance name and its Node, bound
// as warm, with the Ready condition ready, and runs a List and the pool's sync.
func (f *fixture) addWarm(name, pool string, ready corev1.ConditionStatus) {
	f.t.Helper()
	f.provider.Add(cloudprovider.Instance{ID: "i-warm", NodeName: name, NodeClass: pool, State: cloudprovider.StateRunning, CreatedAt: t0})
	n := label(f.node(name, "fake:///i-warm", t0),
		isolation.BindingLabel, name, isolation.WarmLabel, isolation.LabelValue, isolation.NodeClassNodeLabel, pool)
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	f.addNode(n)
	f.list()
	f.setWarmSize(pool, 1)
}

// TestWarmNodeMarkedForReplacementIsDeleted: a warm node marked for replacement (the reaping
// label and unschedulable, written when its pool shrank) whose instance deletion failed is
// deleted on the next reconcile even if its pool wants it again by then. Such a node can never be
// claimed (a claim tests that the reaping label is absent), so keeping it would leave the pool a
// node short for good: the pool counts it as a member and plans no replacement.
func TestWarmNodeMarkedForReplacementIsDeleted(t *testing.T) {
	const (
		pool = "pool"
		name = "ipp-warm-a"
	)
	f := newPlacementFixture(t)
	f.withNodeClasses(warmPool(pool, 1))
	f.addWarm(name, pool, corev1.ConditionTrue)
	f.mustSync(name)
	if got := f.getNode(name); got.Labels[isolation.ReapingLabel] != "" || got.Spec.Unschedulable {
		t.Fatalf("The wanted warm node was marked: %v", got.Labels)
	}

	// The pool shrinks; the node is marked, and its deletion fails.
	f.setWarmSize(pool, 0)
	f.provider.FailNext("delete", errors.New("cloud unavailable"))
	if _, err := f.sync(name); err == nil {
		t.Fatal("The reconcile whose deletion failed returned no error")
	}
	if got := f.getNode(name); got.Labels[isolation.ReapingLabel] == "" || !got.Spec.Unschedulable {
		t.Fatalf("The surplus warm node was not marked for replacement: %v", got.Labels)
	}

	// The pool grows back before the retry: the marked node still goes, and a replacement is
	// planned.
	f.setWarmSize(pool, 1)
	f.mustSync(name)
	for _, inst := range f.liveInstances() {
		if inst.NodeName == name {
			t.Fatalf("The warm node marked for replacement kept its instance %s: it can never be claimed", inst.ID)
		}
	}
	if f.nodeExists(name) {
		t.Errorf("The Node of the warm node marked for replacement is still there")
	}
	f.list()
	if err := f.c.syncWarm(f.ctx, pool); err != nil {
		t.Fatal(err)
	}
	planned := 0
	f.c.mu.Lock()
	for n, st := range f.c.state {
		if st.plan != nil && st.plan.warm && st.plan.nodeClass == pool && !st.plan.launched && n != name {
			planned++
		}
	}
	f.c.mu.Unlock()
	if planned != 1 {
		t.Errorf("%d warm nodes planned to replace it, want 1", planned)
	}
}

// TestWarmNodeNeverReadyIsReplaced: a warm node that registered but is not Ready is kept until the
// registration timeout from its instance's creation (it can be claimed only once Ready), then
// deleted, so that its pool replaces it.
func TestWarmNodeNeverReadyIsReplaced(t *testing.T) {
	const (
		pool = "pool"
		name = "ipp-warm-b"
	)
	f := newPlacementFixture(t)
	f.withNodeClasses(warmPool(pool, 1))
	f.addWarm(name, pool, corev1.ConditionFalse)
	if after := f.mustSync(name); after <= 0 || after > testRegTimeout {
		t.Errorf("a warm node not Ready is looked at again in %v, want by the registration timeout %v", after, testRegTimeout)
	}
	if len(f.liveInstances()) != 1 {
		t.Fatal("the warm node was deleted before its registration timeout")
	}
	f.clock.Step(testRegTimeout)
	f.mustSync(name)
	for _, inst := range f.liveInstances() {
		if inst.NodeName == name {
			t.Fatalf("the warm node, not Ready after the registration timeout, kept its instance %s", inst.ID)
		}
	}
}

// TestWarmPoolDrainsWhenItsNodeClassIsDeleted: deleting a NodeClass drains its warm pool: its
// unclaimed warm nodes are deleted, Node and instance.
func TestWarmPoolDrainsWhenItsNodeClassIsDeleted(t *testing.T) {
	const (
		pool = "pool"
		name = "ipp-warm-c"
	)
	f := newPlacementFixture(t)
	f.withNodeClasses(warmPool(pool, 1))
	f.addWarm(name, pool, corev1.ConditionTrue)
	f.mustSync(name)
	if len(f.liveInstances()) != 1 {
		t.Fatal("the wanted warm node was deleted")
	}
	if err := f.ipp.IppV1alpha1().NodeClasses().Delete(f.ctx, pool, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	if err := f.c.syncWarm(f.ctx, pool); err != nil {
		t.Fatal(err)
	}
	f.mustSync(name)
	if n := len(f.liveInstances()); n != 0 {
		t.Errorf("%d warm instances left after their NodeClass was deleted, want 0", n)
	}
	if f.nodeExists(name) {
		t.Error("the warm Node is left after its NodeClass was deleted")
	}
}
