package placement

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
)

// NodesNeeded returns how many new instances the class should ask for, for the gated Pods that
// fit on none of its nodes (pending, each Pod's requests as PodRequests returns them), and the
// indexes in pending of the Pods that would not fit even on an empty new node: for those the
// caller emits an Event and creates nothing.
//
// newNode is the allocatable of one new instance of the NodeClass, when known (from a node of
// that NodeClass seen before); nil when not. Then:
//   - isolation Pod: one instance per Pod (that fits on one, when newNode is known);
//   - isolation Class, newNode unknown: one at a time, since how many Pods an instance holds is
//     learnt when the first one registers;
//   - isolation Class, newNode known: as many as a first-fit-decreasing packing of the Pods onto
//     empty nodes of that size uses (largest Pod first, by its largest share of any resource).
//
// Limits (maxNodesPerClass, the NodeClass's and the global instance limits) are the caller's to
// apply to the number returned.
func NodesNeeded(pending []corev1.ResourceList, newNode corev1.ResourceList, isolation ippv1alpha1.Isolation) (int, []int) {
	if len(pending) == 0 {
		return 0, nil
	}
	if newNode == nil {
		if isolation == ippv1alpha1.IsolationPod {
			return len(pending), nil
		}
		return 1, nil
	}
	empty, err := NewIndex([]Node{{Name: "new", Allocatable: newNode}})
	if err != nil {
		panic(err) // one node cannot repeat a name
	}
	es := empty.nodes["new"]
	type pod struct {
		index int
		req   Requests
		size  float64
	}
	var fitting []pod
	var tooLarge []int
	for i, list := range pending {
		r := NewRequests(list)
		if !es.fitsEmpty(r) {
			tooLarge = append(tooLarge, i)
			continue
		}
		fitting = append(fitting, pod{index: i, req: r, size: es.share(r)})
	}
	if isolation == ippv1alpha1.IsolationPod {
		return len(fitting), tooLarge
	}
	slices.SortStableFunc(fitting, func(a, b pod) int { return cmp.Compare(b.size, a.size) })
	var bins []*nodeState
	for _, p := range fitting {
		placed := false
		for _, b := range bins {
			if b.fits(p.req) {
				b.add(p.req)
				placed = true
				break
			}
		}
		if !placed {
			b := es.emptyCopy()
			b.add(p.req)
			bins = append(bins, b)
		}
	}
	return len(bins), tooLarge
}

// share is the largest fraction of the node's allocatable that r asks for, the pod count
// included.
func (s *nodeState) share(r Requests) float64 {
	m := 1 / float64(s.allocPods)
	for _, a := range r {
		if f := float64(a.Value) / float64(s.allocatable[a.Name]); f > m {
			m = f
		}
	}
	return m
}

func (s *nodeState) add(r Requests) {
	for _, a := range r {
		s.placed[a.Name] += a.Value
	}
	s.placedPods++
}

func (s *nodeState) emptyCopy() *nodeState {
	return &nodeState{node: s.node, allocatable: s.allocatable, placed: map[corev1.ResourceName]int64{}, allocPods: s.allocPods}
}
