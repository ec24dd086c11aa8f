package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// annotatingHandler allows every request; on /mutate it adds an annotation.
func annotatingHandler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if r.URL.Path == framework.MutatePath {
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
			resp.Patch = []byte(`[{"op":"add","path":"/metadata/annotations","value":{"e2e.ipp.io/mutated":"true"}}]`)
		}
		review.Response, review.Request = resp, nil
		if err := json.NewEncoder(w).Encode(review); err != nil {
			t.Errorf("Encoding review: %v", err)
		}
	})
}

// TestWebhookRegistration: a handler registered with RegisterWebhook is called by the apiserver
// over TLS for Pods outside the exempt namespaces, and only for them. It runs before the parallel
// tests (it is not parallel), since a webhook applies to the whole cluster.
func TestWebhookRegistration(t *testing.T) {
	ctx := t.Context()
	wh, err := cluster.RegisterWebhook(ctx, annotatingHandler(t), framework.WebhookOptions{Name: "e2e-annotate"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := wh.Unregister(ctx); err != nil {
			t.Error(err)
		}
	}()

	ns := namespace(t, "webhook")
	for _, tc := range []struct {
		namespace string
		mutated   bool
	}{
		{namespace: ns, mutated: true},
		{namespace: metav1.NamespaceSystem, mutated: false},
	} {
		p := pod(uniqueName("webhook"))
		created, err := cluster.Client.CoreV1().Pods(tc.namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("Creating pod in %s: %v", tc.namespace, err)
		}
		if got := created.Annotations["e2e.ipp.io/mutated"] == "true"; got != tc.mutated {
			t.Errorf("Pod in %s mutated = %v, want %v", tc.namespace, got, tc.mutated)
		}
	}
}

// testWebhookDown proves I5 with IPP as it runs on a provider: while its webhook server is down,
// the apiserver admits no Pod outside the exempt namespaces (failurePolicy Fail), so no IPP Pod
// gets in unpinned and the cloud gets no instance for it; Pods of the exempt namespaces still are
// admitted, so IPP itself can start. It stops the webhook for good.
func testWebhookDown(t *testing.T, ipp *framework.IPP) {
	ctx := t.Context()
	cfg := ipp.Config
	ns := namespace(t, "down")
	const class = "c"
	name := cfg.NodeName(ns, class)
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	up, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod("up", withClass(cfg, class)), dryRun)
	if err != nil {
		t.Fatalf("IPP pod while the webhook is up: %v", err)
	}
	if up.Spec.NodeSelector[isolation.BindingLabel] != name {
		t.Errorf("IPP pod not pinned while the webhook is up: nodeSelector %v", up.Spec.NodeSelector)
	}

	ipp.Webhook.Server.Close()
	for _, p := range []*corev1.Pod{pod("ipp", withClass(cfg, class)), pod("plain")} {
		_, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("Pod %s while the webhook is down: error %v, want the apiserver's failed webhook call", p.Name, err)
		}
	}
	if _, err := cluster.Client.CoreV1().Pods(metav1.NamespaceSystem).Create(ctx, pod("exempt"), dryRun); err != nil {
		t.Errorf("Pod in the exempt namespace %s while the webhook is down: %v", metav1.NamespaceSystem, err)
	}
	pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d Pods admitted in %s while the webhook is down", len(pods.Items), ns)
	}
	if got := ipp.Cloud.Created(name); got != 0 {
		t.Errorf("%s created %d instances for %s, whose Pod was refused", ipp.Cloud.Name(), got, name)
	}
}

// TestDedicatedNodeNameDenied attacks I2 in dedicated mode through the real apiserver, with a
// tenant's own credentials: a Pod without a class that names an IPP node in spec.nodeName is
// denied by the validating webhook, with its set of IPP nodes (--watch-ipp-nodes), before it
// reaches the node (where the NoExecute taint would make the kubelet reject it as well, see
// TestKubeletRejectsPodNotToleratingNoExecute). It runs before the parallel tests, since a webhook
// applies to the whole cluster.
func TestDedicatedNodeNameDenied(t *testing.T) {
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	nodes := watchIPPNodes(t, cfg)
	wh, err := cluster.RegisterWebhook(ctx, webhook.NewHandler(cfg, webhook.WithNodes(nodes)), framework.WebhookOptions{Name: "ipp-dedicated-nodename"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wh.Unregister(context.Background()); err != nil {
			t.Error(err)
		}
	})

	ns := namespace(t, "nodename")
	node := cfg.NodeName(ns, "class0")
	startKubelet(t, kubelet.Registration{NodeName: node, Labels: cfg.NodeLabels(), Taints: cfg.Taints()})
	tenant := tenantClient(t, ns)
	waitSchedulable(t, node)
	pollUntil(t, "the webhook to learn of IPP node "+node, func() bool { return nodes.Has(node) })

	_, err = tenant.CoreV1().Pods(ns).Create(ctx, strayPod("stray", node), metav1.CreateOptions{})
	checkNodeNameDenied(t, err, node)
	pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d Pods admitted in %s, want none", len(pods.Items), ns)
	}
}
