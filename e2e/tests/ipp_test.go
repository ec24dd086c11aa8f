package tests

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// idleTTL is the controller's idle TTL in these tests, shortened from 10 minutes.
const idleTTL = 5 * time.Second

// ippTimeout bounds a wait for the controller: provisioning, binding, reaping.
const ippTimeout = 2 * time.Minute

// TestDedicated runs the end-to-end scenarios of dedicated mode on each provider chosen by
// -provider, one provider after the other, against an IPP of its own: the real webhook registered
// with the apiserver, the real controller with the real provider (gce or ec2) pointed at its
// cloud's emulator, whose instances boot into Nodes through emulated kubelets, and one plain
// worker node. Each provider's IPP has a cluster name of its own, so its dedicated node names,
// worker and instances are its own. Its scenarios run in parallel, each in namespaces of its own,
// so their classes have dedicated nodes of their own; after them, no Pod anywhere breaks I1-I3,
// and last the webhook goes down (I5).
func TestDedicated(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "e2e-" + provider
		// --placement=admission: these scenarios follow each class's one dedicated node by its
		// name (cfg.NodeName). The default placement's flows are TestControllerPlacement's.
		cfg.Placement = isolation.PlacementAdmission
		ipp, err := framework.StartIPP(t.Context(), cluster, framework.IPPOptions{
			Provider:    provider,
			Config:      &cfg,
			IdleTTL:     idleTTL,
			WorkerNodes: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })
		t.Run("scenarios", func(t *testing.T) {
			for _, tc := range []struct {
				name string
				run  func(*testing.T, *framework.IPP)
			}{
				{"two classes get two instances", testTwoClasses},
				{"idle class is reaped", testReaped},
				{"node cannot keep itself alive", testNodeCannotKeepItselfAlive},
				{"untrusted node is never bound", testUntrustedNode},
				{"controller restarted mid-burst", testRestartMidBurst},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, ipp)
				})
			}
		})
		checkIsolation(t, ipp.Config)
		// It stops the webhook for good, so it comes after the scenarios.
		t.Run("webhook down fails closed", func(t *testing.T) { testWebhookDown(t, ipp) })
	})
}

// testTwoClasses is the seed's example: Deployments of class0 and class1 get two instances, each
// class's Pods run only on its own dedicated node, and a Pod without a class runs on neither.
func testTwoClasses(t *testing.T, ipp *framework.IPP) {
	ctx := t.Context()
	ns := namespace(t, "seed")
	for _, class := range []string{"class0", "class1"} {
		createDeployment(t, ns, deployment(ipp.Config, class, class, 2))
	}
	createPod(t, ns, pod("plain"))

	for _, class := range []string{"class0", "class1"} {
		name := ipp.Config.NodeName(ns, class)
		for _, p := range waitDeploymentRunning(t, ns, class, 2) {
			if p.Spec.NodeName != name {
				t.Errorf("Pod %s of %s runs on %s, want its dedicated node %s", p.Name, class, p.Spec.NodeName, name)
			}
		}
		node, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := node.Labels[isolation.BindingLabel]; got != name {
			t.Errorf("Node %s: %s = %q, want %q", name, isolation.BindingLabel, got, name)
		}
		if inst, ok := ipp.Cloud.Instance(name); !ok {
			t.Errorf("No instance %s", name)
		} else if node.Spec.ProviderID != inst.ProviderID {
			t.Errorf("Node %s has providerID %q, want its instance's %q", name, node.Spec.ProviderID, inst.ProviderID)
		}
		if got := ipp.Cloud.Created(name); got != 1 {
			t.Errorf("Instances created for %s: %d, want 1", name, got)
		}
	}
	plain, err := framework.WaitForPodRunning(ctx, cluster.Client, ns, "plain", podTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Spec.NodeName != ipp.Workers[0] {
		t.Errorf("Pod without a class runs on %s, want the worker %s", plain.Spec.NodeName, ipp.Workers[0])
	}
	checkIsolation(t, ipp.Config)
}

// testReaped: once a class's Deployment is gone, its Node and instance are deleted after the idle
// TTL; when the class comes back it gets a new instance and a new Node, never the old ones (I6).
func testReaped(t *testing.T, ipp *framework.IPP) {
	ctx := t.Context()
	ns := namespace(t, "reap")
	const class = "reaped"
	name := ipp.Config.NodeName(ns, class)
	createDeployment(t, ns, deployment(ipp.Config, class, class, 1))
	waitDeploymentRunning(t, ns, class, 1)
	first, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	firstInstance, ok := ipp.Cloud.Instance(name)
	if !ok {
		t.Fatalf("No instance %s", name)
	}

	deleted := time.Now()
	if err := cluster.Client.AppsV1().Deployments(ns).Delete(ctx, class, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	waitReaped(t, ipp, name)
	took := time.Since(deleted)
	// The idle clock is rounded up to the second, so the TTL never ends early.
	if took < idleTTL {
		t.Errorf("Reaped %v after the Deployment was deleted, before the idle TTL %v", took, idleTTL)
	}
	t.Logf("Reaped %s %v after its Deployment was deleted (idle TTL %v)", name, took.Round(100*time.Millisecond), idleTTL)
	// The controller records the Event before it deletes; its broadcaster writes it a little later.
	pollUntil(t, "a "+controller.ReasonReaped+" Event on Node "+name, func() bool {
		return hasEvent(t, "", "Node", name, controller.ReasonReaped)
	})

	createDeployment(t, ns, deployment(ipp.Config, "again", class, 1))
	waitDeploymentRunning(t, ns, "again", 1)
	second, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secondInstance, ok := ipp.Cloud.Instance(name)
	if !ok {
		t.Fatalf("No instance %s after the class came back", name)
	}
	if second.UID == first.UID || secondInstance.ID == firstInstance.ID {
		t.Errorf("The class came back to Node %s / instance %s, the ones reaped", second.UID, secondInstance.ID)
	}
	if second.Spec.ProviderID != secondInstance.ProviderID {
		t.Errorf("Node %s has providerID %q, want its new instance's %q", name, second.Spec.ProviderID, secondInstance.ProviderID)
	}
	if got := ipp.Cloud.Created(name); got != 2 {
		t.Errorf("Instances created for %s: %d, want 2 (one per life of the class)", name, got)
	}
}

// reapMargin is how much later than the idle TTL an idle node may be reaped: the Pods' deletion,
// a provider List, a busy machine.
const reapMargin = 30 * time.Second

// testNodeCannotKeepItselfAlive: a class's node, once its Pods are gone, tries to keep itself
// alive with its own credentials (system:node:<name>): every second it sets the idle-since
// annotation that older controllers read to now, drops the old reaping marks, bumps a label of
// its own and uncordons itself, and tries to set the idle clock label, which NodeRestriction
// must refuse. It is reaped within the idle TTL and a margin all the same (I9).
func testNodeCannotKeepItselfAlive(t *testing.T, ipp *framework.IPP) {
	ctx := t.Context()
	ns := namespace(t, "keepalive")
	const class = "immortal"
	name := ipp.Config.NodeName(ns, class)
	createDeployment(t, ns, deployment(ipp.Config, class, class, 1))
	waitDeploymentRunning(t, ns, class, 1)
	self := nodeClient(t, name)

	deleted := time.Now()
	if err := cluster.Client.AppsV1().Deployments(ns).Delete(ctx, class, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}

	attackCtx, stop := context.WithCancel(ctx)
	var (
		mu        sync.Mutex
		rewrites  int   // rounds in which the node rewrote itself and was refused the clock
		attackErr error // the first unexpected answer
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for i := 0; ; i++ {
			now := time.Now().UTC()
			allowed := fmt.Sprintf(`{"metadata":{"annotations":{"ipp.io/idle-since":%q,"ipp.io/reaping":null,"ipp.io/cordoned":null},"labels":{"keepalive.example.com/beat":"%d"}},"spec":{"unschedulable":false}}`,
				now.Format(time.RFC3339), i)
			_, errAllowed := self.CoreV1().Nodes().Patch(attackCtx, name, types.MergePatchType, []byte(allowed), metav1.PatchOptions{})
			errClock := tamperWithClock(attackCtx, self, name, now)
			if attackCtx.Err() != nil {
				return
			}
			mu.Lock()
			switch {
			case apierrors.IsNotFound(errAllowed) || apierrors.IsNotFound(errClock):
				// Reaped.
			case errAllowed != nil:
				attackErr = firstErr(attackErr, fmt.Errorf("the node's own write of its annotations, labels and unschedulable: %w", errAllowed))
			case errClock != nil:
				attackErr = firstErr(attackErr, errClock)
			default:
				rewrites++
			}
			mu.Unlock()
			select {
			case <-attackCtx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	err := waitFor(ctx, idleTTL+reapMargin, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		_, exists := ipp.Cloud.Instance(name)
		return apierrors.IsNotFound(err) && !exists, nil
	})
	took := time.Since(deleted)
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		t.Fatalf("Node %s, rewriting itself every second, was not reaped within the idle TTL %v + %v: %v", name, idleTTL, reapMargin, err)
	}
	if attackErr != nil {
		t.Error(attackErr)
	}
	if rewrites == 0 {
		t.Errorf("The node never got to rewrite itself before it was reaped %v after its Pods went; the attack was not tried", took)
	}
	t.Logf("Reaped %s %v after its Deployment was deleted (idle TTL %v), after %d rewrites of itself, each with its try to set %s Forbidden",
		name, took.Round(100*time.Millisecond), idleTTL, rewrites, isolation.IdleSinceLabel)
}

// tamperWithClock tries, as the node, what would keep it alive if it worked: to remove its idle
// clock label, or set it to now. Each try must be Forbidden; it returns an error if one is not.
// (Writing the value the label already has changes nothing, so NodeRestriction lets it through;
// the value tried always differs.)
func tamperWithClock(ctx context.Context, self kubernetes.Interface, name string, now time.Time) error {
	node, err := self.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	set := now.Unix()
	tries := map[string]string{}
	if v, ok := node.Labels[isolation.IdleSinceLabel]; ok {
		tries["remove"] = fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, isolation.IdleSinceLabel)
		if v == strconv.FormatInt(set, 10) {
			set++
		}
	}
	tries["set"] = fmt.Sprintf(`{"metadata":{"labels":{%q:"%d"}}}`, isolation.IdleSinceLabel, set)
	for what, patch := range tries {
		_, err := self.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		switch {
		case err == nil:
			return fmt.Errorf("the node could %s its own %s", what, isolation.IdleSinceLabel)
		case apierrors.IsNotFound(err):
			return err
		case !apierrors.IsForbidden(err):
			return fmt.Errorf("trying to %s %s as the node: want Forbidden, got %w", what, isolation.IdleSinceLabel, err)
		}
	}
	return nil
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// testUntrustedNode: a Node that registers under a class's dedicated name with the IPP label and
// taints, but whose providerID matches no instance the controller created, is never bound and
// never receives the class's Pods; the controller warns about it. The class's own instance never
// boots here, so the impostor is the only candidate.
func testUntrustedNode(t *testing.T, ipp *framework.IPP) {
	ctx := t.Context()
	ns := namespace(t, "untrusted")
	const class = "victim"
	name := ipp.Config.NodeName(ns, class)
	ipp.NeverBoot(name)
	createPod(t, ns, pod("victim", withClass(ipp.Config, class)))
	pollUntil(t, "the controller to create the class's instance", func() bool { return ipp.Cloud.Created(name) == 1 })
	inst, ok := ipp.Cloud.Instance(name)
	if !ok {
		t.Fatalf("No instance %s", name)
	}
	foreign := ipp.Cloud.ForeignProviderID(name)
	if foreign == inst.ProviderID {
		t.Fatalf("The impostor's providerID %s is the instance's", foreign)
	}
	t.Logf("Impostor %s claims providerID %s; the class's instance has %s", name, foreign, inst.ProviderID)

	rogue, err := ipp.StartKubelet(ctx, kubelet.Registration{
		NodeName:   name,
		Labels:     ipp.Config.NodeLabels(),
		Taints:     ipp.Config.Taints(),
		ProviderID: foreign,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rogue.Stop()
		deleteNode(name)
	})
	waitSchedulable(t, name)
	pollUntil(t, "an UntrustedNode Warning on the impostor", func() bool {
		return hasEvent(t, "", "Node", name, controller.ReasonUntrustedNode)
	})

	node, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := node.Labels[isolation.BindingLabel]; ok {
		t.Errorf("Impostor node carries %s=%s", isolation.BindingLabel, v)
	}
	p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		t.Errorf("Pod of %s was placed on %s", class, p.Spec.NodeName)
	}
	if !podUnschedulable(p) {
		t.Errorf("Pod of %s is not reported unschedulable: %+v", class, p.Status.Conditions)
	}
}

// testRestartMidBurst: Deployments of several classes arrive at once; the controller is stopped
// while it creates their instances and a new one is started. Every class gets exactly one
// instance, every Pod runs on its node, and after the Deployments are deleted nothing is left.
func testRestartMidBurst(t *testing.T, ipp *framework.IPP) {
	ctx := t.Context()
	ns := namespace(t, "burst")
	var classes, names []string
	for i := range 5 {
		class := fmt.Sprintf("burst%d", i)
		classes = append(classes, class)
		names = append(names, ipp.Config.NodeName(ns, class))
	}
	for _, class := range classes {
		createDeployment(t, ns, deployment(ipp.Config, class, class, 3))
	}
	pollUntil(t, "the first instance of the burst", func() bool {
		for _, n := range names {
			if ipp.Cloud.Created(n) > 0 {
				return true
			}
		}
		return false
	})
	ipp.StopController()
	created := 0
	for _, n := range names {
		created += ipp.Cloud.Created(n)
	}
	t.Logf("Controller stopped after %d of %d instances were created", created, len(names))
	if err := ipp.StartController(ctx); err != nil {
		t.Fatal(err)
	}

	for i, class := range classes {
		for _, p := range waitDeploymentRunning(t, ns, class, 3) {
			if p.Spec.NodeName != names[i] {
				t.Errorf("Pod %s of %s runs on %s, want %s", p.Name, class, p.Spec.NodeName, names[i])
			}
		}
	}
	for _, n := range names {
		if got := ipp.Cloud.Created(n); got != 1 {
			t.Errorf("Instances created for %s: %d, want 1", n, got)
		}
	}
	checkIsolation(t, ipp.Config)

	for _, class := range classes {
		if err := cluster.Client.AppsV1().Deployments(ns).Delete(ctx, class, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		waitReaped(t, ipp, n)
	}
}

// waitReaped waits until the dedicated node's Node and instance are both gone.
func waitReaped(t *testing.T, ipp *framework.IPP, name string) {
	t.Helper()
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		_, exists := ipp.Cloud.Instance(name)
		return apierrors.IsNotFound(err) && !exists, nil
	})
	if err != nil {
		t.Fatalf("Waiting for %s to be reaped: %v", name, err)
	}
}

// checkIsolation fails the test if any placed Pod in the cluster breaks I1-I3.
func checkIsolation(t *testing.T, cfg isolation.Config) {
	t.Helper()
	violations, err := framework.CheckIsolation(context.Background(), cluster.Client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		t.Error(v)
	}
}

// hasEvent reports whether an Event with reason has been recorded on the object.
func hasEvent(t *testing.T, namespace, kind, name, reason string) bool {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name, "reason": reason}.AsSelector().String()
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	events, err := cluster.Client.CoreV1().Events(namespace).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatalf("Listing events: %v", err)
	}
	return len(events.Items) > 0
}

func podUnschedulable(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		}
	}
	return false
}

// withClass labels the Pod with an isolation class.
func withClass(cfg isolation.Config, class string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[cfg.PodLabel] = class
	}
}

// deployment returns a Deployment of pause Pods labelled app=<name> and, if class is set, with
// the isolation class.
func deployment(cfg isolation.Config, name, class string, replicas int32) *appsv1.Deployment {
	podLabels := map[string]string{"app": name}
	if class != "" {
		podLabels[cfg.PodLabel] = class
	}
	tmpl := pod("", func(p *corev1.Pod) { p.Labels = podLabels })
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
		},
	}
}

func createDeployment(t *testing.T, ns string, d *appsv1.Deployment) {
	t.Helper()
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("Creating deployment %s/%s: %v", ns, d.Name, err)
	}
}

// waitDeploymentRunning waits until n Pods labelled app=<app> run and are ready, and returns them
// sorted by name.
func waitDeploymentRunning(t *testing.T, ns, app string, n int) []corev1.Pod {
	t.Helper()
	sel := labels.SelectorFromSet(labels.Set{"app": app}).String()
	var running []corev1.Pod
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err
		}
		running = running[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && framework.PodRunningAndReady(&p) {
				running = append(running, p)
			}
		}
		return len(running) == n, nil
	})
	if err != nil {
		t.Fatalf("Waiting for %d running pods of %s/%s (have %d): %v", n, ns, app, len(running), err)
	}
	sort.Slice(running, func(i, j int) bool { return running[i].Name < running[j].Name })
	return running
}
