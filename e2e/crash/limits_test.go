package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/faults/scenario"
	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// TestLimitAcrossCrashes: six classes against a NodeClass limited to three instances, while the
// leading `ipp controller` process is SIGKILLed at random points (4 to 6 times) and the cloud
// fails 10% of calls and loses 30% of the replies to creations and deletions, so that some kills
// land between a creation and the controller hearing of it. The emulator never shows more than
// three live instances in the provider's List (an instance whose deletion the cloud accepted no
// longer counts, as for the controller); in the end three classes run and three wait with LimitReached Events. Then one
// class goes, its node is reaped after the NodeClass's idle TTL, and a waiting class gets its
// node, still never above three.
//
// It runs under each placement: admission (one dedicated node per class, named after it) and
// controller (Pods gated and placed by the controller on nodes of random names, which it plans in
// memory only, so that a kill forgets the plans; a waiting class's Pod keeps the placement gate).
//
// The NodeClass is the cluster's default one (an object named default), so that the count does
// not depend on the provider recording the NodeClass on its instances.
func TestLimitAcrossCrashes(t *testing.T) {
	for _, kind := range scenario.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			for _, pl := range []isolation.Placement{isolation.PlacementAdmission, isolation.PlacementController} {
				t.Run(string(pl), func(t *testing.T) { testLimitAcrossCrashes(t, kind, pl) })
			}
		})
	}
}

func testLimitAcrossCrashes(t *testing.T, kind scenario.Kind, pl isolation.Placement) {
	const (
		classes = 6
		limit   = 3
		minKill = 100 * time.Millisecond
		maxKill = 3 * time.Second
	)
	ctx := t.Context()
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	kills := 4 + rng.IntN(3)
	t.Logf("%s, %s placement: seed %d (replay with -crash-seed=%d): %d kills", kind, pl, seed, seed, kills)

	client, err := ippclientset.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	ncs := client.IppV1alpha1().NodeClasses()
	nc := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: isolation.DefaultNodeClass},
		Spec: ippv1alpha1.NodeClassSpec{
			IdleTTL: &metav1.Duration{Duration: 3 * time.Second},
			Limits:  &ippv1alpha1.NodeClassLimits{Instances: ptr.To[int32](limit)},
		},
	}
	if _, err := ncs.Create(ctx, nc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ncs.Delete(context.Background(), nc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	})

	tn := scenario.NewTenant(t, cluster, "limit-"+string(kind), func(cfg *isolation.Config) { cfg.Placement = pl })
	cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{BootDelay: time.Second, Seed: seed})
	cloud.SetFaults(cloudemu.Faults{ErrorRate: 0.1, LostReplyRate: 0.3})
	reps := newReplicas(t, tn, cloud)

	// Watch the cloud for the whole test, through the real provider's List (as the controller
	// sees it; the emulator's own snapshot waits for instances that are booting). A List that a
	// fault fails is skipped.
	watcher := cloud.Provider(t, tn.Config.ClusterName)
	live := func() int {
		insts, err := watcher.List(ctx)
		if err != nil {
			return 0
		}
		n := 0
		for _, inst := range insts {
			if inst.State != cloudprovider.StateStopping && inst.State != cloudprovider.StateTerminated {
				n++
			}
		}
		return n
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var (
		most    int
		watched sync.WaitGroup
	)
	watched.Add(1)
	go func() {
		defer watched.Done()
		for watchCtx.Err() == nil {
			most = max(most, live())
			select {
			case <-watchCtx.Done():
			case <-time.After(framework.PollInterval):
			}
		}
	}()
	mostSoFar := func() int {
		stopWatch()
		watched.Wait()
		return most
	}
	defer mostSoFar()

	names := scenario.Classes("c", classes)
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	waves := kills + 1
	wave := func(i int) []string { return names[i*len(names)/waves : (i+1)*len(names)/waves] }
	for i := range kills {
		p := reps.start()
		for _, class := range wave(i) {
			tn.CreatePod(t, class, class)
		}
		reps.waitLeader(p)
		// The only sleep: the randomized kill point.
		after := minKill + time.Duration(rng.Int64N(int64(maxKill-minKill)))
		time.Sleep(after)
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited before it was killed: %v", p.Name, err)
		}
		p.Kill()
		t.Logf("kill %d/%d: SIGKILL %s %v after it led; %d live instances", i+1, kills, p.Name, after.Round(time.Millisecond), live())
	}
	last := reps.start()
	for _, class := range wave(kills) {
		tn.CreatePod(t, class, class)
	}
	reps.waitLeader(last)

	// Three classes run, three wait, each told why.
	running, waiting := waitLimited(t, tn, names, limit)
	t.Logf("%s, %s placement: running %v, waiting %v", kind, pl, running, waiting)

	// One class goes; a waiting one gets the slot.
	if err := tn.Client.CoreV1().Pods(tn.Namespace).Delete(ctx, running[0], metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, framework.PollInterval, runTimeout, true, func(ctx context.Context) (bool, error) {
		for _, class := range waiting {
			if tn.RunsOnClassNode(ctx, class) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("No waiting class got the node freed by %s: %v", running[0], err)
	}
	if got := mostSoFar(); got > limit {
		t.Errorf("The emulator had %d live instances at once, above the limit of %d", got, limit)
	}
	if exited, err := last.Exited(); exited {
		t.Errorf("The last controller exited: %v", err)
	}
	// The other waiting classes still wait, and under controller placement keep the gate.
	for _, class := range waiting {
		if !tn.RunsOnClassNode(ctx, class) && !gated(ctx, tn, class) {
			t.Errorf("Class %s waits for the limit but its Pod lost the %s gate", class, placement.Gate)
		}
	}
	t.Logf("%s, %s placement: %d kills (seed %d); at most %d live instances at once; %s", kind, pl, kills, seed, most, cloud.CallStats())
}

// waitLimited waits until limit of the classes run on their nodes and the others wait, unscheduled
// (and gated under controller placement), with a LimitReached Event, failing at once if more
// than limit run.
func waitLimited(t *testing.T, tn *scenario.Tenant, classes []string, limit int) (running, waiting []string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), framework.PollInterval, runTimeout, true, func(ctx context.Context) (bool, error) {
		running, waiting = nil, nil
		for _, class := range classes {
			switch {
			case tn.RunsOnClassNode(ctx, class):
				running = append(running, class)
			case limitReached(ctx, tn, class) && gated(ctx, tn, class):
				waiting = append(waiting, class)
			}
		}
		if len(running) > limit {
			return false, fmt.Errorf("%d classes run on nodes of their own, above the limit of %d", len(running), limit)
		}
		return len(running) == limit && len(waiting) == len(classes)-limit, nil
	})
	if err != nil {
		t.Fatalf("Waiting for %d running classes and the others waiting: %v (running %v, waiting %v)", limit, err, running, waiting)
	}
	return running, waiting
}

// gated reports whether the Pod named after class is unscheduled and, under controller
// placement, keeps the placement gate.
func gated(ctx context.Context, tn *scenario.Tenant, class string) bool {
	p, err := tn.Client.CoreV1().Pods(tn.Namespace).Get(ctx, class, metav1.GetOptions{})
	if err != nil || p.Spec.NodeName != "" {
		return false
	}
	return tn.Config.Placement != isolation.PlacementController ||
		slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate })
}

// limitReached reports whether the Pod named after class has a LimitReached Event.
func limitReached(ctx context.Context, tn *scenario.Tenant, class string) bool {
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": class, "reason": controller.ReasonLimitReached}.AsSelector().String()
	events, err := tn.Client.CoreV1().Events(tn.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	return err == nil && len(events.Items) > 0
}
