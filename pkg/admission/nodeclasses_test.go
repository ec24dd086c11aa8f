package admission

import (
	"errors"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
)

// fakeClasses is a NodeClasses for Validate: NodeClasses by name and namespace labels by name.
type fakeClasses struct {
	classes    map[string]*ippv1alpha1.NodeClass
	namespaces map[string]map[string]string
	unsynced   bool
	// err, when set, is what Get returns for every name.
	err error
}

func (f *fakeClasses) Get(name string) (*ippv1alpha1.NodeClass, error) {
	if f.err != nil {
		return nil, f.err
	}
	if nc, ok := f.classes[name]; ok {
		return nc, nil
	}
	if name == isolation.DefaultNodeClass {
		return nodeclass.Builtin(), nil
	}
	return nil, apierrors.NewNotFound(ippv1alpha1.Resource("nodeclasses"), name)
}

func (f *fakeClasses) NamespaceLabels(name string) (map[string]string, bool) {
	l, ok := f.namespaces[name]
	return l, ok
}

func (f *fakeClasses) HasSynced() bool { return !f.unsynced }

// nodeClassFixture returns a NodeClass named name whose namespaceSelector is sel (nil: none).
func nodeClassFixture(name string, sel *metav1.LabelSelector) *ippv1alpha1.NodeClass {
	return &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "uid-" + types.UID(name)},
		Spec:       ippv1alpha1.NodeClassSpec{Isolation: ippv1alpha1.IsolationClass, NamespaceSelector: sel},
	}
}

// testClasses holds "metal" for namespaces labelled tenant-tier=untrusted, "vm" for every
// namespace, "broken" with a selector that no namespace can match, and no "default" object.
// Namespace "default" has no labels; "team-a" is labelled tenant-tier=untrusted.
func testClasses() *fakeClasses {
	return &fakeClasses{
		classes: map[string]*ippv1alpha1.NodeClass{
			"metal":  nodeClassFixture("metal", &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}}),
			"vm":     nodeClassFixture("vm", nil),
			"broken": nodeClassFixture("broken", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Equals", Values: []string{"a"}}}}),
		},
		namespaces: map[string]map[string]string{
			"default":  {corev1.LabelMetadataName: "default"},
			"team-a":   {corev1.LabelMetadataName: "team-a", "tenant-tier": "untrusted"},
			"team-b":   {corev1.LabelMetadataName: "team-b", "tenant-tier": "trusted"},
			"team-new": nil,
		},
	}
}

// fuzzClasses is the NodeClasses of the fuzzers.
var fuzzClasses = testClasses()

// withNodeClass labels a Pod with the NodeClass name.
func withNodeClass(name string) podOpt { return withLabel(isolation.NodeClassLabel, name) }

func TestValidateNodeClass(t *testing.T) {
	cfg := isolation.DefaultConfig()
	// pinned returns an IPP Pod of class0 in namespace ns with its whole pin (the default
	// placement's, --placement=controller) and opts.
	pinned := func(ns string, opts ...podOpt) *corev1.Pod {
		return newPod("class0", append([]podOpt{controllerPin(cfg.ClassKey(ns, "class0"))}, opts...)...)
	}
	// placed returns an IPP Pod of class0 in namespace ns that the controller placed on a node of
	// its class and that is bound there, with opts.
	placed := func(ns string, opts ...podOpt) *corev1.Pod {
		const node = "ipp-class0-0123456789abcdef"
		return newPod("class0", append([]podOpt{keyPin(cfg.ClassKey(ns, "class0")), withRequired(fieldsTerm(node)), withNodeName(node)}, opts...)...)
	}
	withDefault := testClasses()
	withDefault.classes[isolation.DefaultNodeClass] = nodeClassFixture(isolation.DefaultNodeClass, &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "trusted"}})

	tests := []struct {
		name      string
		cfg       func(*isolation.Config)
		op        admissionv1.Operation
		namespace string
		pod, old  *corev1.Pod
		// classes is what Validate gets; nil means testClasses().
		classes    NodeClasses
		noClasses  bool // Validate gets no NodeClasses (--watch-node-classes=false)
		wantDenied []string
		wantCode   int32
	}{
		// CREATE of IPP Pods in dedicated mode.
		{name: "no label and no default object: the builtin default", namespace: "default", pod: pinned("default")},
		{name: "an empty label is the default", namespace: "default", pod: pinned("default", withNodeClass(""))},
		{name: "a NodeClass without namespaceSelector", namespace: "default", pod: pinned("default", withNodeClass("vm"))},
		{name: "a namespace inside the namespaceSelector", namespace: "team-a", pod: pinned("team-a", withNodeClass("metal"))},
		{name: "an unknown NodeClass is denied", namespace: "team-a", pod: pinned("team-a", withNodeClass("gold")),
			wantDenied: []string{`NodeClass "gold" does not exist (label ipp.io/node-class on a Pod in namespace "team-a")`, "kubectl get nodeclasses"}},
		{name: "a namespace outside the namespaceSelector is denied", namespace: "team-b", pod: pinned("team-b", withNodeClass("metal")),
			wantDenied: []string{`NodeClass "metal" may not be used in namespace "team-b"`, "namespaceSelector tenant-tier=untrusted"}},
		{name: "a namespace without labels is outside the namespaceSelector", namespace: "team-new", pod: pinned("team-new", withNodeClass("metal")),
			wantDenied: []string{`NodeClass "metal" may not be used in namespace "team-new"`}},
		{name: "an invalid namespaceSelector admits no namespace", namespace: "team-a", pod: pinned("team-a", withNodeClass("broken")),
			wantDenied: []string{`NodeClass "broken" may not be used in namespace "team-a"`, "invalid namespaceSelector", "Ask the cluster admin"}},
		{name: "a namespace not seen yet: retry", namespace: "team-c", pod: pinned("team-c", withNodeClass("metal")), wantCode: http.StatusServiceUnavailable,
			wantDenied: []string{`has not yet seen namespace "team-c", so it cannot tell whether NodeClass "metal" may be used there: retry`}},
		{name: "a NodeClass without selector needs no namespace", namespace: "team-c", pod: pinned("team-c", withNodeClass("vm"))},
		{name: "a default object with a namespaceSelector applies to Pods without the label", namespace: "team-a", classes: withDefault, pod: pinned("team-a"),
			wantDenied: []string{`NodeClass "default" may not be used in namespace "team-a"`}},
		{name: "a default object admits its namespaces", namespace: "team-b", classes: withDefault, pod: pinned("team-b")},
		{name: "before the caches sync: retry", namespace: "default", classes: &fakeClasses{unsynced: true}, pod: pinned("default"), wantCode: http.StatusServiceUnavailable,
			wantDenied: []string{`not yet loaded the NodeClasses and namespaces, so it cannot tell whether NodeClass "default" may be used in namespace "default": retry in a few seconds`}},
		{name: "a failing lookup: retry", namespace: "default", classes: &fakeClasses{err: errors.New("boom")}, pod: pinned("default", withNodeClass("vm")), wantCode: http.StatusServiceUnavailable,
			wantDenied: []string{`looking up NodeClass "vm" for a Pod in namespace "default": boom: retry`}},
		{name: "no NodeClasses: no check", namespace: "team-b", noClasses: true, pod: pinned("team-b", withNodeClass("gold"))},
		{name: "exempt namespace is skipped", namespace: "kube-system", pod: newPod("class0", withNodeClass("gold"))},

		// Malformed values: the API server checks label syntax before validating webhooks, but
		// the decision must not rely on it.
		{name: "upper case is no NodeClass name", namespace: "default", pod: pinned("default", withNodeClass("Metal")),
			wantDenied: []string{`NodeClass "Metal" does not exist`, "not a valid NodeClass name", "a lowercase RFC 1123 subdomain"}},
		{name: "an underscore is no NodeClass name", namespace: "default", pod: pinned("default", withNodeClass("my_class")),
			wantDenied: []string{`NodeClass "my_class" does not exist`, "not a valid NodeClass name"}},
		{name: "a slash is no NodeClass name", namespace: "default", pod: pinned("default", withNodeClass("team-a/metal")),
			wantDenied: []string{`NodeClass "team-a/metal" does not exist`}},
		{name: "a quote is quoted", namespace: "default", pod: pinned("default", withNodeClass("a\"b\n")),
			wantDenied: []string{`NodeClass "a\"b\n" does not exist`}},
		{name: "a very long value", namespace: "default", pod: pinned("default", withNodeClass(string(make([]byte, 300)))),
			wantDenied: []string{"does not exist", "not a valid NodeClass name"}},

		// The check is on the NodeClass; the pin is checked after it.
		{name: "an unknown NodeClass on an unmutated Pod names the NodeClass", namespace: "default", pod: newPod("class0", withNodeClass("gold")),
			wantDenied: []string{`NodeClass "gold" does not exist`}},

		// Pods without a class: the label has no effect.
		{name: "no class: the label is allowed", namespace: "default", pod: newPod("", withNodeClass("gold"))},
		{name: "no class: an empty class label is no class", namespace: "default", pod: newPod("", withLabel("ipp-class", ""), withNodeClass("gold"))},

		// Autoscaler mode: NodeClasses do not apply.
		{name: "autoscaler: the label is ignored", cfg: autoscaler, namespace: "team-b", pod: newPod("class0", seedPin("class0"), withNodeClass("gold"))},
		{name: "autoscaler: unsynced NodeClasses do not matter", cfg: autoscaler, classes: &fakeClasses{unsynced: true}, namespace: "default", pod: newPod("class0", seedPin("class0"))},

		// UPDATE.
		{name: "update: the same label is allowed", op: admissionv1.Update, namespace: "team-a",
			pod: pinned("team-a", withNodeClass("metal"), withLabel("v", "2")), old: pinned("team-a", withNodeClass("metal"))},
		{name: "update: a NodeClass deleted since the Pod's creation does not block its updates", op: admissionv1.Update, namespace: "team-a",
			pod: placed("team-a", withNodeClass("gone"), withLabel("v", "2")), old: placed("team-a", withNodeClass("gone"))},
		{name: "update: changing the label is denied", op: admissionv1.Update, namespace: "team-a",
			pod: pinned("team-a", withNodeClass("vm")), old: pinned("team-a", withNodeClass("metal")),
			wantDenied: []string{`the ipp.io/node-class label of an existing IPP Pod cannot be added, removed or changed (it was "metal", the update makes it "vm")`, "delete the Pod and create it again"}},
		{name: "update: adding the label is denied", op: admissionv1.Update, namespace: "team-a",
			pod: pinned("team-a", withNodeClass("metal")), old: pinned("team-a"),
			wantDenied: []string{`(it was absent, the update makes it "metal")`}},
		{name: "update: removing the label is denied", op: admissionv1.Update, namespace: "team-a",
			pod: placed("team-a"), old: placed("team-a", withNodeClass("metal")),
			wantDenied: []string{`(it was "metal", the update makes it absent)`}},
		{name: "update: emptying the label is denied", op: admissionv1.Update, namespace: "default",
			pod: pinned("default", withNodeClass("")), old: pinned("default"),
			wantDenied: []string{`(it was absent, the update makes it "")`}},
		{name: "update: denied without NodeClasses too", op: admissionv1.Update, namespace: "team-a", noClasses: true,
			pod: pinned("team-a", withNodeClass("vm")), old: pinned("team-a", withNodeClass("metal")), wantDenied: []string{"cannot be added, removed or changed"}},
		{name: "update: no class, the label may change", op: admissionv1.Update, namespace: "default",
			pod: newPod("", withNodeClass("vm")), old: newPod("", withNodeClass("metal"))},
		{name: "update: autoscaler mode, the label may change", cfg: autoscaler, op: admissionv1.Update, namespace: "default",
			pod: newPod("class0", seedPin("class0"), withNodeClass("vm")), old: newPod("class0", seedPin("class0"))},
		{name: "update: exempt namespace may change the label", op: admissionv1.Update, namespace: "kube-system",
			pod: newPod("class0", withNodeClass("vm")), old: newPod("class0")},
	}
	for _, tt := range tests {
		for _, dryRun := range []bool{false, true} {
			name := tt.name
			if dryRun {
				name += " (dry-run)"
			}
			t.Run(name, func(t *testing.T) {
				cfg := isolation.DefaultConfig()
				if tt.cfg != nil {
					tt.cfg(&cfg)
				}
				op := tt.op
				if op == "" {
					op = admissionv1.Create
				}
				from := Lookups{Nodes: ippNodes, NodeClasses: tt.classes}
				switch {
				case tt.noClasses:
					from.NodeClasses = nil
				case tt.classes == nil:
					from.NodeClasses = testClasses()
				}
				resp := ValidateReview(cfg, from, &Review{Request: request(t, op, tt.namespace, tt.pod, tt.old, dryRun)})
				checkResponse(t, resp, tt.wantDenied, tt.wantCode)
			})
		}
	}
}

// TestMutateIgnoresNodeClass checks that the mutating webhook gives a Pod its pin whatever its
// NodeClass label says: the NodeClass is for the validating webhook to judge, on the final Pod.
func TestMutateIgnoresNodeClass(t *testing.T) {
	cfg := isolation.DefaultConfig()
	r := request(t, admissionv1.Create, "default", newPod("class0", withNodeClass("gold")), nil, false)
	resp := mutateRequest(cfg, r)
	checkResponse(t, resp, nil, 0)
	if len(resp.Patch) == 0 {
		t.Fatalf("Mutate gave no patch to an IPP Pod with a NodeClass label")
	}
}
