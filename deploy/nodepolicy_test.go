package deploy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// The messages of the policy ipp-nodes, which the e2e test asserts too.
const (
	msgNodeCreate      = "ipp may not create Nodes: kubelets register them"
	msgNodeDelete      = "ipp may delete only IPP Nodes (label ipp=true)"
	msgNodeNotIPP      = "ipp may change only IPP Nodes (label ipp=true)"
	msgNodeLabels      = "ipp may change only the labels node-restriction.kubernetes.io/ipp-* of a Node"
	msgNodeAnnotations = "ipp may change only the annotations ipp.io/* of a Node"
	msgNodeSpec        = "ipp may change only spec.unschedulable of a Node's spec: not its taints, providerID or podCIDRs"
	msgNodeMeta        = "ipp may not change a Node's finalizers or ownerReferences"
)

// nodePolicy returns the ValidatingAdmissionPolicy ipp-nodes.
func nodePolicy(t *testing.T, r rendered) *admissionregistrationv1.ValidatingAdmissionPolicy {
	t.Helper()
	return named[*admissionregistrationv1.ValidatingAdmissionPolicy](t, r, "", "ipp-nodes")
}

// nodeDenials is denials for a Node: the messages of the validations that deny the request.
func (e policyEvaluator) nodeDenials(t *testing.T, op admission.Operation, username string, obj, old *corev1.Node) []string {
	t.Helper()
	return e.evaluate(op, username, "Node", "nodes", nil, asObject(obj), asObject(old))
}

// TestNodePolicy evaluates the policy ipp-nodes of the rendered base against the writes the
// controller makes (pkg/controller: nodes.go, idle.go, sync.go) and against what a stolen ipp
// token might do instead.
func TestNodePolicy(t *testing.T) {
	policy := nodePolicy(t, decode(t, render(t, "base")))
	cfg := isolation.DefaultConfig()
	const name = "ipp-my-cluster-web-0123456789abcdef"

	// An IPP node as its kubelet registers it, and another worker.
	ippNode := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: "6a1b", ResourceVersion: "42",
			Labels: map[string]string{
				cfg.NodeLabel: isolation.LabelValue, corev1.LabelHostname: name,
				corev1.LabelTopologyZone: "us-central1-a", corev1.LabelInstanceTypeStable: "n2-standard-4",
			},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
		},
		Spec: corev1.NodeSpec{
			ProviderID: "gce://my-project/us-central1-a/" + name,
			PodCIDR:    "10.64.3.0/24", PodCIDRs: []string{"10.64.3.0/24"},
			Taints: cfg.Taints(),
		},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	worker := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: "worker-1", UID: "77c0", ResourceVersion: "43",
			Labels:      map[string]string{corev1.LabelHostname: "worker-1", "cloud.google.com/gke-nodepool": "default-pool"},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{ProviderID: "gce://my-project/us-central1-a/worker-1", PodCIDR: "10.64.1.0/24", PodCIDRs: []string{"10.64.1.0/24"}},
	}
	bound := nodeWith(ippNode, func(n *corev1.Node) { n.Labels[isolation.BindingLabel] = name })
	idle := nodeWith(bound, func(n *corev1.Node) { n.Annotations["ipp.io/idle-since"] = "2030-01-02T03:04:05Z" })
	cordoned := nodeWith(idle, func(n *corev1.Node) {
		n.Spec.Unschedulable = true
		n.Annotations["ipp.io/reaping"] = "2030-01-02T03:14:05Z"
		n.Annotations["ipp.io/cordoned"] = "true"
	})

	tests := []struct {
		name     string
		op       admission.Operation
		user     string
		obj, old *corev1.Node
		want     []string
	}{
		// What the controller writes.
		{name: "binding an IPP node", op: admission.Update, old: ippNode, obj: bound},
		{name: "removing the binding of an untrusted IPP node", op: admission.Update, old: bound, obj: ippNode},
		{name: "marking an IPP node idle", op: admission.Update, old: bound, obj: idle},
		{name: "cordoning an idle IPP node to reap it", op: admission.Update, old: idle, obj: cordoned},
		{name: "cancelling the reaping", op: admission.Update, old: cordoned, obj: bound},
		{name: "an update that changes nothing", op: admission.Update, old: bound, obj: bound},
		{name: "deleting a reaped IPP node", op: admission.Delete, old: cordoned},
		{name: "deleting an unbound IPP node", op: admission.Delete, old: ippNode},
		{name: "a v2 class label", op: admission.Update, old: ippNode, obj: nodeWith(ippNode, func(n *corev1.Node) { n.Labels["node-restriction.kubernetes.io/ipp-class"] = "web-0123" })},

		// What a stolen token might do instead.
		{name: "creating a Node", op: admission.Create, obj: ippNode, want: []string{msgNodeCreate}},
		{name: "creating a Node without labels", op: admission.Create, obj: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, want: []string{msgNodeCreate}},
		{name: "deleting another Node", op: admission.Delete, old: worker, want: []string{msgNodeDelete}},
		{name: "deleting a Node labelled ipp=false", op: admission.Delete, old: nodeWith(worker, func(n *corev1.Node) { n.Labels[cfg.NodeLabel] = "false" }), want: []string{msgNodeDelete}},
		{name: "binding another Node", op: admission.Update, old: worker, obj: nodeWith(worker, func(n *corev1.Node) { n.Labels[isolation.BindingLabel] = name }), want: []string{msgNodeNotIPP}},
		{name: "making another Node an IPP node", op: admission.Update, old: worker, obj: nodeWith(worker, func(n *corev1.Node) { n.Labels[cfg.NodeLabel] = isolation.LabelValue }), want: []string{msgNodeNotIPP, msgNodeLabels}},
		{name: "removing another Node's label", op: admission.Update, old: worker, obj: nodeWith(worker, func(n *corev1.Node) { delete(n.Labels, "cloud.google.com/gke-nodepool") }), want: []string{msgNodeNotIPP, msgNodeLabels}},
		{name: "cordoning another Node", op: admission.Update, old: worker, obj: nodeWith(worker, func(n *corev1.Node) { n.Spec.Unschedulable = true }), want: []string{msgNodeNotIPP}},
		{name: "annotating another Node with IPP's annotation", op: admission.Update, old: worker, obj: nodeWith(worker, func(n *corev1.Node) { n.Annotations["ipp.io/reaping"] = "now" }), want: []string{msgNodeNotIPP}},
		{name: "changing an IPP node's zone label", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "us-central1-b" }), want: []string{msgNodeLabels}},
		{name: "adding a label to an IPP node", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Labels["node-role.kubernetes.io/control-plane"] = "" }), want: []string{msgNodeLabels}},
		{name: "adding the trusted label to an IPP node", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Labels["node-restriction.kubernetes.io/trusted"] = "true" }), want: []string{msgNodeLabels}},
		{name: "a label that only looks like IPP's", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Labels["node-restriction.kubernetes.io/ipp"] = "x" }), want: []string{msgNodeLabels}},
		{name: "removing the ipp label", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { delete(n.Labels, cfg.NodeLabel) }), want: []string{msgNodeLabels}},
		{name: "removing all labels", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Labels = nil }), want: []string{msgNodeLabels}},
		{name: "adding a foreign taint", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "example.com/evict", Effect: corev1.TaintEffectNoExecute})
		}), want: []string{msgNodeSpec}},
		{name: "removing IPP's NoExecute taint", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Spec.Taints = n.Spec.Taints[:1] }), want: []string{msgNodeSpec}},
		{name: "removing every taint", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Spec.Taints = nil }), want: []string{msgNodeSpec}},
		{name: "changing the providerID", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Spec.ProviderID = "gce://my-project/us-central1-a/other" }), want: []string{msgNodeSpec}},
		{name: "changing the pod CIDRs", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00::/64") }), want: []string{msgNodeSpec}},
		{name: "removing the pod CIDR", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = "", nil }), want: []string{msgNodeSpec}},
		{name: "changing another annotation", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Annotations["node.alpha.kubernetes.io/ttl"] = "30" }), want: []string{msgNodeAnnotations}},
		{name: "an annotation that only looks like IPP's", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Annotations["ipp.io.example.com/x"] = "1" }), want: []string{msgNodeAnnotations}},
		{name: "removing every annotation", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Annotations = nil }), want: []string{msgNodeAnnotations}},
		{name: "adding a finalizer", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) { n.Finalizers = []string{"example.com/keep"} }), want: []string{msgNodeMeta}},
		{name: "adding an owner", op: admission.Update, old: bound, obj: nodeWith(bound, func(n *corev1.Node) {
			n.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: "x", UID: "1"}}
		}), want: []string{msgNodeMeta}},

		// Others are not concerned.
		{name: "an admin labels a worker", op: admission.Update, user: "kubernetes-admin", old: worker, obj: nodeWith(worker, func(n *corev1.Node) { n.Labels["team"] = "a" })},
		{name: "an admin creates a Node", op: admission.Create, user: "kubernetes-admin", obj: worker},
		{name: "the node lifecycle controller taints an IPP node", op: admission.Update, user: "system:serviceaccount:kube-system:node-controller", old: bound, obj: nodeWith(bound, func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute})
		})},
		{name: "another ServiceAccount named ipp", op: admission.Delete, user: "system:serviceaccount:default:ipp", old: worker},
	}
	forEachVersion(t, policy, func(ver string, eval policyEvaluator) {
		for _, tc := range tests {
			t.Run(ver+"/"+tc.name, func(t *testing.T) {
				username := tc.user
				if username == "" {
					username = ippUsername
				}
				got := eval.nodeDenials(t, tc.op, username, tc.obj, tc.old)
				if diff := cmp.Diff(tc.want, got, cmpEmptySlice); diff != "" {
					t.Errorf("denials (-want +got):\n%s", diff)
				}
			})
		}
	})
}

// nodeWith returns a deep copy of n changed by f.
func nodeWith(n *corev1.Node, f func(*corev1.Node)) *corev1.Node {
	n = n.DeepCopy()
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	f(n)
	return n
}

// TestNodePolicyMessages keeps the messages above, which the e2e test asserts, equal to the
// policy's.
func TestNodePolicyMessages(t *testing.T) {
	policy := nodePolicy(t, decode(t, render(t, "base")))
	var got []string
	for _, v := range policy.Spec.Validations {
		got = append(got, v.Message)
		if v.Reason == nil || *v.Reason != metav1.StatusReasonForbidden {
			t.Errorf("validation %q: reason %v, want Forbidden", v.Message, v.Reason)
		}
	}
	want := []string{msgNodeCreate, msgNodeDelete, msgNodeNotIPP, msgNodeLabels, msgNodeAnnotations, msgNodeSpec, msgNodeMeta}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

// checkNodePolicy checks what the policy ipp-nodes and its binding match; its expressions are
// evaluated by TestNodePolicy.
func checkNodePolicy(t *testing.T, r rendered) {
	t.Helper()
	// Every policy has its binding, of the same name, and there are no others.
	var policies, bindings []string
	for _, p := range only[*admissionregistrationv1.ValidatingAdmissionPolicy](t, r) {
		policies = append(policies, p.Name)
	}
	for _, b := range only[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, r) {
		bindings = append(bindings, b.Name)
	}
	want := []string{"ipp-join-tokens", "ipp-nodes", "ipp-pods"}
	if diff := cmp.Diff(want, policies); diff != "" {
		t.Errorf("ValidatingAdmissionPolicies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, bindings); diff != "" {
		t.Errorf("ValidatingAdmissionPolicyBindings (-want +got):\n%s", diff)
	}

	checkServiceAccountPolicy(t, r, nodePolicy(t, r), &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"nodes"},
					Scope: ptr(admissionregistrationv1.ClusterScope),
				},
			},
		}},
		MatchPolicy: ptr(admissionregistrationv1.Equivalent),
	})
}
