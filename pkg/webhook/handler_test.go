package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/internal/cputime"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// BenchmarkHandler measures one admission request through the HTTP handler, without TLS or a
// network: reading the body, decoding the review, the decision, encoding the answer.
func BenchmarkHandler(b *testing.B) {
	dedicated := isolation.DefaultConfig()
	pinned := admissiontest.Pod("class0")
	pinned.Spec.Tolerations = append(pinned.Spec.Tolerations, dedicated.Tolerations()...)
	pinned.Spec.NodeSelector = map[string]string{isolation.BindingLabel: dedicated.NodeName("default", "class0")}
	pinned.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: isolation.NodeNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{dedicated.NodeName("default", "class0")}}}}},
	}}}
	cases := []struct {
		name, path string
		pod        *corev1.Pod
	}{
		{"mutate", MutatePath, admissiontest.Pod("class0")},
		{"validate", ValidatePath, pinned},
		// A Pod without a class that names a node: the node set is asked.
		{"validate-nodename", ValidatePath, func() *corev1.Pod { p := admissiontest.Pod(""); p.Spec.NodeName = "worker-0"; return p }()},
	}
	h := NewHandler(dedicated, WithNodes(staticNodes{"ipp-pool-0"}))
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := admissiontest.Review(admissiontest.Request("uid-1", "default", c.pod))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			start := cputime.Used()
			for b.Loop() {
				w := httptest.NewRecorder()
				// A request as the server hands it over; httptest.NewRequest would add the cost of
				// parsing an HTTP/1.1 request line.
				r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: c.path}, Header: http.Header{"Content-Type": {"application/json"}},
					Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":true`)) {
					b.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
				}
			}
			cputime.Report(b, start)
		})
	}
}

// TestDocsExamples sends the AdmissionReviews of docs/examples to the handler and checks the
// answers that docs/webhook.md shows.
func TestDocsExamples(t *testing.T) {
	admission := isolation.DefaultConfig()
	admission.Placement = isolation.PlacementAdmission
	postTo := func(t *testing.T, h http.Handler, path, file string) *admissionv1.AdmissionResponse {
		t.Helper()
		body, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", file))
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		review := &admissionv1.AdmissionReview{}
		if err := json.Unmarshal(w.Body.Bytes(), review); err != nil {
			t.Fatal(err)
		}
		return review.Response
	}
	post := func(t *testing.T, path, file string) *admissionv1.AdmissionResponse {
		t.Helper()
		return postTo(t, NewHandler(isolation.DefaultConfig()), path, file)
	}
	t.Run("review.json is pinned to its class key and gated", func(t *testing.T) {
		resp := post(t, MutatePath, "review.json")
		if !resp.Allowed || resp.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
			t.Fatalf("response %+v", resp)
		}
		for _, want := range []string{`"path":"/spec/nodeSelector/node-restriction.kubernetes.io~1ipp-class","value":"class0-e1709d78698e5d450d49ec0f2125682c"`, `"effect":"NoExecute"`, `{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoSchedule"}`, `"path":"/spec/schedulingGates","value":[{"name":"ipp.io/placement"}]`} {
			if !strings.Contains(string(resp.Patch), want) {
				t.Errorf("patch %s does not contain %s", resp.Patch, want)
			}
		}
	})
	t.Run("review.json is pinned to ipp-class0-1b5442993e86 under --placement=admission", func(t *testing.T) {
		resp := postTo(t, NewHandler(admission), MutatePath, "review.json")
		if !resp.Allowed || resp.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
			t.Fatalf("response %+v", resp)
		}
		for _, want := range []string{`"path":"/spec/nodeSelector/node-restriction.kubernetes.io~1ipp-node","value":"ipp-class0-1b5442993e86"`, `"effect":"NoExecute"`, `"matchFields":[{"key":"metadata.name","operator":"In","values":["ipp-class0-1b5442993e86"]}]`} {
			if !strings.Contains(string(resp.Patch), want) {
				t.Errorf("patch %s does not contain %s", resp.Patch, want)
			}
		}
	})
	t.Run("review-stray.json is denied by /validate", func(t *testing.T) {
		resp := post(t, ValidatePath, "review-stray.json")
		if resp.Allowed || !strings.Contains(resp.Result.Message, "tolerates the IPP taint") {
			t.Fatalf("response %+v", resp)
		}
	})
}
