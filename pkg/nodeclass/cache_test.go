package nodeclass

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippfake "github.com/ipp-project/ipp/pkg/generated/clientset/versioned/fake"
)

func TestCache(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	kube := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        "team-a",
		UID:         "ns-uid",
		Labels:      map[string]string{"tenant-tier": "untrusted"},
		Annotations: map[string]string{"big": "kilobytes"},
		Finalizers:  []string{"example.com/f"},
	}})
	// NewClientset's field management needs the type's OpenAPI schema, which the generated
	// fake does not carry; the simple one tracks objects without it.
	ipp := ippfake.NewSimpleClientset( //nolint:staticcheck // see above
		&ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "metal", UID: "nc-uid", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
			Spec:       ippv1alpha1.NodeClassSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}}},
		})
	c, err := NewCache(kube, ipp)
	if err != nil {
		t.Fatal(err)
	}
	if c.HasSynced() {
		t.Fatal("HasSynced before Run")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	eventually(t, "the cache to sync", c.HasSynced)

	nc, err := c.Get("metal")
	if err != nil || nc.Name != "metal" || IsBuiltin(nc) || nc.ManagedFields != nil {
		t.Errorf("Get(metal) = %+v, %v; want the object without managed fields", nc, err)
	}
	if nc, err := c.Get("default"); err != nil || !IsBuiltin(nc) {
		t.Errorf("Get(default) = %+v, %v; want the builtin default", nc, err)
	}
	if _, err := c.Get("gold"); !apierrors.IsNotFound(err) {
		t.Errorf("Get(gold) error = %v, want NotFound", err)
	}
	labels, ok := c.NamespaceLabels("team-a")
	if !ok || labels["tenant-tier"] != "untrusted" {
		t.Errorf("NamespaceLabels(team-a) = %v, %v", labels, ok)
	}
	if _, ok := c.NamespaceLabels("absent"); ok {
		t.Error("NamespaceLabels(absent) found a namespace")
	}
	// The cache keeps of a Namespace its name, UID and labels.
	obj, _, _ := c.namespaces.GetStore().GetByKey("team-a")
	got := obj.(*corev1.Namespace)
	want := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", UID: "ns-uid", ResourceVersion: got.ResourceVersion, Labels: map[string]string{"tenant-tier": "untrusted"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Cached Namespace (-want +got):\n%s", diff)
	}

	// Changes arrive through the watches.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"x": "y"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace team-b", func() bool { l, ok := c.NamespaceLabels("team-b"); return ok && l["x"] == "y" })
	if _, err := ipp.IppV1alpha1().NodeClasses().Create(ctx, &ippv1alpha1.NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "d"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the default object", func() bool { nc, err := c.Get("default"); return err == nil && !IsBuiltin(nc) })
	if err := ipp.IppV1alpha1().NodeClasses().Delete(ctx, "metal", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "metal to go", func() bool { _, err := c.Get("metal"); return apierrors.IsNotFound(err) })
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("Waiting for %s: %v", what, err)
	}
}
