package webhook

import (
	"encoding/base64"
	"encoding/json"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The apiVersion and kind of an admission.k8s.io/v1 AdmissionReview.
var (
	reviewAPIVersion = admissionv1.SchemeGroupVersion.String()
	reviewKind       = "AdmissionReview"
)

// reviewPrefix starts every answer: what encoding/json writes for an AdmissionReview with the
// review's apiVersion and kind, up to the response's UID.
var reviewPrefix = `{"kind":"` + reviewKind + `","apiVersion":"` + reviewAPIVersion + `","response":{"uid":`

// appendReview appends to b the JSON of the AdmissionReview that answers with resp, byte for byte
// what encoding/json writes for admissionv1.AdmissionReview{TypeMeta: v1 AdmissionReview,
// Response: resp}. It writes the responses that the decisions give (a UID, a verdict, a patch or a
// status) directly, and leaves anything else, and strings that need escaping beyond '"' and '\',
// to encoding/json.
func appendReview(b []byte, resp *admissionv1.AdmissionResponse) ([]byte, error) {
	if !plainResponse(resp) {
		out, err := json.Marshal(&admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind},
			Response: resp,
		})
		return append(b, out...), err
	}
	b = append(b, reviewPrefix...)
	b = appendString(b, string(resp.UID))
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, resp.Allowed)
	if s := resp.Result; s != nil {
		b = append(b, `,"status":{"metadata":{}`...)
		if s.Status != "" {
			b = append(b, `,"status":`...)
			b = appendString(b, s.Status)
		}
		if s.Message != "" {
			b = append(b, `,"message":`...)
			b = appendString(b, s.Message)
		}
		if s.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendString(b, string(s.Reason))
		}
		if s.Code != 0 {
			b = append(b, `,"code":`...)
			b = strconv.AppendInt(b, int64(s.Code), 10)
		}
		b = append(b, '}')
	}
	if len(resp.Patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, resp.Patch)
		b = append(b, '"')
	}
	if resp.PatchType != nil {
		b = append(b, `,"patchType":`...)
		b = appendString(b, string(*resp.PatchType))
	}
	return append(b, "}}"...), nil
}

// plainResponse reports whether appendReview writes resp itself: only the fields the decisions
// set, and strings of printable ASCII.
func plainResponse(resp *admissionv1.AdmissionResponse) bool {
	if len(resp.AuditAnnotations) > 0 || len(resp.Warnings) > 0 || !plainString(string(resp.UID)) {
		return false
	}
	if resp.PatchType != nil && !plainString(string(*resp.PatchType)) {
		return false
	}
	if s := resp.Result; s != nil {
		if s.TypeMeta != (metav1.TypeMeta{}) || s.ListMeta.SelfLink != "" || s.ListMeta.ResourceVersion != "" ||
			s.ListMeta.Continue != "" || s.ListMeta.RemainingItemCount != nil || s.Details != nil ||
			!plainString(s.Status) || !plainString(s.Message) || !plainString(string(s.Reason)) {
			return false
		}
	}
	return true
}

// plainString reports whether encoding/json writes s quoted with at most '"' and '\' escaped:
// printable ASCII other than the HTML characters it escapes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendString appends s, a plainString, as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, s[start:i]...)
			b = append(b, '\\')
			start = i
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
