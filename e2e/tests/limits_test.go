package tests

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	ippv1alpha1client "github.com/ipp-project/ipp/pkg/generated/clientset/versioned/typed/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// TestNodeClassLimit: on each provider and under each placement (admission: one dedicated node
// per class, named after it; controller: Pods gated and placed by the controller on nodes of
// random names), five classes against a NodeClass limited to three instances get exactly three
// instances in the emulator, never more at any moment; the other two classes wait with
// LimitReached Events naming the limit, no instance of theirs in the provider's List, and under
// controller placement their Pods keep the placement gate; the NodeClass's status says so. Once
// one class's Pod is deleted, its node is reaped after the NodeClass's idle TTL (3 s; the
// controller's --idle-ttl is the 10 min default), and a waiting class gets its node. No Pod breaks
// I1-I3, and the reaped node's instance is gone (I6).
//
// The NodeClass is the cluster's default one (an object named default): Pods without the
// ipp.io/node-class label get it.
func TestNodeClassLimit(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		forEachPlacement(t, func(t *testing.T, pl isolation.Placement) {
			testNodeClassLimit(t, provider, pl)
		})
	})
}

func testNodeClassLimit(t *testing.T, provider string, pl isolation.Placement) {
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = "limits-" + provider + "-" + string(pl)
	cfg.Placement = pl
	ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{
		Provider: provider,
		Config:   &cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipp.Stop(context.Background()) })

	client, err := ippclientset.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	ncs := client.IppV1alpha1().NodeClasses()
	nc := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: isolation.DefaultNodeClass},
		Spec: ippv1alpha1.NodeClassSpec{
			IdleTTL: &metav1.Duration{Duration: 3 * time.Second},
			Limits:  &ippv1alpha1.NodeClassLimits{Instances: ptr.To[int32](3)},
		},
	}
	createNodeClass(t, ncs, nc)

	watch := watchLiveInstances(t, ipp.Cloud)
	defer watch.stop()

	ns := namespace(t, "limits")
	classes := []string{"c0", "c1", "c2", "c3", "c4"}
	for _, class := range classes {
		createPod(t, ns, pod(class, classOf(cfg, class)))
	}
	// Three run on their nodes; two wait, each told why.
	var running, waiting []string
	err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
		running, waiting = nil, nil
		for _, class := range classes {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, class, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			on, err := runsOnClassNode(ctx, cfg, p)
			if err != nil {
				return false, err
			}
			switch {
			case on:
				running = append(running, class)
			case limitEvent(t, ns, class) != "":
				waiting = append(waiting, class)
			}
		}
		if len(running) > 3 {
			return false, fmt.Errorf("%d classes run on nodes of their own, above the limit of 3", len(running))
		}
		return len(running) == 3 && len(waiting) == 2, nil
	})
	if err != nil {
		t.Fatalf("Waiting for 3 running and 2 waiting classes: %v (running %v, waiting %v)", err, running, waiting)
	}
	for _, class := range waiting {
		msg := limitEvent(t, ns, class)
		if !strings.Contains(msg, "NodeClass default allows 3 instances (spec.limits.instances)") {
			t.Errorf("LimitReached Event of %s = %q, want the limit, its value and the NodeClass named", class, msg)
		}
		checkWaiting(t, ipp, cfg, ns, class)
	}
	err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
		got, err := ncs.Get(ctx, nc.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		st := got.Status
		return st.Nodes == 3 && st.Classes == 3 && st.Pods == 3 &&
			meta.IsStatusConditionTrue(st.Conditions, ippv1alpha1.ConditionLimitReached), nil
	})
	if err != nil {
		got, _ := ncs.Get(ctx, nc.Name, metav1.GetOptions{})
		t.Errorf("NodeClass status: %v; got %+v", err, got.Status)
	}

	// One class goes: its node is reaped after the NodeClass's idle TTL, and a waiting
	// class gets the slot.
	gone := running[0]
	goneNodes := classNodes(t, cfg, ns, gone)
	if len(goneNodes) != 1 {
		t.Fatalf("Class %s of one Pod has nodes %v, want one", gone, goneNodes)
	}
	goneNode := goneNodes[0]
	goneInst, ok := ipp.Cloud.Instance(goneNode)
	if !ok {
		t.Fatalf("Node %s of class %s has no live instance in the emulator", goneNode, gone)
	}
	if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, gone, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	var next string
	err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
		for _, class := range waiting {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, class, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if on, err := runsOnClassNode(ctx, cfg, p); on || err != nil {
				next = class
				return on, err
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Waiting for a waiting class to get the freed node: %v", err)
	}
	if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, goneNode, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s of the deleted class: %v, want it reaped", goneNode, err)
	}
	for _, inst := range ipp.Cloud.Instances() {
		if inst.ID == goneInst.ID && inst.Live {
			t.Errorf("Instance %s of the reaped node %s is live", inst.ID, goneNode)
		}
	}
	// The other waiting class still waits: three is the limit.
	for _, class := range waiting {
		if class != next {
			checkWaiting(t, ipp, cfg, ns, class)
		}
	}
	if got := watch.stop(); got > 3 {
		t.Errorf("The emulator had %d live instances at once, above the limit of 3", got)
	}
	for name, n := range ipp.Cloud.CreatedCounts() {
		if n > 1 {
			t.Errorf("Instances created for %s: %d, want at most 1", name, n)
		}
	}
	checkIsolation(t, ipp.Config)
}

// TestNodeClassLimitPerClass: under controller placement, on each provider, a class of six Pods
// of 1.5 CPUs each, three nodes' worth on emulated nodes of 4 CPUs, of a NodeClass with
// maxNodesPerClass 2, gets exactly two nodes (never more instances in the emulator), four Pods
// Running on them, two on each; the other two Pods stay gated, unscheduled, with a LimitReached
// Event naming maxNodesPerClass and the NodeClass. When two Pods on one node go, the two waiting
// ones are placed in their room, still on two instances. No Pod breaks I1-I3.
func TestNodeClassLimitPerClass(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "perclass-" + provider
		cfg.Placement = isolation.PlacementController
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Provider: provider, Config: &cfg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })

		client, err := ippclientset.NewForConfig(cluster.AdminConfig)
		if err != nil {
			t.Fatal(err)
		}
		nc := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "perclass-" + provider},
			Spec:       ippv1alpha1.NodeClassSpec{MaxNodesPerClass: ptr.To[int32](2)},
		}
		createNodeClass(t, client.IppV1alpha1().NodeClasses(), nc)

		watch := watchLiveInstances(t, ipp.Cloud)
		defer watch.stop()

		ns := namespace(t, "perclass")
		var names []string
		for i := range 6 {
			p := createPod(t, ns, pod(fmt.Sprintf("big-%d", i), withLabels(cfg.PodLabel, "big", isolation.NodeClassLabel, nc.Name), requesting("1500m")))
			names = append(names, p.Name)
		}
		want := fmt.Sprintf("NodeClass %s allows 2 nodes per class (spec.maxNodesPerClass)", nc.Name)
		var run, gated []string
		err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			run, gated = nil, nil
			for _, name := range names {
				p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				switch {
				case p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "":
					run = append(run, name)
				case p.Spec.NodeName == "" && hasPlacementGate(p) && strings.Contains(limitEvent(t, ns, name), want):
					gated = append(gated, name)
				}
			}
			if len(run) > 4 {
				return false, fmt.Errorf("%d Pods of 1.5 CPUs run, more than two nodes of 4 CPUs hold", len(run))
			}
			return len(run) == 4 && len(gated) == 2, nil
		})
		if err != nil {
			t.Fatalf("Waiting for 4 Pods running and 2 gated with a LimitReached Event naming %q: %v (running %v, gated %v)", want, err, run, gated)
		}
		perNode := waitPlacedRunning(t, ns, run)
		if len(perNode) != 2 {
			t.Errorf("The four running Pods run on %d nodes, want 2: %v", len(perNode), perNode)
		}
		for node, pods := range perNode {
			checkBoundTo(t, cfg, node, ns, "big")
			if len(pods) != 2 {
				t.Errorf("Node %s hosts %v, want two Pods of 1.5 CPUs on 4", node, pods)
			}
		}
		if nodes := classNodes(t, cfg, ns, "big"); len(nodes) != 2 {
			t.Errorf("Class big has nodes %v, want 2", nodes)
		}
		if insts := classInstances(t, ipp, cfg, ns, "big"); len(insts) != 2 {
			t.Errorf("Class big has %d live instances in the provider's List, want 2: %v", len(insts), insts)
		}
		ncs := client.IppV1alpha1().NodeClasses()
		waitLimitCondition(t, ncs, nc.Name, metav1.ConditionTrue, "spec.maxNodesPerClass")

		// Room frees on one node: the gated Pods are placed there, on no new instance.
		var freed string
		for node, pods := range perNode {
			freed = node
			for _, name := range pods {
				if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
					t.Fatal(err)
				}
			}
			break
		}
		again := waitPlacedRunning(t, ns, gated)
		if len(again[freed]) != 2 {
			t.Errorf("The two gated Pods run on %v, want both on node %s, whose two Pods went", again, freed)
		}
		// No Pod waits for the limit any more: the NodeClass says so.
		waitLimitCondition(t, ncs, nc.Name, metav1.ConditionFalse, "")
		if got := watch.stop(); got > 2 {
			t.Errorf("The emulator had %d live instances at once, above maxNodesPerClass 2 for the one class", got)
		}
		checkIsolation(t, cfg)
	})
}

// forEachPlacement runs f under admission placement, then under controller placement.
func forEachPlacement(t *testing.T, f func(t *testing.T, pl isolation.Placement)) {
	t.Helper()
	for _, p := range []isolation.Placement{isolation.PlacementAdmission, isolation.PlacementController} {
		t.Run(string(p), func(t *testing.T) { f(t, p) })
	}
}

// createNodeClass creates nc, deletes it when the test ends, and waits until the controller has
// seen it (it writes its status Ready).
func createNodeClass(t *testing.T, ncs ippv1alpha1client.NodeClassInterface, nc *ippv1alpha1.NodeClass) {
	t.Helper()
	ctx := t.Context()
	if _, err := ncs.Create(ctx, nc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ncs.Delete(context.Background(), nc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	})
	err := waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
		got, err := ncs.Get(ctx, nc.Name, metav1.GetOptions{})
		return err == nil && meta.IsStatusConditionTrue(got.Status.Conditions, ippv1alpha1.ConditionReady), err
	})
	if err != nil {
		t.Fatalf("Waiting for NodeClass %s to be Ready: %v", nc.Name, err)
	}
}

// waitLimitCondition waits until NodeClass name's LimitReached condition has status, and a
// message that contains msg.
func waitLimitCondition(t *testing.T, ncs ippv1alpha1client.NodeClassInterface, name string, status metav1.ConditionStatus, msg string) {
	t.Helper()
	var cond *metav1.Condition
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		got, err := ncs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond = meta.FindStatusCondition(got.Status.Conditions, ippv1alpha1.ConditionLimitReached)
		return cond != nil && cond.Status == status && strings.Contains(cond.Message, msg), nil
	})
	if err != nil {
		t.Fatalf("Waiting for NodeClass %s's %s condition to be %s with a message containing %q: %v; it is %+v", name, ippv1alpha1.ConditionLimitReached, status, msg, err, cond)
	}
}

// liveWatch records the most live instances the emulator showed at once.
type liveWatch struct {
	cancel  context.CancelFunc
	done    sync.WaitGroup
	mu      sync.Mutex
	most    int
	stopped bool
}

// watchLiveInstances watches the emulator, every framework.PollInterval, until stop.
func watchLiveInstances(t *testing.T, cloud framework.Cloud) *liveWatch {
	ctx, cancel := context.WithCancel(t.Context())
	w := &liveWatch{cancel: cancel}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for ctx.Err() == nil {
			live := 0
			for _, inst := range cloud.Instances() {
				if inst.Live {
					live++
				}
			}
			w.mu.Lock()
			w.most = max(w.most, live)
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(framework.PollInterval):
			}
		}
	}()
	return w
}

// stop stops the watch and returns the most live instances seen at once.
func (w *liveWatch) stop() int {
	w.cancel()
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.most
}

// runsOnClassNode reports whether the Pod runs on a node of its class: under admission
// placement, its class's dedicated node; under controller placement, a Node bound to its class
// key.
func runsOnClassNode(ctx context.Context, cfg isolation.Config, p *corev1.Pod) (bool, error) {
	class, _ := cfg.Class(p)
	if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" || class == "" {
		return false, nil
	}
	if cfg.Placement != isolation.PlacementController {
		return p.Spec.NodeName == cfg.NodeName(p.Namespace, class), nil
	}
	n, err := cluster.Client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		return false, ignoreNotFound(err)
	}
	return n.Labels[isolation.ClassLabel] == cfg.ClassKey(p.Namespace, class), nil
}

// classNodes returns the names of the Nodes of class in ns: its dedicated node under admission
// placement, the Nodes labelled with its class key under controller placement.
func classNodes(t *testing.T, cfg isolation.Config, ns, class string) []string {
	t.Helper()
	if cfg.Placement != isolation.PlacementController {
		name := cfg.NodeName(ns, class)
		if _, err := cluster.Client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			t.Fatal(err)
		}
		return []string{name}
	}
	sel := labels.SelectorFromSet(labels.Set{isolation.ClassLabel: cfg.ClassKey(ns, class)}).String()
	nodes, err := cluster.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		out = append(out, n.Name)
	}
	return out
}

// classInstances returns the live instances of class in ns in the provider's List, by the class
// and namespace each records.
func classInstances(t *testing.T, ipp *framework.IPP, cfg isolation.Config, ns, class string) []cloudprovider.Instance {
	t.Helper()
	insts, err := ipp.Cloud.Provider().List(t.Context())
	if err != nil {
		t.Fatalf("Listing the provider's instances: %v", err)
	}
	var out []cloudprovider.Instance
	for _, inst := range insts {
		if inst.Class == class && inst.Namespace == cfg.ScopedNamespace(ns) &&
			inst.State != cloudprovider.StateStopping && inst.State != cloudprovider.StateTerminated {
			out = append(out, inst)
		}
	}
	return out
}

// checkWaiting checks that the Pod of class, which a limit keeps waiting, has no instance and
// runs nowhere, and, under controller placement, keeps the placement gate.
func checkWaiting(t *testing.T, ipp *framework.IPP, cfg isolation.Config, ns, class string) {
	t.Helper()
	if insts := classInstances(t, ipp, cfg, ns, class); len(insts) > 0 {
		t.Errorf("Class %s waits for the limit but has instances %v", class, insts)
	}
	p, err := cluster.Client.CoreV1().Pods(ns).Get(t.Context(), class, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		t.Errorf("Pod %s waits for the limit but is bound to node %s", class, p.Spec.NodeName)
	}
	if cfg.Placement == isolation.PlacementController && !hasPlacementGate(p) {
		t.Errorf("Pod %s waits for the limit but lost the %s gate: %v", class, placement.Gate, p.Spec.SchedulingGates)
	}
}

// hasPlacementGate reports whether the Pod carries the placement gate.
func hasPlacementGate(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate })
}

// limitEvent returns the message of the LimitReached Event on the Pod, or "".
func limitEvent(t *testing.T, ns, name string) string {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": name, "reason": controller.ReasonLimitReached}.AsSelector().String()
	events, err := cluster.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatalf("Listing events: %v", err)
	}
	if len(events.Items) == 0 {
		return ""
	}
	return events.Items[0].Message
}
