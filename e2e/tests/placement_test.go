package tests

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// requesting makes the Pod's one container request cpu.
func requesting(cpu string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
}

// withLabels adds labels to the Pod.
func withLabels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

// TestControllerPlacement runs --placement=controller on each provider:
//
//   - a class of six Pods of 1.5 CPUs each, on nodes of 4 CPUs, gets three nodes, each bound to
//     the class (class key, namespace and class labels) and hosting two of its Pods, every Pod
//     Running, pinned by name by the controller's one PATCH, its gate gone;
//   - a NodeClass of isolation Pod gives each of four Pods its own instance; deleting two of them
//     reaps their two nodes, each on its own, and leaves the other two;
//   - a tenant that lifts the placement gate itself, with its own credentials, while another
//     class's node has room, is never scheduled there: the scheduler finds no node for it (the
//     label pin from admission), and the Pod runs nowhere.
//
// No Pod breaks I1-I3 at the end.
func TestControllerPlacement(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "place-" + provider
		cfg.Placement = isolation.PlacementController
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Provider: provider, Config: &cfg, IdleTTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })
		ns := namespace(t, "place")

		// A class that outgrows one node.
		var names []string
		for i := range 6 {
			p := createPod(t, ns, pod(fmt.Sprintf("grow-%d", i), withLabels(cfg.PodLabel, "grow"), requesting("1500m")))
			if !slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate }) {
				t.Fatalf("Pod %s was admitted without the %s gate: %v", p.Name, placement.Gate, p.Spec.SchedulingGates)
			}
			if got, want := p.Spec.NodeSelector[isolation.ClassLabel], cfg.ClassKey(ns, "grow"); got != want {
				t.Fatalf("Pod %s has nodeSelector %s=%q, want the class key %q", p.Name, isolation.ClassLabel, got, want)
			}
			names = append(names, p.Name)
		}
		placedBefore := metricTotal(t, "ipp_pods_placed_total", nil)
		perNode := waitPlacedRunning(t, ns, names)
		if got := metricTotal(t, "ipp_pods_placed_total", nil) - placedBefore; got < 6 {
			t.Errorf("ipp_pods_placed_total grew by %v for six Pods placed, want at least 6", got)
		}
		if len(perNode) != 3 {
			t.Fatalf("The six Pods run on %d nodes, want 3: %v", len(perNode), perNode)
		}
		for node, pods := range perNode {
			if len(pods) != 2 {
				t.Errorf("Node %s hosts %v, want two Pods of 1.5 CPUs on 4", node, pods)
			}
			checkBoundTo(t, cfg, node, ns, "grow")
		}

		// isolation: Pod gives each Pod its own instance.
		ippc, err := ippclientset.NewForConfig(cluster.AdminConfig)
		if err != nil {
			t.Fatal(err)
		}
		solo := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "solo-" + provider},
			Spec:       ippv1alpha1.NodeClassSpec{Isolation: ippv1alpha1.IsolationPod},
		}
		if _, err := ippc.IppV1alpha1().NodeClasses().Create(ctx, solo, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = ippc.IppV1alpha1().NodeClasses().Delete(context.Background(), solo.Name, metav1.DeleteOptions{})
		})
		var soloPods []string
		for i := range 4 {
			p := createPod(t, ns, pod(fmt.Sprintf("solo-%d", i), withLabels(cfg.PodLabel, "solo", isolation.NodeClassLabel, solo.Name), requesting("100m")))
			soloPods = append(soloPods, p.Name)
		}
		soloNodes := waitPlacedRunning(t, ns, soloPods)
		if len(soloNodes) != 4 {
			t.Fatalf("Four Pods of isolation Pod run on %d nodes, want 4: %v", len(soloNodes), soloNodes)
		}
		nodeOf := map[string]string{}
		for node, pods := range soloNodes {
			checkBoundTo(t, cfg, node, ns, "solo")
			nodeOf[pods[0]] = node
		}
		for _, name := range soloPods[:2] {
			if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range soloPods[:2] {
			waitNodeGone(t, nodeOf[name])
		}
		for _, name := range soloPods[2:] {
			if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, nodeOf[name], metav1.GetOptions{}); err != nil {
				t.Errorf("Node %s of Pod %s, which still runs: %v", nodeOf[name], name, err)
			}
		}

		// A tenant lifts the gate itself while a node of another class has room.
		other := createPod(t, ns, pod("other-0", withLabels(cfg.PodLabel, "other"), requesting("100m")))
		otherNodes := waitPlacedRunning(t, ns, []string{other.Name})
		tenant := tenantClient(t, ns)
		sneaky, err := tenant.CoreV1().Pods(ns).Create(ctx, pod("sneaky", withLabels(cfg.PodLabel, "sneaky"), requesting("100m")), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lift := fmt.Sprintf(`[{"op":"test","path":"/spec/schedulingGates/0/name","value":%q},{"op":"remove","path":"/spec/schedulingGates/0"}]`, placement.Gate)
		if _, err := tenant.CoreV1().Pods(ns).Patch(ctx, sneaky.Name, types.JSONPatchType, []byte(lift), metav1.PatchOptions{}); err != nil {
			// The controller may have placed it already; then it runs on a node of its own.
			if !apierrors.IsInvalid(err) {
				t.Fatalf("Tenant lifting the gate: %v", err)
			}
		}
		err = waitFor(ctx, podTimeout, func(ctx context.Context) (bool, error) {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, sneaky.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if p.Spec.NodeName != "" {
				return true, nil
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("Waiting for the scheduler to decide on the ungated Pod: %v", err)
		}
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, sneaky.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for node := range otherNodes {
			if p.Spec.NodeName == node {
				t.Errorf("The tenant's ungated Pod of class sneaky was scheduled on node %s of class other", node)
			}
		}
		if p.Spec.NodeName != "" {
			checkBoundTo(t, cfg, p.Spec.NodeName, ns, "sneaky")
		}
		checkIsolation(t, cfg)
	})
}

// waitPlacedRunning waits until every named Pod runs, placed by the controller: no placement gate,
// and a required node affinity that names its node. It returns the Pods by node.
func waitPlacedRunning(t *testing.T, ns string, names []string) map[string][]string {
	t.Helper()
	perNode := map[string][]string{}
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		clear(perNode)
		for _, name := range names {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
				return false, nil
			}
			perNode[p.Spec.NodeName] = append(perNode[p.Spec.NodeName], name)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("Waiting for Pods %v in %s to run: %v (running so far: %v)", names, ns, err, perNode)
	}
	for node, pods := range perNode {
		for _, name := range pods {
			p, err := cluster.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate }) {
				t.Errorf("Pod %s runs but still has the placement gate", name)
			}
			terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			for i, term := range terms {
				if !slices.ContainsFunc(term.MatchFields, func(r corev1.NodeSelectorRequirement) bool {
					return r.Key == isolation.NodeNameField && slices.Equal(r.Values, []string{node})
				}) {
					t.Errorf("Pod %s runs on %s, but required term %d does not name it: %+v", name, node, i, term)
				}
			}
		}
	}
	return perNode
}

// checkBoundTo checks that node carries the class labels of class in ns.
func checkBoundTo(t *testing.T, cfg isolation.Config, node, ns, class string) {
	t.Helper()
	n, err := cluster.Client.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := labels.Set{
		isolation.ClassLabel:     cfg.ClassKey(ns, class),
		isolation.NamespaceLabel: cfg.ScopedNamespace(ns),
		isolation.ClassNameLabel: class,
	}
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("Node %s has %s=%q, want %q", node, k, n.Labels[k], v)
		}
	}
}

// waitNodeGone waits until the Node is deleted.
func waitNodeGone(t *testing.T, node string) {
	t.Helper()
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		return apierrors.IsNotFound(err), ignoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("Waiting for node %s to be reaped: %v", node, err)
	}
}

// TestPlacementMigration switches a running IPP from admission placement to controller
// placement, as an upgrade does: a Pod admitted before keeps running on its class's dedicated node,
// which is neither bound to the class key nor given the new Pods; a new Pod of the same class is
// gated, gets a node of its own with a unique name, bound to the class; once the old Pod goes, the
// old dedicated node is reaped.
func TestPlacementMigration(t *testing.T) {
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = "migrate"
	cfg.Placement = isolation.PlacementAdmission
	ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Config: &cfg, IdleTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipp.Stop(context.Background()) })
	ns := namespace(t, "migrate")
	legacy := cfg.NodeName(ns, "c")
	createPod(t, ns, pod("old", withLabels(cfg.PodLabel, "c")))
	waitRunningOn(t, ns, "old", legacy)

	if err := ipp.SwitchPlacement(ctx, isolation.PlacementController); err != nil {
		t.Fatal(err)
	}
	cfg = ipp.Config
	createPod(t, ns, pod("new", withLabels(cfg.PodLabel, "c")))
	perNode := waitPlacedRunning(t, ns, []string{"new"})
	for node := range perNode {
		if node == legacy {
			t.Fatalf("The new Pod was placed on the old dedicated node %s", node)
		}
		checkBoundTo(t, cfg, node, ns, "c")
	}
	old, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "old", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if old.Spec.NodeName != legacy || old.Status.Phase != corev1.PodRunning {
		t.Fatalf("The old Pod is %s on %q after the switch, want Running on %s", old.Status.Phase, old.Spec.NodeName, legacy)
	}
	n, err := cluster.Client.CoreV1().Nodes().Get(ctx, legacy, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("The old dedicated node went while its Pod runs: %v", err)
	}
	if v, ok := n.Labels[isolation.ClassLabel]; ok {
		t.Errorf("The old dedicated node was given the class label %s=%s", isolation.ClassLabel, v)
	}
	if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, "old", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitNodeGone(t, legacy)
	checkIsolation(t, cfg)
}
