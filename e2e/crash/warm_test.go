package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ipp-project/ipp/e2e/faults/scenario"
	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// TestWarmClaimAcrossCrashes: under controller placement, a NodeClass keeps a warm pool of
// three nodes, each replaced once 8 s old (warm.maxAge); waves of two new classes arrive while the pool is full, and the leading `ipp
// controller` process is SIGKILLed at a random point from 0 to 400 ms after each wave (3 to 5
// times), so that kills land before, during and after the claims, the replacements' creation and
// the maxAge replacements.
// A watch over the tenant's Nodes for the whole test fails it if a Node's class label, once set,
// changes or goes: every node is bound to exactly one class for life, or still unclaimed. In the
// end every class's Pod runs on a node of its own bound to its class (I1-I3), on a live instance
// (a claimed node is never replaced), the pool is back to three Ready warm nodes, and the cloud
// holds no instance beyond the classes' nodes and the pool.
func TestWarmClaimAcrossCrashes(t *testing.T) {
	for _, kind := range scenario.Kinds {
		t.Run(string(kind), func(t *testing.T) { testWarmClaimAcrossCrashes(t, kind) })
	}
}

func testWarmClaimAcrossCrashes(t *testing.T, kind scenario.Kind) {
	const (
		size     = 3
		perWave  = 2
		maxKill  = 400 * time.Millisecond
		nodeWait = 2 * time.Minute
		// maxAge has warm nodes replaced all along, so that kills also land around
		// replacements, and claims race them.
		maxAge = 8 * time.Second
		// resync is the controllers' --provider-resync.
		resync = 2 * time.Second
	)
	ctx := t.Context()
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	kills := 3 + rng.IntN(3)
	t.Logf("%s: seed %d (replay with -crash-seed=%d): %d kills", kind, seed, seed, kills)

	tn := scenario.NewTenant(t, cluster, "warm-"+string(kind), func(c *isolation.Config) { c.Placement = isolation.PlacementController })
	client, err := ippclientset.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	ncs := client.IppV1alpha1().NodeClasses()
	nc := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: tn.ID},
		Spec:       ippv1alpha1.NodeClassSpec{Warm: &ippv1alpha1.WarmPool{Size: size, MaxAge: &metav1.Duration{Duration: maxAge}}},
	}
	if _, err := ncs.Create(ctx, nc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ncs.Delete(context.Background(), nc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	})
	cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{BootDelay: 500 * time.Millisecond, Seed: seed})
	reps := newReplicas(t, tn, cloud)
	bindings := framework.WatchBindings(t, tn.Client, labels.SelectorFromSet(tn.Config.NodeLabels()).String())

	warmReady := func(ctx context.Context) (int, error) {
		nodes, err := tn.Nodes(ctx)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, node := range nodes {
			if node.Labels[isolation.WarmLabel] == isolation.LabelValue && node.Labels[isolation.NodeClassNodeLabel] == nc.Name &&
				node.Labels[isolation.ClassLabel] == "" && !node.Spec.Unschedulable && ready(&node) {
				n++
			}
		}
		return n, nil
	}
	waitPool := func(what string) {
		t.Helper()
		scenario.WaitFor(t, what, nodeWait, func(ctx context.Context) (bool, error) {
			n, err := warmReady(ctx)
			return err == nil && n == size, nil //nolint:nilerr // the apiserver may be busy; look again
		})
	}
	var classes []string
	wave := func(i int) {
		t.Helper()
		for j := range perWave {
			class := fmt.Sprintf("c-%d-%d", i, j)
			p := tn.Pod(class, class)
			p.Labels[isolation.NodeClassLabel] = nc.Name
			created, err := tn.Client.CoreV1().Pods(tn.Namespace).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(created.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate }) {
				t.Fatalf("Pod %s was admitted without the %s gate", class, placement.Gate)
			}
			classes = append(classes, class)
		}
	}

	for i := range kills {
		p := reps.start()
		reps.waitLeader(p)
		waitPool(fmt.Sprintf("the pool of %d before wave %d", size, i))
		wave(i)
		// The only sleep: the randomized kill point.
		after := time.Duration(rng.Int64N(int64(maxKill)))
		time.Sleep(after)
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited before it was killed: %v", p.Name, err)
		}
		p.Kill()
		t.Logf("kill %d/%d: SIGKILL %s %v after wave %d", i+1, kills, p.Name, after.Round(time.Millisecond), i)
	}
	last := reps.start()
	reps.waitLeader(last)
	wave(kills)
	lastWave := time.Now()

	// Every class runs on a node of its own, bound to it.
	var waiting []string
	nodeOf := map[string]string{}
	err = wait.PollUntilContextTimeout(ctx, framework.PollInterval, runTimeout, true, func(ctx context.Context) (bool, error) {
		waiting, nodeOf = waiting[:0], map[string]string{}
		for _, class := range classes {
			p, err := tn.Client.CoreV1().Pods(tn.Namespace).Get(ctx, class, metav1.GetOptions{})
			if err != nil || p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning {
				waiting = append(waiting, class)
				continue
			}
			nodeOf[class] = p.Spec.NodeName
		}
		return len(waiting) == 0, nil
	})
	if err != nil {
		t.Fatalf("Waiting for every class's Pod to run: %v; not yet: %v", err, waiting)
	}
	owner := map[string]string{}
	for _, class := range classes {
		node := nodeOf[class]
		if prev, ok := owner[node]; ok {
			t.Errorf("Classes %s and %s both run on node %s", prev, class, node)
		}
		owner[node] = class
		n, err := tn.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := n.Labels[isolation.ClassLabel], tn.Config.ClassKey(tn.Namespace, class); got != want {
			t.Errorf("Class %s runs on node %s bound to %q, want %q", class, node, got, want)
		}
	}
	tn.CheckIsolation(t)

	// The pool is back to its size, and the cloud holds nothing more than the classes' nodes
	// and the pool.
	want := len(classes) + size
	var (
		live  []string
		ready int
	)
	scenario.WaitFor(t, fmt.Sprintf("the pool back to %d Ready warm nodes and %d live instances", size, want), nodeWait, func(ctx context.Context) (bool, error) {
		live = live[:0]
		for name, insts := range cloud.LiveInstances() {
			for range insts {
				live = append(live, name)
			}
		}
		var err error
		ready, err = warmReady(ctx)
		return err == nil && ready == size && len(live) == want, nil //nolint:nilerr // the apiserver may be busy; look again
	})
	// Past maxAge of every node the last controller found warm, with two provider resyncs to
	// reconcile them: the claimed ones are still there, their Pods with them.
	settle := lastWave.Add(maxAge + 2*resync)
	scenario.WaitFor(t, "maxAge past the last wave", time.Until(settle)+time.Minute, func(context.Context) (bool, error) {
		return !time.Now().Before(settle), nil
	})
	for class, node := range nodeOf {
		p, err := tn.Client.CoreV1().Pods(tn.Namespace).Get(ctx, class, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning {
			t.Errorf("Class %s ran on %s; past maxAge its Pod is %s on %q", class, node, p.Status.Phase, p.Spec.NodeName)
		}
		if _, err := tn.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
			t.Errorf("Node %s of class %s past maxAge: %v", node, class, err)
		}
	}
	tn.CheckIsolation(t)
	bound, warm := bindings()
	claimedWarm := 0
	for class, node := range nodeOf {
		if got, want := bound[node], tn.Config.ClassKey(tn.Namespace, class); got != want {
			t.Errorf("Node %s of class %s was first bound to %q, want %q", node, class, got, want)
		}
		if cloud.LiveInstances()[node] == nil {
			t.Errorf("Node %s of class %s has no live instance", node, class)
		}
		if warm[node] {
			claimedWarm++
		}
	}
	if exited, err := last.Exited(); exited {
		t.Errorf("The last controller exited: %v", err)
	}
	t.Logf("%s: %d kills (seed %d); %d classes, %d on claimed warm nodes; %s", kind, kills, seed, len(classes), claimedWarm, cloud.CallStats())
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
