package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeset"
)

// staticNodes is a synced node set of fixed names.
type staticNodes []string

func (s staticNodes) Has(name string) bool {
	for _, n := range s {
		if n == name {
			return true
		}
	}
	return false
}

func (staticNodes) HasSynced() bool { return true }

// postValidate sends a Pod CREATE of pod in namespace default to /validate and returns the answer.
func postValidate(t *testing.T, h http.Handler, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, ValidatePath, bytes.NewReader(admissiontest.Review(admissiontest.Request("uid-1", "default", pod)))))
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

func readyz(h http.Handler) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, ReadyzPath, nil))
	return w.Code
}

// TestValidateNodeName: with the node set of pkg/nodeset over a Kubernetes client, /validate
// turns away a Pod without a class that names an IPP node in spec.nodeName, with 503 and "retry"
// until the set has synced (and /readyz says not ready until then), and with 403 and the node's
// name after; a node labelled later is refused as soon as the watch brings it. Without a node
// set, nothing is checked.
func TestValidateNodeName(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	cfg := isolation.DefaultConfig()
	cfg.Mode = isolation.ModeAutoscaler
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ipp-pool-0", Labels: cfg.NodeLabels()}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-0"}},
	)
	set, err := nodeset.New(client, cfg.NodeLabel, isolation.LabelValue)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(cfg, WithNodes(set))
	stray := func(node string) *corev1.Pod {
		p := admissiontest.Pod("")
		p.Spec.NodeName = node
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

	// Not synced: fail closed, say to retry.
	if code := readyz(h); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before the sync = %d, want 503", code)
	}
	deniedWith(t, postValidate(t, h, stray("worker-0")), http.StatusServiceUnavailable, `spec.nodeName "worker-0"`, "retry in a few seconds")
	if resp := postValidate(t, h, admissiontest.Pod("")); !resp.Allowed {
		t.Errorf("A Pod without spec.nodeName before the sync: denied %+v", resp.Result)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		set.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	poll(t, "the node set to sync", func() bool { return readyz(h) == http.StatusOK })
	deniedWith(t, postValidate(t, h, stray("ipp-pool-0")), http.StatusForbidden, `spec.nodeName "ipp-pool-0" names an IPP node (labelled ipp=true)`)
	if resp := postValidate(t, h, stray("worker-0")); !resp.Allowed {
		t.Errorf("A Pod without a class on worker-0: denied %+v", resp.Result)
	}

	// A node that joins the pool later.
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ipp-pool-1", Labels: cfg.NodeLabels()}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a Pod naming the new pool node to be denied", func() bool { return !postValidate(t, h, stray("ipp-pool-1")).Allowed })

	// Without a node set (--watch-ipp-nodes=false) the check is off and /readyz is ready.
	off := NewHandler(cfg)
	if resp := postValidate(t, off, stray("ipp-pool-0")); !resp.Allowed {
		t.Errorf("Without a node set: denied %+v", resp.Result)
	}
	if code := readyz(off); code != http.StatusOK {
		t.Errorf("GET /readyz without a node set = %d, want 200", code)
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("Waiting for %s: %v", what, err)
	}
}
