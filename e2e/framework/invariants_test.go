package framework

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

func TestIsolationViolations(t *testing.T) {
	cfg := isolation.DefaultConfig()
	// --placement=admission: I3 is checked against each class's dedicated node name.
	cfg.Placement = isolation.PlacementAdmission
	auto := cfg
	auto.Mode = isolation.ModeAutoscaler
	a, b := cfg.NodeName("ns", "a"), cfg.NodeName("ns", "b")
	node := func(name string, ipp bool) corev1.Node {
		n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		if ipp {
			n.Labels[cfg.NodeLabel] = isolation.LabelValue
		}
		return n
	}
	pod := func(ns, name, class, node string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node}}
		if class != "" {
			p.Labels = map[string]string{cfg.PodLabel: class}
		}
		return p
	}
	nodes := []corev1.Node{node(a, true), node(b, true), node("worker", false)}
	for _, tc := range []struct {
		name string
		cfg  isolation.Config
		pods []corev1.Pod
		want []string
	}{
		{
			name: "each class on its node, plain pod on the worker",
			cfg:  cfg,
			pods: []corev1.Pod{pod("ns", "a1", "a", a), pod("ns", "a2", "a", a), pod("ns", "b1", "b", b), pod("ns", "plain", "", "worker"), pod("ns", "pending", "a", "")},
		},
		{
			name: "plain pod on an IPP node, exempt namespace allowed",
			cfg:  cfg,
			pods: []corev1.Pod{pod("ns", "plain", "", a), pod("kube-system", "ds", "", a)},
			want: []string{"I2: pod ns/plain without a class is on IPP node " + a},
		},
		{
			name: "two classes on one node",
			cfg:  cfg,
			pods: []corev1.Pod{pod("ns", "a1", "a", a), pod("ns", "b1", "b", a)},
			want: []string{
				"I1: pod ns/b1 of class ns/b shares node " + a + " with class ns/a",
				"I3: pod ns/b1 of class ns/b is on node " + a + ", not its dedicated node " + b,
			},
		},
		{
			name: "terminal pods are not placed",
			cfg:  cfg,
			pods: []corev1.Pod{func() corev1.Pod { p := pod("ns", "done", "", a); p.Status.Phase = corev1.PodSucceeded; return p }()},
		},
		{
			name: "autoscaler mode: classes apart on IPP nodes",
			cfg:  auto,
			pods: []corev1.Pod{pod("ns", "a1", "a", b), pod("ns", "b1", "b", a), pod("ns", "c1", "c", "worker")},
			want: []string{"I3: pod ns/c1 of class ns/c is on node worker, which is not an IPP node"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := IsolationViolations(tc.cfg, tc.pods, nodes)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("IsolationViolations (-want +got):\n%s", diff)
			}
		})
	}
}
