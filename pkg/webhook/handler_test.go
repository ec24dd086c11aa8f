package webhook

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
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
	}
	h := NewHandler(dedicated)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := admissiontest.Review(admissiontest.Request("uid-1", "default", c.pod))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			start := cpuTime()
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
			reportCPU(b, start)
		})
	}
}
