package controller

import (
	"slices"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
	"github.com/ipp-project/ipp/pkg/placement"
)

// newInformerFactories returns the shared informer factories whose Pod and Node informers New
// expects: Pods that carry cfg.PodLabel, and Nodes labelled cfg.NodeLabel=true. Narrowing them by
// label keeps the controller's watch traffic proportional to IPP's share of the cluster, and the
// cached objects are cut down to the fields the controller reads (see cachedPod and trimNode),
// which keeps its memory at a few hundred bytes per Pod.
//
// The factories are the controller's own: the Pod informer's store holds *cachedPod, not
// *corev1.Pod, so its Lister must not be used, and other readers would see trimmed Nodes.
func newInformerFactories(client kubernetes.Interface, cfg isolation.Config) (pods, nodes informers.SharedInformerFactory) {
	podSelector := labels.NewSelector().Add(mustRequirement(cfg.PodLabel, selection.Exists, nil)).String()
	nodeSelector := labels.SelectorFromSet(labels.Set{cfg.NodeLabel: isolation.LabelValue}).String()
	pods = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = podSelector }),
		informers.WithTransform(newTrim(cfg)))
	nodes = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = nodeSelector }),
		informers.WithTransform(newTrim(cfg)))
	return pods, nodes
}

// newNamespaceInformerFactory returns the factory of the controller's Namespace informer, whose
// NodeClasses' namespaceSelectors are matched against the namespaces' labels. Its cached
// Namespaces keep only their name, UID and labels.
func newNamespaceInformerFactory(client kubernetes.Interface) informers.SharedInformerFactory {
	return informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(func(obj any) (any, error) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			return &corev1.Namespace{TypeMeta: ns.TypeMeta, ObjectMeta: trimMeta(ns.ObjectMeta)}, nil
		}
		return obj, nil
	}))
}

// mustRequirement builds a requirement on a key that isolation.Config.Validate has checked.
func mustRequirement(key string, op selection.Operator, values []string) labels.Requirement {
	r, err := labels.NewRequirement(key, op, values)
	if err != nil {
		// Only an unvalidated Config gets here; select nothing rather than everything.
		r, _ = labels.NewRequirement("ipp.io/invalid-pod-label", selection.Exists, nil)
	}
	return *r
}

// newTrim returns the informers' transform: Pods become cachedPods and Nodes trimNode of
// themselves; anything else (a tombstone, a cachedPod) is passed on as it is, so it is idempotent.
func newTrim(cfg isolation.Config) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *corev1.Pod:
			return newCachedPod(cfg, o), nil
		case *corev1.Node:
			return trimNode(o), nil
		}
		return obj, nil
	}
}

// cachedPod is what the Pod informer keeps of a Pod: the fields reconciles read, and none of the
// Pod's maps. A *corev1.Pod is 1.2 KB before its labels and nodeSelector maps; at 50,000 Pods the
// difference is most of the controller's memory. A field read anywhere in this package must be
// kept here.
type cachedPod struct {
	podMeta
	podFields
	// requests is what the Pod requests, as placement counts it (placement.PodRequests). Kept
	// out of podFields, which must stay comparable.
	requests placement.Requests
	// affinity is what PinPatch must test of the Pod's node affinity; set only while the Pod
	// carries the placement gate.
	affinity *pinAffinity
}

// podMeta is the part of a Pod's ObjectMeta that the controller reads: 96 bytes where a
// metav1.ObjectMeta takes 232, which at 50,000 cached Pods is 6 MB of live heap.
type podMeta struct {
	Name, Namespace   string
	UID               types.UID
	ResourceVersion   string
	CreationTimestamp metav1.Time
	DeletionTimestamp *metav1.Time
}

// GetObjectMeta makes a cachedPod a metav1.ObjectMetaAccessor, which is what meta.Accessor, and
// so the informer's key and index functions, need: a copy, so that nothing can change the cache
// through it.
func (m *podMeta) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
}

// GetName and GetNamespace make a cachedPod a klog.KMetadata.
func (m *podMeta) GetName() string      { return m.Name }
func (m *podMeta) GetNamespace() string { return m.Namespace }

// pinAffinity is the shape of a gated Pod's affinity that PinPatch tests: whether the Pod has an
// affinity, a node affinity, and the required node selector as it was seen.
type pinAffinity struct {
	hasAffinity, hasNodeAffinity bool
	required                     *corev1.NodeSelector
	// match is the Pod's node selector and required node affinity, which a node's labels must
	// match for the Pod to be placed there; template is the same without the requirements on
	// labels that a node only has once it booted (bootLabels), for a node not created yet.
	match, template nodeaffinity.RequiredNodeAffinity
}

// bootLabels are the node labels whose values are known only once an instance boots (its zone,
// machine type, hostname, the name it registered with): a Pod's requirement on them does not
// stop the controller from creating a node, only from placing the Pod on a node that differs.
var bootLabels = map[string]bool{
	corev1.LabelTopologyZone:            true,
	corev1.LabelTopologyRegion:          true,
	corev1.LabelFailureDomainBetaZone:   true,
	corev1.LabelFailureDomainBetaRegion: true,
	corev1.LabelInstanceTypeStable:      true,
	corev1.LabelInstanceType:            true,
	corev1.LabelHostname:                true,
	corev1.LabelArchStable:              true,
	isolation.BindingLabel:              true,
}

// templateAffinity returns the Pod's required node affinity without the requirements on
// bootLabels or on fields (the node's name), matched against the labels every new node of a
// class will have.
func templateAffinity(cfg isolation.Config, p *corev1.Pod) nodeaffinity.RequiredNodeAffinity {
	q := &corev1.Pod{}
	for k, v := range p.Spec.NodeSelector {
		if !bootLabels[k] {
			if q.Spec.NodeSelector == nil {
				q.Spec.NodeSelector = map[string]string{}
			}
			q.Spec.NodeSelector[k] = v
		}
	}
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		var terms []corev1.NodeSelectorTerm
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			var kept corev1.NodeSelectorTerm
			for _, r := range t.MatchExpressions {
				if !bootLabels[r.Key] {
					kept.MatchExpressions = append(kept.MatchExpressions, r)
				}
			}
			if len(kept.MatchExpressions) == 0 && (len(t.MatchExpressions) > 0 || len(t.MatchFields) > 0) {
				// Only boot-time requirements: a new node may meet them.
				kept.MatchExpressions = []corev1.NodeSelectorRequirement{{Key: cfg.NodeLabel, Operator: corev1.NodeSelectorOpExists}}
			}
			terms = append(terms, kept)
		}
		q.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
	return nodeaffinity.GetRequiredNodeAffinity(q)
}

// podFields are a Pod's fields beyond its identity that reconciles read.
type podFields struct {
	// class is the value of the class label, "" if it has none.
	class string
	// nodeClass is the NodeClass the Pod asks for (nodeclass.NameOf its labels).
	nodeClass string
	// pin is the value of the binding label in the Pod's nodeSelector.
	pin      string
	nodeName string
	phase    corev1.PodPhase
	// gate is the Pod's first scheduling gate other than placement.Gate, "" when it has none:
	// the scheduler holds the Pod until every gate is removed.
	gate string
	// classKey is the class key of the Pod's class (read it with key()), the zero Handle
	// without a class. Interned: the Pods of a class share one string, where each would
	// otherwise hold its own 40-odd bytes (2.4 MB at 50,000 Pods of 10 per class).
	classKey unique.Handle[string]
	// placing is whether the Pod carries placement.Gate, and gateIndex where.
	placing   bool
	gateIndex int
	// placedOn is the node that a required node affinity term names with matchFields
	// metadata.name In [<node>] (the controller's placement), "" if none.
	placedOn string
}

func newCachedPod(cfg isolation.Config, p *corev1.Pod) *cachedPod {
	class, _ := cfg.Class(p)
	var key unique.Handle[string]
	if class != "" {
		key = unique.Make(cfg.ClassKey(p.Namespace, class))
	}
	gateIndex := slices.IndexFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate })
	cp := &cachedPod{
		podMeta: podMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp,
			DeletionTimestamp: p.DeletionTimestamp,
		},
		podFields: podFields{
			class:     class,
			nodeClass: nodeclass.NameOf(p.Labels),
			pin:       p.Spec.NodeSelector[isolation.BindingLabel],
			nodeName:  p.Spec.NodeName,
			phase:     p.Status.Phase,
			gate:      firstGate(p),
			classKey:  key,
			placing:   gateIndex >= 0,
			gateIndex: gateIndex,
			placedOn:  placedOn(p),
		},
	}
	if class != "" {
		// Bound Pods too: what they request is the room they take on their node.
		cp.requests = placement.NewRequests(placement.PodRequests(p))
	}
	if cp.placing {
		cp.affinity = &pinAffinity{hasAffinity: p.Spec.Affinity != nil}
		if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil {
			cp.affinity.hasNodeAffinity = true
			cp.affinity.required = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		}
		cp.affinity.match = nodeaffinity.GetRequiredNodeAffinity(p)
		cp.affinity.template = templateAffinity(cfg, p)
	}
	return cp
}

// key returns the class key of the Pod's class, "" without a class.
func (p *podFields) key() string {
	if p.classKey == (unique.Handle[string]{}) {
		return ""
	}
	return p.classKey.Value()
}

// firstGate returns the name of the Pod's first scheduling gate other than placement.Gate, or "".
func firstGate(p *corev1.Pod) string {
	for _, g := range p.Spec.SchedulingGates {
		if g.Name != placement.Gate {
			return g.Name
		}
	}
	return ""
}

// placedOn returns the node that the Pod's required node affinity pins it to by name: the one
// value of a matchFields metadata.name In requirement of its first term (PinPatch appends the
// same requirement to every term), or "".
func placedOn(p *corev1.Pod) string {
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return ""
	}
	for _, r := range terms[0].MatchFields {
		if r.Key == isolation.NodeNameField && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
			return r.Values[0]
		}
	}
	return ""
}

// pod returns the part of the Pod that PinPatch reads: its UID, the placement gate at its index,
// and its affinity as seen.
func (p *cachedPod) pod() *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID}}
	if p.placing {
		out.Spec.SchedulingGates = make([]corev1.PodSchedulingGate, p.gateIndex+1)
		out.Spec.SchedulingGates[p.gateIndex].Name = placement.Gate
	}
	if a := p.affinity; a != nil && a.hasAffinity {
		out.Spec.Affinity = &corev1.Affinity{}
		if a.hasNodeAffinity {
			out.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: a.required}
		}
	}
	return out
}

// terminal reports whether the Pod has finished: it needs no node any more.
func (p *cachedPod) terminal() bool {
	return p.phase == corev1.PodSucceeded || p.phase == corev1.PodFailed
}

// ref is the Pod's object reference, for Events.
func (p *cachedPod) ref() *corev1.ObjectReference {
	return &corev1.ObjectReference{
		Kind:            "Pod",
		APIVersion:      "v1",
		Namespace:       p.Namespace,
		Name:            p.Name,
		UID:             p.UID,
		ResourceVersion: p.ResourceVersion,
	}
}

// GetObjectKind implements runtime.Object.
func (p *cachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (p *cachedPod) DeepCopyObject() runtime.Object {
	out := &cachedPod{podMeta: p.podMeta, podFields: p.podFields, requests: p.requests, affinity: p.affinity}
	if p.DeletionTimestamp != nil {
		out.DeletionTimestamp = p.DeletionTimestamp.DeepCopy()
	}
	return out
}

// trimNode returns the part of a Node the controller reads: identity, labels, creation and
// deletion time, providerID, unschedulable and taints, and of its status the allocatable and the
// Ready condition without its timestamps (for placement). The rest of the status, which its
// kubelet refreshes every few minutes, is dropped, so heartbeats do not wake the controller; so are
// its annotations, which its kubelet may write and which therefore decide nothing.
func trimNode(n *corev1.Node) *corev1.Node {
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: trimMeta(n.ObjectMeta),
		Spec: corev1.NodeSpec{
			ProviderID:    n.Spec.ProviderID,
			Unschedulable: n.Spec.Unschedulable,
			Taints:        n.Spec.Taints,
		},
		Status: corev1.NodeStatus{
			Allocatable: n.Status.Allocatable,
			Conditions:  readyCondition(n),
		},
	}
}

// readyCondition returns the Node's Ready condition without its timestamps, which the kubelet's
// heartbeats change, or nil.
func readyCondition(n *corev1.Node) []corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return nil
}

// nodeReady reports whether a trimmed Node is Ready.
func nodeReady(n *corev1.Node) bool {
	c := readyCondition(n)
	return len(c) == 1 && c[0].Status == corev1.ConditionTrue
}

func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// podChanged reports whether an update changed anything the controller reads of a Pod: a
// status-only update of a running Pod, for one, does not.
func podChanged(old, cur *cachedPod) bool {
	return old.podFields != cur.podFields || old.UID != cur.UID ||
		!old.CreationTimestamp.Equal(&cur.CreationTimestamp) || !old.DeletionTimestamp.Equal(cur.DeletionTimestamp)
}

// nodeChanged reports whether an update changed anything the controller reads of a Node: a
// kubelet's status heartbeat does not.
func nodeChanged(old, cur *corev1.Node) bool {
	o, c := trimNode(old), trimNode(cur)
	o.ResourceVersion, c.ResourceVersion = "", ""
	return !equality.Semantic.DeepEqual(o, c)
}
