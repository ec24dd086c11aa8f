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
// classes apart by the anti-affinity the webhook adds. Two classes take the two nodes, one each;
// a third class finds no node without another class on it and stays Pending.
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
	createDeployment(t, ns, deployment(cfg, "a", "a", 2))
	createDeployment(t, ns, deployment(cfg, "b", "b", 2))
	nodeOf := map[string]string{}
	for _, class := range []string{"a", "b"} {
		for _, p := range waitDeploymentRunning(t, ns, class, 2) {
			if prev, ok := nodeOf[class]; ok && prev != p.Spec.NodeName {
				t.Errorf("Class %s runs on %s and %s; with two nodes and two classes each class has one", class, prev, p.Spec.NodeName)
			}
			nodeOf[class] = p.Spec.NodeName
		}
	}
	if nodeOf["a"] == nodeOf["b"] {
		t.Errorf("Classes a and b share node %s", nodeOf["a"])
	}

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
