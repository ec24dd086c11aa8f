package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// The messages of the policy ipp-nodes (deploy/base/node-policy.yaml; deploy's
// TestNodePolicyMessages keeps them there).
const (
	nodePolicyNotIPP      = "ipp may change only IPP Nodes (label ipp=true)"
	nodePolicyDelete      = "ipp may delete only IPP Nodes (label ipp=true)"
	nodePolicyLabels      = "ipp may change only the labels node-restriction.kubernetes.io/ipp-* of a Node"
	nodePolicyAnnotations = "ipp may change only the annotations ipp.io/* of a Node"
	nodePolicySpec        = "ipp may change only spec.unschedulable of a Node's spec"
)

// checkNodePolicy attacks the installed RBAC and ValidatingAdmissionPolicy ipp-nodes with the
// ServiceAccount's own identity: RBAC lets it patch and delete every Node; the policy lets it
// change only IPP's labels and annotations and the cordon of IPP nodes, and delete only IPP
// nodes. dedicated is a bound IPP node that serves a class (its class key label included).
//
// Every request is a dry run: admission, and so the policy, judges it as a real one, and an
// attack that gets through (the policy removed) changes nothing for the rest of the test. The
// controller's own writes are sent as pkg/controller sends them and must be allowed.
func checkNodePolicy(t *testing.T, sa kubernetes.Interface, cfg isolation.Config, dedicated string) {
	ctx := t.Context()
	dry := []string{metav1.DryRunAll}
	nodes := sa.CoreV1().Nodes()

	// A Node of the cluster's other workloads, registered as an admin would.
	plain := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   "ops-plain-" + cfg.ClusterName,
		Labels: map[string]string{corev1.LabelHostname: "ops-plain-" + cfg.ClusterName, "team": "payments"},
	}}
	if _, err := cluster.Client.CoreV1().Nodes().Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Client.CoreV1().Nodes().Delete(context.Background(), plain.Name, metav1.DeleteOptions{})
	})
	ipp, err := cluster.Client.CoreV1().Nodes().Get(ctx, dedicated, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ipp.Labels[cfg.NodeLabel] != isolation.LabelValue || ipp.Labels[isolation.BindingLabel] != dedicated || ipp.Labels[isolation.ClassLabel] == "" {
		t.Fatalf("Node %s has labels %v, want a bound IPP node", dedicated, ipp.Labels)
	}

	mergePatch := func(name string, patch map[string]any) func() error {
		return func() error {
			data, err := json.Marshal(patch)
			if err != nil {
				return err
			}
			_, err = nodes.Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{DryRun: dry})
			return err
		}
	}
	labels := func(l map[string]any) map[string]any { return map[string]any{"metadata": map[string]any{"labels": l}} }
	jsonPatch := func(name string, ops ...map[string]any) func() error {
		return func() error {
			data, err := json.Marshal(ops)
			if err != nil {
				return err
			}
			_, err = nodes.Patch(ctx, name, types.JSONPatchType, data, metav1.PatchOptions{DryRun: dry})
			return err
		}
	}
	bindingPath := "/metadata/labels/" + strings.ReplaceAll(isolation.BindingLabel, "/", "~1")
	classPath := "/metadata/labels/" + strings.ReplaceAll(isolation.ClassLabel, "/", "~1")

	attacks := []struct {
		name string
		do   func() error
		want string
	}{
		{"label a non-IPP Node into a class", mergePatch(plain.Name, labels(map[string]any{isolation.BindingLabel: dedicated})), nodePolicyNotIPP},
		{"give a non-IPP Node a class key", mergePatch(plain.Name, labels(map[string]any{isolation.ClassLabel: ipp.Labels[isolation.ClassLabel]})), nodePolicyNotIPP},
		{"make a non-IPP Node an IPP node", mergePatch(plain.Name, labels(map[string]any{cfg.NodeLabel: isolation.LabelValue})), nodePolicyNotIPP},
		{"remove another Node's label", mergePatch(plain.Name, labels(map[string]any{"team": nil})), nodePolicyNotIPP},
		{"cordon a non-IPP Node", mergePatch(plain.Name, map[string]any{"spec": map[string]any{"unschedulable": true}}), nodePolicyNotIPP},
		{"change a non-IPP label of an IPP node", mergePatch(dedicated, labels(map[string]any{corev1.LabelHostname: "elsewhere"})), nodePolicyLabels},
		{"remove the ipp label of an IPP node", mergePatch(dedicated, labels(map[string]any{cfg.NodeLabel: nil})), nodePolicyLabels},
		{"make an IPP node a control plane", mergePatch(dedicated, labels(map[string]any{"node-role.kubernetes.io/control-plane": ""})), nodePolicyLabels},
		{"add a foreign taint to an IPP node", jsonPatch(dedicated, map[string]any{"op": "add", "path": "/spec/taints/-", "value": corev1.Taint{Key: "example.com/drain", Effect: corev1.TaintEffectNoExecute}}), nodePolicySpec},
		{"remove an IPP node's taints", mergePatch(dedicated, map[string]any{"spec": map[string]any{"taints": nil}}), nodePolicySpec},
		{"annotate an IPP node outside ipp.io/", mergePatch(dedicated, map[string]any{"metadata": map[string]any{"annotations": map[string]any{"example.com/owner": "attacker"}}}), nodePolicyAnnotations},
		{"delete a non-IPP Node", func() error { return nodes.Delete(ctx, plain.Name, metav1.DeleteOptions{DryRun: dry}) }, nodePolicyDelete},
	}
	// The policy was installed with the overlay; the apiserver may take a moment to enforce it.
	var lastErr error
	if err := waitFor(ctx, 30*time.Second, func(context.Context) (bool, error) {
		lastErr = attacks[0].do()
		return lastErr != nil, nil
	}); err != nil {
		t.Errorf("%s as the ServiceAccount: allowed, want denied by the policy ipp-nodes", attacks[0].name)
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			if err := a.do(); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), a.want) {
				t.Errorf("%s as the ServiceAccount: %v, want Forbidden with %q", a.name, err, a.want)
			}
		})
	}
	t.Run("create a Node", func(t *testing.T) {
		// RBAC refuses before the policy (which refuses too: deploy's TestNodePolicy).
		_, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ops-forged", Labels: map[string]string{cfg.NodeLabel: isolation.LabelValue}}}, metav1.CreateOptions{DryRun: dry})
		if !apierrors.IsForbidden(err) {
			t.Errorf("Create a Node as the ServiceAccount: %v, want Forbidden", err)
		}
	})
	t.Run("an admin is not concerned", func(t *testing.T) {
		if err := cluster.Client.CoreV1().Nodes().Delete(ctx, plain.Name, metav1.DeleteOptions{DryRun: dry}); err != nil {
			t.Errorf("Delete a non-IPP Node as an admin: %v", err)
		}
	})

	// The controller's writes (pkg/controller: nodes.go bindNode, sync.go, idle.go, deleteNode).
	uid, pid := string(ipp.UID), ipp.Spec.ProviderID
	now := time.Now().UTC().Format(time.RFC3339)
	annotations := func(a map[string]any) map[string]any {
		return map[string]any{"metadata": map[string]any{"annotations": a}}
	}
	for _, w := range []struct {
		name string
		do   func() error
	}{
		{"bind, guarded by UID and providerID", jsonPatch(dedicated,
			map[string]any{"op": "test", "path": "/metadata/uid", "value": uid},
			map[string]any{"op": "test", "path": "/spec/providerID", "value": pid},
			map[string]any{"op": "add", "path": bindingPath, "value": dedicated},
			map[string]any{"op": "add", "path": classPath, "value": ipp.Labels[isolation.ClassLabel]})},
		{"remove the binding of an untrusted Node", mergePatch(dedicated, labels(map[string]any{isolation.BindingLabel: nil}))},
		{"mark idle", mergePatch(dedicated, annotations(map[string]any{"ipp.io/idle-since": now}))},
		{"cordon to reap", mergePatch(dedicated, map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{"ipp.io/reaping": now, "ipp.io/cordoned": "true"}},
			"spec":     map[string]any{"unschedulable": true},
		})},
		{"delete, guarded by UID", func() error {
			return nodes.Delete(ctx, dedicated, metav1.DeleteOptions{DryRun: dry, Preconditions: &metav1.Preconditions{UID: &ipp.UID}})
		}},
	} {
		t.Run("the controller may "+w.name, func(t *testing.T) {
			if err := w.do(); err != nil {
				t.Errorf("%s as the ServiceAccount: %v", w.name, err)
			}
		})
	}
	if t.Failed() {
		t.Logf("Node %s: labels %v, taints %v", dedicated, ipp.Labels, ipp.Spec.Taints)
	}
}
