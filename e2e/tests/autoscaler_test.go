package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// TestAutoscalerMode: with the webhook in autoscaler mode and a node pool made beforehand (as
// Cluster Autoscaler would have made it: nodes labelled ipp=true and tainted ipp=true with both
// effects, NoSchedule as in the original design and NoExecute, which the mode's mutation tolerates
// too), the scheduler keeps classes apart by the anti-affinity the webhook adds: two classes take
// the two nodes, one each, a class's further Pods join it, and a third class finds no node without
// another class on it and stays Pending.
func TestAutoscalerMode(t *testing.T) {
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	cfg.Mode = isolation.ModeAutoscaler
	wh, err := cluster.RegisterWebhook(ctx, webhook.NewHandler(cfg), framework.WebhookOptions{Name: "ipp-autoscaler"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wh.Unregister(context.Background()); err != nil {
			t.Error(err)
		}
	})

	taints := cfg.Taints()
	var pool []string
	for i := range 2 {
		name := fmt.Sprintf("ipp-pool-%d", i)
		startKubelet(t, kubelet.Registration{NodeName: name, Labels: cfg.NodeLabels(), Taints: taints})
		pool = append(pool, name)
	}
	for _, n := range pool {
		waitSchedulable(t, n)
	}

	ns := namespace(t, "autoscaler")
	// One Pod of a, then one of b: b cannot join a, so it takes the other node.
	createDeployment(t, ns, deployment(cfg, "a", "a", 1))
	nodeA := waitDeploymentRunning(t, ns, "a", 1)[0].Spec.NodeName
	createDeployment(t, ns, deployment(cfg, "b", "b", 1))
	nodeB := waitDeploymentRunning(t, ns, "b", 1)[0].Spec.NodeName
	if nodeA == nodeB {
		t.Fatalf("Classes a and b share node %s", nodeA)
	}
	// More Pods of a all go where a already is.
	scale, err := cluster.Client.AppsV1().Deployments(ns).GetScale(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if _, err := cluster.Client.AppsV1().Deployments(ns).UpdateScale(ctx, "a", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range waitDeploymentRunning(t, ns, "a", 3) {
		if p.Spec.NodeName != nodeA {
			t.Errorf("Pod %s of class a runs on %s, want %s with the rest of its class", p.Name, p.Spec.NodeName, nodeA)
		}
	}

	// A third class finds both nodes taken.
	createPod(t, ns, pod("c", withClass(cfg, "c")))
	pollUntil(t, "the scheduler to find no node for class c", func() bool {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "c", metav1.GetOptions{})
		return err == nil && podUnschedulable(p)
	})
	p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "c", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		t.Errorf("Pod of class c was placed on %s", p.Spec.NodeName)
	}
	if p.Spec.Affinity == nil || p.Spec.Affinity.PodAntiAffinity == nil {
		t.Errorf("Pod of class c has no anti-affinity from the webhook: %+v", p.Spec.Affinity)
	}
	checkIsolation(t, cfg)
}

// registerAutoscalerWebhook registers the IPP webhook in autoscaler mode (cfg), with opts, until
// the test ends.
func registerAutoscalerWebhook(t *testing.T, cfg isolation.Config, name string, opts ...webhook.Option) {
	t.Helper()
	wh, err := cluster.RegisterWebhook(t.Context(), webhook.NewHandler(cfg, opts...), framework.WebhookOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wh.Unregister(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// TestAutoscalerNodeNameOntoPool attacks I2 in autoscaler mode through the real apiserver, with a
// tenant's own credentials: a Pod without a class that presets spec.nodeName to a node of the pool
// skips the scheduler, and a pool tainted NoSchedule alone (the original design) would not stop
// the kubelet from running it. The validating webhook, with its set of IPP nodes
// (--watch-ipp-nodes), denies it and names the node; the same Pod aimed at a node outside the pool
// passes, and an IPP Pod with a preset spec.nodeName is denied as before.
func TestAutoscalerNodeNameOntoPool(t *testing.T) {
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	cfg.Mode = isolation.ModeAutoscaler
	nodes := watchIPPNodes(t, cfg)
	registerAutoscalerWebhook(t, cfg, "ipp-autoscaler-nodename", webhook.WithNodes(nodes))

	pool := uniqueName("ipp-pool")
	startKubelet(t, kubelet.Registration{NodeName: pool, Labels: cfg.NodeLabels(),
		Taints: []corev1.Taint{{Key: cfg.NodeTaint, Value: isolation.LabelValue, Effect: corev1.TaintEffectNoSchedule}}})
	ns := namespace(t, "nodename")
	tenant := tenantClient(t, ns)
	waitSchedulable(t, pool)
	pollUntil(t, "the webhook to learn of pool node "+pool, func() bool { return nodes.Has(pool) })

	_, err := tenant.CoreV1().Pods(ns).Create(ctx, strayPod("stray", pool), metav1.CreateOptions{})
	checkNodeNameDenied(t, err, pool)

	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := tenant.CoreV1().Pods(ns).Create(ctx, strayPod("elsewhere", "worker-not-in-pool"), dryRun); err != nil {
		t.Errorf("A Pod without a class naming a node outside the pool: %v, want admitted", err)
	}
	_, err = tenant.CoreV1().Pods(ns).Create(ctx, pod("ipp-stray", withClass(cfg, "a"), func(p *corev1.Pod) { p.Spec.NodeName = pool }), dryRun)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "remove spec.nodeName") {
		t.Errorf("An IPP Pod with spec.nodeName=%s: error %v, want Forbidden: remove spec.nodeName", pool, err)
	}
	pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d Pods admitted in %s, want none", len(pods.Items), ns)
	}
	checkIsolation(t, cfg)
}

// TestAutoscalerNoExecuteStopsNodeName: the second line of defence against a Pod without a class
// that names a pool node. With the webhook's nodeName check off (--watch-ipp-nodes=false), a pool
// tainted ipp=true with both effects, as docs/operations.md says to taint it, still runs the
// class's Pods (the mutation tolerates NoExecute too), and the pool node's kubelet, with the real
// kubelet's admission predicates, rejects the tenant's stray Pod: it never runs there.
func TestAutoscalerNoExecuteStopsNodeName(t *testing.T) {
	cfg := isolation.DefaultConfig()
	cfg.Mode = isolation.ModeAutoscaler
	registerAutoscalerWebhook(t, cfg, "ipp-autoscaler-noexecute")

	pool := uniqueName("ipp-pool")
	startKubelet(t, kubelet.Registration{NodeName: pool, Labels: cfg.NodeLabels(), Taints: cfg.Taints()})
	ns := namespace(t, "noexecute")
	tenant := tenantClient(t, ns)
	waitSchedulable(t, pool)

	// The class's own Pods still run on the pool.
	createDeployment(t, ns, deployment(cfg, "a", "a", 1))
	if got := waitDeploymentRunning(t, ns, "a", 1)[0].Spec.NodeName; got != pool {
		t.Errorf("Pod of class a runs on %s, want the pool node %s", got, pool)
	}

	waitKubeletRejects(t, ns, "stray", func() {
		if _, err := tenant.CoreV1().Pods(ns).Create(t.Context(), strayPod("stray", pool), metav1.CreateOptions{}); err != nil {
			t.Fatalf("Creating the stray Pod (the webhook's nodeName check is off): %v", err)
		}
	})
	checkIsolation(t, cfg)
}
