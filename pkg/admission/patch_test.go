package admission

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestMain checks every patch the tests see against encoding/json (see checkPatchEncoding).
func TestMain(m *testing.M) {
	checkPatchEncoding = true
	os.Exit(m.Run())
}

// TestPatchEncoding writes every kind of value the pins add, and some they never do, through
// patchBuilder.bytes, which panics when it differs from encoding/json.
func TestPatchEncoding(t *testing.T) {
	secs := int64(-3)
	req := corev1.NodeSelectorRequirement{Key: `a"b\c`, Operator: corev1.NodeSelectorOpIn, Values: []string{"x", ""}}
	values := []any{
		"plain", `q"b\s`, "<&>", "tab\t", "é", "bad\xff", "",
		map[string]string{"b": "1", "a/b": "2", "": ""}, map[string]string(nil), map[string]string{},
		corev1.Toleration{}, corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
		[]corev1.Toleration{{Key: "k", Value: "v"}, {}}, []corev1.Toleration(nil), []corev1.Toleration{},
		req, corev1.NodeSelectorRequirement{}, []corev1.NodeSelectorRequirement{req, {Key: "k"}}, []corev1.NodeSelectorRequirement(nil),
		[]corev1.NodeSelectorTerm{{}, {MatchFields: []corev1.NodeSelectorRequirement{req}}, {MatchExpressions: []corev1.NodeSelectorRequirement{req}, MatchFields: []corev1.NodeSelectorRequirement{req}}},
		[]corev1.NodeSelectorTerm(nil), []corev1.NodeSelectorTerm{},
		&corev1.NodeSelector{}, (*corev1.NodeSelector)(nil), &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}},
		&corev1.NodeAffinity{}, (*corev1.NodeAffinity)(nil), &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{}},
		&corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1}}},
		&corev1.Affinity{}, (*corev1.Affinity)(nil), &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}},
		&corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}}, antiTerm("x"), 7, nil,
	}
	for _, v := range values {
		var b patchBuilder
		b.add("/spec/x", v)
		b.add(`/spec/a~0b~1"c`, v)
		if _, err := b.bytes(); err != nil {
			t.Errorf("%#v: %v", v, err)
		}
	}
}
