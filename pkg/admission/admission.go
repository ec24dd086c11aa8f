// Package admission holds IPP's admission decisions as pure functions: MutateReview gives an IPP
// Pod the tolerations and the pin of its isolation class, and ValidateReview refuses any Pod whose
// final form would break isolation. They read nothing but their arguments, call no API and never panic, so
// they can be tested without a server and answer in microseconds; pkg/webhook carries them over
// HTTPS.
package admission

import (
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// input is a decoded request that concerns IPP: a Pod CREATE or UPDATE outside the exempt
// namespaces.
type input struct {
	pod *podObject
	// old is the Pod before an UPDATE, nil on CREATE.
	old *podObject
}

// prepare decodes req, or takes its Pods from object and oldObject when a Review decoded them with
// it (both are nil otherwise). It returns a response when the request needs no decision (not a Pod, a subresource,
// DELETE, CONNECT, an exempt namespace) or cannot be decoded.
func prepare(cfg isolation.Config, req *admissionv1.AdmissionRequest, object, oldObject *podValue) (input, *admissionv1.AdmissionResponse) {
	if req == nil {
		return input{}, errored(nil, http.StatusBadRequest, "admission request is missing")
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return input{}, allowed(req)
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
	case admissionv1.Delete, admissionv1.Connect:
		return input{}, allowed(req)
	default:
		return input{}, errored(req, http.StatusBadRequest, fmt.Sprintf("unsupported admission operation %q: want CREATE, UPDATE, DELETE or CONNECT", req.Operation))
	}
	if cfg.Exempt(req.Namespace) {
		return input{}, allowed(req)
	}
	pod, resp := podOf(req, req.Object, object, "object", "a Pod "+string(req.Operation)+" must carry the Pod")
	if resp != nil {
		return input{}, resp
	}
	in := input{pod: pod}
	if req.Operation == admissionv1.Update {
		if in.old, resp = podOf(req, req.OldObject, oldObject, "oldObject", "a Pod UPDATE must carry the Pod before the update"); resp != nil {
			return input{}, resp
		}
	}
	return in, nil
}

// podOf returns the Pod in field of req: decoded already when pre is not nil, else decoded from
// ext. A Pod that is missing or cannot be decoded is a 400 denial; missing says what is expected.
func podOf(req *admissionv1.AdmissionRequest, ext runtime.RawExtension, pre *podValue, field, missing string) (*podObject, *admissionv1.AdmissionResponse) {
	if pre != nil {
		if !pre.present {
			return nil, errored(req, http.StatusBadRequest, "request."+field+" is missing: "+missing)
		}
		return &pre.pod, nil
	}
	raw, err := rawObject(ext)
	if err != nil {
		return nil, errored(req, http.StatusBadRequest, fmt.Sprintf("encoding request.%s: %v", field, err))
	}
	if len(raw) == 0 {
		return nil, errored(req, http.StatusBadRequest, "request."+field+" is missing: "+missing)
	}
	pod, err := decodePod(raw)
	if err != nil {
		return nil, errored(req, http.StatusBadRequest, fmt.Sprintf("decoding request.%s as a Pod: %v", field, err))
	}
	return pod, nil
}

// allowed allows req without a change.
func allowed(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: uid(req), Allowed: true}
}

// patched allows req with patch, a JSONPatch. An empty patch allows without a change.
func patched(req *admissionv1.AdmissionRequest, patch []byte) *admissionv1.AdmissionResponse {
	resp := allowed(req)
	if len(patch) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		resp.PatchType = &pt
		resp.Patch = patch
	}
	return resp
}

// denied denies req because of what it asks for; message says what to change.
func denied(req *admissionv1.AdmissionRequest, message string) *admissionv1.AdmissionResponse {
	return errored(req, http.StatusForbidden, message)
}

// errored denies req with an HTTP-like code: 400 when the request cannot be understood, 403 when
// it is understood and refused, 503 when it cannot be decided yet and a retry can help.
func errored(req *admissionv1.AdmissionRequest, code int32, message string) *admissionv1.AdmissionResponse {
	reason := metav1.StatusReasonForbidden
	switch code {
	case http.StatusBadRequest:
		reason = metav1.StatusReasonBadRequest
	case http.StatusInternalServerError:
		reason = metav1.StatusReasonInternalError
	case http.StatusServiceUnavailable:
		reason = metav1.StatusReasonServiceUnavailable
	}
	return &admissionv1.AdmissionResponse{
		UID:     uid(req),
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    code,
			Reason:  reason,
			Message: message,
		},
	}
}

func uid(req *admissionv1.AdmissionRequest) (u types.UID) {
	if req != nil {
		u = req.UID
	}
	return u
}

// recoverResponse turns a panic in a decision into a denial. The decisions are written not to
// panic; this is the last line that keeps a bug from taking the answer down with it.
func recoverResponse(req *admissionv1.AdmissionRequest, resp **admissionv1.AdmissionResponse) {
	if r := recover(); r != nil {
		*resp = errored(req, http.StatusInternalServerError, fmt.Sprintf("internal error in the IPP admission decision: %v", r))
	}
}

// rawObject returns the JSON of an object in a request. Callers in Go may set Object instead of
// Raw; it is encoded then.
func rawObject(ext runtime.RawExtension) ([]byte, error) {
	if len(ext.Raw) > 0 || ext.Object == nil {
		return ext.Raw, nil
	}
	return json.Marshal(ext.Object)
}
