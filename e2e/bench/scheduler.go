package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/compatibility"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedulerconfig "k8s.io/kubernetes/cmd/kube-scheduler/app/config"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler"
)

// SchedulerQPS is the scheduler's client QPS and burst. The kube-scheduler default (50, burst
// 100) would cap binding at 50 Pods/s; scheduler_perf uses 5000 for the same reason.
const SchedulerQPS = 5000

// Scheduler is a kube-scheduler in this process that the benchmark starts in two steps, so that
// the scheduling loop can be timed apart from the start: Start builds it (the way kube-scheduler's
// Setup does, with its default profile) and syncs its informers; Run starts scheduling.
type Scheduler struct {
	cc     *schedulerconfig.CompletedConfig
	sched  *scheduler.Scheduler
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ran    bool
	// Synced is how long building the scheduler and syncing its informers took.
	Synced time.Duration
}

// StartScheduler builds a kube-scheduler that talks to the apiserver with kubeconfig, starts
// its informers and waits until they and its event handlers have synced. It does not schedule
// until Run. It runs without leader election and without a serving port; its metrics go to the
// process's legacyregistry.
func StartScheduler(ctx context.Context, kubeconfig string) (*Scheduler, error) {
	begin := time.Now()
	ctx = quiet(ctx)
	opts := scheduleroptions.NewOptions()
	featureGate := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	effectiveVersion := utilcompatibility.DefaultKubeEffectiveVersionForTest()
	effectiveVersion.SetEmulationVersion(featureGate.EmulationVersion())
	effectiveVersion.SetMinCompatibilityVersion(featureGate.MinCompatibilityVersion())
	registry := compatibility.NewComponentGlobalsRegistry()
	if err := registry.Register(compatibility.DefaultKubeComponent, effectiveVersion, featureGate); err != nil {
		return nil, fmt.Errorf("registering kube-scheduler component globals: %w", err)
	}
	opts.ComponentGlobalsRegistry = registry
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse([]string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		fmt.Sprintf("--kube-api-qps=%d", SchedulerQPS),
		fmt.Sprintf("--kube-api-burst=%d", SchedulerQPS),
	}); err != nil {
		return nil, fmt.Errorf("parsing kube-scheduler flags: %w", err)
	}
	if err := registry.Set(); err != nil {
		return nil, fmt.Errorf("setting kube-scheduler component globals: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cc, sched, err := schedulerapp.Setup(sctx, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("setting up kube-scheduler: %w", err)
	}
	s := &Scheduler{cc: cc, sched: sched, ctx: sctx, cancel: cancel, done: make(chan struct{})}
	// What schedulerapp.Run does before it schedules, minus configz, health serving and leader
	// election: configz can be registered once per process, and this scheduler is started many times.
	cc.EventBroadcaster.StartRecordingToSink(sctx.Done())
	cc.InformerFactory.Start(sctx.Done())
	if cc.DynInformerFactory != nil {
		cc.DynInformerFactory.Start(sctx.Done())
	}
	cc.InformerFactory.WaitForCacheSync(sctx.Done())
	if cc.DynInformerFactory != nil {
		cc.DynInformerFactory.WaitForCacheSync(sctx.Done())
	}
	if err := sched.WaitForHandlersSync(sctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("waiting for kube-scheduler's handlers: %w", err)
	}
	if err := ctx.Err(); err != nil {
		s.Stop()
		return nil, errors.Join(errors.New("starting kube-scheduler"), err)
	}
	s.Synced = time.Since(begin)
	return s, nil
}

// Run starts the scheduling loop. It returns at once.
func (s *Scheduler) Run() {
	s.ran = true
	go func() {
		defer close(s.done)
		s.sched.Run(s.ctx)
	}()
}

// Stop stops the scheduler and waits for its loop to return.
func (s *Scheduler) Stop() {
	s.cancel()
	if s.ran {
		<-s.done
	}
	s.cc.EventBroadcaster.Shutdown()
	s.cc.InformerFactory.Shutdown()
}
