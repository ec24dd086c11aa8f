package admission

import (
	"encoding/json"

	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// TestControllerPinPatchIsAllowed plays the controller's part under --placement=controller: the
// Pod that Mutate made on CREATE gets placement.PinPatch (the gate lifted, the node's name
// appended to every required term), applied with the JSONPatch library the API server uses, and
// the UPDATE that results must pass both webhooks unchanged.
func TestControllerPinPatchIsAllowed(t *testing.T) {
	const node = "ipp-class0-0123456789abcdef"
	cfg := isolation.DefaultConfig()
	controller(&cfg)
	zoneA := exprTerm(req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a"))
	zoneB := exprTerm(req("disk", corev1.NodeSelectorOpExists))
	userAnti := corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: "topology.kubernetes.io/zone"}
	tests := []struct {
		name string
		pod  *corev1.Pod
	}{
		{"plain", newPod("class0")},
		{"the user's gate before", newPod("class0", withGate("wait"))},
		{"arrives with the gate, another after it", newPod("class0", withGate(placement.Gate), withGate("later"))},
		{"the user's terms", newPod("class0", withRequired(zoneA, zoneB, corev1.NodeSelectorTerm{MatchExpressions: zoneA.MatchExpressions, MatchFields: []corev1.NodeSelectorRequirement{req("metadata.name", corev1.NodeSelectorOpNotIn, "node-1")}}))},
		{"pod affinity only", newPod("class0", withPodAffinity(userAnti))},
		{"preferred node affinity only", newPod("class0", withPreferred(5, zoneA))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			create := request(t, admissionv1.Create, "default", tt.pod, nil, false)
			resp := mutateRequest(cfg, create)
			checkResponse(t, resp, nil, 0)
			gated := applyPatch(t, create.Object.Raw, resp)
			if n := countGates(gated, placement.Gate); n != 1 {
				t.Fatalf("the mutated Pod has %d %s gates, want 1: %v", n, placement.Gate, gated.Spec.SchedulingGates)
			}
			gated.Namespace, gated.UID = "default", "9d5e1f2a-0000-4000-8000-000000000002"

			p, err := placement.PinPatch(gated, node)
			if err != nil {
				t.Fatalf("PinPatch: %v", err)
			}
			doc, err := p.Marshal()
			if err != nil {
				t.Fatalf("encoding the patch: %v", err)
			}
			patch, err := jsonpatch.DecodePatch(doc)
			if err != nil {
				t.Fatalf("decoding patch %s: %v", doc, err)
			}
			oldRaw := mustJSON(t, gated)
			newRaw, err := patch.Apply(oldRaw)
			if err != nil {
				t.Fatalf("applying patch %s: %v", doc, err)
			}
			placed := &corev1.Pod{}
			if err := json.Unmarshal(newRaw, placed); err != nil {
				t.Fatal(err)
			}
			if n := countGates(placed, placement.Gate); n != 0 {
				t.Fatalf("the placed Pod still has the gate: %v", placed.Spec.SchedulingGates)
			}

			update := request(t, admissionv1.Update, "default", nil, nil, false)
			update.Object, update.OldObject = runtime.RawExtension{Raw: newRaw}, runtime.RawExtension{Raw: oldRaw}
			m := mutateRequest(cfg, update)
			checkResponse(t, m, nil, 0)
			if len(m.Patch) > 0 {
				t.Errorf("Mutate() of the controller's UPDATE = patch %s, want none", m.Patch)
			}
			if diff := cmp.Diff(placed, applyPatch(t, newRaw, m)); diff != "" {
				t.Errorf("Mutate() changed the placed Pod (-want +got):\n%s", diff)
			}
			checkResponse(t, validateRequest(cfg, ippNodes, update), nil, 0)

			// The scheduler binds it next; later updates of the bound Pod pass too.
			bound := placed.DeepCopy()
			bound.Spec.NodeName = node
			later := bound.DeepCopy()
			later.Labels["v"] = "2"
			u2 := request(t, admissionv1.Update, "default", later, bound, false)
			checkResponse(t, mutateRequest(cfg, u2), nil, 0)
			checkResponse(t, validateRequest(cfg, ippNodes, u2), nil, 0)
		})
	}
}

// TestMutateGateShapes checks the gate's patch on the shapes of schedulingGates that a typed
// encoder never produces.
func TestMutateGateShapes(t *testing.T) {
	cfg := isolation.DefaultConfig()
	controller(&cfg)
	gate := corev1.PodSchedulingGate{Name: placement.Gate}
	tests := []struct {
		name  string
		gates string
		want  []corev1.PodSchedulingGate
	}{
		{"absent", ``, []corev1.PodSchedulingGate{gate}},
		{"null", `,"schedulingGates":null`, []corev1.PodSchedulingGate{gate}},
		{"empty", `,"schedulingGates":[]`, []corev1.PodSchedulingGate{gate}},
		{"another gate", `,"schedulingGates":[{"name":"wait"}]`, []corev1.PodSchedulingGate{{Name: "wait"}, gate}},
		{"the gate already", `,"schedulingGates":[{"name":"wait"},{"name":"ipp.io/placement"}]`, []corev1.PodSchedulingGate{{Name: "wait"}, gate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, admissionv1.Create, "default", nil, nil, false)
			r.Object.Raw = []byte(`{"metadata":{"labels":{"ipp-class":"class0"}},"spec":{"containers":[{"name":"a","image":"i"}]` + tt.gates + `}}`)
			resp := mutateRequest(cfg, r)
			checkResponse(t, resp, nil, 0)
			got := applyPatch(t, r.Object.Raw, resp)
			if diff := cmp.Diff(tt.want, got.Spec.SchedulingGates); diff != "" {
				t.Errorf("scheduling gates after the patch %s (-want +got):\n%s", resp.Patch, diff)
			}
			if got.Spec.NodeSelector[isolation.ClassLabel] != keyClass0 || got.Spec.Affinity != nil {
				t.Errorf("the pin after the patch %s: nodeSelector %v, affinity %v; want only %s=%s", resp.Patch, got.Spec.NodeSelector, got.Spec.Affinity, isolation.ClassLabel, keyClass0)
			}
		})
	}
}

func countGates(p *corev1.Pod, name string) int {
	n := 0
	for _, g := range p.Spec.SchedulingGates {
		if g.Name == name {
			n++
		}
	}
	return n
}
