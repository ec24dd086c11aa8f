package bench

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

func p4TestNode(name, nc string, warm bool, class string, ready bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{isolation.NodeClassNodeLabel: nc, isolation.BindingLabel: name}}}
	if warm {
		n.Labels[isolation.WarmLabel] = isolation.LabelValue
	}
	if class != "" {
		n.Labels[isolation.ClassLabel] = class
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	return n
}

// TestP4WarmReady checks the count of Ready unclaimed warm nodes that P4 waits on: a node
// counts while it is warm, Ready, bound to its instance and unclaimed, and stops counting once
// claimed.
func TestP4WarmReady(t *testing.T) {
	s := &p4{pods: map[string]*p4Pod{}, nodes: map[string]*p4Node{}, warmReady: map[string]map[string]bool{}, taints: map[string]map[string]bool{}}
	s.sawNode(p4TestNode("a", "nc", true, "", false))
	s.sawNode(p4TestNode("b", "nc", true, "", true))
	s.sawNode(p4TestNode("c", "other", true, "", true))
	if got := s.ready("nc"); got != 1 {
		t.Fatalf("ready(nc) = %d, want 1 (a is not Ready)", got)
	}
	s.sawNode(p4TestNode("a", "nc", true, "", true))
	unbound := p4TestNode("d", "nc", true, "", true)
	delete(unbound.Labels, isolation.BindingLabel)
	s.sawNode(unbound)
	if got := s.ready("nc"); got != 2 {
		t.Fatalf("ready(nc) = %d, want 2 (d is not bound to its instance)", got)
	}
	s.sawNode(p4TestNode("b", "nc", false, "key-b", true))
	if got := s.ready("nc"); got != 1 {
		t.Fatalf("ready(nc) = %d after b was claimed, want 1", got)
	}
	if !s.nodes["b"].everWarm || s.nodes["b"].claimed.IsZero() || s.nodes["b"].class != "key-b" {
		t.Errorf("b's record is %+v, want ever warm, claimed by key-b", s.nodes["b"])
	}
}

// TestP4Summarize checks that a Pod counts as a warm start only when its node was seen warm,
// and that the warm starts' stages are measured from the Create call.
func TestP4Summarize(t *testing.T) {
	s := &p4{pods: map[string]*p4Pod{}, nodes: map[string]*p4Node{}, warmReady: map[string]map[string]bool{}, taints: map[string]map[string]bool{}}
	t0 := time.Now()
	s.sawNode(p4TestNode("w", "nc", true, "", true))
	s.sawNode(p4TestNode("cold", "nc", false, "", true))
	s.nodes["w"].claimed = t0.Add(10 * time.Millisecond)
	s.pods["a"] = &p4Pod{class: "a", createCall: t0}
	s.pods["b"] = &p4Pod{class: "b", createCall: t0}
	pod := func(name, node string, gated bool, phase corev1.PodPhase) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
		if gated {
			p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: placement.Gate}}
		}
		return p
	}
	s.sawPod(pod("a", "", true, corev1.PodPending))
	s.sawPod(pod("a", "", false, corev1.PodPending))
	s.sawPod(pod("a", "w", false, corev1.PodPending))
	s.sawPod(pod("a", "w", false, corev1.PodRunning))
	s.sawPod(pod("b", "cold", false, corev1.PodRunning))
	s.sawPod(pod("unmeasured", "w", false, corev1.PodRunning))
	var res P4Phase
	s.summarize(&res, []string{"a", "b"})
	if res.WarmStarts != 1 || res.ColdStarts != 1 {
		t.Fatalf("warm %d, cold %d starts, want 1 and 1", res.WarmStarts, res.ColdStarts)
	}
	st := res.WarmStages
	if st == nil || st.Claimed.Max != 10 {
		t.Fatalf("warm stages %+v, want the claim 10 ms after the Create call", st)
	}
	if st.Ungated.Max > st.Bound.Max || st.Bound.Max > st.Running.Max || st.Running.Max != res.Warm.Max {
		t.Errorf("warm stages out of order: %+v (warm %+v)", st, res.Warm)
	}
	if cs := res.ColdStages; cs == nil || cs.NodeReady.Count != 1 || cs.Running.Max != res.Cold.Max {
		t.Errorf("cold stages %+v, want the node's Ready time and the cold start's", cs)
	}
	if len(s.pods) != 2 {
		t.Errorf("an unmeasured Pod was recorded: %v", s.pods)
	}
}
