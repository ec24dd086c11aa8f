package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// TestPodPolicyAttack installs deploy/base/pod-policy.yaml in the API server and acts as the ipp
// ServiceAccount with a grant wider than rbac.yaml's: the controller's real PinPatch places a gated
// IPP Pod, and a stolen token's attacks on Pods (image, nodeSelector, labels, ownerReferences,
// tolerations, other gates, non-IPP Pods, create, delete) are Forbidden by the policy, while webhooks
// registered as deploy/ registers IPP's leave that ServiceAccount's UPDATEs to the policy.
func TestPodPolicyAttack(t *testing.T) {
	ctx := t.Context()
	admin := cluster.Client
	remove, err := cluster.InstallPolicy(ctx, deploy.PodPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer remove(context.Background())
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "podpolicy-attack"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch", "create", "delete"}}}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer admin.RbacV1().ClusterRoles().Delete(context.Background(), cr.Name, metav1.DeleteOptions{})
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "podpolicy-attack"}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: opsSAUser}}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	saConfig, err := cluster.UserConfig(opsSAUser, "system:serviceaccounts", "system:serviceaccounts:"+opsNamespace)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(saConfig)

	ns := uniqueName("podpolicy")
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	cfg := isolation.DefaultConfig()
	mk := func(name string, labels map[string]string, gates []corev1.PodSchedulingGate, aff *corev1.Affinity) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: map[string]string{"a": "b"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example.com/web:1"}},
				NodeSelector: map[string]string{isolation.ClassLabel: "k"}, Tolerations: cfg.Tolerations(), SchedulingGates: gates, Affinity: aff}}
		p, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ipp := map[string]string{cfg.PodLabel: "web"}
	gated := mk("gated", ipp, []corev1.PodSchedulingGate{{Name: placement.Gate}}, nil)
	rich := mk("rich", ipp, []corev1.PodSchedulingGate{{Name: "x.io/a"}, {Name: placement.Gate}, {Name: "x.io/b"}}, &corev1.Affinity{
		NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "z", Operator: corev1.NodeSelectorOpIn, Values: []string{"1"}}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "y", Operator: corev1.NodeSelectorOpExists}}},
		}}},
		PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}}},
	})
	plain := mk("plain", map[string]string{"app": "x"}, []corev1.PodSchedulingGate{{Name: placement.Gate}}, nil)

	// Webhooks registered as deploy/base/webhooks.yaml registers IPP's: the ipp ServiceAccount's
	// Pod UPDATEs skip them, so the policy alone must deny every attack below.
	var (
		mu      sync.Mutex
		updates = map[string]int{} // by username
	)
	recorder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		if review.Request.Operation == admissionv1.Update {
			mu.Lock()
			updates[review.Request.UserInfo.Username]++
			mu.Unlock()
		}
		review.Response, review.Request = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}, nil
		_ = json.NewEncoder(w).Encode(review)
	})
	wh, err := cluster.RegisterWebhook(ctx, recorder, framework.WebhookOptions{
		Name:                  "podpolicy-skip",
		SkipUpdatesBy:         opsSAUser,
		NamespaceRequirements: []metav1.LabelSelectorRequirement{{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns}}},
		ProbeNamespace:        ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Unregister(context.Background())
	defer func() {
		// A control that the count can fail: the admin's UPDATE reaches the webhooks.
		if _, err := admin.CoreV1().Pods(ns).Patch(ctx, plain.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"c":"d"}}}`), metav1.PatchOptions{}); err != nil {
			t.Errorf("admin update: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if updates[opsSAUser] != 0 || len(updates) == 0 {
			t.Errorf("UPDATEs seen by the webhooks, by user: %v; want none by %s (it skips them) and some by the admin", updates, opsSAUser)
		}
	}()

	pin := func(p *corev1.Pod, dry bool) error {
		patch, err := placement.PinPatch(p, "node-1")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := patch.Marshal()
		opts := metav1.PatchOptions{FieldManager: "ipp-controller"}
		if dry {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = sa.CoreV1().Pods(ns).Patch(ctx, p.Name, types.JSONPatchType, data, opts)
		return err
	}
	jp := func(name, ops string) error {
		_, err := sa.CoreV1().Pods(ns).Patch(ctx, name, types.JSONPatchType, []byte(ops), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	// Wait for the policy: an attack denied.
	err = waitFor(ctx, podTimeout, func(context.Context) (bool, error) {
		err := jp(gated.Name, `[{"op":"add","path":"/spec/tolerations/-","value":{"operator":"Exists"}}]`)
		return apierrors.IsForbidden(err), nil
	})
	if err != nil {
		t.Fatalf("The policy is not enforced: %v", err)
	}
	if err := pin(plain, true); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "IPP Pods") {
		t.Errorf("plain: %v", err)
	}
	for _, c := range []struct{ name, ops, want string }{
		{"image", `[{"op":"remove","path":"/spec/schedulingGates/0"},{"op":"replace","path":"/spec/containers/0/image","value":"evil:1"}]`, "may change only spec.schedulingGates"},
		{"nodeSelector", `[{"op":"remove","path":"/spec/schedulingGates/0"},{"op":"add","path":"/spec/nodeSelector/foo","value":"bar"}]`, "may change only spec.schedulingGates"},
		{"label", `[{"op":"remove","path":"/spec/schedulingGates/0"},{"op":"add","path":"/metadata/labels/foo","value":"bar"}]`, "labels"},
		{"owner", `[{"op":"remove","path":"/spec/schedulingGates/0"},{"op":"add","path":"/metadata/ownerReferences","value":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"0000"}]}]`, "ownerReferences"},
	} {
		if err := jp(gated.Name, c.ops); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	if err := jp(rich.Name, `[{"op":"remove","path":"/spec/schedulingGates/0"},{"op":"remove","path":"/spec/schedulingGates/0"}]`); !apierrors.IsForbidden(err) {
		t.Errorf("other gate: %v", err)
	}
	if err := jp(rich.Name, `[{"op":"remove","path":"/spec/schedulingGates/1"},{"op":"remove","path":"/spec/affinity/podAntiAffinity"}]`); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		// (The API server's own validation refuses this one before the policy runs.)
		t.Errorf("anti: %v", err)
	} else {
		t.Logf("anti: %v", err)
	}
	if err := sa.CoreV1().Pods(ns).Delete(ctx, plain.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("delete: %v", err)
	}
	// The real placements, for real.
	for _, p := range []*corev1.Pod{gated, rich} {
		if err := pin(p, false); err != nil {
			t.Errorf("pin %s: %v", p.Name, err)
		}
		got, _ := admin.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		t.Logf("%s: gates %v affinity %+v generation %d", p.Name, got.Spec.SchedulingGates, got.Spec.Affinity.NodeAffinity, got.Generation)
	}
}
