package tests

import (
	"encoding/json"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/e2e/framework"
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
