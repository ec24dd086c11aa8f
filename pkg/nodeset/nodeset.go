// Package nodeset keeps in memory the names of the Nodes that carry one label, so that the
// webhook can ask "is this an IPP node?" on a Pod's path in O(1), without an API call. It lists
// and watches Nodes through an informer narrowed to the label by a label selector, keeps of each
// Node only its name and that label, and implements admission.Nodes.
package nodeset

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Set is the set of names of the Nodes labelled key=value. Its methods are safe for concurrent
// use.
type Set struct {
	key, value string
	informer   cache.SharedIndexInformer
	reg        cache.ResourceEventHandlerRegistration

	mu    sync.RWMutex
	names sets.Set[string]
}

// New returns the Set of the Nodes labelled key=value, listed and watched through client with
// the label selector key=value: the caller needs list and watch on nodes. It is empty, and
// HasSynced false, until Run has listed them.
func New(client kubernetes.Interface, key, value string) (*Set, error) {
	selector := labels.SelectorFromSet(labels.Set{key: value}).String()
	s := &Set{key: key, value: value, names: sets.New[string]()}
	s.informer = coreinformers.NewFilteredNodeInformer(client, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.LabelSelector = selector
	})
	// The informer's cache holds every Node it sees; a Node's status (images, conditions) is
	// kilobytes that the set never reads.
	if err := s.informer.SetTransform(s.trim); err != nil {
		return nil, fmt.Errorf("watching Nodes labelled %s: %w", selector, err)
	}
	reg, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.update,
		UpdateFunc: func(_, obj any) { s.update(obj) },
		DeleteFunc: s.delete,
	})
	if err != nil {
		return nil, fmt.Errorf("watching Nodes labelled %s: %w", selector, err)
	}
	s.reg = reg
	return s, nil
}

// Run lists and watches the Nodes until ctx is done. It logs once the set has synced.
func (s *Set) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), s.HasSynced) {
			logger.Info("Loaded the IPP nodes", "selector", s.key+"="+s.value, "nodes", s.Len())
		}
	}()
	s.informer.RunWithContext(ctx)
}

// Has reports whether a Node named name carries the label.
func (s *Set) Has(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.names.Has(name)
}

// HasSynced reports whether the set holds every labelled Node of the first list.
func (s *Set) HasSynced() bool { return s.reg.HasSynced() }

// Len returns the number of Nodes in the set.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.names.Len()
}

// trim keeps of a Node what the set reads: its name and the label.
func (s *Set) trim(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion}}
	if v, ok := n.Labels[s.key]; ok {
		out.Labels = map[string]string{s.key: v}
	}
	return out, nil
}

// update adds a Node with the label and removes one without it. The watch's label selector
// sends only those with it; the check keeps the set right whatever the watch sends.
func (s *Set) update(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.Labels[s.key] == s.value {
		s.names.Insert(n.Name)
	} else {
		s.names.Delete(n.Name)
	}
}

func (s *Set) delete(obj any) {
	var name string
	switch o := obj.(type) {
	case *corev1.Node:
		name = o.Name
	case cache.DeletedFinalStateUnknown:
		name = o.Key // a cluster-scoped object's key is its name
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names.Delete(name)
}
