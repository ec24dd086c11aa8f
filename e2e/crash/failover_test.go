package crash

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ipp-project/ipp/e2e/faults/scenario"
)

// TestFailover: of two controller replicas with leader election, the leader is killed with
// SIGKILL; the other takes the Lease within the lease duration (plus the retry period it polls
// with, and a little slack), reconciles classes that arrive afterwards, and no dedicated node's
// instance is created twice.
func TestFailover(t *testing.T) {
	for _, kind := range scenario.Kinds {
		t.Run(string(kind), func(t *testing.T) { testFailover(t, kind) })
	}
}

func testFailover(t *testing.T, kind scenario.Kind) {
	// The successor takes the Lease once it has seen no renewal for leaseDuration. It looks every
	// retryPeriod, jittered up to 2.2 retryPeriods (client-go's JitterFactor 1.2): it may see the
	// last renewal up to one such period after the kill, and acquire up to one period after the
	// lease duration has run out. One second more covers a busy machine.
	const takeoverBound = leaseDuration + 2*(retryPeriod*22/10) + time.Second

	tn := scenario.NewTenant(t, cluster, "failover-"+string(kind))
	cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 2})
	reps := newReplicas(t, tn, cloud)
	a, b := reps.start(), reps.start()
	leader, lease := reps.waitLeader(a, b)
	standby := a
	if leader == a {
		standby = b
	}
	standbyID, _ := standby.Identity()
	t.Logf("%s: %s leads (Lease acquired %s); %s stands by", kind, leader.Name, lease.Spec.AcquireTime.Format("15:04:05.000"), standby.Name)

	before := scenario.Classes("before", 3)
	tn.CreatePods(t, before, 2)
	tn.WaitAllRunning(t, 6, runTimeout)

	killed := time.Now()
	leader.Kill()
	var took *coordinationv1.Lease
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, electTimeout, true, func(ctx context.Context) (bool, error) {
		if exited, err := standby.Exited(); exited {
			return false, fmt.Errorf("%s exited: %v", standby.Name, err)
		}
		l, err := reps.lease(ctx)
		if err != nil || l == nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != standbyID {
			return false, nil //nolint:nilerr // not yet, or the apiserver is busy
		}
		took = l
		return true, nil
	})
	seen := time.Since(killed)
	if err != nil {
		t.Fatalf("Waiting for %s to take the Lease after %s was killed: %v", standby.Name, leader.Name, err)
	}
	takeover := took.Spec.AcquireTime.Sub(killed)
	t.Logf("%s: %s killed; %s acquired the Lease %v later (seen after %v; lease duration %v, retry period %v, transitions %d)",
		kind, leader.Name, standby.Name, takeover.Round(time.Millisecond), seen.Round(time.Millisecond), leaseDuration, retryPeriod, ptrOr(took.Spec.LeaseTransitions))
	if takeover > takeoverBound {
		t.Errorf("Takeover took %v, more than the lease duration %v plus two jittered retry periods and 1 s (%v)", takeover, leaseDuration, takeoverBound)
	}

	after := scenario.Classes("after", 2)
	tn.CreatePods(t, after, 2)
	ran := tn.WaitAllRunning(t, 10, runTimeout)
	scenario.CheckSettled(t, tn, cloud, 10)
	t.Logf("%s: new classes' pods ran %v after their creation, under the new leader", kind, ran.Round(time.Millisecond))
	var names []string
	for _, class := range append(before, after...) {
		names = append(names, tn.NodeName(class))
	}
	scenario.CheckCreatedOnce(t, cloud, names)
}

func ptrOr(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
