package admission

import (
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/internal/cputime"
	"github.com/ipp-project/ipp/pkg/isolation"
)

func benchRequest(_ *testing.B, pod *corev1.Pod) *admissionv1.AdmissionRequest {
	return admissiontest.Request(testUID, "default", pod)
}

// BenchmarkMutate measures one mutating decision on a Pod as the API server sends it.
func BenchmarkMutate(b *testing.B) {
	dedicated := isolation.DefaultConfig()
	// --placement=admission, as these benchmarks have always measured (the reinvoked Pod carries
	// its pin).
	dedicated.Placement = isolation.PlacementAdmission
	auto := dedicated
	auto.Mode = isolation.ModeAutoscaler
	cases := []struct {
		name string
		cfg  isolation.Config
		pod  *corev1.Pod
	}{
		{"dedicated", dedicated, admissiontest.Pod("class0")},
		{"dedicated-reinvoked", dedicated, func() *corev1.Pod { p := admissiontest.Pod("class0"); dedicatedPin(nodeClass0)(p); return p }()},
		{"autoscaler", auto, admissiontest.Pod("class0")},
		{"no-class", dedicated, admissiontest.Pod("")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := benchRequest(b, c.pod)
			b.SetBytes(int64(len(r.Object.Raw)))
			b.ReportAllocs()
			start := cputime.Used()
			for b.Loop() {
				if resp := mutateRequest(c.cfg, r); !resp.Allowed {
					b.Fatal(resp.Result.Message)
				}
			}
			cputime.Report(b, start)
		})
	}
}

// BenchmarkValidate measures one validating decision on the final Pod.
func BenchmarkValidate(b *testing.B) {
	dedicated := isolation.DefaultConfig()
	// --placement=admission, as these benchmarks have always measured (the reinvoked Pod carries
	// its pin).
	dedicated.Placement = isolation.PlacementAdmission
	auto := dedicated
	auto.Mode = isolation.ModeAutoscaler
	cases := []struct {
		name string
		cfg  isolation.Config
		pod  *corev1.Pod
	}{
		{"dedicated", dedicated, func() *corev1.Pod { p := admissiontest.Pod("class0"); dedicatedPin(nodeClass0)(p); return p }()},
		{"autoscaler", auto, func() *corev1.Pod { p := admissiontest.Pod("class0"); seedPin("class0")(p); return p }()},
		{"no-class", dedicated, admissiontest.Pod("")},
		// A Pod without a class that names a node that is not an IPP node: the node set is asked.
		{"no-class-nodename", auto, func() *corev1.Pod { p := admissiontest.Pod(""); p.Spec.NodeName = "worker-0"; return p }()},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := benchRequest(b, c.pod)
			b.SetBytes(int64(len(r.Object.Raw)))
			b.ReportAllocs()
			start := cputime.Used()
			for b.Loop() {
				if resp := validateRequest(c.cfg, ippNodes, r); !resp.Allowed {
					b.Fatal(resp.Result.Message)
				}
			}
			cputime.Report(b, start)
		})
	}
}
