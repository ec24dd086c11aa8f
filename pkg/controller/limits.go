package controller

import (
	"fmt"
	"sort"
	"sync"
	"time"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
)

// Limit names: the values of the limit label of ipp_limit_reached_total, and what LimitReached
// Events and conditions call them.
const (
	// LimitMaxInstances is the global --max-instances.
	LimitMaxInstances = "max-instances"
	// LimitInstances is a NodeClass's spec.limits.instances.
	LimitInstances = "limits.instances"
	// LimitInstancesPerNamespace is a NodeClass's spec.limits.instancesPerNamespace.
	LimitInstancesPerNamespace = "limits.instancesPerNamespace"
	// LimitMaxNodesPerClass is a NodeClass's spec.maxNodesPerClass.
	LimitMaxNodesPerClass = "maxNodesPerClass"
)

// limitHit says which limit keeps a creation from being made.
type limitHit struct {
	// Limit is one of the Limit* names; Value its value; Count what it counts now.
	Limit        string
	Value, Count int
	// NodeClass is the NodeClass of the creation; Namespace the namespace the creation counts
	// against (instancesPerNamespace).
	NodeClass string
	Namespace string
}

// String describes the hit for Events, conditions and logs.
func (h limitHit) String() string {
	switch h.Limit {
	case LimitMaxInstances:
		return fmt.Sprintf("the cluster's limit of %d IPP instances (--max-instances) is reached: %d exist or are being created; NodeClass %s waits for one to go", h.Value, h.Count, h.NodeClass)
	case LimitInstancesPerNamespace:
		return fmt.Sprintf("NodeClass %s allows %d instances per namespace (spec.limits.instancesPerNamespace) and namespace %s has %d, counting those being created", h.NodeClass, h.Value, orQuoted(h.Namespace), h.Count)
	case LimitMaxNodesPerClass:
		return fmt.Sprintf("NodeClass %s allows %d nodes per class (spec.maxNodesPerClass) and the class has %d", h.NodeClass, h.Value, h.Count)
	}
	return fmt.Sprintf("NodeClass %s allows %d instances (spec.limits.instances) and has %d, counting those being created", h.NodeClass, h.Value, h.Count)
}

func orQuoted(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// slot is one instance counted against the limits that the provider's List does not show (yet):
// a creation reserved by this controller, or a journal entry of a token no listed instance
// carries (a creation a previous controller may have made just before it stopped).
type slot struct {
	nodeClass string
	namespace string
	// class is the class the instance is for ("" in journal entries written before classes
	// were recorded: then the slot counts as a class of its own).
	class string
	// attempted is set once Create was called: its instance may exist even if the call failed.
	attempted bool
	// abandonedAt is when the creation was given up after an attempt; the slot is held until a
	// List that started after it, which shows the instance if the lost call made one.
	abandonedAt time.Time
}

// ledger counts instances against the limits and reserves a slot for each creation before it
// is made, under one mutex, so that concurrent workers never exceed a limit together. Live
// instances come from the instance index; creations not in it yet are the ledger's slots.
//
// A slot is released when the index shows an instance for its dedicated node, or when its
// creation is given up (after a List that started later, if Create was called). After a restart
// the in-flight creations of the previous controller are the journal's entries that no listed
// instance carries (setJournal); until the journal has been read once, nothing is reserved.
type ledger struct {
	// max is --max-instances, 0 for none.
	max int

	mu       sync.Mutex
	inflight map[string]slot // by dedicated node name
	journal  map[string]slot // by dedicated node name
	// journalKnown is false until the journal was read (only with join tokens).
	journalKnown bool
	// waiting holds the dedicated nodes a limit keeps waiting, with the limit.
	waiting map[string]limitHit
	// claims holds, by node name, the warm nodes claimed for a class (namespace, class) that the
	// Node informer may not show claimed yet.
	claims map[string]claimSlot
	// claimOf returns the namespace and class a warm node was claimed for, from its Node's
	// class labels; nil when warm pools are not used.
	claimOf func(node string) (namespace, class string, ok bool)
}

// claimSlot is a warm node claimed for a class.
type claimSlot struct{ namespace, class string }

func newLedger(max int, journalKnown bool) *ledger {
	return &ledger{
		max:          max,
		inflight:     map[string]slot{},
		journal:      map[string]slot{},
		claims:       map[string]claimSlot{},
		journalKnown: journalKnown,
		waiting:      map[string]limitHit{},
	}
}

// nodeClassOf returns the NodeClass an instance counts against: the one it records, or the
// default for instances made before NodeClasses.
func nodeClassOf(inst cloudprovider.Instance) string {
	if inst.NodeClass == "" {
		return isolation.DefaultNodeClass
	}
	return inst.NodeClass
}

// usage is what counts against the limits at one moment.
type usage struct {
	total       int
	byNodeClass map[string]int
	// byNamespace is keyed by NodeClass, then namespace.
	byNamespace map[string]map[string]int
	// byClass counts instances by class (classID).
	byClass map[string]int
}

// classID identifies a class in the usage counts: its (scoped) namespace and name. A slot
// without a class counts as a class of its own, named by its node.
func classID(namespace, class, node string) string {
	if class == "" {
		return "\x00" + node
	}
	return namespace + "/" + class
}

func (u *usage) add(class, nodeClass, namespace string) {
	u.total++
	u.byNodeClass[nodeClass]++
	if class == "" {
		// An unclaimed warm instance: it counts against the instance limits, and against
		// no namespace or class until a class claims it.
		return
	}
	if u.byNamespace[nodeClass] == nil {
		u.byNamespace[nodeClass] = map[string]int{}
	}
	u.byNamespace[nodeClass][namespace]++
	u.byClass[class]++
}

// usageLocked counts the live instances of index and the slots not shown by it, forgetting the
// in-flight slots whose instance the index shows. The journal's entry of dedicated node self is
// left out: it is the creation that self's reservation takes over (a dedicated node has one
// instance; a retry returns the instance an earlier call made).
func (l *ledger) usageLocked(index *instanceIndex, self string) usage {
	u := usage{byNodeClass: map[string]int{}, byNamespace: map[string]map[string]int{}, byClass: map[string]int{}}
	liveNodes := map[string]bool{}
	for _, inst := range index.liveInstances() {
		liveNodes[inst.NodeName] = true
		if isWarmInstance(inst) {
			ns, class, ok := l.claimedLocked(inst.NodeName)
			if !ok {
				u.add("", nodeClassOf(inst), "")
				continue
			}
			u.add(classID(ns, class, inst.NodeName), nodeClassOf(inst), ns)
			continue
		}
		u.add(classID(inst.Namespace, inst.Class, inst.NodeName), nodeClassOf(inst), inst.Namespace)
	}
	for name, s := range l.inflight {
		if liveNodes[name] {
			delete(l.inflight, name) // its instance shows up: it counts there now
			continue
		}
		if s.class == "" {
			u.add("", s.nodeClass, "") // a warm node being created
			continue
		}
		u.add(classID(s.namespace, s.class, name), s.nodeClass, s.namespace)
	}
	for name, s := range l.journal {
		if liveNodes[name] || name == self {
			continue
		}
		if _, ok := l.inflight[name]; ok {
			continue
		}
		u.add(classID(s.namespace, s.class, name), s.nodeClass, s.namespace)
	}
	return u
}

// claimedLocked returns the class a warm node was claimed for: recorded by claim, else read from
// its Node. A recorded claim that the Node shows is forgotten.
func (l *ledger) claimedLocked(node string) (namespace, class string, ok bool) {
	if l.claimOf != nil {
		if ns, cl, ok := l.claimOf(node); ok {
			delete(l.claims, node)
			return ns, cl, true
		}
	}
	c, ok := l.claims[node]
	return c.namespace, c.class, ok
}

// claim records that the warm node name of NodeClass nc is being claimed for class in namespace,
// unless a limit of the class forbids it (limits.instancesPerNamespace, maxNodesPerClass; the
// instance counts against the others already): then it returns the limit and records nothing.
// unclaim forgets a claim whose patch failed.
func (l *ledger) claim(index *instanceIndex, name string, nc *ippv1alpha1.NodeClass, namespace, class string) *limitHit {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.usageLocked(index, name)
	id := classID(namespace, class, name)
	hit := limitHit{NodeClass: nc.Name, Namespace: namespace}
	switch {
	case nc.Spec.MaxNodesPerClass != nil && u.byClass[id] >= int(*nc.Spec.MaxNodesPerClass):
		hit.Limit, hit.Value, hit.Count = LimitMaxNodesPerClass, int(*nc.Spec.MaxNodesPerClass), u.byClass[id]
	case nc.Spec.Limits != nil && nc.Spec.Limits.InstancesPerNamespace != nil && u.byNamespace[nc.Name][namespace] >= int(*nc.Spec.Limits.InstancesPerNamespace):
		hit.Limit, hit.Value, hit.Count = LimitInstancesPerNamespace, int(*nc.Spec.Limits.InstancesPerNamespace), u.byNamespace[nc.Name][namespace]
	default:
		l.claims[name] = claimSlot{namespace: namespace, class: class}
		return nil
	}
	return &hit
}

func (l *ledger) unclaim(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.claims, name)
}

// errJournalUnknown is returned by reserve until the join token journal has been read once.
var errJournalUnknown = fmt.Errorf("the join token journal has not been read yet: creations that a previous controller may have left in flight are not known")

// reserve reserves a slot for the creation of node name's instance, of nc for class in
// namespace, unless a limit forbids it: then it returns the limit, and records that name waits.
// Reserving a name that holds a slot already is a no-op.
func (l *ledger) reserve(index *instanceIndex, name string, nc *ippv1alpha1.NodeClass, namespace, class string) (*limitHit, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.journalKnown {
		return nil, errJournalUnknown
	}
	if s, ok := l.inflight[name]; ok {
		// Retries keep their slot; a creation given up and wanted again takes its slot back,
		// which is counted still.
		s.abandonedAt = time.Time{}
		l.inflight[name] = s
		return nil, nil
	}
	u := l.usageLocked(index, name)
	hit := limitHit{NodeClass: nc.Name, Namespace: namespace}
	warm := class == "" // a warm node: no namespace or class to count it against yet
	switch {
	case warm:
		// Only the instance limits below.
		if nc.Spec.Limits != nil && nc.Spec.Limits.Instances != nil && u.byNodeClass[nc.Name] >= int(*nc.Spec.Limits.Instances) {
			hit.Limit, hit.Value, hit.Count = LimitInstances, int(*nc.Spec.Limits.Instances), u.byNodeClass[nc.Name]
			break
		}
		if l.max > 0 && u.total >= l.max {
			hit.Limit, hit.Value, hit.Count = LimitMaxInstances, l.max, u.total
			break
		}
		l.inflight[name] = slot{nodeClass: nc.Name, namespace: namespace, class: class}
		delete(l.waiting, name)
		l.setWaitingGaugeLocked()
		return nil, nil
	case nc.Spec.MaxNodesPerClass != nil && u.byClass[classID(namespace, class, name)] >= int(*nc.Spec.MaxNodesPerClass):
		hit.Limit, hit.Value, hit.Count = LimitMaxNodesPerClass, int(*nc.Spec.MaxNodesPerClass), u.byClass[classID(namespace, class, name)]
	case nc.Spec.Limits != nil && nc.Spec.Limits.Instances != nil && u.byNodeClass[nc.Name] >= int(*nc.Spec.Limits.Instances):
		hit.Limit, hit.Value, hit.Count = LimitInstances, int(*nc.Spec.Limits.Instances), u.byNodeClass[nc.Name]
	case nc.Spec.Limits != nil && nc.Spec.Limits.InstancesPerNamespace != nil && u.byNamespace[nc.Name][namespace] >= int(*nc.Spec.Limits.InstancesPerNamespace):
		hit.Limit, hit.Value, hit.Count = LimitInstancesPerNamespace, int(*nc.Spec.Limits.InstancesPerNamespace), u.byNamespace[nc.Name][namespace]
	case l.max > 0 && u.total >= l.max:
		hit.Limit, hit.Value, hit.Count = LimitMaxInstances, l.max, u.total
	default:
		l.inflight[name] = slot{nodeClass: nc.Name, namespace: namespace, class: class}
		delete(l.waiting, name)
		l.setWaitingGaugeLocked()
		return nil, nil
	}
	if old, ok := l.waiting[name]; !ok || old.Limit != hit.Limit {
		metrics.IncLimitReached(hit.Limit)
	}
	l.waiting[name] = hit
	l.setWaitingGaugeLocked()
	return &hit, nil
}

func (l *ledger) setWaitingGaugeLocked() {
	metrics.SetLimitWaiting(len(l.waiting))
}

// attempt records that Create is about to be called for name's slot.
func (l *ledger) attempt(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.inflight[name]; ok {
		s.attempted = true
		l.inflight[name] = s
	}
}

// created releases name's slot: the index holds its instance now. The node waits no more.
func (l *ledger) created(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, name)
	if _, ok := l.waiting[name]; ok {
		delete(l.waiting, name)
		l.setWaitingGaugeLocked()
	}
}

// abandon gives name's creation up: it no longer waits, and its slot goes now, or, if Create
// was called, after the next List that starts after now. It reports whether a slot went now.
func (l *ledger) abandon(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.waiting[name]; ok {
		delete(l.waiting, name)
		l.setWaitingGaugeLocked()
	}
	s, ok := l.inflight[name]
	switch {
	case !ok:
		return false
	case s.attempted:
		if s.abandonedAt.IsZero() {
			s.abandonedAt = now
			l.inflight[name] = s
		}
		return false
	}
	delete(l.inflight, name)
	return true
}

// listed releases the abandoned slots that a List started at listStart settles: it shows their
// instance if they have one. It reports whether any slot went.
func (l *ledger) listed(listStart time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	freed := false
	for name, s := range l.inflight {
		if !s.abandonedAt.IsZero() && s.abandonedAt.Before(listStart) {
			delete(l.inflight, name)
			freed = true
		}
	}
	return freed
}

// setJournal records the journal's entries that no live instance carries, by dedicated node
// name: creations in flight, of this controller or of one before it.
func (l *ledger) setJournal(entries map[string]slot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.journal = entries
	l.journalKnown = true
}

// waitingOn returns the limit that keeps dedicated node name waiting, if one does.
func (l *ledger) waitingOn(name string) (limitHit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hit, ok := l.waiting[name]
	return hit, ok
}

// waitingNodes returns the dedicated nodes a limit keeps waiting: all of them, or those of
// NodeClass nodeClass and those waiting for --max-instances.
func (l *ledger) waitingNodes(nodeClass string, all bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for name, hit := range l.waiting {
		if all || hit.NodeClass == nodeClass || hit.Limit == LimitMaxInstances {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// waitingFor returns the limit hits that keep dedicated nodes of nodeClass waiting, sorted by
// node name.
func (l *ledger) waitingFor(nodeClass string) []limitHit {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.waiting))
	for name, hit := range l.waiting {
		if hit.NodeClass == nodeClass {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]limitHit, len(names))
	for i, name := range names {
		out[i] = l.waiting[name]
	}
	return out
}
