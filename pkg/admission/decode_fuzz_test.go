package admission

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// decisionView is what the decisions read from a review: the request's routing fields and, for
// each Pod in it, its labels and scheduling fields (scheduling gates included).
type decisionView struct {
	APIVersion, Kind string
	HasRequest       bool
	Request          admissionv1.AdmissionRequest // without Object and OldObject
	Object, Old      *podView
}

type podView struct {
	Labels       map[string]string
	NodeName     string
	NodeSelector map[string]string
	Affinity     *corev1.Affinity
	Tolerations  []corev1.Toleration
	Gates        []corev1.PodSchedulingGate
}

// viewOf returns what the decisions read from r, as prepare would get it; ok is false when a Pod in
// it does not decode, which the decisions deny with 400.
func viewOf(r *Review) (v decisionView, ok bool) {
	v = decisionView{APIVersion: r.APIVersion, Kind: r.Kind, HasRequest: r.Request != nil}
	if r.Request == nil {
		return v, true
	}
	v.Request = *r.Request
	v.Request.Object.Raw, v.Request.Object.Object = nil, nil
	v.Request.OldObject.Raw, v.Request.OldObject.Object = nil, nil
	for _, f := range []struct {
		pre *podValue
		raw []byte
		out **podView
	}{{r.object(), r.Request.Object.Raw, &v.Object}, {r.oldObject(), r.Request.OldObject.Raw, &v.Old}} {
		var pod *podObject
		switch {
		case f.pre != nil && f.pre.present:
			pod = &f.pre.pod
		case f.pre == nil && len(f.raw) > 0 && !bytes.Equal(bytes.TrimSpace(f.raw), []byte("null")):
			p, err := decodePod(f.raw)
			if err != nil {
				return v, false
			}
			pod = p
		}
		if pod != nil {
			sp := pod.spec()
			*f.out = &podView{Labels: pod.Metadata.Labels, NodeName: sp.NodeName, NodeSelector: sp.NodeSelector, Affinity: sp.Affinity, Tolerations: sp.Tolerations, Gates: sp.SchedulingGates}
		}
	}
	return v, true
}

// referenceView reads the same from body with the decoding of apimachinery's JSON serializer
// (sigs.k8s.io/json, case-sensitive): the review, then each Pod from its raw bytes.
func referenceView(body []byte) (decisionView, error) {
	var review admissionv1.AdmissionReview
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return decisionView{}, err
	}
	v := decisionView{APIVersion: review.APIVersion, Kind: review.Kind, HasRequest: review.Request != nil}
	if review.Request == nil {
		return v, nil
	}
	req := review.Request
	v.Request = *req
	v.Request.Object.Raw, v.Request.Object.Object = nil, nil
	v.Request.OldObject.Raw, v.Request.OldObject.Object = nil, nil
	for _, f := range []struct {
		raw []byte
		out **podView
	}{{req.Object.Raw, &v.Object}, {req.OldObject.Raw, &v.Old}} {
		if len(f.raw) == 0 || bytes.Equal(bytes.TrimSpace(f.raw), []byte("null")) {
			continue
		}
		var pod corev1.Pod
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(f.raw, &pod); err != nil {
			return v, err
		}
		*f.out = &podView{Labels: pod.Labels, NodeName: pod.Spec.NodeName, NodeSelector: pod.Spec.NodeSelector, Affinity: pod.Spec.Affinity, Tolerations: pod.Spec.Tolerations, Gates: pod.Spec.SchedulingGates}
	}
	return v, nil
}

// FuzzDecodeReviewDifferential checks the one-pass review decoder against apimachinery's decoding
// of the same bytes: whatever DecodeReview accepts, apimachinery must accept too, and every field
// the decisions read must be equal. DecodeReview may refuse more (duplicate names, invalid UTF-8):
// the webhook then answers 400, which fails closed.
func FuzzDecodeReviewDifferential(f *testing.F) {
	for _, pod := range seedPods(f) {
		for _, op := range []string{"CREATE", "UPDATE"} {
			f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"t","operation":"` + op + `","userInfo":{},"object":` + string(pod) + `,"oldObject":` + string(pod) + `}}`))
		}
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":null}}`))
	f.Add([]byte(`{"request":{"object":{"metadata":{"labels":{"a":"b"}},"spec":{"nodeName":"n","nodeName":"m"}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeReview(body)
		if err != nil {
			return
		}
		got, ok := viewOf(r)
		if !ok {
			return
		}
		want, err := referenceView(body)
		if err != nil {
			t.Fatalf("DecodeReview accepted a body that apimachinery's decoding refuses (%v):\n%s", err, body)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("DecodeReview reads another review than apimachinery (-apimachinery +DecodeReview):\n%s\nbody: %s", diff, body)
		}
	})
}
