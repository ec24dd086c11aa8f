package nodeclass

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions/ipp/v1alpha1"
	ipplisters "github.com/ipp-project/ipp/pkg/generated/listers/ipp/v1alpha1"
)

// Cache keeps in memory every NodeClass and the labels of every Namespace, so that the webhook
// can tell on a Pod's path, without an API call, whether the Pod's namespace may use its
// NodeClass. It implements admission.NodeClasses; its methods are safe for concurrent use.
type Cache struct {
	classes     cache.SharedIndexInformer
	namespaces  cache.SharedIndexInformer
	classLister ipplisters.NodeClassLister
	nsLister    corelisters.NamespaceLister
}

// NewCache returns a Cache that lists and watches NodeClasses through ipp and Namespaces through
// kube: the caller needs get, list and watch on nodeclasses.ipp.io and namespaces. It knows
// nothing, and HasSynced is false, until Run has listed both.
func NewCache(kube kubernetes.Interface, ipp ippclient.Interface) (*Cache, error) {
	c := &Cache{
		classes:    ippinformers.NewNodeClassInformer(ipp, 0, cache.Indexers{}),
		namespaces: coreinformers.NewNamespaceInformer(kube, 0, cache.Indexers{}),
	}
	// Of a Namespace only its name and labels are read; its annotations and managed fields can
	// be kilobytes each, in every namespace of the cluster.
	if err := c.namespaces.SetTransform(trimNamespace); err != nil {
		return nil, fmt.Errorf("watching Namespaces: %w", err)
	}
	if err := c.classes.SetTransform(trimNodeClass); err != nil {
		return nil, fmt.Errorf("watching NodeClasses: %w", err)
	}
	c.classLister = ipplisters.NewNodeClassLister(c.classes.GetIndexer())
	c.nsLister = corelisters.NewNamespaceLister(c.namespaces.GetIndexer())
	return c, nil
}

// Run lists and watches NodeClasses and Namespaces until ctx is done. It logs once both have
// synced.
func (c *Cache) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.namespaces.RunWithContext(ctx)
	}()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), c.HasSynced) {
			logger.Info("Loaded the NodeClasses and namespaces", "nodeClasses", len(c.classes.GetStore().ListKeys()), "namespaces", len(c.namespaces.GetStore().ListKeys()))
		}
	}()
	c.classes.RunWithContext(ctx)
	<-done
}

// HasSynced reports whether the cache holds every NodeClass and Namespace of the first lists.
func (c *Cache) HasSynced() bool { return c.classes.HasSynced() && c.namespaces.HasSynced() }

// Get returns the NodeClass named name as the package's Get does: Builtin for "default" when no
// such object exists, a NotFound error for another name. Do not modify the object returned.
func (c *Cache) Get(name string) (*ippv1alpha1.NodeClass, error) {
	return Get(c.classLister, name)
}

// NamespaceLabels returns the labels of the Namespace named name, and false when the cache does
// not hold it. Do not modify the map returned.
func (c *Cache) NamespaceLabels(name string) (map[string]string, bool) {
	ns, err := c.nsLister.Get(name)
	if err != nil {
		return nil, false
	}
	return ns.Labels, true
}

// trimNamespace keeps of a Namespace its name and labels.
func trimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, UID: ns.UID, ResourceVersion: ns.ResourceVersion, Labels: ns.Labels}}, nil
}

// trimNodeClass drops a NodeClass's managed fields, which nothing here reads.
func trimNodeClass(obj any) (any, error) {
	if nc, ok := obj.(*ippv1alpha1.NodeClass); ok {
		nc.ManagedFields = nil
	}
	return obj, nil
}
