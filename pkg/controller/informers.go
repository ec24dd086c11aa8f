package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
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
	// ObjectMeta holds only Name, Namespace, UID, ResourceVersion, CreationTimestamp and
	// DeletionTimestamp. It makes the cachedPod a metav1.Object for the informer's key functions.
	metav1.ObjectMeta
	podFields
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
	// gate is the Pod's first scheduling gate, "" when it has none: the scheduler holds the Pod
	// until every gate is removed.
	gate string
}

func newCachedPod(cfg isolation.Config, p *corev1.Pod) *cachedPod {
	class, _ := cfg.Class(p)
	return &cachedPod{
		ObjectMeta: metav1.ObjectMeta{
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
		},
	}
}

// firstGate returns the name of the Pod's first scheduling gate, or "".
func firstGate(p *corev1.Pod) string {
	if len(p.Spec.SchedulingGates) == 0 {
		return ""
	}
	return p.Spec.SchedulingGates[0].Name
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
	out := &cachedPod{podFields: p.podFields}
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// trimNode returns the part of a Node the controller reads: identity, labels, creation and
// deletion time, providerID and unschedulable. The Node's status, which its kubelet refreshes
// every few minutes, is dropped, so heartbeats do not wake the controller; so are its annotations,
// which its kubelet may write and which therefore decide nothing.
func trimNode(n *corev1.Node) *corev1.Node {
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: trimMeta(n.ObjectMeta),
		Spec: corev1.NodeSpec{
			ProviderID:    n.Spec.ProviderID,
			Unschedulable: n.Spec.Unschedulable,
		},
	}
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
