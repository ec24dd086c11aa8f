package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// warmNodes returns the Ready, unclaimed warm nodes of NodeClass nc.
func warmNodes(t *testing.T, nc string) sets.Set[string] {
	t.Helper()
	list, err := cluster.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{
		LabelSelector: isolation.WarmLabel + "=true," + isolation.NodeClassNodeLabel + "=" + nc,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := sets.New[string]()
	for _, n := range list.Items {
		if _, claimed := n.Labels[isolation.ClassLabel]; claimed {
			t.Errorf("Node %s is warm and bound to class key %s", n.Name, n.Labels[isolation.ClassLabel])
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !n.Spec.Unschedulable {
				out.Insert(n.Name)
			}
		}
	}
	return out
}

func waitWarm(t *testing.T, nc string, n int) sets.Set[string] {
	t.Helper()
	var got sets.Set[string]
	err := waitFor(t.Context(), ippTimeout, func(context.Context) (bool, error) {
		got = warmNodes(t, nc)
		return got.Len() == n, nil
	})
	if err != nil {
		t.Fatalf("Waiting for %d Ready warm nodes of NodeClass %s: %v (have %v)", n, nc, err, sets.List(got))
	}
	return got
}

// TestWarmPool runs a warm pool of two nodes under controller placement on each provider:
//
//   - the pool fills: two warm nodes join, Ready, bound to no class;
//   - a tenant Pod that lifts its gate itself and asks for a warm node by hostname never runs
//     there: it selects its class key, which a warm node does not carry;
//   - a new class takes a warm node at once (its Pod runs on one of the two), the node loses the
//     warm label and gains the class's labels, and the pool refills with another node;
//   - once the class's Pod goes, its node is reaped, never returned to the pool;
//   - warm.size 0 drains the pool.
//
// No Pod breaks I1-I3.
func TestWarmPool(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "warm-" + provider
		cfg.Placement = isolation.PlacementController
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Provider: provider, Config: &cfg, IdleTTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })
		ippc, err := ippclientset.NewForConfig(cluster.AdminConfig)
		if err != nil {
			t.Fatal(err)
		}
		nc := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "warm-" + provider},
			Spec:       ippv1alpha1.NodeClassSpec{Warm: &ippv1alpha1.WarmPool{Size: 2}},
		}
		if _, err := ippc.IppV1alpha1().NodeClasses().Create(ctx, nc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = ippc.IppV1alpha1().NodeClasses().Delete(context.Background(), nc.Name, metav1.DeleteOptions{})
		})
		warm := waitWarm(t, nc.Name, 2)
		err = waitFor(ctx, podTimeout, func(context.Context) (bool, error) {
			return metricTotal(t, "ipp_warm_nodes", map[string]string{"node_class": nc.Name, "state": "ready"}) == 2, nil
		})
		if err != nil {
			t.Errorf("ipp_warm_nodes{state=ready} of %s is %v, want 2: %v", nc.Name, metricTotal(t, "ipp_warm_nodes", map[string]string{"node_class": nc.Name, "state": "ready"}), err)
		}
		err = waitFor(ctx, podTimeout, func(context.Context) (bool, error) {
			return metricTotal(t, "ipp_warm_oldest_age_seconds", map[string]string{"node_class": nc.Name}) > 0, nil
		})
		if err != nil {
			t.Errorf("ipp_warm_oldest_age_seconds of %s stays 0 with two warm nodes: %v", nc.Name, err)
		}
		claimsBefore := metricTotal(t, "ipp_warm_claims_total", nil)
		ns := namespace(t, "warm")

		// A tenant aims at a warm node.
		tenant := tenantClient(t, ns)
		target := sets.List(warm)[0]
		sneaky := pod("sneaky", withLabels(cfg.PodLabel, "sneaky", isolation.NodeClassLabel, nc.Name), onNode(target))
		sneaky.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "tenant.example/hold"}}
		created, err := tenant.CoreV1().Pods(ns).Create(ctx, sneaky, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var lift string
		for i, g := range created.Spec.SchedulingGates {
			if g.Name == placement.Gate {
				lift = fmt.Sprintf(`[{"op":"remove","path":"/spec/schedulingGates/%d"}]`, i)
			}
		}
		if lift == "" {
			t.Fatalf("The tenant's Pod has no placement gate: %v", created.Spec.SchedulingGates)
		}
		if _, err := tenant.CoreV1().Pods(ns).Patch(ctx, sneaky.Name, types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/schedulingGates","value":[]}]`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("Tenant lifting every gate: %v", err)
		}
		waitUnschedulable(t, ns, sneaky.Name)

		// A class claims a warm node.
		createPod(t, ns, pod("c1", withLabels(cfg.PodLabel, "c1", isolation.NodeClassLabel, nc.Name)))
		perNode := waitPlacedRunning(t, ns, []string{"c1"})
		var claimed string
		for node := range perNode {
			claimed = node
		}
		if !warm.Has(claimed) {
			t.Fatalf("The class's Pod runs on %s, not on one of the warm nodes %v", claimed, sets.List(warm))
		}
		checkBoundTo(t, cfg, claimed, ns, "c1")
		if got := metricTotal(t, "ipp_warm_claims_total", nil) - claimsBefore; got != 1 {
			t.Errorf("ipp_warm_claims_total grew by %v for one claim", got)
		}
		n, err := cluster.Client.CoreV1().Nodes().Get(ctx, claimed, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := n.Labels[isolation.WarmLabel]; ok {
			t.Errorf("Claimed node %s still has %s", claimed, isolation.WarmLabel)
		}
		refilled := waitWarm(t, nc.Name, 2)
		if refilled.Has(claimed) {
			t.Fatalf("The claimed node %s is back in the pool", claimed)
		}

		// No reuse: the claimed node goes with its class.
		if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, "c1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		waitNodeGone(t, claimed)
		if now := warmNodes(t, nc.Name); now.Has(claimed) {
			t.Fatalf("The reaped node %s is warm again", claimed)
		}
		checkIsolation(t, cfg)

		// size 0 drains the pool.
		patch := []byte(`{"spec":{"warm":{"size":0}}}`)
		if _, err := ippc.IppV1alpha1().NodeClasses().Patch(ctx, nc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		for name := range refilled {
			waitNodeGone(t, name)
		}
	})
}

// waitUnschedulable waits until the scheduler has found no node for the Pod, and fails if it
// bound it anywhere.
func waitUnschedulable(t *testing.T, ns, name string) {
	t.Helper()
	err := waitFor(t.Context(), podTimeout, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Spec.NodeName != "" {
			t.Fatalf("Pod %s/%s was bound to %s", ns, name, p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Waiting for the scheduler to find no node for %s/%s: %v", ns, name, err)
	}
}
