package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jointoken"
	"github.com/ipp-project/ipp/pkg/leader"
	"github.com/ipp-project/ipp/pkg/metrics"
)

// controllerOptions are the controller's flags apart from the isolation flags, which it shares
// with the webhook. `ipp run` composes isolationOptions, the webhook's options and these.
type controllerOptions struct {
	api                 apiOptions
	idleTTL             time.Duration
	registrationTimeout time.Duration
	providerResync      time.Duration
	retryBaseDelay      time.Duration
	retryMaxDelay       time.Duration
	workers             int
	placementWorkers    int
	// namespaceCreateQPS and namespaceCreateBurst are the per-namespace creation rate limit.
	namespaceCreateQPS   float64
	namespaceCreateBurst int
	provider             providerOptions
	leaderElection       leader.Config
	// maxInstances is the global limit of instances (--max-instances), 0 for none.
	maxInstances int
}

func newControllerOptions() *controllerOptions {
	api := newAPIOptions()
	// With --placement=controller every IPP Pod costs the controller one PATCH: the client
	// must keep up with the scheduler (about 1,000 Pods/s), so its rate limit is well above the
	// webhook's. The API server's priority and fairness still bounds it.
	api.qps, api.burst = 1000, 2000
	return &controllerOptions{
		api:              api,
		placementWorkers: controller.DefaultPlacementWorkers,
		idleTTL:          controller.DefaultIdleTTL,
		providerResync:   controller.DefaultProviderResync,
		retryBaseDelay:   controller.DefaultRetryBaseDelay,
		retryMaxDelay:    controller.DefaultRetryMaxDelay,
		workers:          4,

		namespaceCreateQPS:   controller.DefaultNamespaceCreateQPS,
		namespaceCreateBurst: controller.DefaultNamespaceCreateBurst,
		leaderElection:       leader.DefaultConfig(),
		provider:             providerOptions{provider: "gce"},
	}
}

func (o *controllerOptions) addFlags(fs *pflag.FlagSet) {
	o.api.addFlags(fs)
	fs.DurationVar(&o.idleTTL, "idle-ttl", o.idleTTL, "How long a dedicated node may have no Pod of its class before its Node and instance are deleted.")
	fs.DurationVar(&o.registrationTimeout, "registration-timeout", o.registrationTimeout, "How long an instance may take to register its Node before it is deleted and created again. 0 uses the provider's default, which is longer for bare-metal types.")
	fs.DurationVar(&o.providerResync, "provider-resync", o.providerResync, "How often the provider's instances are listed; dedicated nodes whose instances changed outside IPP are reconciled after each list.")
	fs.DurationVar(&o.retryBaseDelay, "retry-base-delay", o.retryBaseDelay, "First delay before a dedicated node whose reconcile failed is retried; it doubles on each failure.")
	fs.DurationVar(&o.retryMaxDelay, "retry-max-delay", o.retryMaxDelay, "Cap of the retry delay; errors that a retry cannot fix wait this long.")
	fs.IntVar(&o.workers, "workers", o.workers, "Dedicated nodes reconciled in parallel.")
	fs.IntVar(&o.placementWorkers, "placement-workers", o.placementWorkers, "Classes whose gated Pods are placed in parallel (--placement=controller); each sends up to 16 placement PATCHes at once.")
	fs.Float64Var(&o.namespaceCreateQPS, "namespace-create-qps", o.namespaceCreateQPS, "Instances the Pods of one namespace may have IPP create per second, on average (a token bucket per namespace, charged once per new instance, replacements included). Creations beyond it wait, and their Pods get a CreationRateLimited Warning Event. 0 turns the limit off.")
	fs.IntVar(&o.maxInstances, "max-instances", o.maxInstances, "Most IPP instances this cluster may have at once, of every NodeClass, counting those being created; above every NodeClass's own limits. A Pod whose instance would exceed it waits, with a LimitReached Warning Event. 0 means no limit.")
	fs.IntVar(&o.namespaceCreateBurst, "namespace-create-burst", o.namespaceCreateBurst, "Instances the Pods of one namespace may have IPP create at once, before --namespace-create-qps applies. At least 1 when the limit is on.")
	o.provider.addFlags(fs)

	le := &o.leaderElection
	fs.BoolVar(&le.Enabled, "leader-elect", le.Enabled, "Elect a leader with a Lease so that of several replicas only one reconciles.")
	fs.DurationVar(&le.LeaseDuration, "leader-elect-lease-duration", le.LeaseDuration, "How long a replica waits after the leader's last renewal before it takes over.")
	fs.DurationVar(&le.RenewDeadline, "leader-elect-renew-deadline", le.RenewDeadline, "How long the leader keeps trying to renew its Lease before it stops leading.")
	fs.DurationVar(&le.RetryPeriod, "leader-elect-retry-period", le.RetryPeriod, "How often replicas try to acquire or renew the Lease.")
	fs.StringVar(&le.Namespace, "leader-elect-namespace", le.Namespace, "Namespace of the Lease, and of the ConfigMap "+controller.JournalName+" that records the join tokens minted. Defaults to the Pod's namespace (POD_NAMESPACE or the service account's), else "+leader.DefaultNamespace+".")
	fs.StringVar(&le.Name, "leader-elect-id", le.Name, "Name of the Lease.")
}

// validate checks the flags that need no API call.
func (o *controllerOptions) validate() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--idle-ttl", o.idleTTL}, {"--provider-resync", o.providerResync},
		{"--retry-base-delay", o.retryBaseDelay}, {"--retry-max-delay", o.retryMaxDelay},
	} {
		if d.v <= 0 {
			return fmt.Errorf("invalid %s %v: must be positive", d.flag, d.v)
		}
	}
	if o.registrationTimeout < 0 {
		return fmt.Errorf("invalid --registration-timeout %v: must not be negative (0 uses the provider's default)", o.registrationTimeout)
	}
	if o.retryBaseDelay > o.retryMaxDelay {
		return fmt.Errorf("invalid --retry-base-delay %v: above --retry-max-delay %v", o.retryBaseDelay, o.retryMaxDelay)
	}
	if o.maxInstances < 0 {
		return fmt.Errorf("invalid --max-instances %d: must not be negative (0 means no limit)", o.maxInstances)
	}
	if o.workers < 1 {
		return fmt.Errorf("invalid --workers %d: must be at least 1", o.workers)
	}
	if o.placementWorkers < 1 {
		return fmt.Errorf("invalid --placement-workers %d: must be at least 1", o.placementWorkers)
	}
	if err := controller.ValidateCreationLimit(o.namespaceCreateQPS, o.namespaceCreateBurst); err != nil {
		return fmt.Errorf("invalid --namespace-create-qps %v / --namespace-create-burst %d: %w", o.namespaceCreateQPS, o.namespaceCreateBurst, err)
	}
	if err := o.api.validate(); err != nil {
		return err
	}
	if err := o.provider.validate(); err != nil {
		return err
	}
	if o.provider.perInstanceTokens() && o.leaderElection.Namespace == "" {
		// Checked even without leader election: the join token journal lives there too.
		return errors.New("invalid --leader-elect-namespace: must not be empty: the join token journal " + controller.JournalName + " lives there")
	}
	return o.leaderElection.Validate()
}

// restConfig returns the controller's client configuration for the API server.
func (o *controllerOptions) restConfig() (*rest.Config, error) {
	return o.api.restConfig("ipp-controller")
}

// errNotDedicated is returned when the controller is asked to run outside dedicated mode.
var errNotDedicated = errors.New("the controller has nothing to do in --mode=" + string(isolation.ModeAutoscaler) +
	": Cluster Autoscaler creates the nodes; run only the webhook")

// runController runs the IPP controller until ctx ends: it connects to the API server, builds
// the provider, and reconciles while this replica holds the leader Lease. cfg must be complete.
func runController(ctx context.Context, cfg isolation.Config, o *controllerOptions) error {
	if cfg.Mode != isolation.ModeDedicated {
		return errNotDedicated
	}
	if err := o.validate(); err != nil {
		return err
	}
	restCfg, err := o.restConfig()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(restCfg))
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	ipp, err := ippclientset.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("creating the NodeClass client: %w", err)
	}
	provider, err := o.provider.build(ctx, cfg.ClusterName)
	if err != nil {
		return err
	}
	defer closeProvider(klog.FromContext(ctx), provider)
	provider = metrics.InstrumentProvider(provider, clock.RealClock{})

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ipp-controller"})

	opts := controller.Options{
		Config:              cfg,
		IdleTTL:             o.idleTTL,
		RegistrationTimeout: o.registrationTimeout,
		ProviderResync:      o.providerResync,
		RetryBaseDelay:      o.retryBaseDelay,
		RetryMaxDelay:       o.retryMaxDelay,
		MintJoinTokens:      o.provider.perInstanceTokens(),
		// The journal lives beside the Lease: the namespace IPP runs in, where its Role is.
		JournalNamespace: o.leaderElection.Namespace,

		NamespaceCreateQPS:   o.namespaceCreateQPS,
		NamespaceCreateBurst: o.namespaceCreateBurst,
		MaxInstances:         o.maxInstances,
		PlacementWorkers:     o.placementWorkers,
		IPPClient:            ipp,
	}
	logger := klog.FromContext(ctx)
	switch {
	case opts.MintJoinTokens:
		logger.Info("Every instance joins with its own single-use bootstrap token", "group", jointoken.Group)
	case o.provider.join.APIServerEndpoint != "":
		logger.Info("WARNING: every instance joins with the same --join-token; root on any IPP node can get a certificate for any node name")
	}
	return leader.Run(ctx, kube, o.leaderElection, func(ctx context.Context) error {
		metrics.SetLeader(true)
		defer metrics.SetLeader(false)
		// Informers start only on the leader: followers hold no caches.
		m, err := controller.NewManager(kube, provider, recorder, opts)
		if err != nil {
			return err
		}
		return m.Run(ctx, o.workers)
	})
}

func newControllerCommand() *cobra.Command {
	iso := newIsolationOptions()
	o := newControllerOptions()
	mo := metrics.NewOptions()
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Create, bind and reap the dedicated instances (dedicated mode)",
		Long: `ipp controller gives each isolation class a dedicated node: it creates the class's
instance when Pods of the class wait for it, binds the Node that registers once its providerID
matches the instance, and deletes Node and instance after --idle-ttl without Pods.
It runs only in --mode=dedicated.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := iso.complete()
			if err != nil {
				return err
			}
			// Refuse bad flags before anything starts.
			if cfg.Mode != isolation.ModeDedicated {
				return errNotDedicated
			}
			if err := o.validate(); err != nil {
				return err
			}
			ctx, cancel := signalContext(klog.Background().WithName("controller"))
			defer cancel()
			if _, err := mo.Start(ctx); err != nil {
				return err
			}
			return runController(ctx, cfg, o)
		},
	}
	iso.addFlags(cmd.Flags())
	o.addFlags(cmd.Flags())
	mo.AddFlags(cmd.Flags())
	addKlogFlags(cmd)
	return cmd
}
