// Package nodeclass answers, for the webhook and the controller alike, which NodeClass a Pod gets
// and whether its namespace may use it. A Pod names its NodeClass with the label
// ipp.io/node-class; without the label it gets the NodeClass named "default", and without an
// object of that name the provider flags describe it (Builtin).
package nodeclass

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ipplisters "github.com/ipp-project/ipp/pkg/generated/listers/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// NameOf returns the name of the NodeClass that a Pod with these labels asks for.
func NameOf(podLabels map[string]string) string {
	if v, ok := podLabels[isolation.NodeClassLabel]; ok && v != "" {
		return v
	}
	return isolation.DefaultNodeClass
}

// Builtin returns the NodeClass "default" that stands in when no object of that name exists: an
// empty spec, so that every field falls back to the provider flags.
func Builtin() *ippv1alpha1.NodeClass {
	return &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: isolation.DefaultNodeClass},
		Spec:       ippv1alpha1.NodeClassSpec{Isolation: ippv1alpha1.IsolationClass},
	}
}

// IsBuiltin reports whether nc is the stand-in that Builtin returns rather than an object.
func IsBuiltin(nc *ippv1alpha1.NodeClass) bool {
	return nc.Name == isolation.DefaultNodeClass && nc.UID == ""
}

// Get returns the NodeClass name from lister, or Builtin for "default" when no such object
// exists. Another name that does not exist is an apierrors NotFound error. The object returned
// comes from the cache: do not modify it.
func Get(lister ipplisters.NodeClassLister, name string) (*ippv1alpha1.NodeClass, error) {
	nc, err := lister.Get(name)
	switch {
	case err == nil:
		return nc, nil
	case apierrors.IsNotFound(err) && name == isolation.DefaultNodeClass:
		return Builtin(), nil
	}
	return nil, err
}

// Admits reports whether Pods of namespace ns may use nc, by its namespaceSelector. An unset
// selector admits every namespace. An invalid selector (the CRD's rules keep them out) admits
// none, with the error saying why.
func Admits(nc *ippv1alpha1.NodeClass, ns *corev1.Namespace) (bool, error) {
	if nc.Spec.NamespaceSelector == nil {
		return true, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(nc.Spec.NamespaceSelector)
	if err != nil {
		return false, fmt.Errorf("NodeClass %s has an invalid namespaceSelector: %w", nc.Name, err)
	}
	return sel.Matches(labels.Set(ns.Labels)), nil
}

// IsolationOf returns nc's isolation, Class when unset.
func IsolationOf(nc *ippv1alpha1.NodeClass) ippv1alpha1.Isolation {
	if nc.Spec.Isolation == "" {
		return ippv1alpha1.IsolationClass
	}
	return nc.Spec.Isolation
}
