package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippfake "github.com/ipp-project/ipp/pkg/generated/clientset/versioned/fake"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
	"github.com/ipp-project/ipp/pkg/placement"
)

// postValidateIn sends a Pod CREATE of pod in namespace ns to /validate and returns the answer.
func postValidateIn(t *testing.T, h http.Handler, ns string, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, ValidatePath, bytes.NewReader(admissiontest.Review(admissiontest.Request("uid-1", ns, pod)))))
	if w.Code != http.StatusOK {
		t.Fatalf("POST %s: status %d: %s", ValidatePath, w.Code, w.Body)
	}
	review := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(w.Body.Bytes(), review); err != nil {
		t.Fatal(err)
	}
	if review.Response == nil || review.Response.UID != "uid-1" {
		t.Fatalf("response %+v does not answer uid-1", review.Response)
	}
	return review.Response
}

// TestValidateNodeClass: with the NodeClasses and namespaces of nodeclass.Cache over Kubernetes
// clients, /validate in dedicated mode turns away an IPP Pod with 503 and "retry" until the cache
// has synced (and /readyz says not ready until then); after, it denies a NodeClass that does not
// exist, and one whose namespaceSelector leaves out the Pod's namespace, naming both, and allows
// the rest. A NodeClass created later is usable as soon as the watch brings it. Without the cache
// nothing is checked.
func TestValidateNodeClass(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	cfg := isolation.DefaultConfig()
	kube := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"tenant-tier": "untrusted"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}},
	)
	// NewClientset's field management needs the type's OpenAPI schema, which the generated fake
	// does not carry; the simple one tracks objects without it.
	ipp := ippfake.NewSimpleClientset(&ippv1alpha1.NodeClass{ //nolint:staticcheck // see above
		ObjectMeta: metav1.ObjectMeta{Name: "metal", UID: "1"},
		Spec:       ippv1alpha1.NodeClassSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}}},
	})
	classes, err := nodeclass.NewCache(kube, ipp)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(cfg, WithNodeClasses(classes))
	// pod is a mutated IPP Pod of class c0 in ns (the pin of the default placement,
	// --placement=controller: the class key and the gate), with the NodeClass label nc unless empty.
	pod := func(ns, nc string) *corev1.Pod {
		p := admissiontest.Pod("c0")
		if nc != "" {
			p.Labels[isolation.NodeClassLabel] = nc
		}
		p.Spec.Tolerations = append(p.Spec.Tolerations, cfg.Tolerations()...)
		p.Spec.Tolerations = append(p.Spec.Tolerations, isolation.NotReadyToleration())
		p.Spec.NodeSelector = map[string]string{isolation.ClassLabel: cfg.ClassKey(ns, "c0")}
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: placement.Gate}}
		return p
	}
	deniedWith := func(t *testing.T, resp *admissionv1.AdmissionResponse, code int32, want ...string) {
		t.Helper()
		if resp.Allowed || resp.Result == nil || resp.Result.Code != code {
			t.Fatalf("answer allowed=%v result %+v, want denied with %d", resp.Allowed, resp.Result, code)
		}
		for _, w := range want {
			if !strings.Contains(resp.Result.Message, w) {
				t.Errorf("message %q does not contain %q", resp.Result.Message, w)
			}
		}
	}
	allowed := func(t *testing.T, what string, resp *admissionv1.AdmissionResponse) {
		t.Helper()
		if !resp.Allowed {
			t.Errorf("%s: denied %+v", what, resp.Result)
		}
	}

	// Not synced: fail closed, say to retry.
	if code := readyz(h); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before the sync = %d, want 503", code)
	}
	deniedWith(t, postValidateIn(t, h, "team-a", pod("team-a", "")), http.StatusServiceUnavailable, "not yet loaded the NodeClasses", "retry in a few seconds")
	allowed(t, "A Pod without a class before the sync", postValidateIn(t, h, "team-a", admissiontest.Pod("")))

	done := make(chan struct{})
	go func() {
		defer close(done)
		classes.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	poll(t, "the NodeClasses to sync", func() bool { return readyz(h) == http.StatusOK })

	deniedWith(t, postValidateIn(t, h, "team-a", pod("team-a", "gold")), http.StatusForbidden, `NodeClass "gold" does not exist (label ipp.io/node-class on a Pod in namespace "team-a")`)
	deniedWith(t, postValidateIn(t, h, "team-b", pod("team-b", "metal")), http.StatusForbidden, `NodeClass "metal" may not be used in namespace "team-b"`, "namespaceSelector tenant-tier=untrusted")
	allowed(t, "NodeClass metal in team-a", postValidateIn(t, h, "team-a", pod("team-a", "metal")))
	allowed(t, "No label and no default object", postValidateIn(t, h, "team-b", pod("team-b", "")))

	// A NodeClass created later.
	if _, err := ipp.IppV1alpha1().NodeClasses().Create(ctx, &ippv1alpha1.NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "gold", UID: "2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a Pod of the new NodeClass to be allowed", func() bool { return postValidateIn(t, h, "team-a", pod("team-a", "gold")).Allowed })

	// Without the cache (--watch-node-classes=false) the check is off and /readyz is ready.
	off := NewHandler(cfg)
	allowed(t, "Without NodeClasses", postValidateIn(t, off, "team-b", pod("team-b", "none")))
	if code := readyz(off); code != http.StatusOK {
		t.Errorf("GET /readyz without NodeClasses = %d, want 200", code)
	}
}
