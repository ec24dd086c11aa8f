package admission

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

func mutate(cfg isolation.Config, req *admissionv1.AdmissionRequest, in input) *admissionv1.AdmissionResponse {
	class, ok := classOf(cfg, in.pod)
	if !ok {
		return allowed(req)
	}
	spec := in.pod.Spec
	if spec == nil {
		return errored(req, http.StatusBadRequest, "request.object has no spec: an IPP Pod needs one")
	}
	if bound(req, in) {
		// The scheduler has placed it; the placement can no longer change, so neither can the pin.
		return allowed(req)
	}
	p := pinOf(cfg, req, in, class)
	if spec.NodeName != "" {
		return denied(req, nodeNameMessage(p, spec.NodeName))
	}
	if msgs := append(p.conflicts(spec), p.emptyTerms(spec)...); len(msgs) > 0 {
		return denied(req, fmt.Sprintf("%s: %s", p.describe(), strings.Join(msgs, "; ")))
	}
	patch, err := p.patch(spec)
	if err != nil {
		return errored(req, http.StatusInternalServerError, fmt.Sprintf("encoding the patch: %v", err))
	}
	return patched(req, patch)
}

// bound reports whether req is an UPDATE of a Pod that the scheduler has already bound to a node.
// Its spec can no longer change, so admission only checks that the update removes nothing.
func bound(req *admissionv1.AdmissionRequest, in input) bool {
	if req.Operation != admissionv1.Update || in.old == nil {
		return false
	}
	old := in.old.spec().NodeName
	return old != "" && in.pod.spec().NodeName == old
}

func nodeNameMessage(p *pin, nodeName string) string {
	return fmt.Sprintf("%s: spec.nodeName is preset to %q, which bypasses the scheduler and the pin: remove spec.nodeName and let the scheduler place the Pod", p.describe(), nodeName)
}

// patch returns the JSONPatch that gives spec the pin, or nil when spec already has all of it.
//
// Every operation is an "add" at the deepest part of the path that exists in spec, so the patch
// touches nothing the user wrote: a missing (or null, or empty) list or map is added whole, and an
// existing list gets "/-" appends. spec was decoded from the very JSON the patch applies to,
// case-sensitively and without duplicate fields, so each parent exists there as an object.
func (p *pin) patch(spec *podSpec) ([]byte, error) {
	var ops patchBuilder
	// Tolerations.
	var add []corev1.Toleration
	for i := range p.tolerations {
		if !hasToleration(spec.Tolerations, &p.tolerations[i]) {
			add = append(add, p.tolerations[i])
		}
	}
	if len(add) > 0 {
		if len(spec.Tolerations) == 0 {
			ops.add("/spec/tolerations", add)
		} else {
			for _, t := range add {
				ops.add("/spec/tolerations/-", t)
			}
		}
	}
	// The label pin.
	if p.selectorKey != "" {
		if _, ok := spec.NodeSelector[p.selectorKey]; !ok {
			if len(spec.NodeSelector) == 0 {
				ops.add("/spec/nodeSelector", map[string]string{p.selectorKey: p.selectorValue})
			} else {
				ops.add("/spec/nodeSelector/"+jsonpatch.Escape(p.selectorKey), p.selectorValue)
			}
		}
	}
	// The scheduling gate that holds the Pod for the controller (CREATE only, see pinOf).
	if p.gate != "" && !hasGate(spec.SchedulingGates, p.gate) {
		g := corev1.PodSchedulingGate{Name: p.gate}
		if len(spec.SchedulingGates) == 0 {
			ops.add("/spec/schedulingGates", []corev1.PodSchedulingGate{g})
		} else {
			ops.add("/spec/schedulingGates/-", g)
		}
	}
	// The requirement in every required node-affinity term, and the anti-affinity term.
	a := spec.Affinity
	switch {
	case a == nil:
		if p.termField != "" || p.anti != nil {
			aff := &corev1.Affinity{}
			if p.termField != "" {
				aff.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: p.nodeSelector()}
			}
			if p.anti != nil {
				aff.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{*p.anti}}
			}
			ops.add("/spec/affinity", aff)
		}
	default:
		if p.termField != "" {
			p.patchTerms(&ops, a)
		}
		if p.anti != nil {
			p.patchAnti(&ops, a)
		}
	}
	return ops.bytes()
}

// nodeSelector returns a required node selector of one term with the pin's requirement.
func (p *pin) nodeSelector() *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{p.newTerm()}}
}

func (p *pin) newTerm() corev1.NodeSelectorTerm {
	reqs := []corev1.NodeSelectorRequirement{p.term}
	if p.termField == "matchFields" {
		return corev1.NodeSelectorTerm{MatchFields: reqs}
	}
	return corev1.NodeSelectorTerm{MatchExpressions: reqs}
}

func (p *pin) patchTerms(ops *patchBuilder, a *corev1.Affinity) {
	const base = "/spec/affinity/nodeAffinity"
	const required = base + "/requiredDuringSchedulingIgnoredDuringExecution"
	switch {
	case a.NodeAffinity == nil:
		ops.add(base, &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: p.nodeSelector()})
	case a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil:
		ops.add(required, p.nodeSelector())
	case len(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0:
		ops.add(required+"/nodeSelectorTerms", []corev1.NodeSelectorTerm{p.newTerm()})
	default:
		terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		for i := range terms {
			if p.termHas(&terms[i]) {
				continue
			}
			path := required + "/nodeSelectorTerms/" + strconv.Itoa(i) + "/" + p.termField
			have := terms[i].MatchExpressions
			if p.termField == "matchFields" {
				have = terms[i].MatchFields
			}
			if len(have) == 0 {
				ops.add(path, []corev1.NodeSelectorRequirement{p.term})
			} else {
				ops.add(path+"/-", p.term)
			}
		}
	}
}

func (p *pin) patchAnti(ops *patchBuilder, a *corev1.Affinity) {
	const base = "/spec/affinity/podAntiAffinity"
	const required = base + "/requiredDuringSchedulingIgnoredDuringExecution"
	switch {
	case a.PodAntiAffinity == nil:
		ops.add(base, &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{*p.anti}})
	case len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0:
		ops.add(required, []corev1.PodAffinityTerm{*p.anti})
	default:
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if p.isAnti(t) {
				return
			}
		}
		ops.add(required+"/-", p.anti)
	}
}

// hasGate reports whether gates hold the scheduling gate named name.
func hasGate(gates []corev1.PodSchedulingGate, name string) bool {
	for _, g := range gates {
		if g.Name == name {
			return true
		}
	}
	return false
}
