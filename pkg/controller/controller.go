package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions/ipp/v1alpha1"
	ipplisters "github.com/ipp-project/ipp/pkg/generated/listers/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jointoken"
	"github.com/ipp-project/ipp/pkg/metrics"
)

// Defaults for Options.
const (
	// DefaultIdleTTL is how long a dedicated node may have no demand before it is reaped.
	DefaultIdleTTL = 10 * time.Minute
	// DefaultRegistrationTimeout is used when neither Options nor the provider give one.
	DefaultRegistrationTimeout = 15 * time.Minute
	// DefaultProviderResync is how often the provider's instances are listed.
	DefaultProviderResync = 30 * time.Second
	// DefaultRetryBaseDelay and DefaultRetryMaxDelay bound the exponential back-off of a
	// dedicated node whose reconcile failed.
	DefaultRetryBaseDelay = time.Second
	DefaultRetryMaxDelay  = 5 * time.Minute
)

// failedListGap is how soon after a failed provider List a requested one may start: a CSR waiting
// for a fresh List does not wait out the whole back-off, and a failing cloud is still listed at
// most once a second.
const failedListGap = time.Second

// Options configure a Controller. Zero durations take the defaults.
type Options struct {
	// Config is the isolation configuration; its Mode must be dedicated.
	Config isolation.Config
	// IdleTTL is how long a dedicated node may have no demand before it is reaped.
	IdleTTL time.Duration
	// RegistrationTimeout is how long an instance may take from creation until its Node
	// registers before it is replaced. Zero means the provider's RegistrationTimeout.
	RegistrationTimeout time.Duration
	// ProviderResync is how often the provider's List is polled. A poll reconciles the
	// dedicated nodes whose instances it shows changed (created, deleted, changed state or
	// gone), so it bounds how late a change made outside the controller is noticed.
	ProviderResync time.Duration
	// RetryBaseDelay and RetryMaxDelay bound the per-node exponential back-off after a failure.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// Clock decides every timeout. Nil means the real clock.
	Clock clock.WithTicker
	// MintJoinTokens gives every instance its own single-use bootstrap token (a Secret in
	// kube-system minted before Create, expiring after the registration timeout), and binds a
	// Node only once Issued says its credentials were issued for that token.
	MintJoinTokens bool
	// JournalNamespace is the namespace of the ConfigMap JournalName, which records the join
	// tokens minted so that orphans can be found without reading Secrets in kube-system.
	// Installations of different cluster names may share it. Required with MintJoinTokens.
	JournalNamespace string
	// Issued reports whether a kubelet client certificate for nodeName was issued with the join
	// token id (approver.Approver.IssuedFor). Required with MintJoinTokens.
	Issued func(id, nodeName string) bool
	// NamespaceCreateQPS limits how fast the Pods of one namespace can make the controller create
	// instances: a token bucket per namespace, refilled at this many tokens per second, that
	// every creation of a new instance is charged to (the namespace of the oldest waiting Pod).
	// Zero means no limit; it must not be negative or infinite.
	NamespaceCreateQPS float64
	// NamespaceCreateBurst is the size of each namespace's bucket: how many instances it may
	// have created at once. Zero means DefaultNamespaceCreateBurst.
	NamespaceCreateBurst int
	// MaxInstances bounds the instances of the cluster, of every NodeClass, counting those
	// being created (--max-instances). Zero means no bound; it must not be negative.
	MaxInstances int
	// IPPClient writes the NodeClasses' status. NewManager requires it, and makes NodeClasses
	// and Namespaces with it.
	IPPClient ippclientset.Interface
	// NodeClasses is the informer the NodeClasses are read from. Nil means that no NodeClass
	// object exists: every Pod gets the built-in default (nodeclass.Builtin), and no status is
	// written.
	NodeClasses ippinformers.NodeClassInformer
	// PlacementWorkers is how many classes' gated Pods are placed at once (--placement=
	// controller). Zero means DefaultPlacementWorkers.
	PlacementWorkers int
	// Namespaces is the informer whose labels the NodeClasses' namespaceSelectors are matched
	// against. Nil admits every namespace.
	Namespaces coreinformers.NamespaceInformer
}

// Controller creates, binds and reaps the dedicated nodes of isolation classes in dedicated mode.
// Each dedicated node name is reconciled from three inputs: the live IPP Pods pinned to it, its
// Node, and the provider's instances for it.
type Controller struct {
	kube     kubernetes.Interface
	provider cloudprovider.Provider
	recorder record.EventRecorder
	cfg      isolation.Config
	clock    clock.WithTicker

	mintTokens bool
	issued     func(id, nodeName string) bool
	journal    journal

	// createLimiter is the per-namespace creation rate limit, nil for none.
	createLimiter *creationLimiter
	// ledger counts instances against the limits and reserves creations.
	ledger *ledger

	ipp         ippclientset.Interface
	nodeClasses ipplisters.NodeClassLister // nil: no NodeClass object exists
	ncSynced    cache.InformerSynced
	namespaces  corelisters.NamespaceLister // nil: every namespace is admitted
	nsSynced    cache.InformerSynced
	// statusQueue holds the names of the NodeClasses whose status may be stale.
	statusQueue workqueue.TypedRateLimitingInterface[string]

	idleTTL        time.Duration
	regTimeout     time.Duration
	providerResync time.Duration
	retryMaxDelay  time.Duration

	podIndexer  cache.Indexer // of *cachedPod
	podsSynced  cache.InformerSynced
	nodes       corelisters.NodeLister
	nodeIndexer cache.Indexer
	nodesSynced cache.InformerSynced

	limiter workqueue.TypedRateLimiter[string]
	queue   workqueue.TypedRateLimitingInterface[string]
	// placeQueue holds the class keys whose gated Pods may be placed.
	placeQueue       workqueue.TypedRateLimitingInterface[string]
	placementWorkers int
	instances        *instanceIndex

	// listNow asks pollInstances for a List now (RequestList); it holds at most one request.
	listNow chan struct{}

	mu    sync.Mutex
	state map[string]*nodeState
	// rejected holds, by NodeClass, the last creation the cloud refused as invalid (a machine
	// type that does not exist, a missing permission), until a creation of that NodeClass
	// succeeds; the NodeClass's Ready condition says so. Guarded by mu.
	rejected map[string]error
	// plans holds, by class key, the nodes planned or created for the class whose Node is not
	// bound yet, with their NodeClass. Guarded by mu.
	plans map[string]map[string]string
	// shapes holds the allocatable of a node seen of each NodeClass. Guarded by mu.
	shapes map[string]corev1.ResourceList
	// podReasons is the last placement Event told to each waiting Pod. Guarded by mu.
	podReasons map[types.UID]string
	// warmQueue holds the NodeClasses whose warm pool may not be at its size.
	warmQueue workqueue.TypedRateLimitingInterface[string]
	// warmKeep says, by warm node name, whether its pool still wants it. Guarded by mu.
	warmKeep map[string]bool
	// assumed holds the placements made that the Pod informer does not show yet. Guarded by mu.
	assumed map[types.UID]assumed
}

// nodeState is what the controller remembers about one dedicated node between reconciles. None
// of it is needed for correctness: after a restart it starts empty and the worst outcome is an
// Event emitted twice or one more provider call.
type nodeState struct {
	// createKey is the idempotency key of the creation in progress, kept so that retries reuse
	// it even across an epoch boundary; salt bumps when a key turns out to be used up.
	createKey string
	salt      int
	// holdUntil delays the next provider call for this node: the back-off after a provider
	// error holds even when events trigger earlier reconciles.
	holdUntil time.Time
	// reasons is the last Event reason given to each waiting Pod.
	reasons map[types.UID]string
	// warned holds "uid/providerID" of Nodes already warned about as untrusted.
	warned map[string]bool
	// bound is "uid/providerID" of the Node last bound.
	bound string
	// token is the join token minted for the creation in progress, and when. Guarded by
	// Controller.mu (mintedToken, setMintedToken): the orphan collection reads it.
	token       *jointoken.Token
	tokenMinted time.Time
	// charge is the creation rate limit's reservation for the creation in progress: its retries
	// reuse it, a creation that is done clears it, and it is given back if demand goes before
	// the creation is made.
	charge *rate.Reservation
	// plan is the class of a node of controller placement; nil for a dedicated node of
	// admission placement. Guarded by Controller.mu.
	plan *classPlan
}

// newWithInformers returns a controller that watches pods and nodes, which must be narrowed as
// newInformerFactories does, and calls provider. It adds indexers and event handlers to the
// informers, so call it before starting them.
func newWithInformers(kube kubernetes.Interface, pods coreinformers.PodInformer, nodes coreinformers.NodeInformer, provider cloudprovider.Provider, recorder record.EventRecorder, opts Options) (*Controller, error) {
	if kube == nil || pods == nil || nodes == nil || provider == nil || recorder == nil {
		return nil, errors.New("controller: kube client, informers, provider and recorder are required")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c, err := newController(kube, pods, nodes, provider, recorder, opts)
	if err != nil {
		return nil, err
	}
	if err := c.watchNodeClasses(opts.NodeClasses, opts.Namespaces); err != nil {
		return nil, err
	}
	if err := c.watchPods(pods); err != nil {
		return nil, err
	}
	if err := c.watchNodes(nodes); err != nil {
		return nil, err
	}
	return c, nil
}

// validate checks opts on their own, naming what is wrong.
func (opts *Options) validate() error {
	if err := opts.Config.Validate(); err != nil {
		return err
	}
	if opts.Config.Mode != isolation.ModeDedicated {
		return fmt.Errorf("the controller runs only in --mode=%s, not %q: in %s mode Cluster Autoscaler creates the nodes", isolation.ModeDedicated, opts.Config.Mode, isolation.ModeAutoscaler)
	}
	if opts.MintJoinTokens {
		if opts.Issued == nil {
			return errors.New("controller: minting join tokens needs Issued, the CSR approver's record")
		}
		if err := jointoken.ValidateCluster(opts.Config.ClusterName); err != nil {
			return fmt.Errorf("controller: %w", err)
		}
		if errs := validation.IsDNS1123Label(opts.JournalNamespace); len(errs) > 0 {
			return fmt.Errorf("controller: invalid join token journal namespace %q: %s", opts.JournalNamespace, strings.Join(errs, "; "))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"idle TTL", opts.IdleTTL}, {"registration timeout", opts.RegistrationTimeout},
		{"provider resync", opts.ProviderResync}, {"retry base delay", opts.RetryBaseDelay},
		{"retry max delay", opts.RetryMaxDelay},
	} {
		if d.v < 0 {
			return fmt.Errorf("invalid %s %v: must not be negative", d.name, d.v)
		}
	}
	if base, maxDelay := orDefault(opts.RetryBaseDelay, DefaultRetryBaseDelay), orDefault(opts.RetryMaxDelay, DefaultRetryMaxDelay); base > maxDelay {
		return fmt.Errorf("invalid retry base delay %v: above the max delay %v", base, maxDelay)
	}
	if opts.MaxInstances < 0 {
		return fmt.Errorf("invalid max instances %d: must not be negative (0 means no limit)", opts.MaxInstances)
	}
	return nil
}

// newController builds a Controller from validated opts: defaults, the instance index, the
// limits and the queues. It registers nothing with the informers.
func newController(kube kubernetes.Interface, pods coreinformers.PodInformer, nodes coreinformers.NodeInformer, provider cloudprovider.Provider, recorder record.EventRecorder, opts Options) (*Controller, error) {
	createLimiter, err := newCreationLimiter(opts.NamespaceCreateQPS, orDefaultInt(opts.NamespaceCreateBurst, DefaultNamespaceCreateBurst))
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	c := &Controller{
		createLimiter:    createLimiter,
		ledger:           newLedger(opts.MaxInstances, !opts.MintJoinTokens),
		ipp:              opts.IPPClient,
		kube:             kube,
		provider:         provider,
		recorder:         recorder,
		cfg:              opts.Config,
		mintTokens:       opts.MintJoinTokens,
		issued:           opts.Issued,
		journal:          journal{kube: kube, namespace: opts.JournalNamespace, cluster: opts.Config.ClusterName},
		clock:            opts.Clock,
		idleTTL:          orDefault(opts.IdleTTL, DefaultIdleTTL),
		regTimeout:       orDefault(opts.RegistrationTimeout, orDefault(provider.RegistrationTimeout(), DefaultRegistrationTimeout)),
		providerResync:   orDefault(opts.ProviderResync, DefaultProviderResync),
		retryMaxDelay:    orDefault(opts.RetryMaxDelay, DefaultRetryMaxDelay),
		podIndexer:       pods.Informer().GetIndexer(),
		podsSynced:       pods.Informer().HasSynced,
		nodes:            nodes.Lister(),
		nodeIndexer:      nodes.Informer().GetIndexer(),
		nodesSynced:      nodes.Informer().HasSynced,
		instances:        newInstanceIndex(),
		listNow:          make(chan struct{}, 1),
		state:            map[string]*nodeState{},
		rejected:         map[string]error{},
		plans:            map[string]map[string]string{},
		shapes:           map[string]corev1.ResourceList{},
		podReasons:       map[types.UID]string{},
		assumed:          map[types.UID]assumed{},
		warmKeep:         map[string]bool{},
		placementWorkers: orDefaultInt(opts.PlacementWorkers, DefaultPlacementWorkers),
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	c.ledger.claimOf = c.claimOf
	c.limiter = workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](orDefault(opts.RetryBaseDelay, DefaultRetryBaseDelay), c.retryMaxDelay),
		// Overall: 10 reconciles per second after failures, bursts of 100.
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(c.limiter, workqueue.TypedRateLimitingQueueConfig[string]{
		Name:  "ipp-controller",
		Clock: c.clock,
	})
	c.placeQueue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](orDefault(opts.RetryBaseDelay, DefaultRetryBaseDelay), c.retryMaxDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ipp-placement", Clock: c.clock})
	c.warmQueue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](orDefault(opts.RetryBaseDelay, DefaultRetryBaseDelay), c.retryMaxDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ipp-warm-pool", Clock: c.clock})
	c.statusQueue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](statusBatch, c.retryMaxDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ipp-nodeclass-status", Clock: c.clock})
	return c, nil
}

// podIndexers are the indexers the controller adds to the Pod informer.
func (c *Controller) podIndexers() cache.Indexers {
	return cache.Indexers{podNodeIndex: c.podNodeNames, podPlacingIndex: c.podPlacingKeys}
}

// watchPods adds the controller's Pod indexers and event handlers to pods.
func (c *Controller) watchPods(pods coreinformers.PodInformer) error {
	if err := pods.Informer().AddIndexers(c.podIndexers()); err != nil {
		return fmt.Errorf("adding Pod indexer: %w", err)
	}
	_, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueuePod,
		UpdateFunc: func(old, cur any) {
			o, n := c.asCachedPod(old), c.asCachedPod(cur)
			if o == nil || n == nil {
				return
			}
			c.observePodBound(o, n)
			c.observePlaced(n, false)
			if podChanged(o, n) {
				c.enqueuePod(o)
				c.enqueuePod(n)
				if o.nodeName != n.nodeName || o.terminal() != n.terminal() || !o.DeletionTimestamp.Equal(n.DeletionTimestamp) {
					c.enqueueStatus(n.nodeClass)
				}
			}
		},
		DeleteFunc: func(obj any) {
			c.enqueuePod(obj)
			if pod := c.asCachedPod(obj); pod != nil {
				c.enqueueStatus(pod.nodeClass)
				c.forgetPod(pod.UID)
				c.observePlaced(pod, true)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("adding Pod event handler: %w", err)
	}
	return nil
}

// watchNodes adds the controller's Node indexers and event handlers to nodes.
func (c *Controller) watchNodes(nodes coreinformers.NodeInformer) error {
	if err := nodes.Informer().AddIndexers(cache.Indexers{
		bindingIndex:    nodeBindingIndexFunc,
		providerIDIndex: nodeProviderIDIndexFunc,
		classIndex:      nodeClassIndexFunc,
		warmIndex:       nodeWarmIndexFunc,
	}); err != nil {
		return fmt.Errorf("adding Node indexers: %w", err)
	}
	_, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueNode,
		UpdateFunc: func(old, cur any) {
			if o, ok := old.(*corev1.Node); ok {
				if n, ok := cur.(*corev1.Node); ok && !nodeChanged(o, n) {
					return
				}
			}
			c.enqueueNode(old)
			c.enqueueNode(cur)
		},
		DeleteFunc: c.enqueueNode,
	})
	if err != nil {
		return fmt.Errorf("adding Node event handler: %w", err)
	}
	return nil
}

func orDefaultInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Run waits for the informers' caches and the provider's first List, then reconciles with
// workers goroutines until ctx is cancelled. It returns once the workers have stopped.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrashWithContext(ctx)
	if workers < 1 {
		return fmt.Errorf("invalid workers %d: must be at least 1", workers)
	}
	logger := klog.FromContext(ctx)
	logger.Info("Starting IPP controller", "provider", c.provider.Name(), "idleTTL", c.idleTTL, "registrationTimeout", c.regTimeout, "providerResync", c.providerResync)

	var wg sync.WaitGroup
	defer func() {
		c.queue.ShutDown()
		c.placeQueue.ShutDown()
		c.warmQueue.ShutDown()
		c.statusQueue.ShutDown()
		wg.Wait()
		logger.Info("Stopped IPP controller")
	}()

	synceds := []cache.InformerSynced{c.podsSynced, c.nodesSynced}
	if c.ncSynced != nil {
		synceds = append(synceds, c.ncSynced)
	}
	if c.nsSynced != nil {
		synceds = append(synceds, c.nsSynced)
	}
	if !cache.WaitForNamedCacheSyncWithContext(ctx, synceds...) {
		return fmt.Errorf("waiting for the Pod, Node, NodeClass and Namespace caches: %w", context.Cause(ctx))
	}

	synced := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pollInstances(ctx, synced)
	}()
	logger.Info("Waiting for the provider's first instance list")
	select {
	case <-synced:
	case <-ctx.Done():
		return nil
	}

	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runWorker(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.runWarmWorker(ctx)
	}()
	c.enqueueAllWarm()
	for range c.placementWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runPlacementWorker(ctx)
		}()
	}
	if c.ipp != nil && c.nodeClasses != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runStatusWorker(ctx)
		}()
	}
	logger.Info("Started workers", "count", workers)
	<-ctx.Done()
	return nil
}

// pollInstances lists the provider's instances now and then every providerResync, backing off
// on failure, and at once when RequestList asks (after a failed List, no sooner than
// failedListGap after it started). It closes synced after the first success.
//
// A List does not re-enqueue every dedicated node: Pods and Nodes come from informers, which
// do not lose events; instances that changed are enqueued by syncInstances; and every decision
// that waits for time to pass returns its delay to the queue (AddAfter). So a settled cluster
// costs no reconciles, however many classes it has.
func (c *Controller) pollInstances(ctx context.Context, synced chan<- struct{}) {
	logger := klog.FromContext(ctx)
	// Steps must be set for the delay to grow at all (wait.Backoff returns Duration unchanged
	// without); Cap bounds it.
	newBackoff := func() wait.Backoff {
		return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: c.providerResync}
	}
	backoff := newBackoff()
	first := true
	for {
		// The List starting now serves every request made so far.
		select {
		case <-c.listNow:
		default:
		}
		delay := c.providerResync
		start := c.clock.Now()
		failed := false
		if err := c.syncInstances(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			delay, failed = backoff.Step(), true
			logger.Error(err, "Listing instances failed", "retryAfter", delay)
		} else {
			backoff = newBackoff()
			if first {
				first = false
				close(synced)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(delay):
		case <-c.listNow:
			// A CSR waits for a List: it cuts a back-off short, but a failing cloud is still
			// listed at most once per failedListGap.
			if wait := failedListGap - c.clock.Since(start); failed && wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-c.clock.After(wait):
				}
			}
			logger.V(4).Info("Listing instances on request")
		}
	}
}

// syncInstances lists the provider's instances into the index and enqueues the dedicated nodes
// whose instances changed. Minting join tokens, it then deletes the orphan ones
// (collectOrphanTokens).
func (c *Controller) syncInstances(ctx context.Context) error {
	tok := c.instances.beginList(c.clock.Now())
	listed, err := c.provider.List(ctx)
	if err != nil {
		return fmt.Errorf("listing instances: %w", err)
	}
	changed := c.instances.replace(tok, listed, c.clock.Now())
	for _, name := range changed {
		c.queue.Add(name)
	}
	if c.mintTokens {
		// A failure here does not make the List fail: the tokens expire anyway, and the next
		// List tries again.
		if err := c.collectOrphanTokens(ctx, tok.start); err != nil {
			utilruntime.HandleErrorWithContext(ctx, err, "Collecting orphan join tokens failed")
		}
	}
	freed := c.ledger.listed(tok.start)
	if len(changed) > 0 || freed {
		// An instance may have gone: the dedicated nodes a limit keeps waiting try again.
		for _, name := range c.ledger.waitingNodes("", true) {
			c.queue.Add(name)
		}
		c.enqueueAllStatus()
		c.enqueueAllWarm()
	}
	return nil
}

func (c *Controller) runWorker(ctx context.Context) {
	for c.processNextWorkItem(ctx) {
	}
}

// processNextWorkItem reconciles one dedicated node and decides when it is looked at again.
func (c *Controller) processNextWorkItem(ctx context.Context) bool {
	name, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(name)

	start := c.clock.Now()
	after, err := c.sync(ctx, name)
	now := c.clock.Now()
	metrics.ObserveReconcile(reconcileResult(after, err), now.Sub(start))
	switch {
	case err == nil:
		// A reconcile that found the node on hold did not retry the provider, so it must not
		// reset the back-off either.
		if !c.held(name, now) {
			c.queue.Forget(name)
		}
		if after > 0 {
			c.queue.AddAfter(name, after)
		}
	case cloudprovider.KindOf(err) != "":
		// A provider error: back off, and hold every provider call for this node until then,
		// so that events arriving meanwhile do not shorten the back-off.
		delay := c.limiter.When(name)
		if !cloudprovider.IsRetryable(err) {
			delay = c.retryMaxDelay
		}
		c.hold(name, now.Add(delay))
		c.queue.AddAfter(name, delay)
		utilruntime.HandleErrorWithContext(ctx, err, "Reconciling dedicated node failed", "node", name, "kind", cloudprovider.KindOf(err), "retryable", cloudprovider.IsRetryable(err), "retryAfter", delay)
	default:
		c.queue.AddRateLimited(name)
		utilruntime.HandleErrorWithContext(ctx, err, "Reconciling dedicated node failed", "node", name, "retries", c.queue.NumRequeues(name))
	}
	return true
}

// reconcileResult is the result label of ipp_reconcile_total for a sync's return values.
func reconcileResult(after time.Duration, err error) string {
	switch {
	case err != nil:
		return metrics.ResultError
	case after > 0:
		return metrics.ResultRequeue
	}
	return metrics.ResultSuccess
}

// observePodBound records ipp_pod_bound_duration_seconds when an update shows the scheduler
// binding a Pod: once per Pod, and only on the leader, whose informers alone run.
func (c *Controller) observePodBound(old, cur *cachedPod) {
	if old.nodeName != "" || cur.nodeName == "" {
		return
	}
	metrics.ObservePodBound(cur.CreationTimestamp.Time, c.clock.Now())
}

// nodeStateOf returns the remembered state of a dedicated node, creating it.
func (c *Controller) nodeStateOf(name string) *nodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.state[name]
	if !ok {
		st = &nodeState{reasons: map[types.UID]string{}, warned: map[string]bool{}}
		c.state[name] = st
	}
	return st
}

// forgetState forgets what the controller remembers about the dedicated node name, which has
// neither demand, instance nor Node. A creation charge it held is given back.
func (c *Controller) forgetState(name string, now time.Time) {
	c.mu.Lock()
	st := c.state[name]
	delete(c.state, name)
	c.mu.Unlock()
	if st != nil && st.plan != nil {
		c.dropPlan(name, st.plan.key)
	}
	c.mu.Lock()
	delete(c.warmKeep, name)
	c.mu.Unlock()
	if st != nil && st.charge != nil {
		st.charge.CancelAt(now)
	}
	hit, waited := c.ledger.waitingOn(name)
	if c.ledger.abandon(name, now) {
		c.wakeWaiting("", true)
	}
	if waited {
		// It no longer waits for the limit: the NodeClass's LimitReached condition may go.
		c.enqueueStatus(hit.NodeClass)
	}
}

func (c *Controller) hold(name string, until time.Time) {
	st := c.nodeStateOf(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	st.holdUntil = until
}

func (c *Controller) held(name string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.state[name]
	return ok && now.Before(st.holdUntil)
}

// enqueuePod enqueues the node a Pod needs (podNodeNames), and its class for placement: a Pod
// that waits, or one whose going frees room.
func (c *Controller) enqueuePod(obj any) {
	pod := c.asCachedPod(obj)
	if pod == nil || pod.class == "" {
		return
	}
	switch name := pod.node(c.cfg); {
	case name != "":
		c.queue.Add(name)
	case !pod.placing:
		// Neither pinned nor waiting for placement (admitted while the webhook was off, say):
		// its class's dedicated node is looked at, which it does not make demand for.
		c.queue.Add(c.cfg.NodeName(pod.Namespace, pod.class))
	}
	if pod.pin == "" {
		c.enqueueClass(pod.key())
	}
}

// asCachedPod returns what the Pod informer delivers as a *cachedPod: a cachedPod, a tombstone of
// one, or (from code that bypasses the transform) a *corev1.Pod. It returns nil for anything else.
func (c *Controller) asCachedPod(obj any) *cachedPod {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch o := obj.(type) {
	case *cachedPod:
		return o
	case *corev1.Pod:
		return newCachedPod(c.cfg, o)
	}
	return nil
}

// enqueueNode enqueues every dedicated node a Node may be: its own name, the name its binding
// label claims, and the node of the instance its providerID belongs to.
func (c *Controller) enqueueNode(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.queue.Add(node.Name)
	c.enqueueClass(node.Labels[isolation.ClassLabel])
	if node.Labels[isolation.WarmLabel] != "" {
		c.enqueueWarm(node.Labels[isolation.NodeClassNodeLabel])
		c.enqueueStatus(node.Labels[isolation.NodeClassNodeLabel])
	}
	if v := node.Labels[isolation.BindingLabel]; v != "" && v != node.Name {
		c.queue.Add(v)
	}
	if name, ok := c.instances.nodeNameOf(node.Spec.ProviderID); ok && name != node.Name {
		c.queue.Add(name)
	}
}
