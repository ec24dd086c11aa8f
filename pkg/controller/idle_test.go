package controller

import (
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

// oldIdleAnnotation is where the idle clock used to be kept: an annotation, which the kubelet may
// write on its own Node. Nothing reads or writes it any more.
const oldIdleAnnotation = "ipp.io/idle-since"

// updateNode writes the Node as its kubelet may: everything but labels under
// node-restriction.kubernetes.io/ and taints (NodeRestriction refuses those; the e2e test
// TestDedicated/node_cannot_keep_itself_alive checks that it does).
func (f *fixture) updateNode(name string, change func(*corev1.Node)) {
	f.t.Helper()
	node := f.getNode(name)
	change(node)
	if _, err := f.kube.CoreV1().Nodes().Update(f.ctx, node, metav1.UpdateOptions{FieldManager: testFieldManager}); err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
}

// TestNodeCannotKeepItselfAlive: a node that rewrites everything it may write on its Node every
// few seconds (the old idle annotation set to now, the old reaping marks, labels of its own,
// spec.unschedulable) is reaped once the idle TTL has passed since it went idle, as any other.
func TestNodeCannotKeepItselfAlive(t *testing.T) {
	f, n, _ := boundFixture(t)
	idleSince := f.clock.Now()
	f.mustSync(n)
	f.actions()

	for i := 0; ; i++ {
		f.clock.Step(5 * time.Second)
		now := f.clock.Now()
		f.updateNode(n, func(node *corev1.Node) {
			if node.Annotations == nil {
				node.Annotations = map[string]string{}
			}
			node.Annotations[oldIdleAnnotation] = now.UTC().Format(time.RFC3339)
			node.Annotations["ipp.io/reaping"] = ""
			node.Annotations["ipp.io/cordoned"] = "false"
			node.Labels["example.com/heartbeat"] = strconv.Itoa(i)
			node.Spec.Unschedulable = i%2 == 1
		})
		f.mustSync(n)
		calls := f.calls()
		if now.Before(idleSince.Add(testIdleTTL)) {
			if len(calls) != 0 {
				t.Fatalf("At %v, before the idle TTL ran out, provider calls %q", now.Sub(idleSince), calls)
			}
			continue
		}
		diff(t, "provider calls once the idle TTL ran out", []string{"delete " + n}, calls)
		if f.nodeExists(n) {
			t.Error("Node not deleted")
		}
		return
	}
}

// TestIdleClockIgnoresTheOldAnnotation: an idle-since annotation from long ago (left by an older
// controller, or written by the kubelet) neither reaps the node nor is touched: the clock starts
// in the label, and demand clears only the label.
func TestIdleClockIgnoresTheOldAnnotation(t *testing.T) {
	f, n, _ := boundFixture(t)
	old := t0.Add(-time.Hour).Format(time.RFC3339)
	f.updateNode(n, func(node *corev1.Node) {
		node.Annotations = map[string]string{oldIdleAnnotation: old}
	})
	node := f.getNode(n)

	after := f.mustSync(n)
	diff(t, "kube actions", []string{guarded(node, addLabelOp(isolation.IdleSinceLabel, unix(f.clock.Now())))}, f.actions())
	diff(t, "provider calls", []string(nil), f.calls())
	diff(t, "requeue after", testIdleTTL, after)

	f.clock.Step(time.Minute)
	f.addPod(f.pod("p1", "a", f.clock.Now()))
	node = f.getNode(n)
	f.mustSync(n)
	diff(t, "kube actions with demand", []string{guarded(node, jsonpatch.Remove(jsonpatch.LabelPath(isolation.IdleSinceLabel)))}, f.actions())
	diff(t, "annotations", map[string]string{oldIdleAnnotation: old}, f.getNode(n).Annotations)
}

// TestIdleClockInTheFutureStartsNow: a clock in the future (another replica's clock ahead) would
// keep the node beyond its TTL; it counts as now, and the clock starts again from now.
func TestIdleClockInTheFutureStartsNow(t *testing.T) {
	f, n, _ := boundFixture(t)
	f.updateNode(n, func(node *corev1.Node) {
		label(node, isolation.IdleSinceLabel, unix(f.clock.Now().Add(time.Hour)))
	})
	node := f.getNode(n)
	start := f.clock.Now()

	after := f.mustSync(n)
	diff(t, "kube actions", []string{guarded(node, addLabelOp(isolation.IdleSinceLabel, unix(start)))}, f.actions())
	diff(t, "requeue after", testIdleTTL, after)

	f.clock.Step(testIdleTTL)
	f.mustSync(n)
	diff(t, "provider calls after the idle TTL from now", []string{"delete " + n}, f.calls())
}

// TestIdleClockNeverEndsEarly: the clock has whole seconds, rounded up, so a node that went idle
// within a second is kept for the whole TTL, and a little more, never less.
func TestIdleClockNeverEndsEarly(t *testing.T) {
	f, n, _ := boundFixture(t)
	f.clock.Step(300 * time.Millisecond)
	idle := f.clock.Now()

	after := f.mustSync(n)
	diff(t, "idle clock", strconv.FormatInt(idle.Unix()+1, 10), f.getNode(n).Labels[isolation.IdleSinceLabel])
	diff(t, "requeue after", testIdleTTL+700*time.Millisecond, after)

	// Just before the rounded-up TTL ends (and after the exact one): kept.
	f.clock.Step(testIdleTTL + 699*time.Millisecond)
	after = f.mustSync(n)
	diff(t, "provider calls before the TTL ran out", []string(nil), f.calls())
	diff(t, "requeue after", time.Millisecond, after)

	f.clock.Step(time.Millisecond)
	f.mustSync(n)
	diff(t, "provider calls once it ran out", []string{"delete " + n}, f.calls())
	if got := f.clock.Now().Sub(idle); got < testIdleTTL {
		t.Errorf("Reaped %v after it went idle, before the idle TTL %v", got, testIdleTTL)
	}
}
