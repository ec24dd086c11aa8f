package admission

import (
	jsonv2 "github.com/go-json-experiment/json"
	corev1 "k8s.io/api/core/v1"
)

// podObject holds the parts of a Pod that admission reads. Decoding only these keeps a decision
// fast: the decoder skips the rest of the Pod (containers, volumes, status) without allocating it.
// The patch is built against this view, so it touches nothing else of the Pod.
type podObject struct {
	Metadata podMeta `json:"metadata"`
	// Spec is nil when the object has no spec, or spec is null.
	Spec *podSpec `json:"spec"`
}

type podMeta struct {
	Labels map[string]string `json:"labels"`
}

type podSpec struct {
	NodeName     string              `json:"nodeName"`
	NodeSelector map[string]string   `json:"nodeSelector"`
	Affinity     *corev1.Affinity    `json:"affinity"`
	Tolerations  []corev1.Toleration `json:"tolerations"`
	// SchedulingGates are read so that Mutate adds the placement gate once.
	SchedulingGates []corev1.PodSchedulingGate `json:"schedulingGates"`
}

// decodePod decodes the admission view of a Pod from its JSON in one pass, with the JSON v2
// package that becomes encoding/json/v2 (about twice as fast here as encoding/json, with half the
// allocations). Like the API server it matches field names case-sensitively. Duplicate names and
// invalid UTF-8 are refused: a JSONPatch library and a decoder may disagree about which copy of a
// name counts, and the patch must apply to what was decoded.
func decodePod(raw []byte) (*podObject, error) {
	pod := &podObject{}
	if err := jsonv2.Unmarshal(raw, pod); err != nil {
		return nil, err
	}
	return pod, nil
}

// spec returns the Pod's spec, or an empty one when it has none.
func (p *podObject) spec() *podSpec {
	if p.Spec == nil {
		return &podSpec{}
	}
	return p.Spec
}

// requiredTerms returns the Pod's required node-affinity terms.
func (s *podSpec) requiredTerms() []corev1.NodeSelectorTerm {
	if s.Affinity == nil || s.Affinity.NodeAffinity == nil || s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

// preferredTerms returns the Pod's preferred node-affinity terms.
func (s *podSpec) preferredTerms() []corev1.PreferredSchedulingTerm {
	if s.Affinity == nil || s.Affinity.NodeAffinity == nil {
		return nil
	}
	return s.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
}

// requiredAntiAffinity returns the Pod's required pod anti-affinity terms.
func (s *podSpec) requiredAntiAffinity() []corev1.PodAffinityTerm {
	if s.Affinity == nil || s.Affinity.PodAntiAffinity == nil {
		return nil
	}
	return s.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
}
