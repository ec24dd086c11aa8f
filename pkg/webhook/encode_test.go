package webhook

import (
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ipp-project/ipp/pkg/admission"
	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// checkEncodeReview fails unless the API server's own decoding of encodeReview's output gives
// back resp.
func checkEncodeReview(t *testing.T, resp *admissionv1.AdmissionResponse) {
	t.Helper()
	got, err := encodeReview(resp)
	if err != nil {
		t.Fatal(err)
	}
	var review admissionv1.AdmissionReview
	if err := runtime.DecodeInto(codecs.UniversalDeserializer(), got, &review); err != nil {
		t.Fatalf("decoding %s: %v", got, err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || review.Request != nil {
		t.Errorf("encodeReview(%+v) = %s: want an admission.k8s.io/v1 AdmissionReview with only a response", resp, got)
	}
	// The decoding sets the Status's kind on its own.
	if diff := cmp.Diff(resp, review.Response, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(metav1.Status{}, "TypeMeta")); diff != "" {
		t.Errorf("encodeReview(%+v) decodes to another response (-want +got):\n%s", resp, diff)
	}
}

func TestEncodeReview(t *testing.T) {
	jsonPatch := admissionv1.PatchTypeJSONPatch
	odd := admissionv1.PatchType("a\"b")
	cfg := isolation.DefaultConfig()
	auto := cfg
	auto.Mode = isolation.ModeAutoscaler
	pinned := admission.MutateReview(cfg, &admission.Review{Request: admissiontest.Request("u1", "default", admissiontest.Pod("class0"))})
	autoPinned := admission.MutateReview(auto, &admission.Review{Request: admissiontest.Request("u1", "default", admissiontest.Pod("class0"))})
	named := admissiontest.Pod("class0")
	named.Spec.NodeName = `a"b\c`
	denied := admission.MutateReview(cfg, &admission.Review{Request: admissiontest.Request("u1", "default", named)})
	if denied.Allowed || len(pinned.Patch) == 0 || len(autoPinned.Patch) == 0 {
		t.Fatalf("fixtures: %+v %+v %+v", denied, pinned, autoPinned)
	}
	cases := []*admissionv1.AdmissionResponse{
		{},
		{UID: "u1", Allowed: true},
		pinned,
		autoPinned,
		denied,
		{UID: "u1", Patch: []byte("[]")},
		{UID: "u1", PatchType: &jsonPatch},
		{UID: "u1", PatchType: &odd},
		{UID: `q"b\s`, Allowed: true},
		{UID: "<&>", Allowed: true},
		{UID: "tab\t", Allowed: true},
		{UID: "é\u2028", Allowed: true},
		{UID: "u1", Result: &metav1.Status{}},
		{UID: "u1", Result: &metav1.Status{Status: metav1.StatusFailure, Code: -3}},
		{UID: "u1", Result: &metav1.Status{Message: "x < y"}},
		{UID: "u1", Result: &metav1.Status{Message: "line\nbreak"}},
		{UID: "u1", Result: &metav1.Status{Reason: metav1.StatusReasonForbidden, Details: &metav1.StatusDetails{Name: "x"}}},
		{UID: "u1", Result: &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status"}}},
		{UID: "u1", Result: &metav1.Status{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}},
		{UID: "u1", Allowed: true, Warnings: []string{"w"}},
		{UID: "u1", Allowed: true, AuditAnnotations: map[string]string{"a": "b"}},
	}
	for _, c := range cases {
		checkEncodeReview(t, c)
	}
}

// FuzzEncodeReview checks that any response survives encodeReview and the API server's decoding.
func FuzzEncodeReview(f *testing.F) {
	f.Add("u1", true, "", "", "", int32(0), []byte(nil), "JSONPatch")
	f.Add(`"\`, false, "Failure", "Forbidden", `IPP Pod of class "a" <b>`, int32(403), []byte(`[{"op":"add"}]`), "")
	f.Fuzz(func(t *testing.T, uid string, allowed bool, status, reason, message string, code int32, patch []byte, patchType string) {
		resp := &admissionv1.AdmissionResponse{UID: types.UID(uid), Allowed: allowed, Patch: patch}
		if patchType != "" {
			pt := admissionv1.PatchType(patchType)
			resp.PatchType = &pt
		}
		if status != "" || reason != "" || message != "" || code != 0 {
			resp.Result = &metav1.Status{Status: status, Reason: metav1.StatusReason(reason), Message: message, Code: code}
		}
		for _, s := range []string{uid, status, reason, message, patchType} {
			if !utf8.ValidString(s) {
				return // encoding/json writes U+FFFD for invalid UTF-8, as the API server would
			}
		}
		checkEncodeReview(t, resp)
	})
}

var codecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	if err := admissionv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(scheme)
}()
