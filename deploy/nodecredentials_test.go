package deploy

import (
	"context"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// The messages of the policy ipp-join-tokens, which the e2e test asserts too.
const (
	msgUpdate   = "ipp may not update Secrets in kube-system: it only creates and deletes its join tokens"
	msgName     = "ipp may create in kube-system only Secrets named bootstrap-token-<token id>"
	msgType     = "ipp may create in kube-system only Secrets of type bootstrap.kubernetes.io/token"
	msgLabel    = "a join token Secret must have the label ipp.io/join-token=true"
	msgKeys     = "a join token Secret may hold only token-id, token-secret, expiration, description, usage-bootstrap-authentication, usage-bootstrap-signing and auth-extra-groups"
	msgGroups   = "auth-extra-groups must be system:bootstrappers:ipp, optionally followed by system:bootstrappers:ipp:<cluster name>, and no other group"
	msgAuth     = "a join token Secret must have usage-bootstrap-authentication \"true\""
	msgSigning  = "usage-bootstrap-signing must be absent, \"true\" or \"false\""
	msgExpiry   = "a join token Secret must have an expiration"
	msgDelete   = "ipp may delete in kube-system only its join tokens: Secrets bootstrap-token-* of type bootstrap.kubernetes.io/token with the label ipp.io/join-token=true"
	ippUsername = "system:serviceaccount:ipp-system:ipp"
)

// policyEvaluator evaluates a ValidatingAdmissionPolicy's matchConditions, variables and
// validations as the apiserver's ValidatingAdmissionPolicy plugin does (its compilePolicy, with
// the same packages), without an apiserver. matchConstraints and the binding are checked as
// objects in checkJoinTokenPolicy.
type policyEvaluator struct {
	validator validating.Validator
}

// compilePolicy compiles p as the apiserver of version ver would accept it when p is created (the
// NewExpressions environment, which is stricter than the stored one), and fails on any compile
// error.
func compilePolicy(t testing.TB, p *admissionregistrationv1.ValidatingAdmissionPolicy, ver *version.Version) policyEvaluator {
	t.Helper()
	mode := environment.NewExpressions
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(ver))
	if err != nil {
		t.Fatalf("CEL compiler: %v", err)
	}
	decls := plugincel.OptionalVariableDeclarations{HasParams: p.Spec.ParamKind != nil, HasAuthorizer: true}
	for _, v := range p.Spec.Variables {
		if res := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, decls, mode); res.Error != nil {
			t.Fatalf("Kubernetes %s: variable %s: %v", ver, v.Name, res.Error)
		}
	}
	var match []plugincel.ExpressionAccessor
	for i := range p.Spec.MatchConditions {
		match = append(match, (*matchconditions.MatchCondition)(&p.Spec.MatchConditions[i]))
	}
	var validations, messages []plugincel.ExpressionAccessor
	for _, v := range p.Spec.Validations {
		validations = append(validations, &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason})
		var m plugincel.ExpressionAccessor
		if v.MessageExpression != "" {
			m = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
		messages = append(messages, m)
	}
	matchCond := compiler.CompileCondition(match, decls, mode)
	validationCond := compiler.CompileCondition(validations, decls, mode)
	messageCond := compiler.CompileCondition(messages, plugincel.OptionalVariableDeclarations{HasParams: decls.HasParams}, mode)
	auditCond := compiler.CompileCondition(nil, decls, mode)
	for _, c := range []plugincel.ConditionEvaluator{matchCond, validationCond, messageCond} {
		for _, err := range c.CompilationErrors() {
			t.Errorf("Kubernetes %s: %v", ver, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	matcher := matchconditions.NewMatcher(matchCond, p.Spec.FailurePolicy, "policy", "validate", p.Name)
	return policyEvaluator{validating.NewValidator(validationCond, matcher, auditCond, messageCond, p.Spec.FailurePolicy, nil)}
}

// policyVersions are the Kubernetes versions the policies are evaluated for: the oldest with
// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy, and the one the apiserver packages
// here are from.
func policyVersions() []*version.Version {
	return []*version.Version{version.MajorMinor(1, 30), environment.DefaultCompatibilityVersion()}
}

// forEachVersion compiles policy for every policyVersions entry first (compilePolicy stops a
// test that has already failed), then calls check with each evaluator, named by its version.
func forEachVersion(t *testing.T, policy *admissionregistrationv1.ValidatingAdmissionPolicy, check func(ver string, eval policyEvaluator)) {
	t.Helper()
	versions := policyVersions()
	var evals []policyEvaluator
	for _, ver := range versions {
		evals = append(evals, compilePolicy(t, policy, ver))
	}
	for i, ver := range versions {
		check(ver.String(), evals[i])
	}
}

// denials returns the messages of the validations that deny the request on a Secret in
// kube-system, or of the errors that deny it under failurePolicy Fail; none if the policy admits
// it or does not match it.
func (e policyEvaluator) denials(t *testing.T, op admission.Operation, username string, obj, old *corev1.Secret) []string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, Labels: map[string]string{corev1.LabelMetadataName: metav1.NamespaceSystem}}}
	return e.evaluate(op, username, "Secret", "secrets", ns, asObject(obj), asObject(old))
}

// asObject returns p as a runtime.Object, nil for a nil pointer (a typed nil would be a non-nil
// runtime.Object).
func asObject[T interface {
	*corev1.Secret | *corev1.Node | *corev1.Pod
	runtime.Object
}](p T) runtime.Object {
	if p == nil {
		return nil
	}
	return p
}

// evaluate runs the policy on a request of username on a core object of kind (resource), in
// namespace ns (nil for a cluster-scoped kind), and returns the messages of the denials.
func (e policyEvaluator) evaluate(op admission.Operation, username, kind, resource string, ns *corev1.Namespace, object, oldObject runtime.Object) []string {
	gvk := corev1.SchemeGroupVersion.WithKind(kind)
	gvr := corev1.SchemeGroupVersion.WithResource(resource)
	name, namespace := "", ""
	for _, o := range []runtime.Object{object, oldObject} {
		if o != nil {
			name = o.(metav1.Object).GetName()
		}
	}
	if ns != nil {
		namespace = ns.Name
	}
	attr := admission.NewAttributesRecord(object, oldObject, gvk, namespace, name, gvr, "", op, nil, false, &user.DefaultInfo{Name: username})
	va := &admission.VersionedAttributes{
		Attributes:         attr,
		VersionedKind:      gvk,
		VersionedObject:    admission.NewLazyObject(object),
		VersionedOldObject: admission.NewLazyObject(oldObject),
	}
	res := e.validator.Validate(context.Background(), gvr, va, nil, ns, celconfig.RuntimeCELCostBudget, nil)
	var out []string
	for _, d := range res.Decisions {
		if d.Action == validating.ActionDeny {
			msg := d.Message
			if d.Evaluation == validating.EvalError {
				msg = "error: " + msg
			}
			out = append(out, msg)
		}
	}
	return out
}

// asAdmitted returns s as admission sees it: the apiserver merges stringData into data (bytes)
// before admission.
// mustSecret is jointoken.Secret for a valid cluster name.
func mustSecret(t *testing.T, tok jointoken.Token, cluster, nodeName string, expires time.Time) *corev1.Secret {
	t.Helper()
	s, err := jointoken.Secret(tok, cluster, nodeName, expires)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func asAdmitted(s *corev1.Secret) *corev1.Secret {
	s = s.DeepCopy()
	if len(s.StringData) > 0 && s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
	return s
}

// TestJoinTokenPolicy evaluates the policy ipp-join-tokens of the rendered base against the
// Secret the controller mints and against what a compromised ipp might send instead.
func TestJoinTokenPolicy(t *testing.T) {
	policy := joinTokenPolicy(t, decode(t, render(t, "base")))

	minted := asAdmitted(mustSecret(t, jointoken.Token{ID: "abcdef", Secret: "0123456789abcdef"}, "my-cluster", "ipp-my-cluster-demo-1", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)))
	with := func(f func(s *corev1.Secret)) *corev1.Secret {
		s := minted.DeepCopy()
		f(s)
		return s
	}
	groups := func(g string) *corev1.Secret {
		return with(func(s *corev1.Secret) { s.Data["auth-extra-groups"] = []byte(g) })
	}
	other := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cloud-credentials", Namespace: metav1.NamespaceSystem},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"key": []byte("x")},
	}
	kubeadmToken := with(func(s *corev1.Secret) {
		s.Labels = nil
		s.Data["auth-extra-groups"] = []byte("system:bootstrappers:kubeadm:default-node-token")
		s.Data["usage-bootstrap-signing"] = []byte("true")
	})

	tests := []struct {
		name     string
		op       admission.Operation
		user     string
		obj, old *corev1.Secret
		want     []string
	}{
		{name: "the Secret the controller mints", op: admission.Create, obj: minted},
		{name: "the cluster's group after IPP's", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:my-cluster")},
		{name: "only IPP's group", op: admission.Create, obj: groups("system:bootstrappers:ipp")},
		{name: "signing explicitly false", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["usage-bootstrap-signing"] = []byte("false") })},
		{name: "fractional seconds and an offset in the expiration", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["expiration"] = []byte("2030-01-02T03:04:05.5+02:00") })},

		{name: "a cluster name of 63 characters", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:" + strings.Repeat("a", 63))},
		{name: "a cluster name too long to decode", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:" + strings.Repeat("a", 71)), want: []string{msgGroups}},
		{name: "a cluster name with upper case", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:My-cluster"), want: []string{msgGroups}},
		{name: "a cluster name with a byte beyond ASCII", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:caf\u00e9"), want: []string{msgGroups}},
		{name: "kubeadm's auto-approved group", op: admission.Create, obj: groups("system:bootstrappers:kubeadm:default-node-token"), want: []string{msgGroups}},
		{name: "kubeadm's group after IPP's", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:kubeadm:default-node-token"), want: []string{msgGroups}},
		{name: "system:masters after IPP's", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:masters"), want: []string{msgGroups}},
		{name: "a third group", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:a,system:bootstrappers:ipp:b"), want: []string{msgGroups}},
		{name: "the cluster's group first", op: admission.Create, obj: groups("system:bootstrappers:ipp:my-cluster,system:bootstrappers:ipp"), want: []string{msgGroups}},
		{name: "a space after the comma", op: admission.Create, obj: groups("system:bootstrappers:ipp, system:bootstrappers:ipp:my-cluster"), want: []string{msgGroups}},
		{name: "a prefix of IPP's group", op: admission.Create, obj: groups("system:bootstrappers:ippx"), want: []string{msgGroups}},
		{name: "a group below the cluster's", op: admission.Create, obj: groups("system:bootstrappers:ipp,system:bootstrappers:ipp:my-cluster:x"), want: []string{msgGroups}},
		{name: "an empty second group", op: admission.Create, obj: groups("system:bootstrappers:ipp,"), want: []string{msgGroups}},
		{name: "no extra groups", op: admission.Create, obj: with(func(s *corev1.Secret) { delete(s.Data, "auth-extra-groups") }), want: []string{msgGroups}},
		{name: "an empty auth-extra-groups", op: admission.Create, obj: groups(""), want: []string{msgGroups}},
		{name: "another name", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Name = "bootstrap-signer-abcdef" }), want: []string{msgName}},
		{name: "a token id of the wrong length", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Name = "bootstrap-token-abcdefg" }), want: []string{msgName}},
		{name: "an Opaque Secret of the right name", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }), want: []string{msgType}},
		{name: "a service account token", op: admission.Create, obj: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef", Namespace: metav1.NamespaceSystem, Labels: minted.Labels,
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "clusterrole-aggregation-controller"}},
			Type: corev1.SecretTypeServiceAccountToken,
		}, want: []string{msgType, msgGroups, msgAuth, msgExpiry}},
		{name: "without the label", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Labels = nil }), want: []string{msgLabel}},
		{name: "the label not true", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Labels = map[string]string{"ipp.io/join-token": "yes"} }), want: []string{msgLabel}},
		{name: "another usage", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["usage-bootstrap-future"] = []byte("true") }), want: []string{msgKeys}},
		{name: "not for authentication", op: admission.Create, obj: with(func(s *corev1.Secret) { delete(s.Data, "usage-bootstrap-authentication") }), want: []string{msgAuth}},
		{name: "authentication not true", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["usage-bootstrap-authentication"] = []byte("True") }), want: []string{msgAuth}},
		{name: "signing absent", op: admission.Create, obj: with(func(s *corev1.Secret) { delete(s.Data, "usage-bootstrap-signing") })},
		{name: "signing something else", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["usage-bootstrap-signing"] = []byte("yes") }), want: []string{msgSigning}},
		{name: "no expiration", op: admission.Create, obj: with(func(s *corev1.Secret) { delete(s.Data, "expiration") }), want: []string{msgExpiry}},
		{name: "a nil expiration", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["expiration"] = nil }), want: []string{msgExpiry}},
		{name: "an empty expiration", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["expiration"] = []byte{} }), want: []string{msgExpiry}},
		{name: "nil extra groups", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data["auth-extra-groups"] = nil }), want: []string{msgGroups}},
		{name: "no data at all", op: admission.Create, obj: with(func(s *corev1.Secret) { s.Data = nil }), want: []string{msgGroups, msgAuth, msgExpiry}},
		{name: "kubeadm's token", op: admission.Create, obj: kubeadmToken, want: []string{msgLabel, msgGroups}},
		{name: "another Secret", op: admission.Create, obj: other, want: []string{msgName, msgType, msgLabel, msgKeys, msgGroups, msgAuth, msgExpiry}},

		{name: "updating its own token", op: admission.Update, obj: groups("system:bootstrappers:ipp,system:masters"), old: minted, want: []string{msgUpdate}},
		{name: "updating an unchanged token", op: admission.Update, obj: minted, old: minted, want: []string{msgUpdate}},
		{name: "updating another Secret", op: admission.Update, obj: other, old: other, want: []string{msgUpdate}},

		{name: "deleting its token", op: admission.Delete, old: minted},
		{name: "deleting kubeadm's token", op: admission.Delete, old: kubeadmToken, want: []string{msgDelete}},
		{name: "deleting another Secret", op: admission.Delete, old: other, want: []string{msgDelete}},
		{name: "deleting another Secret labelled as a join token", op: admission.Delete, old: with(func(s *corev1.Secret) { s.Name, s.Type = "cloud-credentials", corev1.SecretTypeOpaque }), want: []string{msgDelete}},

		{name: "another user creates anything", op: admission.Create, user: "kubernetes-admin", obj: other},
		{name: "kube-controller-manager's tokencleaner deletes a token", op: admission.Delete, user: "system:serviceaccount:kube-system:token-cleaner", old: kubeadmToken},
		{name: "another ServiceAccount named ipp", op: admission.Update, user: "system:serviceaccount:default:ipp", obj: other, old: other},
	}
	// The policy must compile on the oldest Kubernetes with admissionregistration.k8s.io/v1
	// ValidatingAdmissionPolicy, and on the one the apiserver packages here are from.
	forEachVersion(t, policy, func(ver string, eval policyEvaluator) {
		for _, tc := range tests {
			t.Run(ver+"/"+tc.name, func(t *testing.T) {
				username := tc.user
				if username == "" {
					username = ippUsername
				}
				got := eval.denials(t, tc.op, username, tc.obj, tc.old)
				if diff := cmp.Diff(tc.want, got, cmpEmptySlice); diff != "" {
					t.Errorf("denials (-want +got):\n%s", diff)
				}
			})
		}
	})
}

var cmpEmptySlice = cmp.FilterValues(func(a, b []string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// TestJoinTokenPolicyMessages keeps the messages above, which the e2e test asserts, equal to the
// policy's.
func TestJoinTokenPolicyMessages(t *testing.T) {
	policy := joinTokenPolicy(t, decode(t, render(t, "base")))
	var got []string
	for _, v := range policy.Spec.Validations {
		got = append(got, v.Message)
	}
	want := []string{msgUpdate, msgName, msgType, msgLabel, msgKeys, msgGroups, msgAuth, msgSigning, msgExpiry, msgDelete}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	for _, v := range policy.Spec.Validations {
		if v.Reason == nil || *v.Reason != metav1.StatusReasonForbidden {
			t.Errorf("validation %q: reason %v, want Forbidden", v.Message, v.Reason)
		}
	}
}

// checkNodeCredentials checks the RBAC of node credentials (node-credentials.yaml and the CSR
// rules of the ClusterRole ipp) rule by rule.
func checkNodeCredentials(t *testing.T, r rendered) {
	t.Helper()
	sa := one[*corev1.ServiceAccount](t, r)
	ippSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}}

	role := named[*rbacv1.Role](t, r, metav1.NamespaceSystem, "ipp-join-tokens")
	wantRole := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "delete"}}}
	if diff := cmp.Diff(wantRole, role.Rules); diff != "" {
		t.Errorf("Role kube-system/ipp-join-tokens rules (-want +got):\n%s", diff)
	}
	rb := named[*rbacv1.RoleBinding](t, r, metav1.NamespaceSystem, "ipp-join-tokens")
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}, rb.RoleRef); diff != "" {
		t.Errorf("RoleBinding kube-system/ipp-join-tokens roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ippSubjects, rb.Subjects); diff != "" {
		t.Errorf("RoleBinding kube-system/ipp-join-tokens subjects (-want +got):\n%s", diff)
	}

	// The journal of the tokens minted, where the controller finds orphans: create (a name is not
	// known when a create is authorized), and get and patch of that one ConfigMap. Never a list,
	// and nothing on Secrets beyond create and delete: the controller reads no Secret.
	var journalRules []rbacv1.PolicyRule
	for _, rule := range named[*rbacv1.Role](t, r, "ipp-system", "ipp").Rules {
		if slices.Contains(rule.Resources, "configmaps") {
			journalRules = append(journalRules, rule)
		}
	}
	wantJournal := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{controller.JournalName}, Verbs: []string{"get", "patch"}},
	}
	if diff := cmp.Diff(wantJournal, journalRules); diff != "" {
		t.Errorf("Role ipp-system/ipp configmaps rules (-want +got):\n%s", diff)
	}

	var csrRules []rbacv1.PolicyRule
	for _, rule := range named[*rbacv1.ClusterRole](t, r, "", "ipp").Rules {
		if slices.Contains(rule.APIGroups, "certificates.k8s.io") {
			csrRules = append(csrRules, rule)
		}
	}
	wantCSR := []rbacv1.PolicyRule{
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{"kubernetes.io/kube-apiserver-client-kubelet"}, Verbs: []string{"approve"}},
	}
	if diff := cmp.Diff(wantCSR, csrRules); diff != "" {
		t.Errorf("ClusterRole ipp certificates.k8s.io rules (-want +got):\n%s", diff)
	}

	crb := named[*rbacv1.ClusterRoleBinding](t, r, "", "ipp-node-bootstrappers")
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"}, crb.RoleRef); diff != "" {
		t.Errorf("ClusterRoleBinding ipp-node-bootstrappers roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: jointoken.Group}}, crb.Subjects); diff != "" {
		t.Errorf("ClusterRoleBinding ipp-node-bootstrappers subjects (-want +got):\n%s", diff)
	}
	// Nothing else is bound to a bootstrap group: above all not node client auto-approval.
	bindings := map[string][]rbacv1.Subject{}
	for _, b := range only[*rbacv1.ClusterRoleBinding](t, r) {
		bindings["ClusterRoleBinding "+b.Name+" to "+b.RoleRef.Name] = b.Subjects
		if strings.Contains(b.RoleRef.Name, "certificatesigningrequests:") {
			t.Errorf("ClusterRoleBinding %s binds %s", b.Name, b.RoleRef.Name)
		}
	}
	for _, b := range only[*rbacv1.RoleBinding](t, r) {
		bindings["RoleBinding "+b.Namespace+"/"+b.Name+" to "+b.RoleRef.Name] = b.Subjects
	}
	for what, subjects := range bindings {
		for _, s := range subjects {
			if strings.HasPrefix(s.Name, "system:bootstrap") && what != "ClusterRoleBinding ipp-node-bootstrappers to system:node-bootstrapper" {
				t.Errorf("%s binds %s %s", what, s.Kind, s.Name)
			}
		}
	}
}

// joinTokenPolicy returns the ValidatingAdmissionPolicy ipp-join-tokens.
func joinTokenPolicy(t *testing.T, r rendered) *admissionregistrationv1.ValidatingAdmissionPolicy {
	t.Helper()
	return named[*admissionregistrationv1.ValidatingAdmissionPolicy](t, r, "", "ipp-join-tokens")
}

// checkJoinTokenPolicy checks what the policy ipp-join-tokens and its binding match; its
// expressions are evaluated by TestJoinTokenPolicy.
func checkJoinTokenPolicy(t *testing.T, r rendered) {
	t.Helper()
	checkServiceAccountPolicy(t, r, joinTokenPolicy(t, r), &admissionregistrationv1.MatchResources{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: metav1.NamespaceSystem}},
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"},
					Scope: ptr(admissionregistrationv1.NamespacedScope),
				},
			},
		}},
		MatchPolicy: ptr(admissionregistrationv1.Equivalent),
	})
}

// checkServiceAccountPolicy checks a policy of ipp's: bound with Deny, failing closed, no
// parameters, matching wantMatch, and only requests of the ipp ServiceAccount (the one the
// Deployment runs as). Its expressions are evaluated by the policy's own test.
func checkServiceAccountPolicy(t *testing.T, r rendered, p *admissionregistrationv1.ValidatingAdmissionPolicy, wantMatch *admissionregistrationv1.MatchResources) {
	t.Helper()
	b := named[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, r, "", p.Name)
	wantBinding := admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
		PolicyName:        p.Name,
		ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
	}
	if diff := cmp.Diff(wantBinding, b.Spec); diff != "" {
		t.Errorf("ValidatingAdmissionPolicyBinding %s (-want +got):\n%s", b.Name, diff)
	}
	if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("policy %s: failurePolicy %v, want Fail", p.Name, p.Spec.FailurePolicy)
	}
	if p.Spec.ParamKind != nil {
		t.Errorf("policy %s: paramKind %v, want none (the binding has no paramRef)", p.Name, p.Spec.ParamKind)
	}
	if diff := cmp.Diff(wantMatch, p.Spec.MatchConstraints); diff != "" {
		t.Errorf("policy %s: matchConstraints (-want +got):\n%s", p.Name, diff)
	}
	sa := one[*corev1.ServiceAccount](t, r)
	wantConditions := []admissionregistrationv1.MatchCondition{{
		Name:       "ipp-service-account",
		Expression: "request.userInfo.username == 'system:serviceaccount:" + sa.Namespace + ":" + sa.Name + "'",
	}}
	if diff := cmp.Diff(wantConditions, p.Spec.MatchConditions); diff != "" {
		t.Errorf("policy %s: matchConditions (-want +got):\n%s", p.Name, diff)
	}
}

// TestJoinTokenPolicyGroups compares the policy's verdict on auth-extra-groups, which it decodes
// from base64 in CEL, with the rule written in Go, on many values near the allowed ones.
func TestJoinTokenPolicyGroups(t *testing.T) {
	eval := compilePolicy(t, joinTokenPolicy(t, decode(t, render(t, "base"))), environment.DefaultCompatibilityVersion())
	clusterGroup := regexp.MustCompile(`^system:bootstrappers:ipp:[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	allowed := func(v string) bool {
		groups := strings.Split(v, ",")
		if len(v) > 120 || len(groups) > 2 || groups[0] != jointoken.Group {
			return false
		}
		for _, g := range groups[1:] {
			if !clusterGroup.MatchString(g) {
				return false
			}
		}
		return true
	}
	minted := asAdmitted(mustSecret(t, jointoken.Token{ID: "abcdef", Secret: "0123456789abcdef"}, "ipp", "n", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)))
	prefixes := []string{"", jointoken.Group, jointoken.Group + ",", jointoken.Group + ",system:bootstrappers:ipp:", "system:bootstrappers:", "system:bootstrappers:ipp:"}
	alphabet := []rune("abz09-:,A .é\x00")
	rnd := rand.New(rand.NewPCG(1, 2))
	allowedSeen := 0
	for range 3000 {
		var b strings.Builder
		b.WriteString(prefixes[rnd.IntN(len(prefixes))])
		for range rnd.IntN(75) {
			b.WriteRune(alphabet[rnd.IntN(len(alphabet))])
		}
		v := b.String()
		if rnd.IntN(4) == 0 { // Often a well-formed cluster name, of any length.
			v = jointoken.Group + ",system:bootstrappers:ipp:" + strings.Repeat("a", rnd.IntN(80)) + "z"
		}
		s := minted.DeepCopy()
		s.Data["auth-extra-groups"] = []byte(v)
		got := eval.denials(t, admission.Create, ippUsername, s, nil)
		want := []string{msgGroups}
		if allowed(v) {
			want = nil
			allowedSeen++
		}
		if diff := cmp.Diff(want, got, cmpEmptySlice); diff != "" {
			t.Errorf("auth-extra-groups %q: denials (-want +got):\n%s", v, diff)
		}
	}
	if allowedSeen < 100 {
		t.Errorf("only %d allowed values generated; the test proves little", allowedSeen)
	}
}
