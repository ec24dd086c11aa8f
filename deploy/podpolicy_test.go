package deploy

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatchlib "gopkg.in/evanphx/json-patch.v4"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/isolation"
	ippplacement "github.com/ipp-project/ipp/pkg/placement"
)

// The messages of the policy ipp-pods.
const (
	msgPodCreate      = "ipp may not create Pods: it only places the IPP Pods that wait for it"
	msgPodDelete      = "ipp may not delete Pods: it only places the IPP Pods that wait for it"
	msgPodNotIPP      = "ipp may change only IPP Pods (label ipp-class)"
	msgPodNotGated    = "ipp may change only a Pod that waits for placement (scheduling gate ipp.io/placement)"
	msgPodGates       = "ipp must remove the scheduling gate ipp.io/placement of a Pod it changes, and may not add, remove or reorder any other gate"
	msgPodLabels      = "ipp may not change a Pod's labels"
	msgPodAnnotations = "ipp may not change a Pod's annotations"
	msgPodMeta        = "ipp may not change a Pod's finalizers or ownerReferences"
	msgPodSpec        = "ipp may change only spec.schedulingGates and spec.affinity of a Pod's spec: not its nodeSelector, tolerations, containers or any other field"
	msgPodAffinity    = "ipp may change only the required node affinity of a Pod's affinity: not its podAffinity, podAntiAffinity or preferred node affinity"
)

// podPolicy returns the ValidatingAdmissionPolicy ipp-pods.
func podPolicy(t testing.TB, r rendered) *admissionregistrationv1.ValidatingAdmissionPolicy {
	t.Helper()
	return named[*admissionregistrationv1.ValidatingAdmissionPolicy](t, r, "", "ipp-pods")
}

// podDenials is denials for a Pod in its namespace.
func (e policyEvaluator) podDenials(t testing.TB, op admission.Operation, username string, obj, old *corev1.Pod) []string {
	t.Helper()
	p := obj
	if p == nil {
		p = old
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace, Labels: map[string]string{corev1.LabelMetadataName: p.Namespace}}}
	return e.evaluate(op, username, "Pod", "pods", ns, asObject(obj), asObject(old))
}

// pinned returns the Pod as the API server stores it after the controller's PATCH that places it
// on node: placement.PinPatch, applied to the Pod's JSON with the JSON Patch library the API
// server uses, plus what the API server itself changes on an update (resourceVersion, generation,
// managedFields).
func pinned(t testing.TB, pod *corev1.Pod, node string) *corev1.Pod {
	t.Helper()
	patch, err := ippplacement.PinPatch(pod, node)
	if err != nil {
		t.Fatalf("PinPatch: %v", err)
	}
	raw, err := patch.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := jsonpatchlib.DecodePatch(raw)
	if err != nil {
		t.Fatalf("DecodePatch(%s): %v", raw, err)
	}
	out, err := decoded.Apply(doc)
	if err != nil {
		t.Fatalf("applying %s: %v", raw, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	got.ResourceVersion += "1"
	got.Generation++
	got.ManagedFields = append(got.ManagedFields, metav1.ManagedFieldsEntry{
		Manager: controller.FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: &metav1.Time{}, FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:affinity":{}}}`)},
	})
	return &got
}

// podWith returns a deep copy of p changed by f.
func podWith(p *corev1.Pod, f func(*corev1.Pod)) *corev1.Pod {
	p = p.DeepCopy()
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	f(p)
	return p
}

// gatedPod returns an IPP Pod as the webhook admits it under --placement=controller: pinned to its
// class key, tolerating IPP's taints, gated.
func gatedPod(cfg isolation.Config) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-5d8f7-abcde", Namespace: "tenant-a", UID: "3f2e", ResourceVersion: "100", Generation: 1,
			Labels:      map[string]string{cfg.PodLabel: "web", "app": "web", "pod-template-hash": "5d8f7"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2030-01-01T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7", UID: "77aa", Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "web", Image: "registry.example.com/web:1.2", Command: []string{"/web"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{}},
			}},
			NodeSelector:       map[string]string{isolation.ClassLabel: cfg.ClassKey("tenant-a", "web")},
			Tolerations:        cfg.Tolerations(),
			SchedulingGates:    []corev1.PodSchedulingGate{{Name: ippplacement.Gate}},
			ServiceAccountName: "default", RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst,
			SchedulerName: corev1.DefaultSchedulerName, TerminationGracePeriodSeconds: ptr(int64(30)),
			SecurityContext: &corev1.PodSecurityContext{},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated,
		}}},
	}
}

// TestPodPolicy evaluates the policy ipp-pods of the rendered base against the controller's
// placements (placement.PinPatch, as pkg/controller applies it) and against what a stolen ipp
// token might do with pods/patch instead.
func TestPodPolicy(t *testing.T) {
	policy := podPolicy(t, decode(t, render(t, "base")))
	cfg := isolation.DefaultConfig()
	cfg.Placement = isolation.PlacementController
	const node = "ipp-my-cluster-web-0123456789abcdef"

	gated := gatedPod(cfg)
	zone := corev1.NodeSelectorRequirement{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-central1-a"}}
	arch := corev1.NodeSelectorRequirement{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}
	// A gated IPP Pod with an affinity of its own: two required terms (one already with
	// matchFields), a preferred term, and a pod anti-affinity; and gates of others around ours.
	rich := podWith(gated, func(p *corev1.Pod) {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/quota"}, {Name: ippplacement.Gate}, {Name: "example.com/other"}}
		p.Spec.Affinity = &corev1.Affinity{
			NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
					{MatchExpressions: []corev1.NodeSelectorRequirement{zone}},
					{MatchExpressions: []corev1.NodeSelectorRequirement{arch}, MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"bad"}}}},
				}},
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{arch}}}},
			},
			PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			}}},
		}
	})
	podAffinityOnly := podWith(gated, func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 1, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelTopologyZone, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
		}}}}
	})
	preferredOnly := podWith(gated, func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: rich.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution}}
	})
	placed := pinned(t, gated, node)
	richPlaced := pinned(t, rich, node)
	// Sanity: the patch did what the policy is asked to allow.
	if len(placed.Spec.SchedulingGates) != 0 || placed.Spec.Affinity == nil {
		t.Fatalf("PinPatch left gates %v and affinity %v", placed.Spec.SchedulingGates, placed.Spec.Affinity)
	}
	if got := len(richPlaced.Spec.SchedulingGates); got != 2 {
		t.Fatalf("PinPatch left %d gates, want 2", got)
	}

	// A gated Pod without a class, and an IPP Pod that is no longer gated (placed already).
	notIPP := podWith(gated, func(p *corev1.Pod) { delete(p.Labels, cfg.PodLabel) })
	ungated := podWith(placed, func(p *corev1.Pod) {})

	tests := []struct {
		name     string
		op       admission.Operation
		user     string
		obj, old *corev1.Pod
		want     []string
	}{
		// What the controller writes: PinPatch on the Pods the webhook admits.
		{name: "placing a gated IPP Pod", op: admission.Update, old: gated, obj: placed},
		{name: "placing a gated IPP Pod with its own node affinity, pod anti-affinity and other gates", op: admission.Update, old: rich, obj: richPlaced},
		{name: "placing a gated IPP Pod with only pod affinity", op: admission.Update, old: podAffinityOnly, obj: pinned(t, podAffinityOnly, node)},
		{name: "placing a gated IPP Pod with only a preferred node affinity", op: admission.Update, old: preferredOnly, obj: pinned(t, preferredOnly, node)},
		{name: "lifting the gate alone", op: admission.Update, old: gated, obj: podWith(gated, func(p *corev1.Pod) { p.Spec.SchedulingGates = nil })},

		// What a stolen token might do instead.
		{name: "creating a Pod", op: admission.Create, obj: gated, want: []string{msgPodCreate}},
		{name: "creating a Pod without a class", op: admission.Create, obj: notIPP, want: []string{msgPodCreate}},
		{name: "deleting an IPP Pod", op: admission.Delete, old: placed, want: []string{msgPodDelete}},
		{name: "deleting a gated IPP Pod", op: admission.Delete, old: gated, want: []string{msgPodDelete}},
		{name: "patching a Pod without a class", op: admission.Update, old: notIPP, obj: pinned(t, notIPP, node), want: []string{msgPodNotIPP}},
		{name: "patching a Pod with a look-alike class label", op: admission.Update,
			old: podWith(notIPP, func(p *corev1.Pod) { p.Labels["ipp.io/class"] = "web" }),
			obj: podWith(pinned(t, notIPP, node), func(p *corev1.Pod) { p.Labels["ipp.io/class"] = "web" }), want: []string{msgPodNotIPP}},
		{name: "patching a Pod without the gate", op: admission.Update, old: ungated, obj: podWith(ungated, func(p *corev1.Pod) {
			terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			terms[0].MatchExpressions = append(terms[0].MatchExpressions, zone)
		}), want: []string{msgPodNotGated}},
		{name: "changing the tolerations of a Pod without the gate", op: admission.Update, old: ungated, obj: podWith(ungated, func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists})
		}), want: []string{msgPodNotGated, msgPodSpec}},
		{name: "keeping the gate", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.SchedulingGates = gated.Spec.SchedulingGates }), want: []string{msgPodGates}},
		{name: "removing another gate with ours", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) { p.Spec.SchedulingGates = p.Spec.SchedulingGates[1:] }), want: []string{msgPodGates}},
		{name: "removing every gate", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) { p.Spec.SchedulingGates = nil }), want: []string{msgPodGates}},
		{name: "removing another gate and keeping ours", op: admission.Update, old: rich, obj: podWith(rich, func(p *corev1.Pod) { p.Spec.SchedulingGates = p.Spec.SchedulingGates[1:] }), want: []string{msgPodGates}},
		{name: "reordering the other gates", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) {
			g := p.Spec.SchedulingGates
			g[0], g[1] = g[1], g[0]
		}), want: []string{msgPodGates}},
		{name: "adding a toleration", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists})
		}), want: []string{msgPodSpec}},
		{name: "a blanket toleration", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}), want: []string{msgPodSpec}},
		{name: "removing the tolerations", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.Tolerations = nil }), want: []string{msgPodSpec}},
		{name: "adding to the nodeSelector", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.NodeSelector[corev1.LabelHostname] = "worker-1"
		}), want: []string{msgPodSpec}},
		{name: "replacing the class key in the nodeSelector", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{isolation.ClassLabel: cfg.ClassKey("tenant-b", "db")}
		}), want: []string{msgPodSpec}},
		{name: "changing a container's image", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "evil.example.com/miner:latest"
		}), want: []string{msgPodSpec}},
		{name: "changing the image of a Pod that is not gated", op: admission.Update, old: ungated, obj: podWith(ungated, func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "evil.example.com/miner:latest"
		}), want: []string{msgPodNotGated, msgPodSpec}},
		{name: "naming a node", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.NodeName = "worker-1" }), want: []string{msgPodSpec}},
		{name: "changing the ServiceAccount", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.ServiceAccountName = "admin" }), want: []string{msgPodSpec}},
		{name: "removing a spec field", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = nil }), want: []string{msgPodSpec}},
		{name: "replacing a spec field by another", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.TerminationGracePeriodSeconds = nil
			p.Spec.ActiveDeadlineSeconds = ptr(int64(1))
		}), want: []string{msgPodSpec}},
		{name: "changing the class label", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Labels[cfg.PodLabel] = "db" }), want: []string{msgPodLabels}},
		{name: "removing the class label", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { delete(p.Labels, cfg.PodLabel) }), want: []string{msgPodLabels}},
		{name: "adding a label", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Labels["ipp.io/node-class"] = "metal" }), want: []string{msgPodLabels}},
		{name: "removing a label", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { delete(p.Labels, "pod-template-hash") }), want: []string{msgPodLabels}},
		{name: "adding an annotation", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Annotations["ipp.io/anything"] = "x" }), want: []string{msgPodAnnotations}},
		{name: "removing every annotation", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Annotations = nil }), want: []string{msgPodAnnotations}},
		{name: "an owner that does not exist, for the garbage collector to delete the Pod", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "gone", UID: "0000"}}
		}), want: []string{msgPodMeta}},
		{name: "adding a finalizer", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Finalizers = []string{"example.com/keep"} }), want: []string{msgPodMeta}},
		{name: "removing the pod anti-affinity", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) { p.Spec.Affinity.PodAntiAffinity = nil }), want: []string{msgPodAffinity}},
		{name: "adding a pod affinity", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) { p.Spec.Affinity.PodAffinity = podAffinityOnly.Spec.Affinity.PodAffinity }), want: []string{msgPodAffinity}},
		{name: "changing the preferred node affinity", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight = 100
		}), want: []string{msgPodAffinity}},
		{name: "removing the preferred node affinity", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = nil
		}), want: []string{msgPodAffinity}},
		{name: "adding a preferred node affinity", op: admission.Update, old: gated, obj: podWith(placed, func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = rich.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
		}), want: []string{msgPodAffinity}},
		{name: "removing the whole affinity", op: admission.Update, old: rich, obj: podWith(richPlaced, func(p *corev1.Pod) { p.Spec.Affinity = nil }), want: []string{msgPodAffinity}},

		// Others are not concerned.
		{name: "a user changes a Pod's image", op: admission.Update, user: "kubernetes-admin", old: placed, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "registry.example.com/web:1.3" })},
		{name: "the ReplicaSet controller deletes a Pod", op: admission.Delete, user: "system:serviceaccount:kube-system:replicaset-controller", old: gated},
		{name: "another ServiceAccount named ipp", op: admission.Update, user: "system:serviceaccount:default:ipp", old: gated, obj: podWith(placed, func(p *corev1.Pod) { p.Spec.Tolerations = nil })},
	}
	forEachVersion(t, policy, func(ver string, eval policyEvaluator) {
		for _, tc := range tests {
			t.Run(ver+"/"+tc.name, func(t *testing.T) {
				username := tc.user
				if username == "" {
					username = ippUsername
				}
				got := eval.podDenials(t, tc.op, username, tc.obj, tc.old)
				if diff := cmp.Diff(tc.want, got, cmpEmptySlice); diff != "" {
					t.Errorf("denials (-want +got):\n%s", diff)
				}
			})
		}
	})
}

// TestPodPolicyMessages keeps the messages above equal to the policy's.
func TestPodPolicyMessages(t *testing.T) {
	policy := podPolicy(t, decode(t, render(t, "base")))
	var got []string
	for _, v := range policy.Spec.Validations {
		got = append(got, v.Message)
		if v.Reason == nil || *v.Reason != metav1.StatusReasonForbidden {
			t.Errorf("validation %q: reason %v, want Forbidden", v.Message, v.Reason)
		}
	}
	want := []string{msgPodCreate, msgPodDelete, msgPodNotIPP, msgPodNotGated, msgPodGates, msgPodLabels, msgPodAnnotations, msgPodMeta, msgPodSpec, msgPodAffinity}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

// checkPodPolicy checks what the policy ipp-pods and its binding match; its expressions are
// evaluated by TestPodPolicy.
func checkPodPolicy(t *testing.T, r rendered) {
	t.Helper()
	checkServiceAccountPolicy(t, r, podPolicy(t, r), &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr(admissionregistrationv1.NamespacedScope),
				},
			},
		}},
		MatchPolicy: ptr(admissionregistrationv1.Equivalent),
	})
	// The controller's placement is a PATCH of the Pod: without patch on pods it is Forbidden.
	granted := false
	for _, rule := range named[*rbacv1.ClusterRole](t, r, "", "ipp").Rules {
		if slices.Contains(rule.APIGroups, "") && slices.Contains(rule.Resources, "pods") && slices.Contains(rule.Verbs, "patch") && len(rule.ResourceNames) == 0 {
			granted = true
		}
	}
	if !granted {
		t.Error("ClusterRole ipp: no patch on pods, which the controller's placement (--placement=controller) needs")
	}
}

// BenchmarkPodPolicy measures what the API server spends evaluating the policy ipp-pods
// (matchConditions, variables and validations, with the apiserver's own packages and the current
// Kubernetes version) on one request: the controller's placement of a gated IPP Pod
// (placement.PinPatch, an UPDATE by the ipp ServiceAccount), and an UPDATE by another user, which
// only the matchConditions see.
func BenchmarkPodPolicy(b *testing.B) {
	policy := podPolicy(b, decode(b, render(b, "base")))
	cfg := isolation.DefaultConfig()
	cfg.Placement = isolation.PlacementController
	gated := gatedPod(cfg)
	placed := pinned(b, gated, "ipp-my-cluster-web-0123456789abcdef")
	eval := compilePolicy(b, policy, environment.DefaultCompatibilityVersion())
	for _, bc := range []struct {
		name, user string
	}{
		{name: "placement", user: ippUsername},
		{name: "other user", user: "system:serviceaccount:kube-system:replicaset-controller"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if got := eval.podDenials(b, admission.Update, bc.user, placed, gated); len(got) != 0 {
				b.Fatalf("denied: %v", got)
			}
			b.ReportAllocs()
			for b.Loop() {
				eval.podDenials(b, admission.Update, bc.user, placed, gated)
			}
		})
	}
}
