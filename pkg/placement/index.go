package placement

import (
	"fmt"
	"math"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Node is what placement needs to know of a node of one class.
type Node struct {
	Name string
	// NodeClass is the NodeClass the node's instance was created for.
	NodeClass string
	// Allocatable is the Node's status.allocatable. A resource it does not list counts as zero,
	// and so does "pods": as for the scheduler, a node that lists no pod capacity takes no Pod.
	Allocatable corev1.ResourceList
	// Ready is the Node's Ready condition; Schedulable is false when it is cordoned
	// (spec.unschedulable) or about to be reaped. Only a node with both takes new Pods.
	Ready, Schedulable bool
}

// Outcome says what Choose found.
type Outcome int

const (
	// Placed: a node has room; Choose returned its name.
	Placed Outcome = iota
	// NoRoom: no Ready, schedulable node of the NodeClass has room now, but the Pod would fit on
	// an empty one; a new instance (or Pods going away) can make room.
	NoRoom
	// TooLarge: the Pod requests more than the allocatable of every candidate node of the
	// NodeClass, so it never fits on one of them; the caller emits an Event and, unless a new
	// instance's shape is known to be larger (NodesNeeded), creates nothing.
	TooLarge
)

func (o Outcome) String() string {
	switch o {
	case Placed:
		return "Placed"
	case NoRoom:
		return "NoRoom"
	case TooLarge:
		return "TooLarge"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// nodeState is one node of an Index: its allocatable and the sum of the requests placed on it,
// in Requests' units.
type nodeState struct {
	node        Node
	allocatable map[corev1.ResourceName]int64
	placed      map[corev1.ResourceName]int64
	allocPods   int64
	placedPods  int64
}

// Index holds the nodes of one class and the requests already placed on each, so that a
// placement decision costs one pass over the class's nodes (O(nodes × requested resources)),
// whatever the number of Pods placed: each placed Pod is added once, with Place, and taken away
// with Unplace when it goes. It is not safe for concurrent use.
type Index struct {
	nodes map[string]*nodeState
	// order is the nodes sorted by name, so that Choose's ties go to the first name.
	order []*nodeState
}

// NewIndex returns an Index of the nodes, with nothing placed. Names must be unique; a repeated
// name is an error, as it would count its Pods twice.
func NewIndex(nodes []Node) (*Index, error) {
	x := &Index{nodes: make(map[string]*nodeState, len(nodes))}
	for _, n := range nodes {
		if _, dup := x.nodes[n.Name]; dup {
			return nil, fmt.Errorf("node %s listed twice", n.Name)
		}
		s := &nodeState{
			node:        n,
			allocatable: make(map[corev1.ResourceName]int64, len(n.Allocatable)),
			placed:      map[corev1.ResourceName]int64{},
		}
		for name, q := range n.Allocatable {
			if name == corev1.ResourcePods {
				s.allocPods = q.Value()
				continue
			}
			s.allocatable[name] = amount(name, &q)
		}
		x.nodes[n.Name] = s
		x.order = append(x.order, s)
	}
	slices.SortFunc(x.order, func(a, b *nodeState) int { return strings.Compare(a.node.Name, b.node.Name) })
	return x, nil
}

// Place adds a Pod's requests to the node's placed sum. It returns false, and changes nothing,
// when the node is not in the Index. It does not check for room: a Pod placed before counts
// whatever the node's room now.
func (x *Index) Place(node string, r Requests) bool {
	s, ok := x.nodes[node]
	if !ok {
		return false
	}
	s.add(r)
	return true
}

// Close makes the node take no new Pod, as a node of isolation Pod that holds one. It returns
// false when the node is not in the Index.
func (x *Index) Close(node string) bool {
	s, ok := x.nodes[node]
	if !ok {
		return false
	}
	s.node.Schedulable = false
	return true
}

// Unplace takes away the requests of a Pod that Place added, when the Pod is deleted or
// terminates; taking away a Pod that was not added is the caller's error, and leaves the sums
// too low. It returns false, and changes nothing, when the node is not in the Index.
func (x *Index) Unplace(node string, r Requests) bool {
	s, ok := x.nodes[node]
	if !ok {
		return false
	}
	for _, a := range r {
		s.placed[a.Name] -= a.Value
	}
	s.placedPods--
	return true
}

// Choose picks a Ready, schedulable node of the NodeClass with room for the Pod: for every
// resource it requests, allocatable minus what is placed is at least the request, and one more
// Pod fits under allocatable "pods". Among those it takes the most allocated one, the node whose
// CPU and memory would be the fullest (the mean of used/allocatable over the two, after the Pod),
// so that Pods pack onto few nodes and idle ones can be reaped after their TTL; ties go to the
// first name, so that the choice is deterministic. Choose does not Place the Pod: the caller
// does, once its PATCH is accepted.
//
// When no node has room, the outcome is TooLarge if the Pod would not fit on any node of the
// NodeClass even were it empty (Ready or not), and NoRoom otherwise, also when the NodeClass has
// no node in the Index.
func (x *Index) Choose(nodeClass string, r Requests) (string, Outcome) {
	return x.ChooseWhere(nodeClass, r, nil)
}

// ChooseWhere is Choose among the nodes that allow accepts (all when nil): the nodes whose labels
// the Pod's own node selector and required node affinity match. A node allow refuses is not a
// candidate at all: the Pod never runs there, whatever its room.
func (x *Index) ChooseWhere(nodeClass string, r Requests, allow func(node string) bool) (string, Outcome) {
	var best *nodeState
	bestScore := math.Inf(-1)
	candidates, couldFit := 0, false
	for _, s := range x.order {
		if s.node.NodeClass != nodeClass || (allow != nil && !allow(s.node.Name)) {
			continue
		}
		candidates++
		if !couldFit && s.fitsEmpty(r) {
			couldFit = true
		}
		if !s.node.Ready || !s.node.Schedulable || !s.fits(r) {
			continue
		}
		if score := s.score(r); score > bestScore {
			best, bestScore = s, score
		}
	}
	switch {
	case best != nil:
		return best.node.Name, Placed
	case candidates > 0 && !couldFit:
		return "", TooLarge
	}
	return "", NoRoom
}

func (s *nodeState) fits(r Requests) bool {
	if s.placedPods+1 > s.allocPods {
		return false
	}
	for _, a := range r {
		if s.allocatable[a.Name]-s.placed[a.Name] < a.Value {
			return false
		}
	}
	return true
}

func (s *nodeState) fitsEmpty(r Requests) bool {
	if s.allocPods < 1 {
		return false
	}
	for _, a := range r {
		if s.allocatable[a.Name] < a.Value {
			return false
		}
	}
	return true
}

// score is the mean fraction of CPU and memory that would be in use with the Pod placed; a
// resource the node does not list is left out of the mean.
func (s *nodeState) score(r Requests) float64 {
	var sum float64
	var n int
	for _, name := range [...]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		alloc := s.allocatable[name]
		if alloc <= 0 {
			continue
		}
		used := s.placed[name]
		for _, a := range r {
			if a.Name == name {
				used += a.Value
			}
		}
		sum += float64(used) / float64(alloc)
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
