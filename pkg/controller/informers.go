package controller

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// NewInformerFactories returns the shared informer factories whose Pod and Node informers New
// expects: Pods that carry cfg.PodLabel, and Nodes labelled cfg.NodeLabel=true. Narrowing them by
// label keeps the controller's watch traffic proportional to IPP's share of the cluster, and the
// cached objects are trimmed to the fields the controller reads (see trimPod and trimNode), which
// keeps its memory at a few hundred bytes per Pod.
//
// The factories are the controller's own: other readers of the same informers would see the
// trimmed objects.
func NewInformerFactories(client kubernetes.Interface, cfg isolation.Config) (pods, nodes informers.SharedInformerFactory) {
	podSelector := labels.NewSelector().Add(mustRequirement(cfg.PodLabel, selection.Exists, nil)).String()
	nodeSelector := labels.SelectorFromSet(labels.Set{cfg.NodeLabel: isolation.LabelValue}).String()
	pods = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = podSelector }),
		informers.WithTransform(trim))
	nodes = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = nodeSelector }),
		informers.WithTransform(trim))
	return pods, nodes
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

// trim is the informers' transform: Pods and Nodes become trimPod and trimNode of themselves;
// anything else (a tombstone, say) is passed on as it is.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return trimPod(o), nil
	case *corev1.Node:
		return trimNode(o), nil
	}
	return obj, nil
}

// trimPod returns the part of a Pod the controller reads: identity, labels (the class), creation
// and deletion time, the binding-label nodeSelector, the node it is bound to and its phase. It is
// idempotent. A field read anywhere in this package must be kept here, or the controller sees it
// empty; podChanged compares exactly these fields.
func trimPod(p *corev1.Pod) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: trimMeta(p.ObjectMeta, nil),
		Spec: corev1.PodSpec{
			NodeName:     p.Spec.NodeName,
			NodeSelector: p.Spec.NodeSelector,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}
}

// trimNode returns the part of a Node the controller reads: identity, labels, the controller's own
// annotations, creation and deletion time, providerID and unschedulable. The Node's status, which
// its kubelet refreshes every few minutes, is dropped, so heartbeats do not wake the controller.
func trimNode(n *corev1.Node) *corev1.Node {
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: trimMeta(n.ObjectMeta, ippAnnotations(n.Annotations)),
		Spec: corev1.NodeSpec{
			ProviderID:    n.Spec.ProviderID,
			Unschedulable: n.Spec.Unschedulable,
		},
	}
}

func trimMeta(m metav1.ObjectMeta, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		Annotations:       annotations,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// annotationPrefix is the prefix of the annotations the controller keeps on Nodes.
const annotationPrefix = "ipp.io/"

// ippAnnotations returns the controller's own annotations among a, or nil if there are none.
func ippAnnotations(a map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if strings.HasPrefix(k, annotationPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// podChanged reports whether an update changed anything the controller reads of a Pod: a
// status-only update of a running Pod, for one, does not.
func podChanged(old, cur *corev1.Pod) bool {
	o, c := trimPod(old), trimPod(cur)
	o.ResourceVersion, c.ResourceVersion = "", ""
	return !equality.Semantic.DeepEqual(o, c)
}

// nodeChanged reports whether an update changed anything the controller reads of a Node: a
// kubelet's status heartbeat does not.
func nodeChanged(old, cur *corev1.Node) bool {
	o, c := trimNode(old), trimNode(cur)
	o.ResourceVersion, c.ResourceVersion = "", ""
	return !equality.Semantic.DeepEqual(o, c)
}
