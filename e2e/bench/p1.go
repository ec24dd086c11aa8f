package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// Namespaces and labels of P1.
const (
	// P1Namespace holds the measured Pods and the IPP Pods already running; the webhook admits it.
	P1Namespace = "bench"
	// FillerNamespace holds the non-IPP Pods already running; the webhook exempts it, so they
	// can be created bound (spec.nodeName), as a kubelet's static Pods or a past scheduling would
	// have left them.
	FillerNamespace = "bench-filler"
	roleLabel       = "bench-role"
	runLabel        = "bench-run"
)

// Variant names.
const (
	VariantBaseline   = "baseline"
	VariantDedicated  = "dedicated"
	VariantLabelPin   = "dedicated-label-only"
	VariantAutoscaler = "autoscaler"
	// VariantPlaced is --placement=controller (issue 11): the webhook pins each Pod to its class
	// key and gates it, the IPP controller places it on a bound node of its class with room and
	// lifts the gate, and the scheduler binds it (matchFields metadata.name).
	VariantPlaced = "dedicated-placed"
)

// Timing modes of a P1 run.
const (
	// ModeEndToEnd times from the first Pod created to the last Pod bound, with the scheduler
	// running while the Pods are created.
	ModeEndToEnd = "create-to-bind"
	// ModeScheduler creates every Pod first, with no scheduler running, then starts the
	// scheduler and times from the start of its scheduling loop to the last Pod bound: the
	// scheduler by itself, without Pod creation as a ceiling.
	ModeScheduler = "scheduler-only"
	// ModePlacement (dedicated-placed only) runs no scheduler: it times from the first Pod created
	// to the last Pod whose placement gate the IPP controller has lifted, the controller's
	// placement rate.
	ModePlacement = "placement"
	// ModePlacementOnly (dedicated-placed only) creates every Pod with the IPP controller
	// stopped, then starts it and times from its start (informer sync and the provider's first
	// List included) to the last Pod placed: the controller alone, without Pod creation as a
	// ceiling. No scheduler runs.
	ModePlacementOnly = "placement-only"
	// ModePatchOnly (dedicated-placed only) is placement-only without the controller: every Pod
	// created with the controller stopped, the benchmark sends the controller's own placement
	// PATCH (placement.PinPatch, to a node of the Pod's class) for each, as the ipp
	// ServiceAccount through the policy ipp-pods, PatchOnlyWorkers at a time, and times from the
	// first PATCH to the last Pod placed. It is the API server's ceiling for one placement PATCH
	// per Pod on this machine: what placement-only's rate compares to. No scheduler runs.
	ModePatchOnly = "patch-only"
)

// PatchOnlyWorkers is how many placement PATCHes patch-only sends at once: as many as the
// controller's default placement workers can have in flight (4 classes × 16 Pods).
const PatchOnlyWorkers = 64

// Variant is one way of admitting P1's measured Pods.
type Variant struct {
	Name string
	// Class says whether the measured Pods carry the class label.
	Class bool
	// Placed says that the IPP controller places the Pods (--placement=controller), on nodes of
	// their class that it has bound.
	Placed bool
	// Config is the webhook's configuration.
	Config isolation.Config
}

// admissionConfig is isolation.DefaultConfig with --placement=admission, which P1's dedicated
// variants, P2 and P3 measure (as they did before --placement=controller became the default);
// P1's dedicated-placed variant and P4 set --placement=controller themselves.
func admissionConfig() isolation.Config {
	cfg := isolation.DefaultConfig()
	cfg.Placement = isolation.PlacementAdmission
	return cfg
}

// Variants returns P1's variants by name, in the order they run.
func Variants() []Variant {
	dedicated := admissionConfig()
	labelOnly := admissionConfig()
	labelOnly.PinNodeName = false
	auto := admissionConfig()
	auto.Mode = isolation.ModeAutoscaler
	return []Variant{
		{Name: VariantBaseline, Class: false, Config: dedicated},
		{Name: VariantDedicated, Class: true, Config: dedicated},
		{Name: VariantLabelPin, Class: true, Config: labelOnly},
		{Name: VariantAutoscaler, Class: true, Config: auto},
		// Last: it runs the IPP controller, which would unbind the other variants' dedicated
		// nodes (they have no instance); setTaints binds them again.
		{Name: VariantPlaced, Class: true, Placed: true, Config: placedConfig()},
	}
}

// P1Config sizes P1.
type P1Config struct {
	// Nodes are the cluster sizes.
	Nodes []int `json:"nodes"`
	// Pods is M, the measured Pods per run.
	Pods int `json:"pods"`
	// NodesPerClass sets K = N / NodesPerClass classes, each with its own IPP node.
	NodesPerClass int `json:"nodesPerClass"`
	// ExistingPerNode are the numbers of Pods already running on each Node, one run each.
	ExistingPerNode []int `json:"existingPerNode"`
	// Variants and Modes select what runs (all when empty).
	Variants []string `json:"variants"`
	Modes    []string `json:"modes"`
	// CreateWorkers create Pods in parallel.
	CreateWorkers int `json:"createWorkers"`
	// PlacedNodesPerClass is how many nodes each of the K classes of the dedicated-placed variant
	// has (the IPP controller binds them): K × PlacedNodesPerClass nodes besides the N. Zero means
	// NodesPerClass, so that the placed nodes are as many as the cluster's N.
	PlacedNodesPerClass int `json:"placedNodesPerClass,omitempty"`
	// PlacementWorkers is the controller's --placement-workers (0: its default).
	PlacementWorkers int `json:"placementWorkers,omitempty"`
	// Repeat runs each measurement this many times; ratios and the plot take the best (the
	// machine is shared, and interference only ever slows a run down).
	Repeat int `json:"repeat"`
	// ProfileNodes: scheduler-only runs at this node count write a CPU profile to ProfileDir.
	ProfileNodes int    `json:"profileNodes,omitempty"`
	ProfileDir   string `json:"-"`
	// LogFile receives the control plane's log.
	LogFile string `json:"-"`
}

// P1Result is P1's output.
type P1Result struct {
	Config P1Config  `json:"config"`
	Runs   []P1Run   `json:"runs"`
	Ratios []P1Ratio `json:"ratios"`
}

// P1Run is one measurement.
type P1Run struct {
	Variant         string `json:"variant"`
	Mode            string `json:"mode"`
	Nodes           int    `json:"nodes"`
	IPPNodes        int    `json:"ippNodes"`
	Classes         int    `json:"classes"`
	Pods            int    `json:"pods"`
	ExistingPerNode int    `json:"existingPerNode"`
	ExistingPods    int    `json:"existingPods"`
	Repeat          int    `json:"repeat"`
	// PlacedNodes are the nodes of the dedicated-placed variant's classes (besides Nodes).
	PlacedNodes int `json:"placedNodes,omitempty"`
	// Bound is how many of Pods were bound before the deadline (placement mode: placed, their
	// gate lifted).
	Bound int `json:"bound"`
	// Seconds is what the mode times; PodsPerSecond is Bound / Seconds.
	Seconds       float64 `json:"seconds"`
	PodsPerSecond float64 `json:"podsPerSecond"`
	// CreateSeconds is how long creating the Pods took (create-to-bind: first to last create;
	// scheduler-only: before the scheduler started), CreatePerSecond the rate.
	CreateSeconds   float64 `json:"createSeconds"`
	CreatePerSecond float64 `json:"createPerSecond"`
	// CreateRetries counts creations retried after an apiserver error (a webhook timeout, say).
	CreateRetries int64 `json:"createRetries,omitempty"`
	// SchedulerSyncSeconds is how long the scheduler took to build and sync its caches.
	SchedulerSyncSeconds float64 `json:"schedulerSyncSeconds"`
	// CreatedToBound is per Pod, from its Create call returning to the benchmark's watch seeing
	// it bound (create-to-bind mode only).
	CreatedToBound *Latency `json:"createdToBound,omitempty"`
	// CreatedToPlaced is per Pod of dedicated-placed, from its Create call returning to the watch
	// seeing its placement gate lifted.
	CreatedToPlaced *Latency `json:"createdToPlaced,omitempty"`
	// PlacedSeconds (dedicated-placed, create-to-bind and placement) is from the first Create to
	// the last Pod seen placed.
	PlacedSeconds float64 `json:"placedSeconds,omitempty"`
	// FirstPlacedSeconds (placement modes) is from the start of the timing to the first Pod seen
	// placed: in placement-only, the controller's start-up (informer sync, the provider's first
	// List) and its first round.
	FirstPlacedSeconds float64 `json:"firstPlacedSeconds,omitempty"`
	// SteadyPlacedPerSecond (placement modes) is the rate between the 10th and the 90th
	// percentile of the Pods' placement times: the controller's pace once it runs, without its
	// start-up (informer sync) and the last stragglers. 0 with fewer than 20 Pods.
	SteadyPlacedPerSecond float64 `json:"steadyPlacedPerSecond,omitempty"`
	// The scheduler's own histograms for this run (estimated within their buckets):
	// scheduling_attempt_duration_seconds{result=scheduled} (algorithm + binding),
	// scheduling_algorithm_duration_seconds, and pod_scheduling_sli_duration_seconds (queue
	// entry to binding).
	AttemptP50Ms   float64 `json:"attemptP50Ms"`
	AttemptP99Ms   float64 `json:"attemptP99Ms"`
	AttemptMeanMs  float64 `json:"attemptMeanMs"`
	AlgorithmP50Ms float64 `json:"algorithmP50Ms"`
	AlgorithmP99Ms float64 `json:"algorithmP99Ms"`
	// AlgorithmMeanMs is exact (sum / count), unlike the quantiles, whose first bucket is 1 ms.
	AlgorithmMeanMs float64 `json:"algorithmMeanMs"`
	SLIP50Ms        float64 `json:"sliP50Ms"`
	SLIP99Ms        float64 `json:"sliP99Ms"`
	// Attempts counts scheduling attempts by result (scheduled, unschedulable, error).
	Attempts map[string]float64 `json:"attempts"`
	// ExtensionPointMeanMs is the mean time per scheduling cycle in each extension point.
	ExtensionPointMeanMs map[string]float64 `json:"extensionPointMeanMs"`
	LoadAvg              float64            `json:"loadAvg"`
	// ProcessCPUUtil is this process's CPU seconds per second over the timed span: the whole
	// control plane runs in it, so less than the machine's CPU count means it waited for CPU
	// (or for the apiserver's writes).
	ProcessCPUUtil float64 `json:"processCPUUtil"`
	// CPUMsPerPod is this process's CPU time over the timed span per bound Pod: the cost of
	// scheduling, binding, events and watches of one Pod, whole control plane included. It
	// depends much less on the neighbours' load than PodsPerSecond does.
	CPUMsPerPod float64 `json:"cpuMsPerPod"`
	Profile     string  `json:"profile,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// P1Ratio compares the variants of one size, existing load and mode.
type P1Ratio struct {
	Nodes           int     `json:"nodes"`
	ExistingPerNode int     `json:"existingPerNode"`
	Mode            string  `json:"mode"`
	DedicatedPerSec float64 `json:"dedicatedPodsPerSecond"`
	// DedicatedOverBaseline and DedicatedOverAutoscaler are the throughput ratios; the targets
	// are ≥ 0.9 and ≥ 10 at 5000 nodes.
	DedicatedOverBaseline   float64 `json:"dedicatedOverBaseline"`
	DedicatedOverAutoscaler float64 `json:"dedicatedOverAutoscaler"`
	LabelOnlyOverBaseline   float64 `json:"labelOnlyOverBaseline"`
	// PlacedOverBaseline and PlacedOverDedicated compare dedicated-placed (issue 11: not below
	// today's dedicated / baseline).
	PlacedOverBaseline  float64 `json:"placedOverBaseline,omitempty"`
	PlacedOverDedicated float64 `json:"placedOverDedicated,omitempty"`
}

func (cfg *P1Config) wants(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// RunP1 runs P1 on one control plane (kube-controller-manager can run once per process): the
// sizes in increasing order, each growing the cluster of the one before, every variant and mode
// at each size.
func RunP1(ctx context.Context, cfg P1Config) (*P1Result, error) {
	res := &P1Result{Config: cfg}
	s := &p1Size{cfg: cfg}
	var err error
	begin := time.Now()
	if s.cluster, err = StartCluster(ctx, cfg.LogFile, false); err != nil {
		return res, err
	}
	defer s.cluster.Stop()
	defer s.closePlaced()
	if s.sw, _, err = s.cluster.RegisterWebhook(ctx, admissionConfig(), FillerNamespace); err != nil {
		return res, err
	}
	for _, ns := range []string{P1Namespace, FillerNamespace} {
		if _, err := s.cluster.CreateNamespace(ctx, ns); err != nil {
			return res, err
		}
	}
	klog.FromContext(ctx).Info("P1 control plane ready", "took", time.Since(begin).Round(time.Millisecond))
	sizes := slices.Sorted(slices.Values(cfg.Nodes))
	for _, n := range slices.Compact(sizes) {
		runs, err := s.runSize(ctx, n)
		res.Runs = append(res.Runs, runs...)
		if err != nil {
			return res, fmt.Errorf("P1 at %d nodes: %w", n, err)
		}
	}
	res.Ratios = p1Ratios(res.Runs)
	return res, nil
}

// p1Size is the cluster of P1 at its current size.
type p1Size struct {
	cfg      P1Config
	cluster  *Cluster
	sw       *SwitchHandler
	nodes    int
	classes  []string
	ippNodes []string // ippNodes[i] is the node of classes[i]
	plain    []string
	filler   int // filler Pods per plain node
	runSeq   int
	// placed are the dedicated-placed variant's nodes and controller, made on first use.
	placed *placedCluster
}

// runSize grows the cluster to n nodes, K = n/NodesPerClass of them IPP nodes, and runs every
// variant at every existing-Pod level.
func (s *p1Size) runSize(ctx context.Context, n int) (runs []P1Run, err error) {
	logger := klog.FromContext(ctx)
	k := max(1, n/s.cfg.NodesPerClass)
	ded := admissionConfig()
	begin := time.Now()
	// Filler Pods are recreated for the new plain nodes, level by level.
	if s.filler > 0 {
		if err := DeletePods(ctx, s.cluster.Fast, FillerNamespace, roleLabel+"=filler", 10*time.Minute); err != nil {
			return nil, err
		}
		s.filler = 0
	}
	var added []*corev1.Node
	for i := len(s.classes); i < k; i++ {
		c := fmt.Sprintf("c%04d", i)
		s.classes = append(s.classes, c)
		s.ippNodes = append(s.ippNodes, ded.NodeName(P1Namespace, c))
		labels := ded.NodeLabels()
		labels[isolation.BindingLabel] = s.ippNodes[i]
		added = append(added, ReadyNode(s.ippNodes[i], labels, ded.Taints(), ""))
	}
	for i := len(s.plain); i < n-k; i++ {
		s.plain = append(s.plain, fmt.Sprintf("node-%05d", i))
		added = append(added, ReadyNode(s.plain[i], nil, nil, ""))
	}
	s.nodes = len(s.classes) + len(s.plain)
	err = Parallel(ctx, len(added), s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		_, err := CreateReadyNode(ctx, s.cluster.Fast, added[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	logger.Info("P1 cluster ready", "nodes", s.nodes, "ippNodes", len(s.ippNodes), "took", time.Since(begin).Round(time.Millisecond))

	for _, existing := range s.cfg.ExistingPerNode {
		// Filler Pods accumulate: each existing level adds to the previous one.
		if existing > s.filler {
			t0 := time.Now()
			if err := s.createFiller(ctx, s.filler, existing); err != nil {
				return runs, err
			}
			logger.Info("Created filler pods", "perNode", existing, "pods", (existing-s.filler)*len(s.plain), "took", time.Since(t0).Round(time.Millisecond))
			s.filler = existing
		}
		for _, v := range Variants() {
			if !s.cfg.wants(s.cfg.Variants, v.Name) {
				continue
			}
			if v.Placed {
				per := s.cfg.PlacedNodesPerClass
				if per <= 0 {
					per = s.cfg.NodesPerClass
				}
				if err := s.preparePlaced(ctx, k, per); err != nil {
					return runs, err
				}
			}
			vr, err := s.runVariant(ctx, v, existing)
			s.stopPlaced()
			runs = append(runs, vr...)
			if err != nil {
				return runs, err
			}
		}
	}
	return runs, nil
}

// createFiller binds Pods from index from up to to (exclusive) per plain node, directly.
func (s *p1Size) createFiller(ctx context.Context, from, to int) error {
	per := to - from
	return Parallel(ctx, per*len(s.plain), s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		node := s.plain[i%len(s.plain)]
		p := BenchPod(fmt.Sprintf("filler-%s-%d", node, from+i/len(s.plain)), map[string]string{roleLabel: "filler"})
		p.Spec.NodeName = node
		_, err := CreatePod(ctx, s.cluster.Fast, FillerNamespace, p, nil)
		return err
	})
}

// setTaints gives every IPP node the taints a variant's nodes have: the dedicated nodes'
// NoSchedule and NoExecute, or the autoscaler node pool's NoSchedule alone (the toleration the
// autoscaler mutation adds).
func (s *p1Size) setTaints(ctx context.Context, taints []corev1.Taint) error {
	return Parallel(ctx, len(s.ippNodes), s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		// The IPP controller, which runs for dedicated-placed, may be writing the same Node.
		err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			n, err := s.cluster.Fast.CoreV1().Nodes().Get(ctx, s.ippNodes[i], metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Spec.Taints = taints
			// The IPP controller, when it ran for dedicated-placed, took the binding label off
			// these nodes: they have no instance.
			n.Labels[isolation.BindingLabel] = n.Name
			_, err = s.cluster.Fast.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("tainting node %s: %w", s.ippNodes[i], err)
		}
		return nil
	})
}

// createExisting creates perNode IPP Pods of each class through the webhook (so they carry the
// variant's mutation) and binds them to their class's node through the binding subresource.
// Every IPP node gets at least one: without a Pod of its class on each node, the autoscaler
// mode's anti-affinity lets a class spread over several empty nodes, and the last classes find
// none (Cluster Autoscaler would add nodes). The dedicated variants get the same Pods so that
// every variant sees the same cluster.
func (s *p1Size) createExisting(ctx context.Context, perNode int) error {
	perNode = max(1, perNode)
	core := s.cluster.Fast.CoreV1()
	return Parallel(ctx, perNode*len(s.classes), s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		c := i % len(s.classes)
		p := BenchPod(fmt.Sprintf("existing-%s-%d", s.classes[c], i/len(s.classes)),
			map[string]string{roleLabel: "existing", isolation.DefaultPodLabel: s.classes[c]})
		created, err := CreatePod(ctx, s.cluster.Fast, P1Namespace, p, nil)
		if err != nil {
			return err
		}
		err = core.Pods(P1Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: created.Name, UID: created.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: s.ippNodes[c]},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("binding existing pod %s: %w", p.Name, err)
		}
		return nil
	})
}

func (s *p1Size) runVariant(ctx context.Context, v Variant, existing int) (runs []P1Run, err error) {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "variant", v.Name, "nodes", s.nodes, "existingPerNode", existing)
	ctx = klog.NewContext(ctx, logger)
	s.sw.Set(webhook.NewHandler(v.Config))
	taints := v.Config.Taints()
	if v.Config.Mode == isolation.ModeAutoscaler {
		taints = []corev1.Taint{{Key: v.Config.NodeTaint, Value: isolation.LabelValue, Effect: corev1.TaintEffectNoSchedule}}
	}
	if err := s.setTaints(ctx, taints); err != nil {
		return nil, err
	}
	// The dedicated-placed variant's nodes get no Pods already running: the existing Pods are
	// bound directly, which a gated Pod cannot be.
	if !v.Placed {
		if err := s.createExisting(ctx, existing); err != nil {
			return nil, err
		}
	}
	defer func() {
		if derr := DeletePods(ctx, s.cluster.Fast, P1Namespace, roleLabel+"=existing", 5*time.Minute); derr != nil && err == nil {
			err = derr
		}
	}()
	for rep := range max(1, s.cfg.Repeat) {
		for _, mode := range []string{ModePlacementOnly, ModePatchOnly, ModePlacement, ModeEndToEnd, ModeScheduler} {
			if !s.cfg.wants(s.cfg.Modes, mode) || (isPlacementMode(mode) && !v.Placed) {
				continue
			}
			run, err := s.measure(ctx, v, mode, existing, rep)
			runs = append(runs, run)
			logger.Info("P1 run", "mode", mode, "repeat", rep, "podsPerSecond", fmt.Sprintf("%.1f", run.PodsPerSecond), "bound", run.Bound,
				"seconds", fmt.Sprintf("%.2f", run.Seconds), "algorithmMeanMs", run.AlgorithmMeanMs, "processCPU", fmt.Sprintf("%.2f", run.ProcessCPUUtil), "loadAvg", run.LoadAvg)
			if err != nil {
				return runs, err
			}
		}
	}
	return runs, nil
}

// podWatch records when each measured Pod is first seen and first seen bound.
type podWatch struct {
	mu    sync.Mutex
	want  int
	seen  map[string]bool
	bound map[string]time.Time
	// placed is when each Pod was first seen without the placement gate.
	placed    map[string]time.Time
	allSeen   chan struct{}
	allDone   chan struct{}
	allPlaced chan struct{}
	store     cache.Store
	stop      context.CancelFunc
}

func (s *p1Size) watch(ctx context.Context, selector string, want int) (*podWatch, error) {
	w := &podWatch{want: want, seen: map[string]bool{}, bound: map[string]time.Time{}, placed: map[string]time.Time{},
		allSeen: make(chan struct{}), allDone: make(chan struct{}), allPlaced: make(chan struct{})}
	factory := informers.NewSharedInformerFactoryWithOptions(s.cluster.Fast, 0, informers.WithNamespace(P1Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := factory.Core().V1().Pods().Informer()
	observe := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.seen[p.Name] {
			w.seen[p.Name] = true
			if len(w.seen) == w.want {
				close(w.allSeen)
			}
		}
		if !gated(p) {
			if _, ok := w.placed[p.Name]; !ok {
				w.placed[p.Name] = now
				if len(w.placed) == w.want {
					close(w.allPlaced)
				}
			}
		}
		if p.Spec.NodeName != "" {
			if _, ok := w.bound[p.Name]; !ok {
				w.bound[p.Name] = now
				if len(w.bound) == w.want {
					close(w.allDone)
				}
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, cur any) { observe(cur) },
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w.stop = func() { cancel(); factory.Shutdown() }
	w.store = inf.GetStore()
	factory.Start(wctx.Done())
	if !cache.WaitForCacheSync(wctx.Done(), inf.HasSynced) {
		w.stop()
		return nil, fmt.Errorf("syncing the pod watch")
	}
	return w, nil
}

func (w *podWatch) boundCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.bound)
}

func (w *podWatch) lastBound() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return latest(w.bound)
}

func (w *podWatch) placedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.placed)
}

func (w *podWatch) lastPlaced() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return latest(w.placed)
}

func (w *podWatch) firstPlaced() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, t := range w.placed {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

// steadyPlacedRate is P1Run.SteadyPlacedPerSecond of the Pods seen placed so far.
func (w *podWatch) steadyPlacedRate() float64 {
	w.mu.Lock()
	ts := make([]time.Time, 0, len(w.placed))
	for _, t := range w.placed {
		ts = append(ts, t)
	}
	w.mu.Unlock()
	return steadyRate(ts)
}

// steadyRate is the number of events per second between the 10th and the 90th percentile of
// their times ts; 0 with fewer than 20 events or none between.
func steadyRate(ts []time.Time) float64 {
	if len(ts) < 20 {
		return 0
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	i, j := len(ts)/10, len(ts)*9/10
	dt := ts[j].Sub(ts[i]).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(j-i) / dt
}

func latest(ts map[string]time.Time) time.Time {
	var last time.Time
	for _, t := range ts {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// runTimeout bounds one measurement: generous, since the autoscaler variant at 5000 nodes with
// existing Pods can fall to tens of Pods per second on two busy CPUs.
func runTimeout(pods int) time.Duration {
	return max(3*time.Minute, time.Duration(pods)*200*time.Millisecond)
}

func (s *p1Size) measure(ctx context.Context, v Variant, mode string, existing, rep int) (run P1Run, err error) {
	logger := klog.FromContext(ctx)
	s.runSeq++
	id := fmt.Sprintf("r%d", s.runSeq)
	selector := runLabel + "=" + id
	run = P1Run{
		Variant: v.Name, Mode: mode, Repeat: rep, Nodes: s.nodes, IPPNodes: len(s.ippNodes), Classes: len(s.classes),
		Pods: s.cfg.Pods, ExistingPerNode: existing,
		ExistingPods: existing*len(s.plain) + max(1, existing)*len(s.ippNodes),
		LoadAvg:      LoadAvg(),
	}
	classes := s.classes
	if v.Placed {
		classes = s.placed.classes
		run.Classes, run.PlacedNodes = len(classes), s.placed.nodes
	}
	defer func() {
		if err != nil {
			run.Error = err.Error()
		}
	}()
	w, err := s.watch(ctx, selector, s.cfg.Pods)
	if err != nil {
		return run, err
	}
	defer w.stop()
	defer func() {
		// The next run must start from the same cluster.
		if derr := DeletePods(ctx, s.cluster.Fast, P1Namespace, selector, 5*time.Minute); derr != nil && err == nil {
			err = derr
		}
	}()

	var sched *Scheduler
	defer func() {
		if sched != nil {
			sched.Stop()
		}
	}()
	if mode == ModeEndToEnd {
		if sched, err = StartScheduler(ctx, s.cluster.Kubeconfig); err != nil {
			return run, err
		}
		run.SchedulerSyncSeconds = sched.Synced.Seconds()
		sched.Run()
	}
	before, err := TakeSnapshot()
	if err != nil {
		return run, err
	}

	if mode == ModePlacementOnly || mode == ModePatchOnly {
		s.stopPlaced()
	}
	if mode == ModePatchOnly {
		// The following runs need the controller again.
		defer func() {
			if serr := s.startController(ctx); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	// Create-to-bind and placement runs are profiled from the first Create on: the whole
	// process, apiserver and webhooks included.
	if (mode == ModePlacement || mode == ModeEndToEnd) && s.cfg.ProfileDir != "" && s.nodes == s.cfg.ProfileNodes {
		run.Profile = filepath.Join(s.cfg.ProfileDir, fmt.Sprintf("p1-%s-%s-n%d-e%d-r%d.pprof", v.Name, mode, s.nodes, existing, rep))
		stop, err := startCPUProfile(run.Profile)
		if err != nil {
			return run, err
		}
		// Deferred after the deletion of the run's Pods, so it stops before they are deleted.
		defer stop()
	}
	created := make([]time.Time, s.cfg.Pods)
	var retries atomic.Int64
	defer func() { run.CreateRetries = retries.Load() }()
	t0, cpu0 := time.Now(), processCPU()
	err = Parallel(ctx, s.cfg.Pods, s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		labels := map[string]string{roleLabel: "measured", runLabel: id}
		if v.Class {
			labels[isolation.DefaultPodLabel] = classes[i%len(classes)]
		}
		p := BenchPod(fmt.Sprintf("m-%s-%05d", id, i), labels)
		if _, err := CreatePod(ctx, s.cluster.Fast, P1Namespace, p, &retries); err != nil {
			return err
		}
		created[i] = time.Now()
		return nil
	})
	if err != nil {
		return run, err
	}
	tCreated := time.Now()
	run.CreateSeconds = tCreated.Sub(t0).Seconds()
	run.CreatePerSecond = float64(s.cfg.Pods) / run.CreateSeconds

	timeout := runTimeout(s.cfg.Pods)
	if mode == ModePlacementOnly || mode == ModePatchOnly {
		select {
		case <-w.allSeen:
		case <-time.After(time.Minute):
			return run, fmt.Errorf("the watch did not see all %d created pods in a minute", s.cfg.Pods)
		}
		if s.cfg.ProfileDir != "" && s.nodes == s.cfg.ProfileNodes {
			run.Profile = filepath.Join(s.cfg.ProfileDir, fmt.Sprintf("p1-%s-%s-n%d-e%d-r%d.pprof", v.Name, mode, s.nodes, existing, rep))
			stop, err := startCPUProfile(run.Profile)
			if err != nil {
				return run, err
			}
			defer stop()
		}
		t0, cpu0 = time.Now(), processCPU()
		if mode == ModePatchOnly {
			err = s.patchAll(ctx, selector)
		} else {
			err = s.startController(ctx)
		}
		if err != nil {
			return run, err
		}
	}
	if isPlacementMode(mode) {
		return s.finishPlacement(ctx, run, w, created, id, t0, cpu0, timeout)
	}
	if mode == ModeScheduler {
		select {
		case <-w.allSeen:
		case <-time.After(time.Minute):
			return run, fmt.Errorf("the watch did not see all %d created pods in a minute", s.cfg.Pods)
		}
		if v.Placed {
			// The scheduler alone: it starts once the controller has placed every Pod.
			if err := waitPlaced(ctx, w, timeout); err != nil {
				return run, err
			}
			run.PlacedSeconds = w.lastPlaced().Sub(t0).Seconds()
		}
		if sched, err = StartScheduler(ctx, s.cluster.Kubeconfig); err != nil {
			return run, err
		}
		run.SchedulerSyncSeconds = sched.Synced.Seconds()
		if before, err = TakeSnapshot(); err != nil {
			return run, err
		}
		var stopProfile func()
		if s.cfg.ProfileDir != "" && s.nodes == s.cfg.ProfileNodes {
			run.Profile = filepath.Join(s.cfg.ProfileDir, fmt.Sprintf("p1-%s-n%d-e%d-r%d.pprof", v.Name, s.nodes, existing, rep))
			if stopProfile, err = startCPUProfile(run.Profile); err != nil {
				return run, err
			}
		}
		t0 = time.Now()
		cpu0 = processCPU()
		sched.Run()
		err = waitDone(ctx, w, timeout)
		if stopProfile != nil {
			stopProfile()
		}
	} else {
		err = waitDone(ctx, w, timeout)
	}
	run.Bound = w.boundCount()
	if run.Bound > 0 {
		run.Seconds = w.lastBound().Sub(t0).Seconds()
		run.PodsPerSecond = float64(run.Bound) / run.Seconds
		cpu := processCPU() - cpu0
		run.ProcessCPUUtil = cpu.Seconds() / time.Since(t0).Seconds()
		run.CPUMsPerPod = msOf(cpu.Seconds() / float64(run.Bound))
	}
	// The scheduler counts an attempt once its binding call has returned, which can be just after
	// the watch saw the Pod bound.
	var after Snapshot
	serr := pollUntil(ctx, 5*time.Second, func(context.Context) (bool, error) {
		var err error
		after, err = TakeSnapshot()
		if err != nil {
			return false, err
		}
		l := map[string]string{"result": "scheduled"}
		return after.Counter("scheduler_schedule_attempts_total", l)-before.Counter("scheduler_schedule_attempts_total", l) >= float64(run.Bound), nil
	})
	if after != nil {
		serr = nil
	}
	if serr == nil {
		s.fillSchedulerMetrics(&run, before, after)
	}
	if mode == ModeEndToEnd {
		run.CreatedToBound = w.latencies(id, created, w.bound)
		if v.Placed {
			run.CreatedToPlaced = w.latencies(id, created, w.placed)
			run.PlacedSeconds = w.lastPlaced().Sub(t0).Seconds()
		}
	}
	if err != nil {
		logger.Error(err, "P1 run did not finish", "bound", run.Bound, "pods", s.cfg.Pods)
	}
	return run, err
}

// latencies summarizes, per measured Pod of run id, the time from its Create call returning to
// its time in at.
func (w *podWatch) latencies(id string, created []time.Time, at map[string]time.Time) *Latency {
	var lat []time.Duration
	w.mu.Lock()
	for i := range created {
		if b, ok := at[fmt.Sprintf("m-%s-%05d", id, i)]; ok {
			lat = append(lat, b.Sub(created[i]))
		}
	}
	w.mu.Unlock()
	l := Summarize(lat)
	return &l
}

// finishPlacement completes a placement-mode run once its Pods are created: no scheduler runs,
// and the run times from the first Create (t0) to the last Pod seen with its placement gate
// lifted. With ProfileDir set at ProfileNodes, the whole process (apiserver, webhook, controller)
// is CPU-profiled over the run, creation included.
func (s *p1Size) finishPlacement(ctx context.Context, run P1Run, w *podWatch, created []time.Time, id string, t0 time.Time, cpu0 time.Duration, timeout time.Duration) (P1Run, error) {
	err := waitPlaced(ctx, w, timeout)
	run.Bound = w.placedCount()
	if run.Bound > 0 {
		run.PlacedSeconds = w.lastPlaced().Sub(t0).Seconds()
		run.Seconds = run.PlacedSeconds
		run.PodsPerSecond = float64(run.Bound) / run.Seconds
		run.FirstPlacedSeconds = w.firstPlaced().Sub(t0).Seconds()
		run.SteadyPlacedPerSecond = w.steadyPlacedRate()
		cpu := processCPU() - cpu0
		run.ProcessCPUUtil = cpu.Seconds() / time.Since(t0).Seconds()
		run.CPUMsPerPod = msOf(cpu.Seconds() / float64(run.Bound))
	}
	if run.Mode == ModePlacement {
		run.CreatedToPlaced = w.latencies(id, created, w.placed)
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "P1 placement run did not finish", "placed", run.Bound, "pods", s.cfg.Pods)
	}
	return run, err
}

func isPlacementMode(mode string) bool {
	return mode == ModePlacement || mode == ModePlacementOnly || mode == ModePatchOnly
}

func waitPlaced(ctx context.Context, w *podWatch, timeout time.Duration) error {
	select {
	case <-w.allPlaced:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("only %d of %d pods placed after %v", w.placedCount(), w.want, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// processCPU is this process's user + system CPU time so far.
func processCPU() time.Duration {
	st, err := ReadProcStat(os.Getpid())
	if err != nil {
		return 0
	}
	return st.CPU
}

func waitDone(ctx context.Context, w *podWatch, timeout time.Duration) error {
	select {
	case <-w.allDone:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("only %d of %d pods bound after %v", w.boundCount(), w.want, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *p1Size) fillSchedulerMetrics(run *P1Run, before, after Snapshot) {
	sched := map[string]string{"result": "scheduled"}
	h := after.Histogram("scheduler_scheduling_attempt_duration_seconds", sched).Sub(before.Histogram("scheduler_scheduling_attempt_duration_seconds", sched))
	run.AttemptP50Ms, run.AttemptP99Ms, run.AttemptMeanMs = msOf(h.Quantile(0.5)), msOf(h.Quantile(0.99)), msOf(h.Mean())
	h = after.Histogram("scheduler_scheduling_algorithm_duration_seconds", nil).Sub(before.Histogram("scheduler_scheduling_algorithm_duration_seconds", nil))
	run.AlgorithmP50Ms, run.AlgorithmP99Ms, run.AlgorithmMeanMs = msOf(h.Quantile(0.5)), msOf(h.Quantile(0.99)), msOf(h.Mean())
	h = after.Histogram("scheduler_pod_scheduling_sli_duration_seconds", nil).Sub(before.Histogram("scheduler_pod_scheduling_sli_duration_seconds", nil))
	run.SLIP50Ms, run.SLIP99Ms = msOf(h.Quantile(0.5)), msOf(h.Quantile(0.99))
	run.Attempts = map[string]float64{}
	for _, r := range []string{"scheduled", "unschedulable", "error"} {
		l := map[string]string{"result": r}
		run.Attempts[r] = after.Counter("scheduler_schedule_attempts_total", l) - before.Counter("scheduler_schedule_attempts_total", l)
	}
	run.ExtensionPointMeanMs = map[string]float64{}
	for _, ep := range []string{"PreEnqueue", "PreFilter", "Filter", "PostFilter", "PreScore", "Score", "Reserve", "Permit", "PreBind", "Bind", "PostBind"} {
		l := map[string]string{"extension_point": ep}
		h := after.Histogram("scheduler_framework_extension_point_duration_seconds", l).Sub(before.Histogram("scheduler_framework_extension_point_duration_seconds", l))
		if h.Count > 0 {
			run.ExtensionPointMeanMs[ep] = msOf(h.Mean())
		}
	}
}

// msOf converts seconds to milliseconds, rounded to microseconds; NaN becomes 0 (JSON has no NaN).
func msOf(sec float64) float64 {
	if math.IsNaN(sec) || math.IsInf(sec, 0) {
		return 0
	}
	return math.Round(sec*1e6) / 1e3
}

func startCPUProfile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("making profile dir: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

func p1Ratios(runs []P1Run) []P1Ratio {
	type key struct {
		nodes, existing int
		mode            string
	}
	rate := map[key]map[string]float64{}
	var order []key
	for _, r := range runs {
		if r.Error != "" {
			continue
		}
		k := key{r.Nodes, r.ExistingPerNode, r.Mode}
		if rate[k] == nil {
			rate[k] = map[string]float64{}
			order = append(order, k)
		}
		rate[k][r.Variant] = max(rate[k][r.Variant], r.PodsPerSecond)
	}
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return math.Round(a/b*100) / 100
	}
	var out []P1Ratio
	for _, k := range order {
		m := rate[k]
		out = append(out, P1Ratio{
			Nodes: k.nodes, ExistingPerNode: k.existing, Mode: k.mode,
			DedicatedPerSec:         m[VariantDedicated],
			DedicatedOverBaseline:   div(m[VariantDedicated], m[VariantBaseline]),
			DedicatedOverAutoscaler: div(m[VariantDedicated], m[VariantAutoscaler]),
			LabelOnlyOverBaseline:   div(m[VariantLabelPin], m[VariantBaseline]),
			PlacedOverBaseline:      div(m[VariantPlaced], m[VariantBaseline]),
			PlacedOverDedicated:     div(m[VariantPlaced], m[VariantDedicated]),
		})
	}
	return out
}

// pollUntil is wait.PollUntilContextTimeout with the benchmark's interval.
func pollUntil(ctx context.Context, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, cond)
}
