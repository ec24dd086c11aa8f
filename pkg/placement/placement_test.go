package placement

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
)

// rl builds a ResourceList from name/quantity pairs.
func rl(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

// canon is a ResourceList as name → canonical quantity, for comparing.
func canon(l corev1.ResourceList) map[corev1.ResourceName]string {
	out := map[corev1.ResourceName]string{}
	for name, q := range l {
		out[name] = q.String()
	}
	return out
}

func container(name string, req corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: req}}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := container("sidecar", rl("cpu", "100m", "memory", "10Mi"))
	sidecar.RestartPolicy = &always
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want corev1.ResourceList
	}{
		{"none", corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, corev1.ResourceList{}},
		{"containers add up", corev1.PodSpec{Containers: []corev1.Container{
			container("a", rl("cpu", "1", "memory", "1Gi")), container("b", rl("cpu", "500m", "example.com/gpu", "1")),
		}}, rl("cpu", "1500m", "memory", "1Gi", "example.com/gpu", "1")},
		{"init container peak", corev1.PodSpec{
			InitContainers: []corev1.Container{container("init", rl("cpu", "4"))},
			Containers:     []corev1.Container{container("a", rl("cpu", "1", "memory", "1Gi"))},
		}, rl("cpu", "4", "memory", "1Gi")},
		{"sidecar counts with the containers and under later init containers", corev1.PodSpec{
			InitContainers: []corev1.Container{sidecar, container("init", rl("cpu", "2"))},
			Containers:     []corev1.Container{container("a", rl("cpu", "1"))},
		}, rl("cpu", "2100m", "memory", "10Mi")},
		{"overhead", corev1.PodSpec{
			Containers: []corev1.Container{container("a", rl("cpu", "1"))},
			Overhead:   rl("cpu", "250m", "memory", "64Mi"),
		}, rl("cpu", "1250m", "memory", "64Mi")},
		{"pod-level requests", corev1.PodSpec{
			Resources:  &corev1.ResourceRequirements{Requests: rl("cpu", "3", "memory", "2Gi")},
			Containers: []corev1.Container{container("a", rl("cpu", "1"))},
		}, rl("cpu", "3", "memory", "2Gi")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PodRequests(&corev1.Pod{Spec: tc.spec})
			if diff := cmp.Diff(canon(tc.want), canon(got)); diff != "" {
				t.Errorf("PodRequests (-want +got):\n%s", diff)
			}
		})
	}
}

func node(name, class string, alloc corev1.ResourceList) Node {
	return Node{Name: name, NodeClass: class, Allocatable: alloc, Ready: true, Schedulable: true}
}

type placed struct {
	node string
	req  corev1.ResourceList
}

func TestChoose(t *testing.T) {
	small := rl("cpu", "4", "memory", "8Gi", "pods", "110")
	for _, tc := range []struct {
		name    string
		nodes   []Node
		placed  []placed
		class   string
		req     corev1.ResourceList
		want    string
		outcome Outcome
	}{
		{name: "no nodes", class: "c", req: rl("cpu", "1"), outcome: NoRoom},
		{name: "empty nodes: first name", nodes: []Node{node("b", "c", small), node("a", "c", small)},
			class: "c", req: rl("cpu", "1"), want: "a", outcome: Placed},
		{name: "most allocated first", nodes: []Node{node("a", "c", small), node("b", "c", small)},
			placed: []placed{{"b", rl("cpu", "2", "memory", "1Gi")}},
			class:  "c", req: rl("cpu", "1"), want: "b", outcome: Placed},
		{name: "fullest node has no room left", nodes: []Node{node("a", "c", small), node("b", "c", small)},
			placed: []placed{{"b", rl("cpu", "3500m")}},
			class:  "c", req: rl("cpu", "1"), want: "a", outcome: Placed},
		{name: "exactly full fits", nodes: []Node{node("a", "c", small)},
			placed: []placed{{"a", rl("cpu", "3")}},
			class:  "c", req: rl("cpu", "1", "memory", "8Gi"), want: "a", outcome: Placed},
		{name: "other NodeClass ignored", nodes: []Node{node("a", "other", small), node("b", "c", small)},
			placed: []placed{{"b", rl("cpu", "3500m")}},
			class:  "c", req: rl("cpu", "1"), outcome: NoRoom},
		{name: "not ready and cordoned skipped", nodes: []Node{
			{Name: "a", NodeClass: "c", Allocatable: small, Ready: false, Schedulable: true},
			{Name: "b", NodeClass: "c", Allocatable: small, Ready: true, Schedulable: false},
		}, class: "c", req: rl("cpu", "1"), outcome: NoRoom},
		{name: "pod count full", nodes: []Node{node("a", "c", rl("cpu", "4", "pods", "2"))},
			placed: []placed{{"a", nil}, {"a", nil}},
			class:  "c", req: corev1.ResourceList{}, outcome: NoRoom},
		{name: "no pods allocatable takes no pod", nodes: []Node{node("a", "c", rl("cpu", "4"))},
			class: "c", req: rl("cpu", "1"), outcome: TooLarge},
		{name: "extended resource the node lacks", nodes: []Node{node("a", "c", small)},
			class: "c", req: rl("cpu", "1", "example.com/gpu", "1"), outcome: TooLarge},
		{name: "larger than every node", nodes: []Node{node("a", "c", small), node("b", "c", rl("cpu", "8", "memory", "8Gi", "pods", "110"))},
			class: "c", req: rl("cpu", "16"), outcome: TooLarge},
		{name: "fits only the not-ready node: no room, not too large", nodes: []Node{
			{Name: "a", NodeClass: "c", Allocatable: rl("cpu", "32", "pods", "110")},
			node("b", "c", small),
		}, class: "c", req: rl("cpu", "16"), outcome: NoRoom},
		{name: "zero requests fit anywhere with a pod slot", nodes: []Node{node("a", "c", small)},
			class: "c", req: rl("cpu", "0"), want: "a", outcome: Placed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := NewIndex(tc.nodes)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.placed {
				if !x.Place(p.node, NewRequests(p.req)) {
					t.Fatalf("Place(%s) = false", p.node)
				}
			}
			got, outcome := x.Choose(tc.class, NewRequests(tc.req))
			if got != tc.want || outcome != tc.outcome {
				t.Errorf("Choose = %q, %v; want %q, %v", got, outcome, tc.want, tc.outcome)
			}
		})
	}
}

func TestIndexPlaceUnplace(t *testing.T) {
	x, err := NewIndex([]Node{node("a", "c", rl("cpu", "2", "pods", "10"))})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRequests(rl("cpu", "1500m"))
	if n, o := x.Choose("c", r); o != Placed || n != "a" {
		t.Fatalf("Choose = %q, %v", n, o)
	}
	x.Place("a", r)
	if _, o := x.Choose("c", r); o != NoRoom {
		t.Fatalf("after Place, Choose outcome = %v, want NoRoom", o)
	}
	x.Unplace("a", r)
	if n, o := x.Choose("c", r); o != Placed || n != "a" {
		t.Fatalf("after Unplace, Choose = %q, %v", n, o)
	}
	if x.Place("missing", r) || x.Unplace("missing", r) {
		t.Error("Place/Unplace on a node not in the index returned true")
	}
	if _, err := NewIndex([]Node{node("a", "c", nil), node("a", "c", nil)}); err == nil {
		t.Error("NewIndex with a repeated name: want an error")
	}
}

func TestNodesNeeded(t *testing.T) {
	shape := rl("cpu", "4", "memory", "16Gi", "pods", "110")
	pods := func(n int, req corev1.ResourceList) []corev1.ResourceList {
		out := make([]corev1.ResourceList, n)
		for i := range out {
			out[i] = req
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		pending   []corev1.ResourceList
		newNode   corev1.ResourceList
		isolation ippv1alpha1.Isolation
		want      int
		tooLarge  []int
	}{
		{name: "nothing pending", newNode: shape, isolation: ippv1alpha1.IsolationClass},
		{name: "unknown shape: one at a time", pending: pods(10, rl("cpu", "1")), isolation: ippv1alpha1.IsolationClass, want: 1},
		{name: "unknown shape, isolation Pod: one per Pod", pending: pods(4, rl("cpu", "1")), isolation: ippv1alpha1.IsolationPod, want: 4},
		{name: "known shape packs", pending: pods(10, rl("cpu", "1")), newNode: shape, isolation: ippv1alpha1.IsolationClass, want: 3},
		{name: "memory decides", pending: pods(5, rl("cpu", "100m", "memory", "8Gi")), newNode: shape, isolation: ippv1alpha1.IsolationClass, want: 3},
		{name: "pod count decides", pending: pods(5, nil), newNode: rl("cpu", "4", "pods", "2"), isolation: ippv1alpha1.IsolationClass, want: 3},
		{name: "largest first", pending: []corev1.ResourceList{rl("cpu", "1"), rl("cpu", "3"), rl("cpu", "1"), rl("cpu", "3")},
			newNode: shape, isolation: ippv1alpha1.IsolationClass, want: 2},
		{name: "too large reported, not counted", pending: []corev1.ResourceList{rl("cpu", "1"), rl("cpu", "5"), rl("example.com/gpu", "1")},
			newNode: shape, isolation: ippv1alpha1.IsolationClass, want: 1, tooLarge: []int{1, 2}},
		{name: "all too large: nothing to create", pending: []corev1.ResourceList{rl("memory", "1Ti")},
			newNode: shape, isolation: ippv1alpha1.IsolationClass, want: 0, tooLarge: []int{0}},
		{name: "isolation Pod with a shape", pending: []corev1.ResourceList{rl("cpu", "1"), rl("cpu", "5"), rl("cpu", "1")},
			newNode: shape, isolation: ippv1alpha1.IsolationPod, want: 2, tooLarge: []int{1}},
		{name: "shape without pods takes nothing", pending: pods(2, rl("cpu", "1")), newNode: rl("cpu", "4"),
			isolation: ippv1alpha1.IsolationClass, want: 0, tooLarge: []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, tooLarge := NodesNeeded(tc.pending, tc.newNode, tc.isolation)
			if got != tc.want {
				t.Errorf("NodesNeeded = %d, want %d", got, tc.want)
			}
			if diff := cmp.Diff(tc.tooLarge, tooLarge); diff != "" {
				t.Errorf("too large (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkChoose places Pods one after another in a class of 100 nodes (16 CPU, 64 GiB, 250
// Pods each) that already holds 10,000 Pods: each iteration chooses a node and places the Pod
// there, as the controller does, then takes it away again to keep the load steady.
func BenchmarkChoose100Nodes10000Pods(b *testing.B) {
	nodes := make([]Node, 100)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("node-%03d", i), "c", rl("cpu", "16", "memory", "64Gi", "pods", "250"))
	}
	x, err := NewIndex(nodes)
	if err != nil {
		b.Fatal(err)
	}
	placedReq := NewRequests(PodRequests(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		container("a", rl("cpu", "100m", "memory", "256Mi")),
	}}}))
	for i := range 10000 {
		x.Place(nodes[i%100].Name, placedReq)
	}
	req := NewRequests(rl("cpu", "250m", "memory", "512Mi"))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		n, o := x.Choose("c", req)
		if o != Placed {
			b.Fatalf("Choose outcome %v", o)
		}
		x.Place(n, req)
		x.Unplace(n, req)
	}
}
