package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
)

// TestNodeClassAdmission attacks the NodeClass check of the validating webhook in dedicated mode
// through the real apiserver, with tenants' own credentials: the webhook of StartIPP, with the
// NodeClasses and namespaces of its informers (--watch-node-classes), and the CRD from deploy/.
//
//   - a Pod that names a NodeClass that does not exist is denied, naming it and the namespace;
//   - a Pod whose namespace the NodeClass's namespaceSelector leaves out is denied, naming both;
//   - the same NodeClass from a namespace inside its selector is admitted;
//   - a Pod without the label, with no "default" object, is admitted (the builtin default);
//     once a "default" object that leaves the namespace out exists, it is denied;
//   - an UPDATE that changes the label of an admitted IPP Pod, to move it to a NodeClass of its
//     choice, is denied.
//
// It owns the CRD and the cluster-wide webhook, so it does not run in parallel. It runs on the
// first provider chosen: admission does not depend on the cloud.
func TestNodeClassAdmission(t *testing.T) {
	ctx := t.Context()
	installNodeClassCRD(t)
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = "e2e-ncadm"
	ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Provider: providers[0], Config: &cfg, WatchNodeClasses: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipp.Stop(context.Background()) })
	ippc, err := ippclient.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	nodeClasses := ippc.IppV1alpha1().NodeClasses()

	// The cluster admin's NodeClass for untrusted tenants, and two tenants' namespaces: one
	// labelled for it, one not.
	metal := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec:       ippv1alpha1.NodeClassSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}}},
	}
	if _, err := nodeClasses.Create(ctx, metal, metav1.CreateOptions{FieldManager: "e2e"}); err != nil {
		t.Fatal(err)
	}
	nsIn, nsOut := namespace(t, "nc-in"), namespace(t, "nc-out")
	labelNamespace(t, nsIn, "tenant-tier", "untrusted")
	labelNamespace(t, nsOut, "tenant-tier", "trusted")
	pollUntil(t, "the webhook to see NodeClass metal and both namespaces' labels", func() bool {
		_, err := ipp.NodeClasses.Get("metal")
		in, _ := ipp.NodeClasses.NamespaceLabels(nsIn)
		out, _ := ipp.NodeClasses.NamespaceLabels(nsOut)
		return err == nil && in["tenant-tier"] == "untrusted" && out["tenant-tier"] == "trusted"
	})
	tenantIn, tenantOut := tenantClient(t, nsIn), tenantClient(t, nsOut)

	t.Run("unknown NodeClass is denied", func(t *testing.T) {
		_, err := tenantIn.CoreV1().Pods(nsIn).Create(ctx, ippPod("gold", "c0", "gold"), metav1.CreateOptions{})
		checkNodeClassDenied(t, err, fmt.Sprintf(`NodeClass "gold" does not exist (label ipp.io/node-class on a Pod in namespace %q)`, nsIn))
	})
	t.Run("malformed NodeClass name is denied", func(t *testing.T) {
		_, err := tenantIn.CoreV1().Pods(nsIn).Create(ctx, ippPod("upper", "c0", "Metal"), metav1.CreateOptions{})
		checkNodeClassDenied(t, err, `NodeClass "Metal" does not exist`, "not a valid NodeClass name")
	})
	t.Run("namespace outside the namespaceSelector is denied", func(t *testing.T) {
		_, err := tenantOut.CoreV1().Pods(nsOut).Create(ctx, ippPod("metal", "c0", "metal"), metav1.CreateOptions{})
		checkNodeClassDenied(t, err, fmt.Sprintf(`NodeClass "metal" may not be used in namespace %q`, nsOut), "namespaceSelector tenant-tier=untrusted")
	})
	t.Run("namespace inside the namespaceSelector is admitted", func(t *testing.T) {
		p, err := tenantIn.CoreV1().Pods(nsIn).Create(ctx, ippPod("metal", "c0", "metal"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("Pod of NodeClass metal in %s (labelled tenant-tier=untrusted): %v, want admitted", nsIn, err)
		}
		if key := cfg.ClassKey(nsIn, "c0"); p.Labels[isolation.NodeClassLabel] != "metal" || p.Spec.NodeSelector[isolation.ClassLabel] != key {
			t.Errorf("Admitted Pod: labels %v, nodeSelector %v; want NodeClass metal, pinned to class key %s", p.Labels, p.Spec.NodeSelector, key)
		}

		// The tenant cannot move the admitted Pod to another NodeClass, nor take the label off.
		for _, patch := range []map[string]any{
			{"metadata": map[string]any{"labels": map[string]any{isolation.NodeClassLabel: "gold"}}},
			{"metadata": map[string]any{"labels": map[string]any{isolation.NodeClassLabel: nil}}},
		} {
			body, err := json.Marshal(patch)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tenantIn.CoreV1().Pods(nsIn).Patch(ctx, p.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{})
			checkNodeClassDenied(t, err, "the ipp.io/node-class label of an existing IPP Pod cannot be added, removed or changed")
		}
		got, err := cluster.Client.CoreV1().Pods(nsIn).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Labels[isolation.NodeClassLabel] != "metal" {
			t.Errorf("After the denied updates the Pod's NodeClass label is %q, want metal", got.Labels[isolation.NodeClassLabel])
		}
	})
	t.Run("no label and no default object is admitted", func(t *testing.T) {
		if _, err := tenantOut.CoreV1().Pods(nsOut).Create(ctx, ippPod("plain", "c1", ""), metav1.CreateOptions{}); err != nil {
			t.Fatalf("IPP Pod without a NodeClass label in %s, no default object: %v, want admitted", nsOut, err)
		}
	})
	t.Run("a default object decides for Pods without the label", func(t *testing.T) {
		def := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: isolation.DefaultNodeClass},
			Spec:       ippv1alpha1.NodeClassSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}}},
		}
		if _, err := nodeClasses.Create(ctx, def, metav1.CreateOptions{FieldManager: "e2e"}); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, "the webhook to see the default object", func() bool {
			nc, err := ipp.NodeClasses.Get(isolation.DefaultNodeClass)
			return err == nil && !nodeclass.IsBuiltin(nc)
		})
		_, err := tenantOut.CoreV1().Pods(nsOut).Create(ctx, ippPod("plain2", "c1", ""), metav1.CreateOptions{})
		checkNodeClassDenied(t, err, fmt.Sprintf(`NodeClass "default" may not be used in namespace %q`, nsOut))
		if _, err := tenantIn.CoreV1().Pods(nsIn).Create(ctx, ippPod("plain", "c1", ""), metav1.CreateOptions{}); err != nil {
			t.Errorf("IPP Pod without a NodeClass label in %s, inside the default object's selector: %v, want admitted", nsIn, err)
		}
	})

	// Nothing denied was stored.
	for ns, want := range map[string][]string{nsIn: {"metal", "plain"}, nsOut: {"plain"}} {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("Pods in %s: %v, want %v", ns, names, want)
		}
	}
}

// ippPod is a Pod of class with the NodeClass label nodeClass, unless empty.
func ippPod(name, class, nodeClass string) *corev1.Pod {
	return pod(name, func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[isolation.DefaultPodLabel] = class
		if nodeClass != "" {
			p.Labels[isolation.NodeClassLabel] = nodeClass
		}
	})
}

// labelNamespace sets a label on namespace ns, as the cluster admin.
func labelNamespace(t *testing.T, ns, key, value string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: value}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkNodeClassDenied checks that err is the IPP validating webhook's 403 denial, with each of
// want in its message.
func checkNodeClassDenied(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Admitted, want denied by the validating webhook with %q", want)
	}
	if !apierrors.IsForbidden(err) {
		t.Errorf("Error %v is not Forbidden", err)
	}
	for _, w := range append([]string{`admission webhook "pods.validate.ipp.io" denied the request`}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Denial %q does not contain %q", err, w)
		}
	}
}
