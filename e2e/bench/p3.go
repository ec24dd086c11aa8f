package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/providers/gce"
)

// P3Config sizes P3.
type P3Config struct {
	// Placement is who chooses the IPP Pods' nodes: admission (the webhook pins each class to
	// its one dedicated node, named after the class) or controller (the webhook gates each Pod
	// and pins it to its class key; the controller creates nodes with unique names, binds them
	// to the class and places each Pod by one PATCH).
	Placement isolation.Placement `json:"placement"`
	// ReactionClasses new classes get one Pod each, ReactionInterval apart, and their reaction
	// time is measured.
	ReactionClasses  int             `json:"reactionClasses"`
	ReactionInterval metav1.Duration `json:"reactionInterval"`
	// SteadyClasses (the reaction classes included) get PodsPerClass Pods each before the
	// steady state is measured for IdleWindow.
	SteadyClasses int             `json:"steadyClasses"`
	PodsPerClass  int             `json:"podsPerClass"`
	IdleWindow    metav1.Duration `json:"idleWindow"`
	// BurstClasses new classes get BurstPodsPerClass Pods each, all at once.
	BurstClasses      int `json:"burstClasses"`
	BurstPodsPerClass int `json:"burstPodsPerClass"`
	// CreateWorkers create Pods in parallel.
	CreateWorkers int `json:"createWorkers"`

	LogFile   string `json:"-"`
	IPPBinary string `json:"-"`
	Repo      string `json:"-"`
	WorkDir   string `json:"-"`
}

// P3Result is P3's output.
type P3Result struct {
	Config P3Config `json:"config"`
	// CreateRetries counts Pod creations retried after an apiserver error, such as a webhook
	// call that timed out.
	CreateRetries int64       `json:"createRetries"`
	Reaction      *P3Reaction `json:"reaction,omitempty"`
	Steady        *P3Steady   `json:"steady,omitempty"`
	Burst         *P3Burst    `json:"burst,omitempty"`
	Process       *P3Process  `json:"process,omitempty"`
}

// P3Reaction is the time from a Pod of a new class being created to the provider's Create call
// for its node: under admission placement the class's dedicated node, named at admission; under
// controller placement the first node the controller plans for the class's gated Pod.
type P3Reaction struct {
	Classes int `json:"classes"`
	// FromCreateCall starts when the benchmark calls Create for the Pod (webhook admission
	// included); FromCreated when that call returns.
	FromCreateCall Latency `json:"fromCreateCall"`
	FromCreated    Latency `json:"fromCreated"`
	LoadAvg        float64 `json:"loadAvg"`
}

// P3Steady is the controller in a cluster where nothing changes.
type P3Steady struct {
	Classes int `json:"classes"`
	Pods    int `json:"pods"`
	// SettleSeconds is how long it took, from the first Pod created, until every class had a
	// bound Node and every Pod was scheduled.
	SettleSeconds float64 `json:"settleSeconds"`
	// Active: the whole build-up (reaction and steady Pods).
	ActiveReconciles         float64            `json:"activeReconciles"`
	ActiveRequests           float64            `json:"activeRequests"`
	ActiveRequestsPerRecon   float64            `json:"activeRequestsPerReconcile"`
	ActiveRequestsByKind     map[string]float64 `json:"activeRequestsByKind"`
	ProviderCallsActive      map[string]int     `json:"providerCallsActive"`
	IdleSeconds              float64            `json:"idleSeconds"`
	IdleReconciles           float64            `json:"idleReconciles"`
	IdleReconcilesPerSecond  float64            `json:"idleReconcilesPerSecond"`
	IdleRequests             float64            `json:"idleRequests"`
	IdleRequestsByKind       map[string]float64 `json:"idleRequestsByKind"`
	IdleRequestsPerReconcile float64            `json:"idleRequestsPerReconcile"`
	IdleProviderCalls        map[string]int     `json:"idleProviderCalls"`
	ControllerHeapNote       string             `json:"controllerHeapNote"`
	LoadAvg                  float64            `json:"loadAvg"`
	ProviderResyncSeconds    float64            `json:"providerResyncSeconds"`
	ExpectedResyncReconciles float64            `json:"expectedResyncReconciles"`
	InstancesAtEnd           int                `json:"instancesAtEnd"`
	// DuplicateInstanceCreation counts the emulator's instance creations beyond one per class
	// (each class's Pods fit on one node).
	DuplicateInstanceCreation int `json:"duplicateInstanceCreations"`
	// PodPatches are the controller's Pod PATCHes during the build-up: under controller
	// placement its placements, one per Pod (more where a placement was retried).
	PodPatches float64 `json:"podPatches"`
}

// P3Burst is many Pods of new classes arriving at once.
type P3Burst struct {
	Classes int `json:"classes"`
	Pods    int `json:"pods"`
	// InsertCalls are instances.insert calls the emulator answered for the burst's classes;
	// ProviderCreateCalls are the controller's calls of Provider.Create for them. Both must equal
	// Classes.
	InsertCalls         int     `json:"insertCalls"`
	ProviderCreateCalls int     `json:"providerCreateCalls"`
	MaxPerClass         int     `json:"maxInsertsPerClass"`
	SettleSeconds       float64 `json:"settleSeconds"`
	LoadAvg             float64 `json:"loadAvg"`
}

// P3Process is `ipp controller` run as its own process against the steady cluster.
type P3Process struct {
	Command string `json:"command"`
	// SyncSeconds is from the process's start to its "Started workers" log line.
	SyncSeconds float64 `json:"syncSeconds"`
	// RSSMiB is VmRSS after IdleWindow; PeakRSSMiB is VmHWM (the initial List included).
	RSSMiB     float64 `json:"rssMiB"`
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	// LiveHeapMiB is the heap that survived the process's last garbage collection before the
	// end of IdleWindow (GODEBUG=gctrace=1): what the controller holds, apart from the
	// collector's headroom (GOGC) and the runtime's own memory.
	LiveHeapMiB float64 `json:"liveHeapMiB"`
	GCs         int     `json:"gcs"`
	// IdleCPUSecondsPerMinute is the process's CPU while idle.
	IdleCPUSecondsPerMinute float64 `json:"idleCPUSecondsPerMinute"`
	IdleSeconds             float64 `json:"idleSeconds"`
	InsertCallsWhileIdle    int     `json:"insertCallsWhileIdle"`
	LoadAvg                 float64 `json:"loadAvg"`
	// HeapProfile is the process's heap profile (in-use and allocated) at the end of
	// IdleWindow, fetched from its --profiling endpoint.
	HeapProfile string `json:"heapProfile,omitempty"`
}

// requestCounter counts the controller's API requests by method and resource.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]float64
}

func (c *requestCounter) snapshot() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]float64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

type countingTransport struct {
	rt http.RoundTripper
	c  *requestCounter
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := r.Method + " " + resourceOf(r.URL.Path)
	if r.URL.Query().Get("watch") == "true" {
		kind = "WATCH " + resourceOf(r.URL.Path)
	}
	t.c.mu.Lock()
	t.c.n[kind]++
	t.c.mu.Unlock()
	return t.rt.RoundTrip(r)
}

// resourceOf returns the resource (and subresource) a request path names, such as "pods" or
// "nodes/status".
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// /api/v1/... or /apis/<group>/<version>/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "namespaces"
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}

func total(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func sub(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// timedProvider records when Create is called for each class, and the class of each instance
// name: under admission placement a class has one node, named after it; under controller
// placement its nodes have random unique names (isolation.InstanceName).
type timedProvider struct {
	cloudprovider.Provider
	mu      sync.Mutex
	creates map[classID][]time.Time
	names   map[string]classID
}

// classID is a class in its namespace.
type classID struct{ namespace, class string }

func newTimedProvider(p cloudprovider.Provider) *timedProvider {
	return &timedProvider{Provider: p, creates: map[classID][]time.Time{}, names: map[string]classID{}}
}

func (p *timedProvider) Create(ctx context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	now := time.Now()
	id := classID{spec.Namespace, spec.Class}
	p.mu.Lock()
	p.creates[id] = append(p.creates[id], now)
	p.names[spec.NodeName] = id
	p.mu.Unlock()
	return p.Provider.Create(ctx, spec)
}

// firstCreate returns the first Create call for the class and how many there were.
func (p *timedProvider) firstCreate(namespace, class string) (time.Time, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := p.creates[classID{namespace, class}]
	if len(ts) == 0 {
		return time.Time{}, 0
	}
	return ts[0], len(ts)
}

// createdByClass sums the emulator's creations per instance name (counts) by class; a name that
// Create was never called for counts as a class of its own.
func (p *timedProvider) createdByClass(counts map[string]int) map[classID]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[classID]int{}
	for name, n := range counts {
		id, ok := p.names[name]
		if !ok {
			id = classID{class: "instance " + name}
		}
		out[id] += n
	}
	return out
}

// nodeBooter registers the Node of each booted instance from its bootstrap, as a kubelet would,
// Ready and with the providerID the cloud gives; it runs no kubelet (thousands would not fit on
// two CPUs) and creates the Node with admin credentials.
type nodeBooter struct {
	client kubernetes.Interface
}

func (b nodeBooter) Boot(ctx context.Context, req cloudemu.BootRequest) error {
	reg, err := kubelet.ParseBootstrap(req.Bootstrap)
	if err != nil {
		return fmt.Errorf("booting instance %s: %w", req.InstanceID, err)
	}
	if reg.ProviderID == "" {
		reg.ProviderID = req.ProviderID
	}
	_, err = CreateReadyNode(ctx, b.client, ReadyNode(reg.NodeName, reg.Labels, reg.Taints, reg.ProviderID))
	return err
}

func (nodeBooter) Shutdown(context.Context, string) {}

// p3 is the state of a P3 run.
type p3 struct {
	cfg      P3Config
	cluster  *Cluster
	emu      *gceemu.Server
	provider *timedProvider
	requests *requestCounter
	retries  atomic.Int64
	iso      isolation.Config
	// kubeconfig holds the credentials the controller runs with (the ipp ServiceAccount's), for
	// the `ipp controller` process.
	kubeconfig string
	stop       func()
}

// RunP3 runs P3.
func RunP3(ctx context.Context, cfg P3Config) (res *P3Result, err error) {
	logger := klog.FromContext(ctx)
	res = &P3Result{Config: cfg}
	s := &p3{cfg: cfg, requests: &requestCounter{n: map[string]float64{}}, iso: admissionConfig()}
	defer func() { res.CreateRetries = s.retries.Load() }()
	s.iso.Placement = cfg.Placement
	if err := s.iso.Validate(); err != nil {
		return res, fmt.Errorf("invalid P3 placement %q: %w", cfg.Placement, err)
	}
	bin, err := ippBinary(ctx, cfg.IPPBinary, cfg.Repo, cfg.WorkDir)
	if err != nil {
		return res, err
	}
	s.cluster, err = StartCluster(ctx, cfg.LogFile, true)
	if err != nil {
		return res, err
	}
	defer s.cluster.Stop()
	if _, _, err := s.cluster.RegisterWebhook(ctx, s.iso); err != nil {
		return res, err
	}
	s.emu = gceemu.New(gceemu.Options{BootDelay: 0, Booter: nodeBooter{client: s.cluster.Fast}})
	if err := s.emu.Start(); err != nil {
		return res, err
	}
	defer s.emu.Close()
	if err := s.startController(ctx); err != nil {
		return res, err
	}
	defer func() {
		if s.stop != nil {
			s.stop()
		}
	}()

	before, err := s.counters()
	if err != nil {
		return res, err
	}
	buildStart := time.Now()
	if res.Reaction, err = s.reaction(ctx); err != nil {
		return res, err
	}
	logger.Info("P3 reaction", "classes", res.Reaction.Classes, "p50Ms", res.Reaction.FromCreateCall.P50, "p99Ms", res.Reaction.FromCreateCall.P99)
	if res.Steady, err = s.steady(ctx, before, buildStart); err != nil {
		return res, err
	}
	logger.Info("P3 steady state", "classes", res.Steady.Classes, "pods", res.Steady.Pods, "idleReconcilesPerSecond", res.Steady.IdleReconcilesPerSecond,
		"idleRequests", res.Steady.IdleRequests, "activeRequestsPerReconcile", res.Steady.ActiveRequestsPerRecon)
	if res.Burst, err = s.burst(ctx); err != nil {
		return res, err
	}
	logger.Info("P3 burst", "classes", res.Burst.Classes, "pods", res.Burst.Pods, "insertCalls", res.Burst.InsertCalls, "providerCreateCalls", res.Burst.ProviderCreateCalls)

	s.stop()
	s.stop = nil
	if res.Process, err = s.process(ctx, bin); err != nil {
		return res, err
	}
	logger.Info("P3 ipp controller process", "rssMiB", res.Process.RSSMiB, "peakRSSMiB", res.Process.PeakRSSMiB, "syncSeconds", res.Process.SyncSeconds)
	return res, nil
}

// startController runs pkg/controller in this process through controller.NewManager, wired as
// `ipp controller --placement=<cfg.Placement>` wires it: as the ipp ServiceAccount (so that its
// placements skip the webhooks and meet the policy ipp-pods, as deploy/ installs them), protobuf,
// client QPS 1000 / burst 2000, 4 workers, the default placement workers; with a
// request-counting transport and the real gce provider pointed at the emulator.
func (s *p3) startController(ctx context.Context) error {
	restCfg, err := s.cluster.ServiceAccountConfig(ctx)
	if err != nil {
		return err
	}
	s.kubeconfig = filepath.Join(s.cluster.Dir(), "bench-ipp.kubeconfig")
	if err := framework.WriteKubeconfig(s.kubeconfig, restCfg); err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = PlacementControllerQPS, PlacementControllerBurst
	restCfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt: rt, c: s.requests} })
	restCfg = rest.AddUserAgent(restCfg, "ipp-controller")
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(restCfg))
	if err != nil {
		return fmt.Errorf("making the controller's client: %w", err)
	}
	p, err := gce.New(ctx, gce.Config{
		ClusterName: s.iso.ClusterName,
		Project:     s.emu.Project(),
		Zone:        s.emu.Zones()[0],
		Image:       gceemu.Image,
		Endpoint:    s.emu.URL(),
	})
	if err != nil {
		return fmt.Errorf("building the gce provider: %w", err)
	}
	s.provider = newTimedProvider(p)

	cctx, cancel := context.WithCancel(quiet(ctx))
	broadcaster := record.NewBroadcaster(record.WithContext(cctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ipp-controller"})
	ipp, err := ippclientset.NewForConfig(restCfg)
	if err != nil {
		cancel()
		broadcaster.Shutdown()
		return err
	}
	// The controller requires the NodeClass CRD; it stays with the cluster.
	if _, err := s.cluster.UseCRD(ctx, deploy.NodeClassCRD); err != nil {
		cancel()
		broadcaster.Shutdown()
		return err
	}
	m, err := controller.NewManager(kube, s.provider, recorder, controller.Options{Config: s.iso, IPPClient: ipp})
	if err != nil {
		cancel()
		broadcaster.Shutdown()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(cctx, 4) }()
	s.stop = func() {
		cancel()
		<-done
		broadcaster.Shutdown()
		_ = p.Close()
	}
	return nil
}

// counters are the controller's cumulative reconciles (the ipp-controller workqueue's processed
// items), API requests and the emulator's calls.
type counters struct {
	at         time.Time
	reconciles float64
	requests   map[string]float64
	calls      map[string]int
}

func (s *p3) counters() (counters, error) {
	snap, err := TakeSnapshot()
	if err != nil {
		return counters{}, err
	}
	if snap["workqueue_work_duration_seconds"] == nil {
		return counters{}, errors.New("no workqueue metrics in the legacyregistry: cannot count reconciles")
	}
	calls := map[string]int{}
	for _, c := range s.emu.Calls() {
		calls[c.Op]++
	}
	return counters{
		at:         time.Now(),
		reconciles: snap.Counter("workqueue_work_duration_seconds", map[string]string{"name": "ipp-controller"}),
		requests:   s.requests.snapshot(),
		calls:      calls,
	}, nil
}

func subCalls(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (s *p3) createPod(ctx context.Context, ns, name, class string) error {
	_, err := CreatePod(ctx, s.cluster.Fast, ns, BenchPod(name, map[string]string{isolation.DefaultPodLabel: class}), &s.retries)
	return err
}

// p3Namespaces spread the classes over a few tenants.
var p3Namespaces = []string{"tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"}

func steadyClass(i int) (ns, class string) {
	return p3Namespaces[i%len(p3Namespaces)], fmt.Sprintf("c%05d", i)
}

func (s *p3) reaction(ctx context.Context) (*P3Reaction, error) {
	for _, ns := range append(append([]string(nil), p3Namespaces...), "burst") {
		if _, err := s.cluster.CreateNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	res := &P3Reaction{Classes: s.cfg.ReactionClasses, LoadAvg: LoadAvg()}
	calls := make([]time.Time, s.cfg.ReactionClasses)
	created := make([]time.Time, s.cfg.ReactionClasses)
	tick := time.NewTicker(s.cfg.ReactionInterval.Duration)
	defer tick.Stop()
	for i := range s.cfg.ReactionClasses {
		ns, class := steadyClass(i)
		calls[i] = time.Now()
		if err := s.createPod(ctx, ns, class+"-0", class); err != nil {
			return nil, err
		}
		created[i] = time.Now()
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var fromCall, fromCreated []time.Duration
	err := pollUntil(ctx, 5*time.Minute, func(context.Context) (bool, error) {
		fromCall, fromCreated = fromCall[:0], fromCreated[:0]
		for i := range s.cfg.ReactionClasses {
			ns, class := steadyClass(i)
			t, _ := s.provider.firstCreate(ns, class)
			if t.IsZero() {
				return false, nil
			}
			fromCall = append(fromCall, t.Sub(calls[i]))
			fromCreated = append(fromCreated, t.Sub(created[i]))
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the provider to be asked for every reaction class: %w", err)
	}
	res.FromCreateCall, res.FromCreated = Summarize(fromCall), Summarize(fromCreated)
	return res, nil
}

// waitSettled waits until every IPP node is bound and every IPP Pod is scheduled, and there
// are want IPP nodes.
func (s *p3) waitSettled(ctx context.Context, want int, timeout time.Duration) error {
	var why string
	err := pollUntil(ctx, timeout, func(ctx context.Context) (bool, error) {
		nodes, err := s.cluster.Fast.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: s.iso.NodeLabel + "=" + isolation.LabelValue, ResourceVersion: "0"})
		if err != nil {
			return false, err
		}
		bound := 0
		for _, n := range nodes.Items {
			if n.Labels[isolation.BindingLabel] == n.Name {
				bound++
			}
		}
		if bound < want {
			why = fmt.Sprintf("%d of %d IPP nodes bound", bound, want)
			return false, nil
		}
		pending, err := s.cluster.Fast.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			LabelSelector: s.iso.PodLabel, FieldSelector: "spec.nodeName=", ResourceVersion: "0",
		})
		if err != nil {
			return false, err
		}
		why = fmt.Sprintf("%d IPP pods not scheduled", len(pending.Items))
		return len(pending.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the cluster to settle (%s): %w", why, err)
	}
	return nil
}

func (s *p3) steady(ctx context.Context, before counters, buildStart time.Time) (*P3Steady, error) {
	logger := klog.FromContext(ctx)
	res := &P3Steady{Classes: s.cfg.SteadyClasses, Pods: s.cfg.SteadyClasses * s.cfg.PodsPerClass,
		ProviderResyncSeconds: controller.DefaultProviderResync.Seconds()}
	// The reaction classes have their first Pod; every class gets the rest.
	per := s.cfg.PodsPerClass
	t0 := time.Now()
	err := Parallel(ctx, s.cfg.SteadyClasses*per, s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		c, k := i%s.cfg.SteadyClasses, i/s.cfg.SteadyClasses
		if c < s.cfg.ReactionClasses && k == 0 {
			return nil
		}
		ns, class := steadyClass(c)
		return s.createPod(ctx, ns, fmt.Sprintf("%s-%d", class, k), class)
	})
	if err != nil {
		return nil, err
	}
	logger.Info("P3 created steady-state pods", "pods", res.Pods, "took", time.Since(t0).Round(time.Millisecond))
	if err := s.waitSettled(ctx, s.cfg.SteadyClasses, 60*time.Minute); err != nil {
		return nil, err
	}
	res.SettleSeconds = time.Since(buildStart).Seconds()
	active, err := s.counters()
	if err != nil {
		return nil, err
	}
	res.ActiveReconciles = active.reconciles - before.reconciles
	res.ActiveRequestsByKind = sub(active.requests, before.requests)
	res.ActiveRequests = total(res.ActiveRequestsByKind)
	if res.ActiveReconciles > 0 {
		res.ActiveRequestsPerRecon = res.ActiveRequests / res.ActiveReconciles
	}
	res.ProviderCallsActive = subCalls(active.calls, before.calls)

	res.LoadAvg = LoadAvg()
	sleepUntil(ctx, time.Now().Add(s.cfg.IdleWindow.Duration))
	idle, err := s.counters()
	if err != nil {
		return nil, err
	}
	res.IdleSeconds = idle.at.Sub(active.at).Seconds()
	res.IdleReconciles = idle.reconciles - active.reconciles
	res.IdleReconcilesPerSecond = res.IdleReconciles / res.IdleSeconds
	res.IdleRequestsByKind = sub(idle.requests, active.requests)
	res.IdleRequests = total(res.IdleRequestsByKind)
	if res.IdleReconciles > 0 {
		res.IdleRequestsPerReconcile = res.IdleRequests / res.IdleReconciles
	}
	res.IdleProviderCalls = subCalls(idle.calls, active.calls)
	res.ExpectedResyncReconciles = float64(s.cfg.SteadyClasses) * res.IdleSeconds / res.ProviderResyncSeconds
	res.InstancesAtEnd = len(s.emu.Instances())
	res.PodPatches = res.ActiveRequestsByKind["PATCH pods"]
	for _, n := range s.provider.createdByClass(s.emu.CreatedCounts()) {
		if n > 1 {
			res.DuplicateInstanceCreation += n - 1
		}
	}
	res.ControllerHeapNote = "RSS is measured on the ipp controller process (see process)"
	return res, ctx.Err()
}

func (s *p3) burst(ctx context.Context) (*P3Burst, error) {
	res := &P3Burst{Classes: s.cfg.BurstClasses, Pods: s.cfg.BurstClasses * s.cfg.BurstPodsPerClass, LoadAvg: LoadAvg()}
	insertsBefore := s.emu.CallCount("instances.insert")
	t0 := time.Now()
	err := Parallel(ctx, res.Pods, s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		class := fmt.Sprintf("burst-%03d", i%s.cfg.BurstClasses)
		return s.createPod(ctx, "burst", fmt.Sprintf("%s-%d", class, i/s.cfg.BurstClasses), class)
	})
	if err != nil {
		return nil, err
	}
	if err := s.waitSettled(ctx, s.cfg.SteadyClasses+s.cfg.BurstClasses, 30*time.Minute); err != nil {
		return nil, err
	}
	res.SettleSeconds = time.Since(t0).Seconds()
	counts := s.provider.createdByClass(s.emu.CreatedCounts())
	for c := range s.cfg.BurstClasses {
		class := fmt.Sprintf("burst-%03d", c)
		res.MaxPerClass = max(res.MaxPerClass, counts[classID{"burst", class}])
		_, n := s.provider.firstCreate("burst", class)
		res.ProviderCreateCalls += n
	}
	res.InsertCalls = s.emu.CallCount("instances.insert") - insertsBefore
	return res, nil
}

// process runs `ipp controller` against the settled cluster and measures its memory and idle CPU.
func (s *p3) process(ctx context.Context, bin string) (*P3Process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{"controller", "--kubeconfig=" + s.kubeconfig, "--placement=" + string(s.iso.Placement), "--leader-elect=false", "-v=2",
		"--metrics-address=" + metricsAddr, "--profiling"}, s.emu.IPPFlags()...)
	res := &P3Process{Command: "ipp " + strings.Join(args, " "), LoadAvg: LoadAvg()}
	logPath := filepath.Join(s.cfg.WorkDir, "p3-controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logf
	started := make(chan struct{})
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting ipp controller: %w", err)
	}
	done := make(chan error, 1)
	var gcMu sync.Mutex
	var liveHeap float64
	var gcs int
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			_, _ = fmt.Fprintln(logf, line)
			if strings.Contains(line, "Started workers") {
				once.Do(func() { close(started) })
			}
			if mb, ok := gcLiveHeap(line); ok {
				gcMu.Lock()
				liveHeap, gcs = mb, gcs+1
				gcMu.Unlock()
			}
		}
		done <- cmd.Wait()
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	select {
	case <-started:
	case err := <-done:
		return nil, fmt.Errorf("ipp controller exited before it started its workers: %v (log %s)", err, logPath)
	case <-time.After(10 * time.Minute):
		return nil, fmt.Errorf("ipp controller did not start its workers in 10 minutes (log %s)", logPath)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.SyncSeconds = time.Since(t0).Seconds()
	pid := cmd.Process.Pid
	st0, err := ReadProcStat(pid)
	if err != nil {
		return nil, err
	}
	inserts := s.emu.CallCount("instances.insert")
	t1 := time.Now()
	sleepUntil(ctx, t1.Add(s.cfg.IdleWindow.Duration))
	st1, err := ReadProcStat(pid)
	if err != nil {
		return nil, err
	}
	res.IdleSeconds = time.Since(t1).Seconds()
	res.RSSMiB, res.PeakRSSMiB = MiB(st1.RSS), MiB(st1.HWM)
	gcMu.Lock()
	res.LiveHeapMiB, res.GCs = liveHeap, gcs
	gcMu.Unlock()
	res.IdleCPUSecondsPerMinute = (st1.CPU - st0.CPU).Seconds() / res.IdleSeconds * 60
	res.InsertCallsWhileIdle = s.emu.CallCount("instances.insert") - inserts
	res.HeapProfile = filepath.Join(s.cfg.WorkDir, "profiles", "p3-controller-heap.pprof")
	if err := fetch(ctx, "http://"+metricsAddr+"/debug/pprof/heap", res.HeapProfile); err != nil {
		return nil, fmt.Errorf("fetching the controller's heap profile: %w", err)
	}
	return res, ctx.Err()
}

// fetch GETs url into the file path.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// gcLiveHeap parses a GODEBUG=gctrace=1 line, "gc 12 @3.4s 1%: ... 40->42->20 MB, 44 MB goal, ...",
// and returns the live heap after the collection (the third number), in MiB.
func gcLiveHeap(line string) (float64, bool) {
	if !strings.HasPrefix(line, "gc ") {
		return 0, false
	}
	for _, f := range strings.Split(line, ",") {
		fields := strings.Fields(f)
		for i, w := range fields {
			if i+1 < len(fields) && fields[i+1] == "MB" && strings.Count(w, "->") == 2 {
				var a, b, c float64
				if _, err := fmt.Sscanf(strings.ReplaceAll(w, "->", " "), "%g %g %g", &a, &b, &c); err == nil {
					return c, true
				}
			}
		}
	}
	return 0, false
}
