package crash

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ipp-project/ipp/e2e/faults/scenario"
)

// Leader election of the controller processes: short, so that a successor takes over from a
// killed leader in seconds.
const (
	leaseName     = "ipp-controller"
	leaseDuration = 3 * time.Second
	renewDeadline = 2 * time.Second
	retryPeriod   = 500 * time.Millisecond
)

// Timeouts of the waits: generous for a busy 2-core machine; every wait ends as soon as its
// condition holds.
const (
	electTimeout = 30 * time.Second
	runTimeout   = 3 * time.Minute
)

// replicas starts `ipp controller` processes for one tenant and cloud.
type replicas struct {
	t     *testing.T
	tn    *scenario.Tenant
	cloud *scenario.Cloud
	args  []string
	n     int
}

func newReplicas(t *testing.T, tn *scenario.Tenant, cloud *scenario.Cloud) *replicas {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"controller", "--kubeconfig=" + kubeconfig}, cloud.IPPFlags()...)
	args = append(args, tn.Flags()...)
	args = append(args,
		"--leader-elect=true",
		"--leader-elect-namespace="+tn.Namespace,
		"--leader-elect-id="+leaseName,
		"--leader-elect-lease-duration="+leaseDuration.String(),
		"--leader-elect-renew-deadline="+renewDeadline.String(),
		"--leader-elect-retry-period="+retryPeriod.String(),
		"--provider-resync=2s",
		// Replicas run side by side (and beside other tests): no fixed metrics port.
		"--metrics-address=",
		"--retry-base-delay=100ms",
		"--retry-max-delay=2s",
		// Far above the time an emulated instance takes to register: no instance may be
		// replaced, so that every creation counted is a duplicate or the only one.
		"--registration-timeout=5m",
		"--v=2",
	)
	return &replicas{t: t, tn: tn, cloud: cloud, args: args}
}

// start starts one more controller process.
func (r *replicas) start() *scenario.Process {
	r.t.Helper()
	r.n++
	return scenario.StartProcess(r.t, fmt.Sprintf("controller-%d", r.n), ippBin, r.args, r.cloud.Env())
}

// lease returns the controllers' Lease, nil if it does not exist yet.
func (r *replicas) lease(ctx context.Context) (*coordinationv1.Lease, error) {
	l, err := cluster.Client.CoordinationV1().Leases(r.tn.Namespace).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		return nil, scenario.IgnoreNotFound(err)
	}
	return l, nil
}

// waitLeader waits until the Lease names one of procs as holder, and returns it with the
// Lease. It fails the test if any of them exits.
func (r *replicas) waitLeader(procs ...*scenario.Process) (*scenario.Process, *coordinationv1.Lease) {
	r.t.Helper()
	ctx := r.t.Context()
	ids := map[string]*scenario.Process{}
	for _, p := range procs {
		id, err := p.WaitIdentity(ctx, electTimeout)
		if err != nil {
			r.t.Fatal(err)
		}
		ids[id] = p
	}
	var (
		leader *scenario.Process
		lease  *coordinationv1.Lease
	)
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, electTimeout, true, func(ctx context.Context) (bool, error) {
		for _, p := range procs {
			if exited, err := p.Exited(); exited {
				return false, fmt.Errorf("%s exited: %v", p.Name, err)
			}
		}
		l, err := r.lease(ctx)
		if err != nil || l == nil || l.Spec.HolderIdentity == nil {
			return false, nil //nolint:nilerr // not elected yet, or the apiserver is busy
		}
		if p, ok := ids[*l.Spec.HolderIdentity]; ok {
			leader, lease = p, l
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		r.t.Fatalf("Waiting for one of %d controllers to lead: %v", len(procs), err)
	}
	return leader, lease
}
