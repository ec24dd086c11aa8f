package placement

import (
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

// Gate is the scheduling gate that the webhook adds to every IPP Pod and that the controller
// removes when it places the Pod.
const Gate = "ipp.io/placement"

// ErrNotGated is returned by PinPatch for a Pod that does not carry Gate: it was placed already,
// or someone else lifted the gate. Test with errors.Is.
var ErrNotGated = errors.New("pod has no " + Gate + " scheduling gate")

const requiredPath = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"

// NodeNameRequirement is the requirement that PinPatch appends to every required node selector
// term: the node named, and no other, as a DaemonSet Pod's. The scheduler's NodeAffinity PreFilter
// narrows its candidates to that one node.
func NodeNameRequirement(node string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{
		Key:      metav1.ObjectNameField,
		Operator: corev1.NodeSelectorOpIn,
		Values:   []string{node},
	}
}

// PinPatch returns the one JSON Patch that places the Pod on the node: it removes Gate and
// appends NodeNameRequirement(node) to the matchFields of every required node selector term (the
// terms are ORed, so each must name the node), or sets a required node affinity with that one
// term when the Pod has none. pod is the Pod as the caller last saw it; the patch fails as a
// whole, changing nothing, when the Pod changed since in a way that matters:
//   - another Pod of the same name (its UID is tested);
//   - Gate no longer at the index it had (removed, or other gates removed before it), so that the
//     patch never removes another gate;
//   - the required node affinity other than seen (the whole value is tested, or its absence), so
//     that a term added meanwhile is never left without the node's name, and an affinity set
//     meanwhile is never replaced.
//
// The API server accepts this patch only while the Pod is gated: the mutable scheduling
// directives of KEP-3838 allow a gated Pod's required node affinity to grow (new requirements in
// existing terms, or a required affinity where there was none), never to change otherwise.
func PinPatch(pod *corev1.Pod, node string) (jsonpatch.Patch, error) {
	if node == "" {
		return nil, errors.New("no node name to place the pod on")
	}
	if pod.UID == "" {
		return nil, fmt.Errorf("pod %s/%s has no UID", pod.Namespace, pod.Name)
	}
	gate := -1
	for i, g := range pod.Spec.SchedulingGates {
		if g.Name == Gate {
			gate = i
			break
		}
	}
	if gate < 0 {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, ErrNotGated)
	}
	gatePath := "/spec/schedulingGates/" + strconv.Itoa(gate)
	p := jsonpatch.Patch{
		jsonpatch.Test("/metadata/uid", string(pod.UID)),
		jsonpatch.Test(gatePath, corev1.PodSchedulingGate{Name: Gate}),
		jsonpatch.Remove(gatePath),
	}
	req := NodeNameRequirement(node)
	required := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchFields: []corev1.NodeSelectorRequirement{req},
	}}}
	aff := pod.Spec.Affinity
	switch {
	case aff == nil:
		p = append(p,
			jsonpatch.TestAbsent("/spec/affinity"),
			jsonpatch.Add("/spec/affinity", corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: required,
			}}))
	case aff.NodeAffinity == nil:
		p = append(p,
			jsonpatch.TestAbsent("/spec/affinity/nodeAffinity"),
			jsonpatch.Add("/spec/affinity/nodeAffinity", corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: required,
			}))
	case aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil:
		p = append(p,
			jsonpatch.TestAbsent(requiredPath),
			jsonpatch.Add(requiredPath, required))
	default:
		seen := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		if len(seen.NodeSelectorTerms) == 0 {
			return nil, fmt.Errorf("pod %s/%s: required node affinity without terms", pod.Namespace, pod.Name)
		}
		p = append(p, jsonpatch.Test(requiredPath, seen))
		for i, term := range seen.NodeSelectorTerms {
			fields := requiredPath + "/nodeSelectorTerms/" + strconv.Itoa(i) + "/matchFields"
			if len(term.MatchFields) == 0 {
				p = append(p, jsonpatch.Add(fields, []corev1.NodeSelectorRequirement{req}))
			} else {
				p = append(p, jsonpatch.Add(fields+"/-", req))
			}
		}
	}
	return p, nil
}
