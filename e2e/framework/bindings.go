package framework

import (
	"context"
	"maps"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// WatchBindings watches the Nodes that selector selects for the rest of the test and fails it
// if:
//
//   - a Node's class label (isolation.ClassLabel), once set, changes or goes while the Node
//     exists (a node serves one class for life, I6);
//   - a Node carries the class label and the warm label (isolation.WarmLabel) at once;
//   - a Node is deleted while a Pod that is not being deleted runs on it (a warm node replaced,
//     or a node reaped, under a Pod that a claim placed there).
//
// It returns once the watch has synced, with a function that ends the checks (call it before the
// test's clean-up deletes Pods and Nodes) and returns the class key each Node was first bound
// to, and the Nodes ever seen warm, by node name.
func WatchBindings(t testing.TB, client kubernetes.Interface, selector string) func() (bound map[string]string, warm map[string]bool) {
	t.Helper()
	var (
		mu    sync.Mutex
		bound = map[string]string{}
		warm  = map[string]bool{}
		done  bool
		// reported holds the Nodes already reported.
		reported = map[string]bool{}
	)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := factory.Core().V1().Nodes().Informer()
	see := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		key, has := n.Labels[isolation.ClassLabel]
		prev, was := bound[n.Name]
		switch {
		case was && (!has || key != prev) && !reported[n.Name]:
			reported[n.Name] = true // once per Node: every later update would say it again
			t.Errorf("Node %s was bound to class key %q, now has %s=%q (present %t)", n.Name, prev, isolation.ClassLabel, key, has)
		case !was && has:
			bound[n.Name] = key
		}
		if n.Labels[isolation.WarmLabel] == isolation.LabelValue {
			warm[n.Name] = true
			if has {
				t.Errorf("Node %s is bound to class key %q and still warm", n.Name, key)
			}
		}
	}
	gone := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		pods, err := client.CoreV1().Pods(metav1.NamespaceAll).List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
		if err != nil {
			t.Errorf("Listing the Pods of deleted node %s: %v", n.Name, err)
			return
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				t.Errorf("Node %s (class key %q) was deleted while Pod %s/%s ran on it", n.Name, n.Labels[isolation.ClassLabel], p.Namespace, p.Name)
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    see,
		UpdateFunc: func(_, obj any) { see(obj) },
		DeleteFunc: gone,
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() {
		close(stop)
		factory.Shutdown()
	})
	if !cache.WaitForCacheSync(t.Context().Done(), inf.HasSynced) {
		t.Fatal("The Node watch did not sync")
	}
	return func() (map[string]string, map[string]bool) {
		mu.Lock()
		defer mu.Unlock()
		done = true
		return maps.Clone(bound), maps.Clone(warm)
	}
}
