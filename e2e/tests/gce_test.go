package tests

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/providers/gce"
)

// TestGCEInstanceJoinsAsIPPNode: an instance the real gce provider creates in the Compute
// emulator boots, from the startup script the provider rendered, into a Node registered with its
// own kubelet credentials under the instance's name, with the IPP label and both taints and
// providerID gce://<project>/<zone>/<name>; when the instance is deleted its kubelet stops.
func TestGCEInstanceJoinsAsIPPNode(t *testing.T) {
	requireProvider(t, framework.GCE)
	t.Parallel()
	ctx := t.Context()
	booter := newBooter()
	t.Cleanup(booter.Stop)
	srv := gceemu.New(gceemu.Options{Booter: booter})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = uniqueName("e2e")
	p, err := gce.New(ctx, gce.Config{
		ClusterName: cfg.ClusterName,
		Project:     srv.Project(),
		Zone:        srv.Zones()[0],
		Image:       "projects/ipp-emulated/global/images/family/k8s-node",
		Endpoint:    srv.URL(),
		Join:        bootstrap.Join{APIServerEndpoint: "127.0.0.1:6443", Token: "abcdef.0123456789abcdef"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	name := cfg.NodeName("team-a", "class0")
	t.Cleanup(func() { deleteNode(name) })
	inst, err := p.Create(ctx, cloudprovider.InstanceSpec{
		NodeName:       name,
		Class:          "class0",
		Namespace:      "team-a",
		NodeLabels:     cfg.NodeLabels(),
		NodeTaints:     cfg.Taints(),
		IdempotencyKey: name + "/1",
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	node := waitSchedulable(t, name)
	if want := gce.ProviderID(srv.Project(), srv.Zones()[0], name); node.Spec.ProviderID != want || inst.ProviderID != want {
		t.Errorf("providerID: Node %q, instance %q, want %q", node.Spec.ProviderID, inst.ProviderID, want)
	}
	if got := node.Labels[cfg.NodeLabel]; got != isolation.LabelValue {
		t.Errorf("Node label %s = %q, want %q", cfg.NodeLabel, got, isolation.LabelValue)
	}
	if _, ok := node.Labels[isolation.BindingLabel]; ok {
		t.Errorf("Node registered with %s; only the controller may write it", isolation.BindingLabel)
	}
	for _, want := range cfg.Taints() {
		if !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&want) }) {
			t.Errorf("Node taints %v lack %v", node.Spec.Taints, want)
		}
	}

	if err := p.Delete(ctx, *inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	pollUntil(t, "the instance's kubelet to stop", func() bool {
		_, running := booter.Kubelet(inst.ID)
		return !running
	})
	if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("Node after the instance was deleted: %v; removing it is the controller's job", err)
	}
}
