package tests

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/e2e/ec2emu"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/providers/ec2"
)

// TestEC2InstanceJoinsAsIPPNode: an instance the real ec2 provider creates in the EC2 emulator
// boots, from the user data the provider rendered, into a Node that registers with its own
// kubelet credentials under the dedicated node name, with the IPP label and both taints and the
// instance's providerID; when the instance is terminated its kubelet stops and the Node stays.
func TestEC2InstanceJoinsAsIPPNode(t *testing.T) {
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
		Join:        bootstrap.Join{APIServerEndpoint: "127.0.0.1:6443", Token: "abcdef.0123456789abcdef"},
		MaxBackoff:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
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
	if node.Spec.ProviderID != inst.ProviderID {
		t.Errorf("Node providerID = %q, want the instance's %q", node.Spec.ProviderID, inst.ProviderID)
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

// pollUntil waits up to a minute for cond.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := waitFor(t.Context(), time.Minute, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("Waiting for %s: %v", what, err)
	}
}
