package admission

import (
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
)

// NodeClasses tells Validate which NodeClasses exist and the labels of each namespace, so that
// in dedicated mode it denies an IPP Pod that names a NodeClass that does not exist, or one whose
// namespaceSelector leaves out the Pod's namespace.
//
// Its methods are called on the request's path for every IPP Pod that is created: they must
// answer from memory, without an API call, and be safe for concurrent use. pkg/nodeclass
// implements it with informers on NodeClasses and Namespaces (nodeclass.Cache).
type NodeClasses interface {
	// Get returns the NodeClass named name as nodeclass.Get does: the object; for "default"
	// without an object, nodeclass.Builtin(); for another name without an object, an error for
	// which apierrors.IsNotFound is true. The object is shared: callers must not modify it.
	Get(name string) (*ippv1alpha1.NodeClass, error)
	// NamespaceLabels returns the labels of the namespace named name, and false when the
	// namespace is not known (yet).
	NamespaceLabels(name string) (map[string]string, bool)
	// HasSynced reports whether Get and NamespaceLabels know every NodeClass and namespace that
	// existed when the watches started. Until it does, Validate denies every IPP Pod it is asked
	// to create, and says to retry.
	HasSynced() bool
}

// nodeClassLabelChange returns the denial of an UPDATE that adds, removes or changes the NodeClass
// label of an IPP Pod in dedicated mode, or nil. The NodeClass was checked against the namespace
// when the Pod was created; changing it later would take the Pod to a NodeClass that its
// namespace may not use. Autoscaler mode has no NodeClasses, and the label means nothing on a Pod
// without a class.
func nodeClassLabelChange(cfg isolation.Config, req *admissionv1.AdmissionRequest, in input) *admissionv1.AdmissionResponse {
	if cfg.Mode != isolation.ModeDedicated || req.Operation != admissionv1.Update || in.old == nil {
		return nil
	}
	v, ok := in.pod.Metadata.Labels[isolation.NodeClassLabel]
	oldV, oldOK := in.old.Metadata.Labels[isolation.NodeClassLabel]
	if ok == oldOK && v == oldV {
		return nil
	}
	return denied(req, fmt.Sprintf("the %s label of an existing IPP Pod cannot be added, removed or changed (it was %s, the update makes it %s): delete the Pod and create it again with the NodeClass it needs",
		isolation.NodeClassLabel, labelString(oldV, oldOK), labelString(v, ok)))
}

// admitNodeClass returns the denial of the CREATE of an IPP Pod in dedicated mode whose NodeClass
// (label isolation.NodeClassLabel, absent or empty meaning "default") does not exist or may not be
// used by Pods of the request's namespace, or nil when it may. Without a "default" object a Pod
// without the label gets the builtin default, which every namespace may use.
func admitNodeClass(classes NodeClasses, req *admissionv1.AdmissionRequest, pod *podObject) *admissionv1.AdmissionResponse {
	name := nodeclass.NameOf(pod.Metadata.Labels)
	ns := req.Namespace
	if !classes.HasSynced() {
		return errored(req, http.StatusServiceUnavailable, fmt.Sprintf("the IPP webhook has not yet loaded the NodeClasses and namespaces, so it cannot tell whether NodeClass %q may be used in namespace %q: retry in a few seconds", name, ns))
	}
	// The API server has checked the label's syntax before validating admission; a name that a
	// NodeClass cannot have is still worth its own message (label values may hold upper case and
	// underscores, object names may not).
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return denied(req, fmt.Sprintf("NodeClass %q does not exist (label %s on a Pod in namespace %q): it is not a valid NodeClass name (%s). Name an existing NodeClass (kubectl get nodeclasses), or remove the label to use the NodeClass %q",
			name, isolation.NodeClassLabel, ns, strings.Join(errs, "; "), isolation.DefaultNodeClass))
	}
	nc, err := classes.Get(name)
	switch {
	case apierrors.IsNotFound(err):
		return denied(req, fmt.Sprintf("NodeClass %q does not exist (label %s on a Pod in namespace %q): name an existing NodeClass (kubectl get nodeclasses), or ask the cluster admin to create it",
			name, isolation.NodeClassLabel, ns))
	case err != nil:
		return errored(req, http.StatusServiceUnavailable, fmt.Sprintf("looking up NodeClass %q for a Pod in namespace %q: %v: retry in a few seconds", name, ns, err))
	case nc == nil:
		return errored(req, http.StatusServiceUnavailable, fmt.Sprintf("looking up NodeClass %q for a Pod in namespace %q: no answer: retry in a few seconds", name, ns))
	case nc.Spec.NamespaceSelector == nil:
		return nil
	}
	nsLabels, ok := classes.NamespaceLabels(ns)
	if !ok {
		return errored(req, http.StatusServiceUnavailable, fmt.Sprintf("the IPP webhook has not yet seen namespace %q, so it cannot tell whether NodeClass %q may be used there: retry in a few seconds", ns, name))
	}
	admits, err := nodeclass.Admits(nc, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: nsLabels}})
	switch {
	case err != nil:
		return denied(req, fmt.Sprintf("NodeClass %q may not be used in namespace %q: %v, so no namespace may use it. Ask the cluster admin to fix it", name, ns, err))
	case !admits:
		return denied(req, fmt.Sprintf("NodeClass %q may not be used in namespace %q: the namespace's labels do not match the NodeClass's namespaceSelector %s. Use another NodeClass (label %s), or ask the cluster admin to let the namespace use it",
			name, ns, metav1.FormatLabelSelector(nc.Spec.NamespaceSelector), isolation.NodeClassLabel))
	}
	return nil
}
