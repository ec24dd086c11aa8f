package crash

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/faults/scenario"
	"github.com/ipp-project/ipp/e2e/framework"
)

var crashSeed = flag.Uint64("crash-seed", 0, "seed of the crash test's kill points and Pod order; 0 takes one from the clock (the seed is logged, so a failure can be replayed)")

// TestCrashDuringBurst: the leading controller process is killed with SIGKILL at random points
// while a burst of 200 Pods in 50 classes arrives, and a new process is started each time, 5 to 8
// times. The cloud fails 10% of calls with a 5xx and loses 30% of the replies to creations and
// deletions, so that some kills land between an instance's creation and the controller hearing of
// it. At the end there are exactly 50 instances, one per class, each created once (nothing
// duplicated, nothing leaked), and every Pod runs on its class's node.
func TestCrashDuringBurst(t *testing.T) {
	for _, kind := range scenario.Kinds {
		t.Run(string(kind), func(t *testing.T) { testCrash(t, kind) })
	}
}

func testCrash(t *testing.T, kind scenario.Kind) {
	const (
		classes  = 50
		perClass = 4
		// Kill points are drawn in [minKill, maxKill) after the process became leader: from
		// before its informers have synced to after its first instances have booted.
		minKill = 100 * time.Millisecond
		maxKill = 3 * time.Second
		// Cloud faults during the burst.
		errorRate     = 0.1
		lostReplyRate = 0.3
	)
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	kills := 5 + rng.IntN(4)
	t.Logf("%s: seed %d (replay with -crash-seed=%d): %d kills", kind, seed, seed, kills)

	tn := scenario.NewTenant(t, cluster, "crash-"+string(kind))
	cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{BootDelay: time.Second, Seed: seed})
	cloud.SetFaults(cloudemu.Faults{ErrorRate: errorRate, LostReplyRate: lostReplyRate})
	reps := newReplicas(t, tn, cloud)

	// The burst arrives in waves, one while each process starts, so that Pods arrive while no
	// controller runs, while one syncs its caches, and while one creates instances.
	type podRef struct{ name, class string }
	var pods []podRef
	for _, class := range scenario.Classes("c", classes) {
		for i := range perClass {
			pods = append(pods, podRef{fmt.Sprintf("%s-%d", class, i), class})
		}
	}
	rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
	waves := kills + 1
	wave := func(i int) []podRef { return pods[i*len(pods)/waves : (i+1)*len(pods)/waves] }

	start := time.Now()
	for i := range kills {
		p := reps.start()
		for _, pod := range wave(i) {
			tn.CreatePod(t, pod.name, pod.class)
		}
		_, lease := reps.waitLeader(p)
		// The only sleep: the randomized kill point.
		after := minKill + time.Duration(rng.Int64N(int64(maxKill-minKill)))
		time.Sleep(after)
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited before it was killed: %v", p.Name, err)
		}
		p.Kill()
		running, created := progress(t, tn, cloud)
		line := fmt.Sprintf("kill %d/%d at %v: SIGKILL %s (pid %d) %v after it led (Lease acquired %s); then %d instances created, %d/%d pods running",
			i+1, kills, time.Since(start).Round(time.Millisecond), p.Name, p.Pid(), after.Round(time.Millisecond),
			lease.Spec.AcquireTime.Format("15:04:05.000"), created, running, len(pods))
		t.Log(line)
	}
	restarted := time.Now()
	last := reps.start()
	for _, pod := range wave(kills) {
		tn.CreatePod(t, pod.name, pod.class)
	}
	reps.waitLeader(last)
	tn.WaitAllRunning(t, len(pods), runTimeout)
	took := time.Since(restarted)
	scenario.CheckSettled(t, tn, cloud, len(pods))
	if exited, err := last.Exited(); exited {
		t.Errorf("The last controller exited: %v", err)
	}

	var names []string
	for _, class := range scenario.Classes("c", classes) {
		names = append(names, tn.NodeName(class))
	}
	scenario.CheckCreatedOnce(t, cloud, names)
	live := 0
	for _, insts := range cloud.LiveInstances() {
		live += len(insts)
	}
	if live != classes {
		t.Errorf("Live instances: %d, want %d", live, classes)
	}
	t.Logf("%s, %.0f%% 5xx and %.0f%% lost replies: %d kills (seed %d); %d pods in %d classes all running on their class's node %v after the last restart (%v in all); %d live instances, %d created; %s",
		kind, errorRate*100, lostReplyRate*100, kills, seed, len(pods), classes, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), live, sum(cloud.CreatedCounts()), cloud.CallStats())
}

// progress returns how many of the tenant's Pods run on their class's node and how many
// instances the cloud created so far.
func progress(t *testing.T, tn *scenario.Tenant, cloud *scenario.Cloud) (running, created int) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	pods, err := tn.Pods(ctx)
	if err == nil {
		for i := range pods {
			class, _ := tn.Config.Class(&pods[i])
			if pods[i].Spec.NodeName == tn.NodeName(class) && framework.PodRunningAndReady(&pods[i]) {
				running++
			}
		}
	}
	return running, sum(cloud.CreatedCounts())
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
