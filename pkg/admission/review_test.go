package admission

import (
	"fmt"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// reviewBodies returns AdmissionReview bodies that DecodeReview must treat exactly as the plain
// decoding does: every seed Pod as object and oldObject of every operation, and hand-written
// bodies that are malformed in places the one pass reads differently.
func reviewBodies(t testing.TB) [][]byte {
	wrap := func(req string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":` + req + `}`)
	}
	pods := append(seedPods(t), []byte(`"a string"`), []byte(`7`), []byte(`{"spec":{"tolerations":7}}`), []byte(`{"metadata":{"labels":{"ipp-class":1}}}`),
		// Shapes that the one pass leaves to the plain decoding, or skips itself.
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"sp\u0065c":{"nodeName":"x"}}`),
		[]byte(`{"met\u0061data":{"labels":{"ipp-class":"a"}},"spec":{}}`),
		[]byte(`{"metadata":{"l\u0061bels":{"ipp-class":"a"}},"spec":{"n\u006fdeName":"x"}}`),
		[]byte(`{"metadata":{"labels":{"ipp-cl\u0061ss":"a"}},"spec":{"nodeSelector":{"a\"b":"c\\"}}}`),
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":5}`),
		[]byte(`{"metadata":"x","spec":{}}`),
		[]byte(`{"metadata":[],"spec":[]}`),
		[]byte(`{"metadata":{"labels":null,"annotations":{"a":"1","b":{"c":[1,2,{"d":null}]}}},"spec":{"containers":[{"name":"a","env":[{"name":"x","value":"y"}]}]}}`),
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"containers":[{"name":"a","name":"b"}]}}`),
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"containers":[{"name":"a\u00"}]}}`),
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"nodeName":null,"nodeSelector":null,"affinity":null,"tolerations":null},"status":{"phase":"Running"}}`),
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"nodeName":"x","nodeName":"y"}}`),
		[]byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"nodeName":5}}`),
		[]byte(`{"kind":"Pod","metadata":{"labels":{"ipp-class":"a"}},"spec":{"tolerations":[{"key":"k","tolerationSeconds":"x"}]}}`),
	)
	var out [][]byte
	for _, kind := range []string{`{"version":"v1","kind":"Pod"}`, `{"group":"apps","version":"v1","kind":"Deployment"}`} {
		for _, op := range []string{"CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"} {
			for _, ns := range []string{"default", "kube-system"} {
				for i, p := range pods {
					old := pods[(i+1)%len(pods)]
					out = append(out,
						wrap(fmt.Sprintf(`{"uid":"u","kind":%s,"operation":%q,"namespace":%q,"object":%s,"oldObject":%s}`, kind, op, ns, p, old)),
						wrap(fmt.Sprintf(`{"uid":"u","kind":%s,"operation":%q,"namespace":%q,"object":%s}`, kind, op, ns, p)),
						wrap(fmt.Sprintf(`{"oldObject":%s,"object":%s,"namespace":%q,"operation":%q,"kind":%s,"uid":"u"}`, old, p, ns, op, kind)),
					)
				}
			}
		}
	}
	pod := `{"metadata":{"labels":{"ipp-class":"a"}},"spec":{}}`
	req := `"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"default"`
	for _, s := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		`{"apiVersion":"v1","kind":"Pod","request":{` + req + `,"object":` + pod + `}}`,
		`{"request":{` + req + `,"object":` + pod + `},"response":{"uid":"x","allowed":"yes"}}`,
		`{"request":{` + req + `,"object":` + pod + `,"object":` + pod + `}}`,
		`{"request":{` + req + `,"object":{"metadata":{"labels":{"ipp-class":"a","ipp-class":"b"}}}}}`,
		`{"request":{` + req + `,"object":{"metadata":{},"status":{"phase":"x","phase":"y"}}}}`,
		`{"request":{` + req + `,"Object":` + pod + `}}`,
		`{"request":{` + req + `,"object":` + pod + `,"Object":{"spec":7}}}`,
		`{"request":{` + req + `,"object":{"metadata":{"labels":{"ipp-class":"` + "\xff" + `"}}}}}`,
		`{"request":{` + req + `,"object":{"spec":{"containers":["` + "\xff" + `"]}}}}`,
		`{"request":{` + req + `,"object":{"spec":{"nodeName":"x"` + `}}`,
		`{"request":{` + req + `,"object":` + pod + `,"uid":7}}`,
		`{"request":{` + req + `,"object":` + pod + `,"options":{"dryRun":7}}}`,
		`{"request":{` + req + `,"object":` + pod + `}} trailing`,
		`{"request":{` + req + `,"object":` + pod + `}}{}`,
		`{"request":7}`,
		`[]`,
		`null`,
		``,
		`{"request":{` + req + `,"object":{"spec":{"nodeName":"x","NodeName":"y","affinity":{"nodeAffinity":{}}}}}}`,
		`{"request":{` + strings.Replace(req, "CREATE", "UPDATE", 1) + `,"object":` + pod + `,"oldObject":null}}`,
		`{"request":{` + strings.Replace(req, "CREATE", "UPDATE", 1) + `,"object":null,"oldObject":` + pod + `}}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// plainDecision is what the webhook did before DecodeReview: decode the whole review with JSON v2
// into an admissionv1.AdmissionReview, then let mutateRequest or validateRequest decode the Pods.
func plainDecision(body []byte, decide func(isolation.Config, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse, cfg isolation.Config) (*admissionv1.AdmissionReview, *admissionv1.AdmissionResponse, error) {
	var in admissionv1.AdmissionReview
	if err := jsonv2.Unmarshal(body, &in); err != nil {
		return nil, nil, err
	}
	in.Request = in.Request.DeepCopy()
	if in.Request == nil {
		return &in, nil, nil
	}
	return &in, decide(cfg, in.Request), nil
}

// checkSameAsPlain fails unless DecodeReview and MutateReview/ValidateReview answer body exactly
// as the plain decoding and mutateRequest/validateRequest do, under every fuzz configuration.
func checkSameAsPlain(t *testing.T, body []byte) {
	t.Helper()
	r, err := DecodeReview(body)
	for _, cfg := range fuzzConfigs() {
		for _, d := range []struct {
			name   string
			plain  func(isolation.Config, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
			review func(isolation.Config, *Review) *admissionv1.AdmissionResponse
		}{
			{"mutate", mutateRequest, MutateReview},
			{"validate", validateWith(Lookups{Nodes: fuzzNodes, NodeClasses: fuzzClasses}), func(cfg isolation.Config, r *Review) *admissionv1.AdmissionResponse {
				return ValidateReview(cfg, Lookups{Nodes: fuzzNodes, NodeClasses: fuzzClasses}, r)
			}},
			{"validate unsynced", validateWith(Lookups{Nodes: unsynced, NodeClasses: &fakeClasses{unsynced: true}}), func(cfg isolation.Config, r *Review) *admissionv1.AdmissionResponse {
				return ValidateReview(cfg, Lookups{Nodes: unsynced, NodeClasses: &fakeClasses{unsynced: true}}, r)
			}},
		} {
			in, want, wantErr := plainDecision(body, d.plain, cfg)
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("%s: DecodeReview(%q) error = %v, want %v", d.name, body, err, wantErr)
			}
			if err != nil {
				continue
			}
			if diff := cmp.Diff(in.TypeMeta, r.TypeMeta); diff != "" {
				t.Fatalf("%s: TypeMeta of %q (-want +got):\n%s", d.name, body, diff)
			}
			if (in.Request == nil) != (r.Request == nil) {
				t.Fatalf("%s: request of %q: got %v, want %v", d.name, body, r.Request != nil, in.Request != nil)
			}
			if in.Request == nil {
				continue
			}
			got := d.review(cfg, r)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s (mode %s): answer to %q (-want +got):\n%s", d.name, cfg.Mode, body, diff)
			}
			// The rest of the request, as the API server sent it.
			wantReq := in.Request.DeepCopy()
			wantReq.Object, wantReq.OldObject = r.Request.Object, r.Request.OldObject
			if diff := cmp.Diff(wantReq, r.Request); diff != "" {
				t.Fatalf("%s: request of %q (-want +got):\n%s", d.name, body, diff)
			}
		}
	}
}

func TestDecodeReviewSameAsPlain(t *testing.T) {
	for i, body := range reviewBodies(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkSameAsPlain(t, body) })
	}
}

// FuzzDecodeReview checks on any body that the one-pass decoding answers as the plain one.
func FuzzDecodeReview(f *testing.F) {
	for _, b := range reviewBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkSameAsPlain(t, body) })
}

func TestDecodeReviewOnePass(t *testing.T) {
	// A Pod as the API server sends it goes in one pass, on CREATE and on UPDATE.
	create := admissiontest.Request("u", "default", admissiontest.Pod("class0"))
	update := create.DeepCopy()
	update.Operation, update.OldObject = admissionv1.Update, create.Object
	for _, req := range []*admissionv1.AdmissionRequest{create, update} {
		r, err := DecodeReview(admissiontest.Review(req))
		if err != nil || r.wire == nil || !r.wire.Object.present || r.wire.OldObject.present != (req.Operation == admissionv1.Update) {
			t.Fatalf("%s: not decoded in one pass (error %v)", req.Operation, err)
		}
		if r.Request.Object.Raw != nil || r.Request.OldObject.Raw != nil {
			t.Errorf("%s: the one-pass review keeps the Pods' JSON", req.Operation)
		}
	}
	fast := 0
	bodies := reviewBodies(t)
	for _, body := range bodies {
		if r, err := DecodeReview(body); err == nil && r.wire != nil {
			fast++
		}
	}
	t.Logf("%d of %d test bodies decoded in one pass", fast, len(bodies))
}
