package admission

import (
	"bytes"
	"errors"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// Review is an admission.k8s.io/v1 AdmissionReview as DecodeReview decodes it, ready for
// MutateReview and ValidateReview. A Review with only Request set is answered the same way, its
// Pods decoded from Request.Object and Request.OldObject.
type Review struct {
	metav1.TypeMeta
	// Request is the review's request, nil when it has none. Its Object and OldObject are empty
	// when DecodeReview decoded the Pods in them along with the rest of the review.
	Request *admissionv1.AdmissionRequest

	// wire holds the Pods decoded with the review; nil when Request carries them as JSON.
	wire *requestWire
}

// DecodeReview decodes body, the JSON of an AdmissionReview, as the webhook receives it.
//
// It decodes in one pass: the parts of request.object and request.oldObject that admission reads
// are decoded with the rest of the review, and the rest of the Pods is skipped. The result is the
// same as decoding the review into an admissionv1.AdmissionReview with the JSON v2 package (which
// is what it falls back to for any body that the one pass does not take) and then decoding the
// Pods from the request: case-sensitive names, duplicate names and invalid UTF-8 refused
// anywhere in the body, the same errors with the same messages.
func DecodeReview(body []byte) (*Review, error) {
	var w reviewWire
	if err := jsonv2.Unmarshal(body, &w); err == nil {
		r := &Review{TypeMeta: w.TypeMeta}
		if w.Request != nil {
			r.Request = &w.Request.AdmissionRequest
			r.wire = w.Request
		}
		return r, nil
	}
	// The one pass stops at the first error, which may be in a Pod that admission would not even
	// look at (a DELETE, an exempt namespace) or would deny with a message inside a 200. Decode
	// the plain way, which says what is wrong as it always has.
	var in admissionv1.AdmissionReview
	if err := jsonv2.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	return &Review{TypeMeta: in.TypeMeta, Request: in.Request}, nil
}

// MutateReview answers a mutating admission review. An IPP Pod (one with a non-empty class label)
// outside the exempt namespaces gets the tolerations and the scheduling constraints of cfg.Mode
// and cfg.Placement as a JSONPatch that applies to the request's object (under
// --placement=controller, the class-key nodeSelector and, on CREATE, the scheduling gate
// ipp.io/placement); it is denied if it presets spec.nodeName or asks for a node or class key
// other than its class's. Every other request is allowed unchanged. Mutating an already mutated
// Pod adds nothing, so the API server may invoke the webhook again.
//
// MutateReview never panics: a review without a request is denied with 400, and a request it
// cannot decode is denied with a message that says why.
func MutateReview(cfg isolation.Config, r *Review) (resp *admissionv1.AdmissionResponse) {
	defer recoverResponse(r.Request, &resp)
	in, resp := prepare(cfg, r.Request, r.object(), r.oldObject())
	if resp != nil {
		return resp
	}
	return mutate(cfg, r.Request, in)
}

// Lookups are what ValidateReview reads besides the request. Either may be nil, which turns its
// check off.
type Lookups struct {
	// Nodes are the IPP nodes that spec.nodeName of a Pod without a class is checked against.
	Nodes Nodes
	// NodeClasses are the NodeClasses and namespace labels that an IPP Pod created in dedicated
	// mode is checked against.
	NodeClasses NodeClasses
}

// ValidateReview answers a validating admission review about the final Pod, after every mutating
// webhook has run. It denies an IPP Pod that lacks part of its pin or tolerations, a Pod without
// a class outside the exempt namespaces that tolerates the IPP taint, selects IPP nodes or names
// one of from.Nodes in spec.nodeName, and an UPDATE that changes the class label or gives a Pod
// without a class IPP tolerations or selectors. In dedicated mode it also denies the CREATE of an
// IPP Pod whose NodeClass (label ipp.io/node-class) is not in from.NodeClasses or may not be used
// in its namespace, and an UPDATE that adds, removes or changes that label on an IPP Pod.
//
// from.Nodes may be nil: spec.nodeName of a Pod without a class is then not checked. While it has
// not synced, a Pod without a class that presets spec.nodeName is denied with 503 and a message
// that says to retry: the check fails closed. Likewise from.NodeClasses: nil turns the NodeClass
// check off; unsynced, every IPP Pod CREATE is denied with 503.
//
// ValidateReview never panics: a review without a request is denied with 400, and a request it
// cannot decode is denied with a message that says why.
func ValidateReview(cfg isolation.Config, from Lookups, r *Review) (resp *admissionv1.AdmissionResponse) {
	defer recoverResponse(r.Request, &resp)
	in, resp := prepare(cfg, r.Request, r.object(), r.oldObject())
	if resp != nil {
		return resp
	}
	return validate(cfg, from, r.Request, in)
}

// reviewWire is the AdmissionReview with a request whose Pods decode as podObjects. Its own
// fields hide the embedded ones of the same JSON names, as Go's embedding rules say.
type reviewWire struct {
	admissionv1.AdmissionReview
	Request *requestWire `json:"request,omitempty"`
}

type requestWire struct {
	admissionv1.AdmissionRequest
	Object    podValue `json:"object"`
	OldObject podValue `json:"oldObject"`
}

func (r *Review) object() *podValue {
	if r.wire == nil {
		return nil
	}
	return &r.wire.Object
}

func (r *Review) oldObject() *podValue {
	if r.wire == nil {
		return nil
	}
	return &r.wire.OldObject
}

// podValue is a Pod decoded in one pass with its review.
type podValue struct {
	// present is false when the field is absent or null, as a RawExtension then has no Raw.
	present bool
	pod     podObject
}

// UnmarshalJSONFrom decodes a Pod, or null, with the review's decoder and options.
//
// It decodes the members of podObject, podMeta and podSpec with JSON v2 as their struct types
// would, and skips every other member with ReadValue, which validates it in one scan (duplicate
// names, UTF-8, syntax) as the struct types' skipping does token by token, only faster. For input
// it does not take as they would (a member name with an escape in it, a Pod or metadata or spec
// that is not an object or null) it returns an error, and DecodeReview falls back to decoding the
// review the plain way.
func (v *podValue) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*v = podValue{}
	isNull, err := beginObject(dec)
	if err != nil || isNull {
		return err
	}
	v.present = true
	for {
		name, end, err := nextName(dec)
		if err != nil || end {
			return err
		}
		switch string(name) {
		case "metadata":
			err = decodeMeta(dec, &v.pod.Metadata)
		case "spec":
			err = decodeSpec(dec, &v.pod.Spec)
		default:
			_, err = dec.ReadValue()
		}
		if err != nil {
			return err
		}
	}
}

func decodeMeta(dec *jsontext.Decoder, m *podMeta) error {
	*m = podMeta{}
	if isNull, err := beginObject(dec); err != nil || isNull {
		return err
	}
	for {
		name, end, err := nextName(dec)
		if err != nil || end {
			return err
		}
		if string(name) == "labels" {
			err = jsonv2.UnmarshalDecode(dec, &m.Labels)
		} else {
			_, err = dec.ReadValue()
		}
		if err != nil {
			return err
		}
	}
}

func decodeSpec(dec *jsontext.Decoder, sp **podSpec) error {
	*sp = nil
	if isNull, err := beginObject(dec); err != nil || isNull {
		return err
	}
	s := &podSpec{}
	*sp = s
	for {
		name, end, err := nextName(dec)
		if err != nil || end {
			return err
		}
		switch string(name) {
		case "nodeName":
			err = jsonv2.UnmarshalDecode(dec, &s.NodeName)
		case "nodeSelector":
			err = jsonv2.UnmarshalDecode(dec, &s.NodeSelector)
		case "affinity":
			err = jsonv2.UnmarshalDecode(dec, &s.Affinity)
		case "tolerations":
			err = jsonv2.UnmarshalDecode(dec, &s.Tolerations)
		case "schedulingGates":
			err = jsonv2.UnmarshalDecode(dec, &s.SchedulingGates)
		default:
			_, err = dec.ReadValue()
		}
		if err != nil {
			return err
		}
	}
}

// errFallBack makes DecodeReview decode a review the plain way.
var errFallBack = errors.New("not decoded in one pass")

// beginObject reads the start of an object, or a null.
func beginObject(dec *jsontext.Decoder) (isNull bool, err error) {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		return true, err
	case '{':
		_, err := dec.ReadToken()
		return false, err
	}
	return false, errFallBack
}

// nextName reads the name of the object's next member, or its end. The name is valid until the
// next read; one with an escape is left to the plain decoding, which unescapes it.
func nextName(dec *jsontext.Decoder) (name []byte, end bool, err error) {
	if dec.PeekKind() == '}' {
		_, err := dec.ReadToken()
		return nil, true, err
	}
	v, err := dec.ReadValue()
	if err != nil {
		return nil, false, err
	}
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return nil, false, errFallBack
	}
	return v[1 : len(v)-1], false, nil
}
