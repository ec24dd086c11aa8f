package nodeclass

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ipplisters "github.com/ipp-project/ipp/pkg/generated/listers/ipp/v1alpha1"
)

func lister(t *testing.T, ncs ...*ippv1alpha1.NodeClass) ipplisters.NodeClassLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, nc := range ncs {
		if err := idx.Add(nc); err != nil {
			t.Fatal(err)
		}
	}
	return ipplisters.NewNodeClassLister(idx)
}

func TestNameOf(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{nil, "default"},
		{map[string]string{"ipp.io/node-class": "metal"}, "metal"},
		{map[string]string{"ipp.io/node-class": ""}, "default"},
		{map[string]string{"ipp-class": "a"}, "default"},
	} {
		if got := NameOf(tc.labels); got != tc.want {
			t.Errorf("NameOf(%v) = %q, want %q", tc.labels, got, tc.want)
		}
	}
}

func TestGet(t *testing.T) {
	metal := &ippv1alpha1.NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "metal", UID: "u1"}}
	l := lister(t, metal)
	if nc, err := Get(l, "metal"); err != nil || nc != metal {
		t.Errorf("Get(metal) = %v, %v; want the object", nc, err)
	}
	nc, err := Get(l, "default")
	if err != nil || !IsBuiltin(nc) || IsolationOf(nc) != ippv1alpha1.IsolationClass {
		t.Errorf("Get(default) without an object = %+v, %v; want the builtin", nc, err)
	}
	if _, err := Get(l, "gpu"); err == nil {
		t.Error("Get(gpu) succeeded; want NotFound")
	}
	own := &ippv1alpha1.NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "u2"}}
	if nc, err := Get(lister(t, own), "default"); err != nil || nc != own || IsBuiltin(nc) {
		t.Errorf("Get(default) with an object = %v, %v; want the object", nc, err)
	}
}

func TestAdmits(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t", Labels: map[string]string{"tenant-tier": "untrusted"}}}
	for _, tc := range []struct {
		sel  *metav1.LabelSelector
		want bool
		err  bool
	}{
		{nil, true, false},
		{&metav1.LabelSelector{}, true, false},
		{&metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}}, true, false},
		{&metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "trusted"}}, false, false},
		{&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tenant-tier", Operator: "Bogus"}}}, false, true},
	} {
		nc := &ippv1alpha1.NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: ippv1alpha1.NodeClassSpec{NamespaceSelector: tc.sel}}
		got, err := Admits(nc, ns)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("Admits(%v) = %v, %v; want %v, error %v", tc.sel, got, err, tc.want, tc.err)
		}
	}
}
