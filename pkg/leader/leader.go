// Package leader runs a function only while this process holds a Lease, with client-go's leader
// election, so that of several replicas of the IPP controller exactly one reconciles.
package leader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Defaults, as kube-controller-manager has them.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// DefaultNamespace is the Lease's namespace when the Pod's own is unknown.
	DefaultNamespace = "ipp-system"
	// DefaultName is the Lease's name.
	DefaultName = "ipp-controller"
)

// ErrLeadershipLost is returned by Run when this process lost the Lease while ctx was still
// alive. The process should exit, so that it cannot act on a stale view alongside the new leader.
var ErrLeadershipLost = errors.New("leader election lost")

// Config configures leader election.
type Config struct {
	// Enabled turns leader election on. Off, Run calls run at once.
	Enabled bool
	// Namespace and Name name the Lease.
	Namespace string
	Name      string
	// Identity names this candidate in the Lease. Empty means hostname_<random>.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are as in client-go's LeaderElectionConfig.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// DefaultConfig returns leader election enabled, in the Pod's namespace (POD_NAMESPACE, else the
// service account's, else DefaultNamespace), with kube-controller-manager's durations.
func DefaultConfig() Config {
	return Config{
		Enabled:       true,
		Namespace:     podNamespace(),
		Name:          DefaultName,
		LeaseDuration: DefaultLeaseDuration,
		RenewDeadline: DefaultRenewDeadline,
		RetryPeriod:   DefaultRetryPeriod,
	}
}

const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return DefaultNamespace
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	switch {
	case c.Namespace == "":
		return errors.New("invalid --leader-elect-namespace: must not be empty")
	case c.Name == "":
		return errors.New("invalid --leader-elect-id: must not be empty")
	case c.RetryPeriod <= 0:
		return fmt.Errorf("invalid --leader-elect-retry-period %v: must be positive", c.RetryPeriod)
	case c.RenewDeadline <= c.RetryPeriod:
		return fmt.Errorf("invalid --leader-elect-renew-deadline %v: must be longer than --leader-elect-retry-period %v", c.RenewDeadline, c.RetryPeriod)
	case c.LeaseDuration <= c.RenewDeadline:
		return fmt.Errorf("invalid --leader-elect-lease-duration %v: must be longer than --leader-elect-renew-deadline %v", c.LeaseDuration, c.RenewDeadline)
	}
	return nil
}

// Run calls run once this process holds the Lease, and returns when run has returned. run's
// context is cancelled when ctx is or when the Lease is lost. The Lease is released only after
// run has returned, so two leaders never act at once; a successor then takes over at once instead
// of waiting out the lease duration.
//
// Run returns run's error, ErrLeadershipLost if the Lease was lost while ctx was alive, or nil
// once ctx is cancelled.
func Run(ctx context.Context, client kubernetes.Interface, cfg Config, run func(context.Context) error) error {
	if !cfg.Enabled {
		return run(ctx)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	id := cfg.Identity
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("leader election identity: %w", err)
		}
		id = host + "_" + string(uuid.NewUUID())
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "lease", cfg.Namespace+"/"+cfg.Name, "identity", id)
	ctx = klog.NewContext(ctx, logger)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}

	// The elector's context outlives ctx until run has returned, so that the Lease is released
	// only when nothing guarded by it runs any more.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	var (
		mu       sync.Mutex
		leading  bool // run was started
		finished bool // the elector has returned; run must not start any more
		runErr   error
		runDone  = make(chan struct{})
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !leading {
			stopElecting()
		}
	})
	defer stop()

	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   cfg.LeaseDuration,
		RenewDeadline:   cfg.RenewDeadline,
		RetryPeriod:     cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			// The elector calls this in a goroutine of its own, which may be scheduled only after
			// the elector has returned; then it must not run.
			OnStartedLeading: func(leaderCtx context.Context) {
				mu.Lock()
				if finished || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				leading = true
				mu.Unlock()
				defer close(runDone)
				runCtx, cancel := context.WithCancel(leaderCtx)
				defer cancel()
				stopRun := context.AfterFunc(ctx, cancel)
				defer stopRun()
				logger.Info("Became leader")
				runErr = run(runCtx)
				stopElecting()
			},
			OnStoppedLeading: func() {
				logger.Info("Stopped leading")
			},
			OnNewLeader: func(identity string) {
				if identity != id {
					logger.Info("Another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("setting up leader election: %w", err)
	}
	logger.Info("Waiting for leadership")
	le.Run(electCtx)

	mu.Lock()
	finished = true
	started := leading
	mu.Unlock()
	if !started {
		return nil // ctx ended before this process led
	}
	<-runDone
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return nil
	}
	return ErrLeadershipLost
}
