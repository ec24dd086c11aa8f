package admission

import (
	"encoding/json"
	"net/http"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// fuzzConfigs are the configurations every fuzz input is decided under.
func fuzzConfigs() []isolation.Config {
	dedicated := isolation.DefaultConfig()
	// The first three are --placement=admission's (--pin-node-name matters only there); the last
	// is the default placement.
	dedicated.Placement = isolation.PlacementAdmission
	noName := dedicated
	noName.PinNodeName = false
	cluster := dedicated
	cluster.ClassScope = isolation.ScopeCluster
	auto := dedicated
	auto.Mode = isolation.ModeAutoscaler
	controller := dedicated
	controller.Placement = isolation.PlacementController
	return []isolation.Config{dedicated, noName, cluster, auto, controller}
}

// fuzzNodes is the node set of the fuzzers: it holds the node names that seedPods use.
var fuzzNodes = &fakeNodes{names: []string{"n", "x", poolNode}}

// validateWith is validateRequest with the lookups from.
func validateWith(from Lookups) func(isolation.Config, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return func(cfg isolation.Config, r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return ValidateReview(cfg, from, &Review{Request: r})
	}
}

// seedPods are Pod JSON documents that the fuzzers start from: the table tests' Pods and
// hand-written shapes that a typed encoder never produces (nulls, empty lists, null elements).
func seedPods(t testing.TB) [][]byte {
	zoneA := exprTerm(req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a"))
	pods := []*corev1.Pod{
		newPod("class0"),
		newPod(""),
		newPod("", withTolerations(tolAll)),
		newPod("class0", withTolerations(tolOther), withNodeSelector("disk", "ssd"), withRequired(zoneA, fieldsTerm(nodeClass0)), withPreferred(3, zoneA)),
		newPod("class0", dedicatedPin(nodeClass0)),
		newPod("class0", seedPin("class0")),
		newPod("My.Class_A", withAnti(antiTerm("x")), withNodeName("n")),
		newPod("class0", withNodeSelector(binding, "ipp-other")),
		newPod("", withNodeName(poolNode)),
		newPod("", withNodeName("worker-0")),
		newPod("class0", withLabel(isolation.NodeClassLabel, "metal")),
		newPod("class0", withLabel(isolation.NodeClassLabel, "gold"), dedicatedPin(nodeClass0)),
		newPod("", withLabel(isolation.NodeClassLabel, "Not_A-Name")),
		newPod("class0", controllerPin(keyClass0)),
		newPod("class0", withGate("wait"), keyPin(keyClass0), withRequired(zoneA, fieldsTerm("ipp-class0-0123456789abcdef"))),
		newPod("class0", withNodeSelector(classLbl, "other-0123"), withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpIn, keyClass0)))),
		newPod("", withNodeSelector(classLbl, keyClass0)),
	}
	var out [][]byte
	for _, p := range pods {
		out = append(out, mustJSON(t, p))
	}
	for _, s := range []string{
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"tolerations":null,"nodeSelector":null,"affinity":null}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"tolerations":[],"nodeSelector":{},"affinity":{}}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"tolerations":[null],"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":null}}}}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[null,{"matchFields":null,"matchExpressions":[]}]}},"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[null]}}}}`,
		`{"metadata":{"labels":{"ipp-class":"a~b/c"}},"spec":{"nodeSelector":{"a/b":"c","~":"d"}}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"Spec":{},"spec":{"NodeName":"x"}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"schedulingGates":null}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"schedulingGates":[]}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"schedulingGates":[null,{"name":"ipp.io/placement"},{"name":"ipp.io/placement"}]}}`,
		`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"schedulingGates":[{"name":"wait"}]}}`,
		`{"metadata":{"labels":{"ipp-class":"a","ipp.io/node-class":null}}}`,
		`{"metadata":{"labels":{"ipp-class":"a","ipp.io/node-class":"metal/../x"}}}`,
		`{"metadata":null,"spec":null}`,
		`{}`,
		`null`,
		`[]`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// FuzzMutate feeds Pod JSON to Mutate as CREATE or UPDATE under every configuration. It must never
// panic; a denial must say why; an allowed patch must apply cleanly to the object with the JSONPatch
// library the API server uses; the result must need no further patch, and on CREATE it must pass
// Validate.
func FuzzMutate(f *testing.F) {
	for _, p := range seedPods(f) {
		f.Add(p, []byte(nil), "CREATE", "default")
		f.Add(p, p, "UPDATE", "team-a")
	}
	f.Add(mustJSON(f, newPod("class0")), mustJSON(f, newPod("class0", withNodeName("n"))), "UPDATE", "default")
	f.Fuzz(func(t *testing.T, obj, old []byte, op, namespace string) {
		for _, cfg := range fuzzConfigs() {
			r := &admissionv1.AdmissionRequest{
				UID:       testUID,
				Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Namespace: namespace,
				Operation: admissionv1.Operation(op),
				Object:    runtime.RawExtension{Raw: obj},
				OldObject: runtime.RawExtension{Raw: old},
			}
			resp := mutateRequest(cfg, r)
			checkSane(t, resp)
			if !resp.Allowed || len(resp.Patch) == 0 {
				continue
			}
			patch, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatalf("mode %s: undecodable patch %s: %v", cfg.Mode, resp.Patch, err)
			}
			patched, err := patch.Apply(obj)
			if err != nil {
				t.Fatalf("mode %s: patch %s does not apply to %s: %v", cfg.Mode, resp.Patch, obj, err)
			}
			r.Object.Raw = patched
			again := mutateRequest(cfg, r)
			checkSane(t, again)
			if !again.Allowed || len(again.Patch) > 0 {
				t.Fatalf("mode %s: mutating the mutated Pod %s gave allowed=%v patch %s result %v", cfg.Mode, patched, again.Allowed, again.Patch, again.Result)
			}
			if r.Operation == admissionv1.Create {
				if v := validateRequest(cfg, fuzzNodes, r); !v.Allowed {
					t.Fatalf("mode %s: Validate denied the mutated Pod %s: %s", cfg.Mode, patched, v.Result.Message)
				}
			}
		}
	})
}

// FuzzValidate feeds raw AdmissionRequest JSON, as the webhook would decode it from a review, to
// Validate and Mutate. Neither may panic, and every answer must echo the UID and explain a denial.
func FuzzValidate(f *testing.F) {
	for _, p := range seedPods(f) {
		for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete} {
			r := request(f, op, "default", nil, nil, false)
			r.Object.Raw = p
			if op == admissionv1.Update {
				r.OldObject.Raw = mustJSON(f, newPod("class0"))
			}
			f.Add(mustJSON(f, r))
		}
	}
	f.Add([]byte(`{"uid":"x","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"kube-system","object":{"spec":{"tolerations":[{"operator":"Exists"}]}}}`))
	f.Add([]byte(`{"uid":"x","kind":{"kind":"Pod"},"subResource":"status","operation":"UPDATE"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &admissionv1.AdmissionRequest{}
		if err := json.Unmarshal(data, r); err != nil {
			return
		}
		for _, cfg := range fuzzConfigs() {
			for _, decide := range []func(isolation.Config, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse{validateWith(Lookups{Nodes: fuzzNodes, NodeClasses: fuzzClasses}), validateWith(Lookups{Nodes: unsynced, NodeClasses: &fakeClasses{unsynced: true}}), validateWith(Lookups{}), mutateRequest} {
				resp := decide(cfg, r)
				if resp == nil || resp.UID != r.UID {
					t.Fatalf("response %+v does not echo UID %q", resp, r.UID)
				}
				if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "" || resp.Result.Code == http.StatusInternalServerError) {
					t.Fatalf("bad denial %+v", resp.Result)
				}
			}
		}
	})
}

// checkSane fails on a response that no webhook should give: none at all, a lost UID, an internal
// error (a recovered panic), a denial without a message, or a patch on a denial.
func checkSane(t *testing.T, resp *admissionv1.AdmissionResponse) {
	t.Helper()
	if resp == nil {
		t.Fatal("nil response")
	}
	if resp.UID != testUID {
		t.Fatalf("response UID = %q, want %q", resp.UID, testUID)
	}
	if resp.Allowed {
		return
	}
	if resp.Result == nil || resp.Result.Message == "" {
		t.Fatalf("denial without a message: %+v", resp)
	}
	if resp.Result.Code == http.StatusInternalServerError {
		t.Fatalf("internal error: %s", resp.Result.Message)
	}
	if resp.Patch != nil {
		t.Fatalf("denial with a patch: %s", resp.Patch)
	}
}
