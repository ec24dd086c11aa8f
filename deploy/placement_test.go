package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/isolation"
)

const (
	controlPlaneLabel = "node-role.kubernetes.io/control-plane"
	trustedLabel      = "node-restriction.kubernetes.io/trusted"
	// classLabel is the binding label's name in DESIGN.md's v2; the replicas avoid it too.
	classLabel = "node-restriction.kubernetes.io/ipp-class"
)

// placementNodes are the kinds of Node the replicas may meet, as their kubelets (or an admin)
// label and taint them.
func placementNodes() map[string]*corev1.Node {
	cfg := isolation.DefaultConfig()
	node := func(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		l := map[string]string{corev1.LabelHostname: name}
		for k, v := range labels {
			l[k] = v
		}
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	return map[string]*corev1.Node{
		"control plane":  node("cp-1", map[string]string{controlPlaneLabel: ""}, corev1.Taint{Key: controlPlaneLabel, Effect: corev1.TaintEffectNoSchedule}),
		"worker":         node("worker-1", nil),
		"trusted":        node("trusted-1", map[string]string{trustedLabel: "true"}),
		"IPP node":       node("ipp-a", map[string]string{cfg.NodeLabel: isolation.LabelValue}, cfg.Taints()...),
		"bound IPP node": node("ipp-b", map[string]string{cfg.NodeLabel: isolation.LabelValue, isolation.BindingLabel: "ipp-b"}, cfg.Taints()...),
		// Root on a bound node may remove its ipp label and taints, and claim to be a control
		// plane or trusted with labels a kubelet may set; not remove the binding label.
		"bound IPP node whose kubelet relabelled it": node("ipp-c", map[string]string{isolation.BindingLabel: "ipp-c", "node-role.kubernetes.io/master": "", "ipp.io/trusted": "true"}),
		"v2 bound IPP node":                          node("ipp-d", map[string]string{classLabel: "web-0123"}),
	}
}

// placement says on which placementNodes a rendering's replicas may run, and which the
// scheduler prefers.
func placement(t *testing.T, r rendered) (allowed, preferred []string) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r)
	pod := &corev1.Pod{Spec: d.Spec.Template.Spec}
	required := nodeaffinity.GetRequiredNodeAffinity(pod)
	var prefs *nodeaffinity.PreferredSchedulingTerms
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		var err error
		if prefs, err = nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
			t.Fatalf("preferred node affinity: %v", err)
		}
	}
	for what, n := range placementNodes() {
		ok, err := required.Match(n)
		if err != nil {
			t.Fatalf("required node affinity: %v", err)
		}
		for _, taint := range n.Spec.Taints {
			if taint.Effect != corev1.TaintEffectPreferNoSchedule && !slices.ContainsFunc(pod.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(klog.Background(), &taint, true) }) {
				ok = false
			}
		}
		if ok {
			allowed = append(allowed, what)
		}
		if prefs != nil && prefs.Score(n) > 0 {
			preferred = append(preferred, what)
		}
	}
	slices.Sort(allowed)
	slices.Sort(preferred)
	return allowed, preferred
}

// checkPlacement checks what every rendering must hold of where the replicas run: never on an
// IPP node, whatever its kubelet did to its labels, and no toleration of an IPP taint.
func checkPlacement(t *testing.T, r rendered) {
	t.Helper()
	allowed, _ := placement(t, r)
	for _, what := range allowed {
		if what != "control plane" && what != "worker" && what != "trusted" {
			t.Errorf("the replicas may run on a %s", what)
		}
	}
	if len(allowed) == 0 {
		t.Errorf("the replicas may run nowhere")
	}
	pod := one[*appsv1.Deployment](t, r).Spec.Template.Spec
	for _, taint := range isolation.DefaultConfig().Taints() {
		for _, tol := range pod.Tolerations {
			if tol.ToleratesTaint(klog.Background(), &taint, true) {
				t.Errorf("toleration %+v tolerates the IPP taint %s", tol, taint.ToString())
			}
		}
	}
}

// TestPlacement renders the overlays alone and with each component of deploy/components, and
// checks on which Nodes the replicas may run.
func TestPlacement(t *testing.T) {
	tests := []struct {
		name       string
		overlay    string
		components []string
		allowed    []string
		preferred  []string
	}{
		{name: "gce", overlay: "overlays/gce", allowed: []string{"control plane", "trusted", "worker"}, preferred: []string{"control plane"}},
		{name: "ec2", overlay: "overlays/ec2", allowed: []string{"control plane", "trusted", "worker"}, preferred: []string{"control plane"}},
		{name: "cert-manager", overlay: "overlays/cert-manager", allowed: []string{"control plane", "trusted", "worker"}, preferred: []string{"control plane"}},
		{name: "gce, control plane only", overlay: "overlays/gce", components: []string{"control-plane-only"}, allowed: []string{"control plane"}, preferred: []string{"control plane"}},
		{name: "ec2, trusted nodes", overlay: "overlays/ec2", components: []string{"trusted-nodes"}, allowed: []string{"trusted"}, preferred: []string{"control plane"}},
		{name: "cert-manager, trusted nodes", overlay: "overlays/cert-manager", components: []string{"trusted-nodes"}, allowed: []string{"trusted"}, preferred: []string{"control plane"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.overlay
			if len(tc.components) > 0 {
				dir = withComponents(t, tc.overlay, tc.components...)
			}
			r := decode(t, render(t, dir))
			checkInvariants(t, r)
			allowed, preferred := placement(t, r)
			if !slices.Equal(tc.allowed, allowed) {
				t.Errorf("the replicas may run on %q, want %q", allowed, tc.allowed)
			}
			if !slices.Equal(tc.preferred, preferred) {
				t.Errorf("the replicas prefer %q, want %q", preferred, tc.preferred)
			}
		})
	}
}

// withComponents writes a kustomization in deploy/ (as an operator's overlay would be, next to
// the others) of overlay with components, and returns its directory.
func withComponents(t *testing.T, overlay string, components ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp(".", ".test-components-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../" + overlay + "\ncomponents:\n"
	for _, c := range components {
		k += "- ../components/" + c + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
