package nodeset

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"
)

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status:     corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"registry.example/big:1"}, SizeBytes: 1 << 30}}},
	}
}

var ipp = map[string]string{"ipp": "true", "zone": "a"}

func TestSet(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	client := fake.NewClientset(
		node("ipp-0", ipp),
		node("worker-0", map[string]string{"zone": "a"}),
		node("false-0", map[string]string{"ipp": "false"}),
	)
	s, err := New(client, "ipp", "true")
	if err != nil {
		t.Fatal(err)
	}
	if s.HasSynced() || s.Has("ipp-0") {
		t.Fatalf("Before Run: HasSynced %v, Has(ipp-0) %v; want both false", s.HasSynced(), s.Has("ipp-0"))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	eventually(t, "the set to sync", s.HasSynced)
	for name, want := range map[string]bool{"ipp-0": true, "worker-0": false, "false-0": false, "absent": false} {
		if got := s.Has(name); got != want {
			t.Errorf("Has(%s) = %v, want %v", name, got, want)
		}
	}

	// The cache keeps the name and the label alone.
	obj, ok, err := s.informer.GetStore().GetByKey("ipp-0")
	if err != nil || !ok {
		t.Fatalf("GetByKey(ipp-0) = %v, %v", ok, err)
	}
	got := obj.(*corev1.Node)
	want := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ipp-0", ResourceVersion: got.ResourceVersion, Labels: map[string]string{"ipp": "true"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Cached Node (-want +got):\n%s", diff)
	}

	nodes := client.CoreV1().Nodes()
	if _, err := nodes.Create(ctx, node("ipp-1", ipp), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new IPP node to join the set", func() bool { return s.Has("ipp-1") })

	// A Node that loses the label leaves the set, even if the watch sends it as an update.
	n, err := nodes.Get(ctx, "ipp-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(n.Labels, "ipp")
	if _, err := nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unlabelled node to leave the set", func() bool { return !s.Has("ipp-0") })

	if err := nodes.Delete(ctx, "ipp-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted node to leave the set", func() bool { return !s.Has("ipp-1") })
	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d, want 0", got)
	}
}

func TestDeletedFinalStateUnknown(t *testing.T) {
	s, err := New(fake.NewClientset(), "ipp", "true")
	if err != nil {
		t.Fatal(err)
	}
	s.update(node("ipp-0", ipp))
	if !s.Has("ipp-0") {
		t.Fatal("Has(ipp-0) = false after an add")
	}
	s.delete(cacheTombstone("ipp-0"))
	if s.Has("ipp-0") {
		t.Error("Has(ipp-0) = true after a delete seen only as a tombstone")
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("Waiting for %s: %v", what, err)
	}
}

func cacheTombstone(name string) cache.DeletedFinalStateUnknown {
	return cache.DeletedFinalStateUnknown{Key: name, Obj: node(name, ipp)}
}
