package placement

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatchlib "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func gates(names ...string) []corev1.PodSchedulingGate {
	var g []corev1.PodSchedulingGate
	for _, n := range names {
		g = append(g, corev1.PodSchedulingGate{Name: n})
	}
	return g
}

func expr(key, value string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{value}}
}

func requiredAffinity(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

// apply applies the patch to the Pod's JSON with the library the API server uses.
func apply(t *testing.T, pod *corev1.Pod, raw []byte) (*corev1.Pod, error) {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatchlib.DecodePatch(raw)
	if err != nil {
		t.Fatalf("DecodePatch(%s): %v", raw, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, err
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got, nil
}

func TestPinPatch(t *testing.T) {
	name := NodeNameRequirement("node-1")
	zone := expr("topology.kubernetes.io/zone", "z1")
	preferred := []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}}}}
	podAffinity := &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
	}}}
	for _, tc := range []struct {
		name         string
		gates        []corev1.PodSchedulingGate
		affinity     *corev1.Affinity
		wantGates    []corev1.PodSchedulingGate
		wantAffinity *corev1.Affinity
	}{
		{name: "no affinity", gates: gates(Gate), wantAffinity: requiredAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{name}})},
		{name: "other gates before and after ours", gates: gates("a", Gate, "b"), wantGates: gates("a", "b"),
			wantAffinity: requiredAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{name}})},
		{name: "pod affinity only", gates: gates("a", Gate), wantGates: gates("a"),
			affinity: &corev1.Affinity{PodAffinity: podAffinity},
			wantAffinity: &corev1.Affinity{PodAffinity: podAffinity, NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{name}}}},
			}}},
		{name: "preferred only", gates: gates(Gate),
			affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: preferred}},
			wantAffinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: preferred,
				RequiredDuringSchedulingIgnoredDuringExecution:  &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{name}}}},
			}}},
		{name: "required with several terms, some with matchFields", gates: gates(Gate, "z"), wantGates: gates("z"),
			affinity: requiredAffinity(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}},
				corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"node-9"}}}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}, MatchFields: []corev1.NodeSelectorRequirement{NodeNameRequirement("node-1")}},
			),
			wantAffinity: requiredAffinity(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}, MatchFields: []corev1.NodeSelectorRequirement{name}},
				corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"node-9"}}, name}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{zone}, MatchFields: []corev1.NodeSelectorRequirement{name, name}},
			)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
				Spec: corev1.PodSpec{
					SchedulingGates: tc.gates,
					Affinity:        tc.affinity,
					NodeSelector:    map[string]string{"node-restriction.kubernetes.io/ipp-class": "k"},
				},
			}
			p, err := PinPatch(pod, "node-1")
			if err != nil {
				t.Fatal(err)
			}
			raw, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := apply(t, pod, raw)
			if err != nil {
				t.Fatalf("Apply(%s): %v", raw, err)
			}
			want := pod.DeepCopy()
			want.Spec.SchedulingGates = tc.wantGates
			want.Spec.Affinity = tc.wantAffinity
			if len(got.Spec.SchedulingGates) == 0 {
				got.Spec.SchedulingGates = nil // the gate removed from a list of one leaves []
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("patched pod (-want +got):\n%s\npatch: %s", diff, raw)
			}

			// The same patch applied again, to the placed Pod, fails: the gate is no longer where
			// it was.
			if _, err := apply(t, got, raw); err == nil {
				t.Errorf("patch applied twice; want the second to fail: %s", raw)
			}
			// A Pod of the same name with another UID.
			other := pod.DeepCopy()
			other.UID = types.UID("uid-2")
			if _, err := apply(t, other, raw); err == nil {
				t.Error("patch applied to a Pod with another UID")
			}
			// A required node affinity changed since (a term added, or one set where there was
			// none): the patch fails rather than leave a term without the node's name or replace
			// the affinity.
			changed := pod.DeepCopy()
			extra := corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("x", "y")}}
			switch {
			case changed.Spec.Affinity == nil:
				changed.Spec.Affinity = requiredAffinity(extra)
			case changed.Spec.Affinity.NodeAffinity == nil:
				changed.Spec.Affinity.NodeAffinity = requiredAffinity(extra).NodeAffinity
			case changed.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil:
				changed.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = requiredAffinity(extra).NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
			default:
				r := changed.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
				r.NodeSelectorTerms = append(r.NodeSelectorTerms, extra)
			}
			if _, err := apply(t, changed, raw); err == nil {
				t.Errorf("patch applied to a Pod whose required node affinity changed: %s", raw)
			}
			// Another gate removed before ours moves it: the index test fails.
			if len(tc.gates) > 1 && tc.gates[0].Name != Gate {
				moved := pod.DeepCopy()
				moved.Spec.SchedulingGates = moved.Spec.SchedulingGates[1:]
				if _, err := apply(t, moved, raw); err == nil {
					t.Errorf("patch applied after the gates moved: %s", raw)
				}
			}
		})
	}
}

func TestPinPatchErrors(t *testing.T) {
	gated := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u"}, Spec: corev1.PodSpec{SchedulingGates: gates(Gate)}}
	if _, err := PinPatch(gated, ""); err == nil {
		t.Error("no node name: want an error")
	}
	noUID := gated.DeepCopy()
	noUID.UID = ""
	if _, err := PinPatch(noUID, "n"); err == nil {
		t.Error("no UID: want an error")
	}
	ungated := gated.DeepCopy()
	ungated.Spec.SchedulingGates = gates("other")
	if _, err := PinPatch(ungated, "n"); !errors.Is(err, ErrNotGated) {
		t.Errorf("no gate: err = %v, want ErrNotGated", err)
	}
	noTerms := gated.DeepCopy()
	noTerms.Spec.Affinity = requiredAffinity()
	if _, err := PinPatch(noTerms, "n"); err == nil {
		t.Error("required affinity without terms: want an error")
	}
}
