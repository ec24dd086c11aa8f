package tests

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// TestAutoscalerMode: with the webhook in autoscaler mode and a node pool made beforehand (as
// Cluster Autoscaler would have made it from the original design's pool: nodes labelled ipp=true
// and tainted ipp=true:NoSchedule, the taint the mode's toleration matches), the scheduler keeps
// classes apart by the anti-affinity the webhook adds: two classes take the two nodes, one each,
// a class's further Pods join it, and a third class finds no node without another class on it and
// stays Pending.
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

	taints := []corev1.Taint{{Key: cfg.NodeTaint, Value: isolation.LabelValue, Effect: corev1.TaintEffectNoSchedule}}
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
