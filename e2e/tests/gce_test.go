package tests

import (
	"testing"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/gceemu"
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
		Join:        cluster.SharedJoin(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	inst, node := joinAndDelete(t, p, booter, cfg)
	if want := gce.ProviderID(srv.Project(), srv.Zones()[0], node.Name); node.Spec.ProviderID != want || inst.ProviderID != want {
		t.Errorf("providerID: Node %q, instance %q, want %q", node.Spec.ProviderID, inst.ProviderID, want)
	}
}
