package tests

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
	"github.com/ipp-project/ipp/pkg/placement"
)

// placementGroupLabel is a label the test's kubelets set on their Nodes, so that the test's Pods
// select only them (a kubelet may not set node-restriction.kubernetes.io/*, which IPP's binding
// label uses; the pin works the same on any label).
const placementGroupLabel = "e2e.ipp.io/placement-group"

// placementPatch sends the placement PATCH for pod (the Pod as the caller last saw it) to the
// apiserver as the controller will: a JSON Patch on the Pod.
func placementPatch(ctx context.Context, t *testing.T, p jsonpatch.Patch, pod *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return cluster.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.JSONPatchType, raw, metav1.PatchOptions{FieldManager: "ipp-e2e"})
}

// TestPlacementPatch: two Ready Nodes carry one label; gated Pods of several shapes select it
// through a nodeSelector (as the webhook's label pin does), with and without required node
// affinity of their own. The placement PATCH (placement.PinPatch), sent through the real
// apiserver, is accepted for a gated Pod (KEP-3838: a gated Pod's required node affinity may
// grow), lifts the gate, and the real scheduler binds each Pod to exactly the node named. The
// nodes are chosen by placement.Index from the Nodes' own allocatable, and the scheduler agrees
// with its accounting: every Pod it placed binds. A PATCH built from a stale view (gate already
// lifted) fails and changes nothing, and the affinity part alone is refused for a Pod that is no
// longer gated.
func TestPlacementPatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	group := rand.String(8)
	nodes := []string{uniqueName("place-a"), uniqueName("place-b")}
	slices.Sort(nodes)
	for _, n := range nodes {
		startKubelet(t, kubelet.Registration{NodeName: n, Labels: map[string]string{placementGroupLabel: group}})
	}
	var index []placement.Node
	for _, n := range nodes {
		node := waitSchedulable(t, n)
		index = append(index, placement.Node{Name: n, NodeClass: "default", Allocatable: node.Status.Allocatable, Ready: true, Schedulable: true})
	}
	x, err := placement.NewIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, "placement")

	// Binding times, from a watch started before any PATCH.
	w, err := cluster.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	boundAt := map[string]time.Time{}
	boundTo := map[string]string{}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Spec.NodeName == "" {
				continue
			}
			mu.Lock()
			if _, seen := boundAt[p.Name]; !seen {
				boundAt[p.Name], boundTo[p.Name] = time.Now(), p.Spec.NodeName
			}
			mu.Unlock()
		}
	}()

	gated := func(name string, opts ...func(*corev1.Pod)) *corev1.Pod {
		p := pod(name)
		p.Spec.NodeSelector = map[string]string{placementGroupLabel: group}
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: placement.Gate}}
		for _, o := range opts {
			o(p)
		}
		return p
	}
	withAffinity := func(a *corev1.Affinity) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.Affinity = a } }
	inGroup := corev1.NodeSelectorRequirement{Key: placementGroupLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{group}}
	onEither := corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: nodes}
	// The apiserver takes one value per matchFields requirement on metadata.name.
	notElsewhere := corev1.NodeSelectorRequirement{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"elsewhere"}}
	required := func(terms ...corev1.NodeSelectorTerm) *corev1.NodeSelector {
		return &corev1.NodeSelector{NodeSelectorTerms: terms}
	}
	cpu := func(q string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(q)}
		}
	}
	shapes := []*corev1.Pod{
		gated("selector-only"),
		gated("other-gate-after", func(p *corev1.Pod) {
			p.Spec.SchedulingGates = append(p.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: "e2e.ipp.io/other"})
		}),
		gated("preferred-only", withAffinity(&corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{onEither}}}},
		}})),
		gated("two-terms", withAffinity(&corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: required(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{onEither}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{inGroup}},
			),
		}})),
		gated("term-with-matchfields", withAffinity(&corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: required(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{inGroup}, MatchFields: []corev1.NodeSelectorRequirement{notElsewhere}},
			),
		}})),
	}
	// Pods of one CPU each, placed by the Index: the two 4-CPU nodes take eight.
	const fullPods = 8
	for i := range fullPods {
		shapes = append(shapes, gated("cpu-"+string(rune('a'+i)), cpu("1")))
	}
	// And Pods that request nothing, for the timing: they still fit when the CPUs are taken.
	const lightPods = 40
	for i := range lightPods {
		shapes = append(shapes, gated(fmt.Sprintf("light-%02d", i)))
	}
	for _, p := range shapes {
		createPod(t, ns, p)
	}

	// The other gate of "other-gate-after" keeps that Pod from the scheduler; lift it only after
	// ours, to see that our PATCH leaves it in place.
	type sent struct {
		node string
		at   time.Time
	}
	patched := map[string]sent{}
	var views []*corev1.Pod // the gated views the PATCHes were built from
	for i, p := range shapes {
		seen, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		req := placement.NewRequests(placement.PodRequests(seen))
		var node string
		if strings.HasPrefix(p.Name, "cpu-") || strings.HasPrefix(p.Name, "light-") {
			n, outcome := x.Choose("default", req)
			if outcome != placement.Placed {
				t.Fatalf("Choose for %s: %v", p.Name, outcome)
			}
			node = n
		} else {
			node = nodes[i%2] // both nodes, whatever the Index would choose
		}
		pp, err := placement.PinPatch(seen, node)
		if err != nil {
			t.Fatalf("PinPatch(%s): %v", p.Name, err)
		}
		at := time.Now()
		got, err := placementPatch(ctx, t, pp, seen)
		if err != nil {
			t.Fatalf("PATCH placing %s on %s refused: %v", p.Name, node, err)
		}
		x.Place(node, req)
		patched[p.Name] = sent{node: node, at: at}
		views = append(views, seen)
		if slices.ContainsFunc(got.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate }) {
			t.Errorf("%s: gate still there after the PATCH: %v", p.Name, got.Spec.SchedulingGates)
		}
		for j, term := range got.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			if !slices.ContainsFunc(term.MatchFields, func(r corev1.NodeSelectorRequirement) bool {
				return r.Key == metav1.ObjectNameField && slices.Equal(r.Values, []string{node})
			}) {
				t.Errorf("%s: required term %d lacks the node name %s: %+v", p.Name, j, node, term)
			}
		}
	}
	// The Index knows the nodes are full of CPU now, and that a 5-CPU Pod fits neither.
	if _, outcome := x.Choose("default", placement.NewRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")})); outcome != placement.NoRoom {
		t.Errorf("Choose after %d one-CPU Pods on two 4-CPU nodes: %v, want NoRoom", fullPods, outcome)
	}
	if _, outcome := x.Choose("default", placement.NewRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5")})); outcome != placement.TooLarge {
		t.Errorf("Choose for 5 CPUs on 4-CPU nodes: %v, want TooLarge", outcome)
	}

	// The other gate, lifted now by its own (merge) patch.
	other, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "other-gate-after", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := other.Spec.SchedulingGates; len(diff) != 1 || diff[0].Name != "e2e.ipp.io/other" {
		t.Errorf("other-gate-after: gates after our PATCH = %v, want only e2e.ipp.io/other", diff)
	}
	if _, err := cluster.Client.CoreV1().Pods(ns).Patch(ctx, other.Name, types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/spec/schedulingGates/0"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// Every Pod binds to exactly its node.
	err = waitFor(ctx, podTimeout, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(boundAt) == len(shapes), nil
	})
	mu.Lock()
	var lat []time.Duration
	for name, s := range patched {
		if boundTo[name] != s.node {
			t.Errorf("%s bound to %q, want %q", name, boundTo[name], s.node)
		}
		if name != "other-gate-after" && !boundAt[name].IsZero() {
			lat = append(lat, boundAt[name].Sub(s.at))
		}
	}
	mu.Unlock()
	if err != nil {
		t.Fatalf("Waiting for the Pods to bind: %v", err)
	}
	slices.Sort(lat)
	t.Logf("PATCH to binding for %d Pods (watch event times): min %v, median %v, max %v",
		len(lat), lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))

	// A PATCH built from a stale view (the gate lifted since) fails and changes nothing.
	for _, seen := range views[:3] {
		before, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, seen.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pp, err := placement.PinPatch(seen, nodes[1])
		if err != nil {
			t.Fatal(err)
		}
		_, err = placementPatch(ctx, t, pp, seen)
		if err == nil {
			t.Errorf("%s: stale PATCH accepted", seen.Name)
			continue
		}
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: stale PATCH: err = %v, want Invalid (422)", seen.Name, err)
		}
		t.Logf("%s: stale PATCH refused: %s", seen.Name, statusText(err))
		after, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, seen.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != before.ResourceVersion {
			t.Errorf("%s: stale PATCH changed the Pod (resourceVersion %s → %s)", seen.Name, before.ResourceVersion, after.ResourceVersion)
		}
	}

	// A gate before ours lifted between the read and the PATCH: ours moved, and the PATCH fails
	// instead of removing the gate now at its old index.
	raced := createPod(t, ns, gated("raced", func(p *corev1.Pod) {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "e2e.ipp.io/a"}, {Name: placement.Gate}, {Name: "e2e.ipp.io/b"}}
	}))
	racedPatch, err := placement.PinPatch(raced, nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.CoreV1().Pods(ns).Patch(ctx, raced.Name, types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/spec/schedulingGates/0"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := placementPatch(ctx, t, racedPatch, raced); !apierrors.IsInvalid(err) {
		t.Errorf("PATCH after the gates moved: err = %v, want Invalid (422)", err)
	}
	racedNow, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, raced.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []corev1.PodSchedulingGate{{Name: placement.Gate}, {Name: "e2e.ipp.io/b"}}; !slices.Equal(racedNow.Spec.SchedulingGates, want) {
		t.Errorf("raced: gates = %v, want %v", racedNow.Spec.SchedulingGates, want)
	}
	if racedNow.Spec.Affinity != nil {
		t.Errorf("raced: affinity set by a refused PATCH: %+v", racedNow.Spec.Affinity)
	}

	// The affinity part alone (no gate test), built from the Pod as it is now, placed and
	// ungated: its JSON tests hold, but the apiserver's own validation refuses it, since only a
	// gated Pod's node affinity may change. PinPatch itself refuses an ungated Pod.
	current, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "two-terms", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := placement.PinPatch(current, nodes[1]); !errors.Is(err, placement.ErrNotGated) {
		t.Errorf("PinPatch on an ungated Pod: err = %v, want ErrNotGated", err)
	}
	asIfGated := current.DeepCopy()
	asIfGated.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: placement.Gate}}
	pp, err := placement.PinPatch(asIfGated, current.Spec.NodeName)
	if err != nil {
		t.Fatal(err)
	}
	affinityOnly := append(jsonpatch.Patch{pp[0]}, pp[3:]...) // the UID test and the affinity ops
	_, err = placementPatch(ctx, t, affinityOnly, current)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("affinity PATCH on an ungated Pod: err = %v, want Invalid", err)
	}
	msg := statusText(err)
	if i := strings.Index(msg, "\n"); i > 0 {
		msg = msg[:i] // the rest is the diff of the spec
	}
	t.Logf("affinity PATCH on an ungated Pod refused: %s", msg)
	after, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, current.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != current.ResourceVersion {
		t.Errorf("refused PATCH changed the Pod (resourceVersion %s → %s)", current.ResourceVersion, after.ResourceVersion)
	}
}

// statusText is the apiserver's answer in full: code, reason, message and causes.
func statusText(err error) string {
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		return err.Error()
	}
	st := s.Status()
	text := fmt.Sprintf("%d %s: %s", st.Code, st.Reason, st.Message)
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			text += fmt.Sprintf("; cause %s %q: %s", c.Type, c.Field, c.Message)
		}
	}
	return text
}
