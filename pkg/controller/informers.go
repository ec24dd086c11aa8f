package controller

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// NewInformerFactories returns the shared informer factories whose Pod and Node informers New
// expects: Pods that carry cfg.PodLabel, and Nodes labelled cfg.NodeLabel=true. Narrowing them by
// label keeps the controller's memory and watch traffic proportional to IPP's share of the
// cluster. Managed fields are dropped from cached objects; nothing here reads them.
func NewInformerFactories(client kubernetes.Interface, cfg isolation.Config) (pods, nodes informers.SharedInformerFactory) {
	podSelector := labels.NewSelector().Add(mustRequirement(cfg.PodLabel, selection.Exists, nil)).String()
	nodeSelector := labels.SelectorFromSet(labels.Set{cfg.NodeLabel: isolation.LabelValue}).String()
	pods = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = podSelector }),
		informers.WithTransform(stripManagedFields))
	nodes = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = nodeSelector }),
		informers.WithTransform(stripManagedFields))
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

func stripManagedFields(obj any) (any, error) {
	if acc, err := meta.Accessor(obj); err == nil {
		acc.SetManagedFields(nil)
	}
	return obj, nil
}
