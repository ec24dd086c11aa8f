package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// P4Config sizes P4, the warm pool (issue 12).
type P4Config struct {
	// BootDelay is the emulators' delay from an instance's creation to its kubelet starting.
	BootDelay metav1.Duration `json:"bootDelay"`
	// Provider is the emulated cloud (gce or ec2).
	Provider string `json:"provider"`
	// WarmClasses new classes of a NodeClass whose pool holds WarmPool nodes get one Pod each,
	// at least Interval apart, each once the previous one is bound and the pool has a Ready
	// node: every one should find a warm node.
	WarmClasses int `json:"warmClasses"`
	WarmPool    int `json:"warmPool"`
	// ColdClasses new classes of a NodeClass without a pool get one Pod each, Interval apart:
	// every one boots a node.
	ColdClasses int             `json:"coldClasses"`
	Interval    metav1.Duration `json:"interval"`
	// BurstClasses new classes of a NodeClass whose pool holds BurstPool nodes get one Pod
	// each, all at once.
	BurstClasses int `json:"burstClasses"`
	BurstPool    int `json:"burstPool"`

	LogFile string `json:"-"`
}

// P4Result is P4's output. Every latency is from the benchmark's Create call for a Pod to the
// benchmark's watch seeing the Pod Running (phase Running, reported by the emulated kubelet of
// its node).
type P4Result struct {
	Config        P4Config `json:"config"`
	CreateRetries int64    `json:"createRetries"`
	// PoolFillSeconds is from the NodeClasses' creation to both pools being Ready.
	PoolFillSeconds float64  `json:"poolFillSeconds"`
	Warm            *P4Phase `json:"warm,omitempty"`
	Cold            *P4Phase `json:"cold,omitempty"`
	Burst           *P4Burst `json:"burst,omitempty"`
	// DistinctNodes is the number of nodes the measured Pods ran on, which must equal
	// the number of classes: no node serves two classes.
	DistinctNodes int `json:"distinctNodes"`
	Classes       int `json:"classes"`
	// NodeTaints counts the nodes seen with each taint (key:effect) other than IPP's own:
	// a Pod whose gate is lifted while its node has one waits for the scheduler's retry.
	NodeTaints map[string]int `json:"nodeTaints,omitempty"`
}

// P4Phase is the creation-to-Running time of the Pods of one phase, split by whether the Pod's
// node was a warm node before it was claimed.
type P4Phase struct {
	Classes    int     `json:"classes"`
	WarmStarts int     `json:"warmStarts"`
	ColdStarts int     `json:"coldStarts"`
	Warm       Latency `json:"warm"`
	Cold       Latency `json:"cold"`
	// WarmStages splits the warm starts' time: to the claim (the node seen bound to the
	// Pod's class), to the placement gate lifted, to the Pod bound to its node by the
	// scheduler, to Running. Each is from the Create call.
	WarmStages *P4Stages `json:"warmStages,omitempty"`
	// ColdStages splits the cold starts' time: to the new node seen Ready and bound to its
	// instance, to the Pod bound by the scheduler, to Running. Each is from the Create call.
	ColdStages *P4ColdStages `json:"coldStages,omitempty"`
	// SchedulerAttempts are the scheduler's attempts during the phase by result (scheduled,
	// unschedulable, error). More attempts than Pods means some Pods were found unschedulable
	// and waited for the scheduler to try them again.
	SchedulerAttempts map[string]float64 `json:"schedulerAttempts"`
	LoadAvg           float64            `json:"loadAvg"`
}

// P4Stages are cumulative times from the Create call.
type P4Stages struct {
	Claimed Latency `json:"claimed"`
	Ungated Latency `json:"ungated"`
	Bound   Latency `json:"bound"`
	Running Latency `json:"running"`
}

// P4ColdStages are cumulative times from the Create call.
type P4ColdStages struct {
	NodeReady Latency `json:"nodeReady"`
	Bound     Latency `json:"bound"`
	Running   Latency `json:"running"`
}

// P4Burst is BurstClasses new classes at once against a pool of BurstPool.
type P4Burst struct {
	P4Phase
	// RefillSeconds is from the burst's first Create call until every burst Pod was bound and
	// the pool again held BurstPool Ready warm nodes.
	RefillSeconds float64 `json:"refillSeconds"`
}

// p4Pod is what the benchmark's watches saw of one measured Pod.
type p4Pod struct {
	class                   string
	createCall              time.Time
	ungated, bound, running time.Time
	node                    string
}

// p4Node is what the benchmark's watches saw of one node.
type p4Node struct {
	everWarm bool
	// claimed is when the node was first seen bound to a class; ready when it was first seen
	// Ready and bound to its instance.
	claimed, ready time.Time
	class          string
}

// p4 is the state of a P4 run.
type p4 struct {
	cfg     P4Config
	cp      *framework.ControlPlane
	fast    kubernetes.Interface
	iso     isolation.Config
	ipp     *framework.IPP
	ippc    ippclientset.Interface
	retries atomic.Int64

	mu    sync.Mutex
	pods  map[string]*p4Pod // by name; every measured Pod is in p4Namespace
	nodes map[string]*p4Node
	// taints are the nodes seen with each taint other than IPP's, by key:effect.
	taints map[string]map[string]bool
	// warmReady is the Ready, unclaimed warm nodes by NodeClass.
	warmReady map[string]map[string]bool
}

const (
	p4Namespace = "p4"
	p4WarmNC    = "p4-warm"
	p4ColdNC    = "p4-cold"
	p4BurstNC   = "p4-burst"
)

// RunP4 runs P4: the real controller, webhook, scheduler and apiserver in this process, the
// emulated cloud booting instances after BootDelay into emulated kubelets that join with the
// tokens the controller mints and report Pods Running.
func RunP4(ctx context.Context, cfg P4Config) (res *P4Result, err error) {
	logger := klog.FromContext(ctx)
	res = &P4Result{Config: cfg}
	if cfg.BootDelay.Duration <= 0 || cfg.WarmClasses < 0 || cfg.ColdClasses < 0 || cfg.BurstClasses < 0 || cfg.WarmPool < 1 || cfg.BurstPool < 1 {
		return res, fmt.Errorf("invalid P4 sizes: %+v", cfg)
	}
	s := &p4{cfg: cfg, iso: isolation.DefaultConfig(), pods: map[string]*p4Pod{}, nodes: map[string]*p4Node{}, warmReady: map[string]map[string]bool{}, taints: map[string]map[string]bool{}}
	defer func() { res.CreateRetries = s.retries.Load() }()
	s.iso.ClusterName = "p4"
	s.iso.Placement = isolation.PlacementController

	// The whole control plane, kube-controller-manager's CSR signing and approval included:
	// the kubelets join through TLS bootstrap.
	s.cp, err = framework.Start(quiet(ctx), framework.Options{EtcdLogFile: cfg.LogFile})
	if err != nil {
		return res, err
	}
	defer s.cp.Stop()
	if s.fast, err = kubernetes.NewForConfig(UnlimitedConfig(s.cp.AdminConfig)); err != nil {
		return res, err
	}
	if s.ippc, err = ippclientset.NewForConfig(s.cp.AdminConfig); err != nil {
		return res, err
	}
	s.ipp, err = framework.StartIPP(quiet(ctx), s.cp, framework.IPPOptions{Provider: cfg.Provider, Config: &s.iso, BootDelay: cfg.BootDelay.Duration})
	if err != nil {
		return res, err
	}
	defer s.ipp.Stop(context.WithoutCancel(quiet(ctx)))
	if _, err := s.cp.CreateNamespace(ctx, p4Namespace); err != nil {
		return res, err
	}
	stop, err := s.watch(ctx)
	if err != nil {
		return res, err
	}
	defer stop()

	t0 := time.Now()
	for _, nc := range []struct {
		name string
		size int
	}{{p4WarmNC, cfg.WarmPool}, {p4BurstNC, cfg.BurstPool}, {p4ColdNC, 0}} {
		obj := &ippv1alpha1.NodeClass{ObjectMeta: metav1.ObjectMeta{Name: nc.name}}
		if nc.size > 0 {
			obj.Spec.Warm = &ippv1alpha1.WarmPool{Size: int32(nc.size)}
		}
		if _, err := s.ippc.IppV1alpha1().NodeClasses().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return res, fmt.Errorf("creating NodeClass %s: %w", nc.name, err)
		}
	}
	err = pollUntil(ctx, cfg.BootDelay.Duration+5*time.Minute, func(context.Context) (bool, error) {
		return s.ready(p4WarmNC) >= cfg.WarmPool && s.ready(p4BurstNC) >= cfg.BurstPool, nil
	})
	if err != nil {
		return res, fmt.Errorf("waiting for the pools (%d of %d and %d of %d Ready): %w", s.ready(p4WarmNC), cfg.WarmPool, s.ready(p4BurstNC), cfg.BurstPool, err)
	}
	res.PoolFillSeconds = time.Since(t0).Seconds()
	logger.Info("P4 pools Ready", "took", time.Since(t0).Round(time.Millisecond))

	if res.Warm, err = s.sequential(ctx, "warm", p4WarmNC, cfg.WarmClasses); err != nil {
		return res, err
	}
	logger.Info("P4 warm", "warmStarts", res.Warm.WarmStarts, "coldStarts", res.Warm.ColdStarts, "warmP50Ms", res.Warm.Warm.P50, "warmP99Ms", res.Warm.Warm.P99)
	if res.Cold, err = s.sequential(ctx, "cold", p4ColdNC, cfg.ColdClasses); err != nil {
		return res, err
	}
	logger.Info("P4 cold", "coldStarts", res.Cold.ColdStarts, "coldP50Ms", res.Cold.Cold.P50, "coldP99Ms", res.Cold.Cold.P99)
	if res.Burst, err = s.burst(ctx); err != nil {
		return res, err
	}
	logger.Info("P4 burst", "warmStarts", res.Burst.WarmStarts, "coldStarts", res.Burst.ColdStarts, "warmP99Ms", res.Burst.Warm.P99,
		"coldP99Ms", res.Burst.Cold.P99, "refillSeconds", res.Burst.RefillSeconds)

	s.mu.Lock()
	nodes := map[string]bool{}
	for _, p := range s.pods {
		nodes[p.node] = true
	}
	res.Classes, res.DistinctNodes = len(s.pods), len(nodes)
	res.NodeTaints = map[string]int{}
	for t, ns := range s.taints {
		res.NodeTaints[t] = len(ns)
	}
	s.mu.Unlock()
	if res.DistinctNodes != res.Classes {
		return res, fmt.Errorf("%d classes ran on %d nodes: a node served two classes", res.Classes, res.DistinctNodes)
	}
	return res, nil
}

// ready returns how many Ready, unclaimed warm nodes NodeClass nc has.
func (s *p4) ready(nc string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.warmReady[nc])
}

// watch runs informers on the Nodes and on the measured Pods that record when each change was
// first seen.
func (s *p4) watch(ctx context.Context) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	nodeFactory := informers.NewSharedInformerFactory(s.fast, 0)
	podFactory := informers.NewSharedInformerFactoryWithOptions(s.fast, 0, informers.WithNamespace(p4Namespace))
	nodeHandler := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			s.sawNode(n)
		}
	}
	podHandler := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			s.sawPod(p)
		}
	}
	_, err1 := nodeFactory.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nodeHandler, UpdateFunc: func(_, n any) { nodeHandler(n) },
	})
	_, err2 := podFactory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podHandler, UpdateFunc: func(_, n any) { podHandler(n) },
	})
	if err := errors.Join(err1, err2); err != nil {
		cancel()
		return nil, err
	}
	nodeFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	nodeFactory.WaitForCacheSync(ctx.Done())
	podFactory.WaitForCacheSync(ctx.Done())
	return func() {
		cancel()
		nodeFactory.Shutdown()
		podFactory.Shutdown()
	}, nil
}

func (s *p4) sawNode(n *corev1.Node) {
	now := time.Now()
	nc := n.Labels[isolation.NodeClassNodeLabel]
	warm := n.Labels[isolation.WarmLabel] == isolation.LabelValue
	class := n.Labels[isolation.ClassLabel]
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.nodes[n.Name]
	if rec == nil {
		rec = &p4Node{}
		s.nodes[n.Name] = rec
	}
	rec.everWarm = rec.everWarm || warm
	for _, t := range n.Spec.Taints {
		if t.Key == s.iso.NodeTaint {
			continue
		}
		k := t.Key + ":" + string(t.Effect)
		if s.taints[k] == nil {
			s.taints[k] = map[string]bool{}
		}
		s.taints[k][n.Name] = true
	}
	if class != "" && rec.claimed.IsZero() {
		rec.claimed, rec.class = now, class
	}
	// The controller claims a warm node only once it has bound it to its instance (the
	// providerID matched): Ready alone is not enough.
	bound := n.Labels[isolation.BindingLabel] == n.Name
	if ready && bound && rec.ready.IsZero() {
		rec.ready = now
	}
	if nc == "" {
		return
	}
	if s.warmReady[nc] == nil {
		s.warmReady[nc] = map[string]bool{}
	}
	if warm && class == "" && ready && bound && !n.Spec.Unschedulable && n.DeletionTimestamp == nil {
		s.warmReady[nc][n.Name] = true
	} else {
		delete(s.warmReady[nc], n.Name)
	}
}

func (s *p4) sawPod(p *corev1.Pod) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.pods[p.Name]
	if rec == nil {
		// Not a measured Pod.
		return
	}
	gated := slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate })
	if !gated && rec.ungated.IsZero() {
		rec.ungated = now
	}
	if p.Spec.NodeName != "" && rec.bound.IsZero() {
		rec.bound, rec.node = now, p.Spec.NodeName
	}
	if p.Status.Phase == corev1.PodRunning && rec.running.IsZero() {
		rec.running = now
	}
}

// create creates the one Pod of class, of NodeClass nc, recording the time of its Create call.
func (s *p4) create(ctx context.Context, class, nc string) error {
	s.mu.Lock()
	rec := &p4Pod{class: class, createCall: time.Now()}
	s.pods[class] = rec
	s.mu.Unlock()
	pod := BenchPod(class, map[string]string{s.iso.PodLabel: class, isolation.NodeClassLabel: nc})
	created, err := CreatePod(ctx, s.fast, p4Namespace, pod, &s.retries)
	if err != nil {
		return err
	}
	// The watch may have seen it before the record was complete: replay the created object.
	s.sawPod(created)
	return nil
}

// sequential creates one Pod for each of n new classes of NodeClass nc, at least Interval apart
// and, for a NodeClass with a pool, each once the previous Pod is bound and the pool has a Ready
// node; then waits until they run.
func (s *p4) sequential(ctx context.Context, prefix, nc string, n int) (*P4Phase, error) {
	res := &P4Phase{Classes: n, LoadAvg: LoadAvg()}
	before, err := TakeSnapshot()
	if err != nil {
		return nil, err
	}
	pooled := nc != p4ColdNC
	var classes []string
	var last time.Time
	for i := range n {
		class := fmt.Sprintf("%s-%03d", prefix, i)
		sleepUntil(ctx, last.Add(s.cfg.Interval.Duration))
		if pooled && i > 0 {
			// Each class must find a warm node: the previous one has taken its node (its Pod
			// is bound) and the pool has another Ready.
			prev := classes[i-1]
			err := pollUntil(ctx, s.cfg.BootDelay.Duration+5*time.Minute, func(context.Context) (bool, error) {
				s.mu.Lock()
				bound := !s.pods[prev].bound.IsZero()
				s.mu.Unlock()
				return bound && s.ready(nc) > 0, nil
			})
			if err != nil {
				return nil, fmt.Errorf("waiting for %s to be bound and for a Ready warm node of %s: %w", prev, nc, err)
			}
		}
		last = time.Now()
		if err := s.create(ctx, class, nc); err != nil {
			return nil, err
		}
		classes = append(classes, class)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.waitRunning(ctx, classes, nil); err != nil {
		return nil, err
	}
	if res.SchedulerAttempts, err = attemptsSince(before); err != nil {
		return nil, err
	}
	s.summarize(res, classes)
	return res, nil
}

// waitRunning waits until every Pod of classes runs. each, if not nil, is called on every poll
// after the Pods' states are read.
func (s *p4) waitRunning(ctx context.Context, classes []string, each func(allBound bool)) error {
	var why string
	err := pollUntil(ctx, 2*s.cfg.BootDelay.Duration+5*time.Minute, func(context.Context) (bool, error) {
		s.mu.Lock()
		bound, running := 0, 0
		for _, c := range classes {
			if p := s.pods[c]; p != nil {
				if !p.bound.IsZero() {
					bound++
				}
				if !p.running.IsZero() {
					running++
				}
			}
		}
		s.mu.Unlock()
		why = fmt.Sprintf("%d bound, %d running of %d", bound, running, len(classes))
		if each != nil {
			each(bound == len(classes))
		}
		return running == len(classes), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the Pods to run (%s): %w", why, err)
	}
	return nil
}

// summarize fills res from the Pods of classes.
func (s *p4) summarize(res *P4Phase, classes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var warm, cold, claimed, ungated, bound, coldReady, coldBound []time.Duration
	for _, c := range classes {
		p := s.pods[c]
		d := p.running.Sub(p.createCall)
		node := s.nodes[p.node]
		if node == nil || !node.everWarm {
			cold = append(cold, d)
			if node != nil && !node.ready.IsZero() {
				coldReady = append(coldReady, node.ready.Sub(p.createCall))
			}
			coldBound = append(coldBound, p.bound.Sub(p.createCall))
			continue
		}
		warm = append(warm, d)
		if !node.claimed.IsZero() {
			claimed = append(claimed, node.claimed.Sub(p.createCall))
		}
		ungated = append(ungated, p.ungated.Sub(p.createCall))
		bound = append(bound, p.bound.Sub(p.createCall))
	}
	res.WarmStarts, res.ColdStarts = len(warm), len(cold)
	if len(warm) > 0 {
		res.WarmStages = &P4Stages{Claimed: Summarize(claimed), Ungated: Summarize(ungated), Bound: Summarize(bound), Running: Summarize(slices.Clone(warm))}
	}
	if len(cold) > 0 {
		res.ColdStages = &P4ColdStages{NodeReady: Summarize(coldReady), Bound: Summarize(coldBound), Running: Summarize(slices.Clone(cold))}
	}
	res.Warm, res.Cold = Summarize(warm), Summarize(cold)
}

// burst creates the Pods of BurstClasses new classes at once against the burst pool and waits
// until they run and the pool is full again.
func (s *p4) burst(ctx context.Context) (*P4Burst, error) {
	res := &P4Burst{P4Phase: P4Phase{Classes: s.cfg.BurstClasses, LoadAvg: LoadAvg()}}
	classes := make([]string, s.cfg.BurstClasses)
	for i := range classes {
		classes[i] = fmt.Sprintf("burst-%03d", i)
	}
	before, err := TakeSnapshot()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	err = Parallel(ctx, len(classes), len(classes), func(ctx context.Context, i int) error {
		return s.create(ctx, classes[i], p4BurstNC)
	})
	if err != nil {
		return nil, err
	}
	var refilled time.Time
	check := func(allBound bool) {
		if refilled.IsZero() && allBound && s.ready(p4BurstNC) >= s.cfg.BurstPool {
			refilled = time.Now()
		}
	}
	if err := s.waitRunning(ctx, classes, check); err != nil {
		return nil, err
	}
	if refilled.IsZero() {
		err := pollUntil(ctx, s.cfg.BootDelay.Duration+5*time.Minute, func(context.Context) (bool, error) {
			check(true)
			return !refilled.IsZero(), nil
		})
		if err != nil {
			return nil, fmt.Errorf("waiting for the pool to refill (%d of %d Ready): %w", s.ready(p4BurstNC), s.cfg.BurstPool, err)
		}
	}
	res.RefillSeconds = refilled.Sub(t0).Seconds()
	if res.SchedulerAttempts, err = attemptsSince(before); err != nil {
		return nil, err
	}
	s.summarize(&res.P4Phase, classes)
	return res, nil
}

// attemptsSince returns the in-process scheduler's attempts since before, by result.
func attemptsSince(before Snapshot) (map[string]float64, error) {
	after, err := TakeSnapshot()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, r := range []string{"scheduled", "unschedulable", "error"} {
		l := map[string]string{"result": r}
		out[r] = after.Counter("scheduler_schedule_attempts_total", l) - before.Counter("scheduler_schedule_attempts_total", l)
	}
	return out, nil
}
