package tests

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/ipp-project/ipp/e2e/ec2emu"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/providers/ec2"
)

// TestEC2InstanceJoinsAsIPPNode: an instance the real ec2 provider creates in the EC2 emulator
// boots, from the user data the provider rendered, into a Node that registers with its own
// kubelet credentials under the dedicated node name, with the IPP label and both taints and the
// instance's providerID; when the instance is terminated its kubelet stops and the Node stays.
func TestEC2InstanceJoinsAsIPPNode(t *testing.T) {
	requireProvider(t, framework.EC2)
	t.Parallel()
	ctx := t.Context()
	booter := newBooter()
	t.Cleanup(booter.Stop)
	srv := ec2emu.New(ec2emu.Options{Region: "eu-west-1", Booter: booter})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = uniqueName("e2e")
	p, err := ec2.New(ctx, ec2.Config{
		ClusterName: cfg.ClusterName,
		Region:      srv.Region(),
		ImageID:     "ami-0123456789abcdef0",
		SubnetIDs:   srv.SubnetIDs(),
		Endpoint:    srv.URL(),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEMULATOR", "emulator-secret", ""),
		Join:        cluster.SharedJoin(),
		MaxBackoff:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	inst, node := joinAndDelete(t, p, booter, cfg)
	if node.Spec.ProviderID != inst.ProviderID {
		t.Errorf("Node providerID = %q, want the instance's %q", node.Spec.ProviderID, inst.ProviderID)
	}
}

// pollUntil waits up to a minute for cond.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := waitFor(t.Context(), time.Minute, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("Waiting for %s: %v", what, err)
	}
}
