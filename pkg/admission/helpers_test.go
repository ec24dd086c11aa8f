package admission

import (
	"encoding/json"
	"slices"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// Test fixtures. Node names of the default configuration are the golden values of
// pkg/isolation's TestNodeNameGolden, written out so that a change to either shows here.
const (
	testUID    = "7c9c1f5e-0000-4000-8000-000000000001"
	nodeClass0 = "ipp-class0-cb543558de22" // cluster ipp, namespace default, class class0
	binding    = isolation.BindingLabel
	// keyClass0 is the class key of the same class: pkg/isolation's TestClassKeyGolden.
	keyClass0 = "class0-85be5d4217f9e2d35e2a617d7a845831"
	classLbl  = isolation.ClassLabel
)

var (
	tolNoSchedule = corev1.Toleration{Key: "ipp", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}
	tolNoExecute  = corev1.Toleration{Key: "ipp", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoExecute}
	tolOther      = corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	tolAll        = corev1.Toleration{Operator: corev1.TolerationOpExists}
)

// poolNode is the IPP node of ippNodes.
const poolNode = "ipp-pool-0"

// fakeNodes is a node set for Validate.
type fakeNodes struct {
	names    []string
	unsynced bool
}

func (f *fakeNodes) Has(name string) bool { return slices.Contains(f.names, name) }
func (f *fakeNodes) HasSynced() bool      { return !f.unsynced }

var (
	// ippNodes is a synced node set that holds poolNode.
	ippNodes = &fakeNodes{names: []string{poolNode}}
	// unsynced has not synced yet.
	unsynced = &fakeNodes{unsynced: true}
)

type podOpt func(*corev1.Pod)

// newPod returns a Pod with one container and, when class is not empty, the class label.
func newPod(class string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/web:1", Env: []corev1.EnvVar{{Name: "MODE", Value: "prod"}},
		}}},
	}
	if class != "" {
		p.Labels[isolation.DefaultPodLabel] = class
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withLabel(k, v string) podOpt { return func(p *corev1.Pod) { p.Labels[k] = v } }

func withoutLabel(k string) podOpt { return func(p *corev1.Pod) { delete(p.Labels, k) } }

func withTolerations(ts ...corev1.Toleration) podOpt {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, ts...) }
}

func withNodeSelector(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func withNodeName(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func withOwner(kind, name string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: "u1", Controller: ptr.To(true)})
	}
}

func withGate(name string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.SchedulingGates = append(p.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: name})
	}
}

func affinity(p *corev1.Pod) *corev1.Affinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	return p.Spec.Affinity
}

func nodeAffinity(p *corev1.Pod) *corev1.NodeAffinity {
	a := affinity(p)
	if a.NodeAffinity == nil {
		a.NodeAffinity = &corev1.NodeAffinity{}
	}
	return a.NodeAffinity
}

// withRequired appends required node-affinity terms.
func withRequired(terms ...corev1.NodeSelectorTerm) podOpt {
	return func(p *corev1.Pod) {
		na := nodeAffinity(p)
		if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
		}
		na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = append(na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms, terms...)
	}
}

func withPreferred(weight int32, term corev1.NodeSelectorTerm) podOpt {
	return func(p *corev1.Pod) {
		na := nodeAffinity(p)
		na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution, corev1.PreferredSchedulingTerm{Weight: weight, Preference: term})
	}
}

func withAnti(terms ...corev1.PodAffinityTerm) podOpt {
	return func(p *corev1.Pod) {
		a := affinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, terms...)
	}
}

func withPodAffinity(term corev1.PodAffinityTerm) podOpt {
	return func(p *corev1.Pod) {
		affinity(p).PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}}
	}
}

func req(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func exprTerm(reqs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: reqs}
}

func nameIn(node string) corev1.NodeSelectorRequirement {
	return req(isolation.NodeNameField, corev1.NodeSelectorOpIn, node)
}

// fieldsTerm is the term that the dedicated pin adds when the Pod has none.
func fieldsTerm(node string) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{nameIn(node)}}
}

var ippIn = req("ipp", corev1.NodeSelectorOpIn, "true")

// antiTerm is the autoscaler mode's anti-affinity term for class.
func antiTerm(class string) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "ipp-class", Operator: metav1.LabelSelectorOpNotIn, Values: []string{class}},
		}},
		TopologyKey: "kubernetes.io/hostname",
	}
}

// dedicatedPin gives p everything the dedicated mode adds for node, to build expectations of Pods
// that had none of it.
func dedicatedPin(node string) podOpt {
	return func(p *corev1.Pod) {
		withTolerations(tolNoSchedule, tolNoExecute)(p)
		withNodeSelector(binding, node)(p)
		withRequired(fieldsTerm(node))(p)
	}
}

// keyPin gives p the pin of --placement=controller for key, without the gate: the tolerations
// and the class-key nodeSelector. It is what a Pod carries once the gate is lifted.
func keyPin(key string) podOpt {
	return func(p *corev1.Pod) {
		withTolerations(tolNoSchedule, tolNoExecute, isolation.NotReadyToleration())(p)
		withNodeSelector(classLbl, key)(p)
	}
}

// controllerPin gives p everything --placement=controller adds on CREATE for key: keyPin and the
// placement gate.
func controllerPin(key string) podOpt {
	return func(p *corev1.Pod) {
		keyPin(key)(p)
		withGate(placement.Gate)(p)
	}
}

// seedPin gives p the autoscaler mode's mutation, for Pods that had none of it: the seed's, with
// the NoExecute toleration added.
func seedPin(class string) podOpt {
	return func(p *corev1.Pod) {
		withTolerations(tolNoSchedule, tolNoExecute)(p)
		withRequired(exprTerm(ippIn))(p)
		withAnti(antiTerm(class))(p)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	return b
}

// request builds the AdmissionRequest the API server would send for a Pod in namespace.
func request(t testing.TB, op admissionv1.Operation, namespace string, obj, old *corev1.Pod, dryRun bool) *admissionv1.AdmissionRequest {
	r := &admissionv1.AdmissionRequest{
		UID:       testUID,
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Name:      "web-0",
		Namespace: namespace,
		Operation: op,
		DryRun:    ptr.To(dryRun),
	}
	if obj != nil {
		r.Object = runtime.RawExtension{Raw: mustJSON(t, obj)}
	}
	if old != nil {
		r.OldObject = runtime.RawExtension{Raw: mustJSON(t, old)}
	}
	return r
}

// applyPatch applies resp's patch to raw with the JSONPatch library the API server uses, and
// decodes the result.
func applyPatch(t testing.TB, raw []byte, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	out := raw
	if len(resp.Patch) > 0 {
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patch type = %v, want JSONPatch", resp.PatchType)
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("decoding patch %s: %v", resp.Patch, err)
		}
		if out, err = patch.Apply(raw); err != nil {
			t.Fatalf("applying patch %s: %v", resp.Patch, err)
		}
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(out, pod); err != nil {
		t.Fatalf("decoding patched Pod: %v", err)
	}
	return pod
}

// mutateRequest answers req as the webhook does a review that carries it: MutateReview decodes
// the Pods from req.Object and req.OldObject.
func mutateRequest(cfg isolation.Config, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return MutateReview(cfg, &Review{Request: req})
}

// validateRequest is mutateRequest for ValidateReview.
func validateRequest(cfg isolation.Config, nodes Nodes, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return ValidateReview(cfg, Lookups{Nodes: nodes}, &Review{Request: req})
}
