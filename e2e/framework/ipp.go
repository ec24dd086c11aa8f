package framework

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// IPPOptions configure StartIPP. Zero values take the defaults.
type IPPOptions struct {
	// Provider is the cloud IPP runs on, GCE or EC2; empty means GCE.
	Provider string
	// Config is the isolation configuration of the webhook and the controller; nil means
	// isolation.DefaultConfig(). Its Mode must be dedicated.
	Config *isolation.Config
	// BootDelay is how long an emulated instance takes from creation to its kubelet registering.
	BootDelay time.Duration
	// IdleTTL, RegistrationTimeout and ProviderResync are the controller's; zero takes the
	// controller's defaults, except ProviderResync, which defaults to 2 s.
	IdleTTL             time.Duration
	RegistrationTimeout time.Duration
	ProviderResync      time.Duration
	// NamespaceCreateQPS and NamespaceCreateBurst are the controller's per-namespace creation
	// rate limit; zero QPS, the default here, means none.
	NamespaceCreateQPS   float64
	NamespaceCreateBurst int
	// MaxInstances is the controller's --max-instances; zero means none.
	MaxInstances int
	// ControllerWorkers defaults to 4.
	ControllerWorkers int
	// WorkerNodes plain, untainted nodes are registered by emulated kubelets, for the Pods that
	// are not IPP's. Their names are <cluster name>-worker-<i>.
	WorkerNodes int
	// Kubelet is the template of every emulated kubelet (capacity, intervals).
	Kubelet kubelet.Config
	// WatchNodeClasses gives the webhook the NodeClasses and the namespaces' labels, as
	// --watch-node-classes does in ipp: an IPP Pod whose NodeClass does not exist or may not be
	// used in its namespace is denied. Install the NodeClass CRD first (ControlPlane.InstallCRD
	// with deploy.NodeClassCRD): StartIPP waits until the webhook's caches have synced.
	WatchNodeClasses bool
}

// IPP is IPP in dedicated mode running against a control plane, all in this process: the real
// webhook handler registered with the apiserver, the real controller with a real provider (gce or
// ec2) pointed at its cloud's emulator, whose instances boot into Nodes through emulated kubelets.
//
// Two IPPs must not run on one control plane at once: each controller would provision for the
// other's Pods. One after the other is fine; give them cluster names of their own.
type IPP struct {
	// Cluster is the control plane.
	Cluster *ControlPlane
	// Config is the isolation configuration of the webhook and the controller.
	Config isolation.Config
	// Cloud is the emulated cloud and the provider the controller uses.
	Cloud Cloud
	// Booter runs the emulated kubelets of the emulator's instances.
	Booter *kubelet.Booter
	// Webhook is the registered webhook.
	Webhook *Webhook
	// NodeClasses are the webhook's NodeClasses and namespace labels; nil unless
	// IPPOptions.WatchNodeClasses.
	NodeClasses *nodeclass.Cache
	// Workers are the names of the plain worker nodes.
	Workers []string

	opts    IPPOptions
	workers []*kubelet.Kubelet
	// hopts are the webhook handler's options, for SwitchPlacement.
	hopts []webhook.Option

	mu             sync.Mutex
	neverBoot      map[string]bool
	stopController func()
	// stopNodeClasses stops the webhook's NodeClass cache; nil when it does not run.
	stopNodeClasses func()
	// releaseCRD releases the NodeClass CRD, which the controller requires.
	releaseCRD func(context.Context) error
}

// StartIPP registers the webhook, starts the worker nodes and the cloud's emulator, and starts
// the controller. Stop undoes all of it.
func StartIPP(ctx context.Context, cp *ControlPlane, opts IPPOptions) (_ *IPP, err error) {
	cfg := isolation.DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mode != isolation.ModeDedicated {
		return nil, fmt.Errorf("StartIPP runs dedicated mode, not %q", cfg.Mode)
	}
	if opts.ProviderResync == 0 {
		opts.ProviderResync = 2 * time.Second
	}
	if opts.Provider == "" {
		opts.Provider = GCE
	}
	if opts.ControllerWorkers == 0 {
		opts.ControllerWorkers = 4
	}
	e := &IPP{Cluster: cp, Config: cfg, opts: opts, neverBoot: map[string]bool{}}
	defer func() {
		if err != nil {
			e.Stop(context.WithoutCancel(ctx))
		}
	}()

	var hopts []webhook.Option
	if opts.WatchNodeClasses {
		if err := e.startNodeClasses(ctx); err != nil {
			return nil, err
		}
		hopts = append(hopts, webhook.WithNodeClasses(e.NodeClasses))
	}
	e.hopts = hopts
	e.Webhook, err = cp.RegisterWebhook(ctx, webhook.NewHandler(cfg, hopts...), WebhookOptions{ExemptNamespaces: sets.List(cfg.ExemptNamespaces)})
	if err != nil {
		return nil, err
	}

	for i := range opts.WorkerNodes {
		name := fmt.Sprintf("%s-worker-%d", cfg.ClusterName, i)
		k, err := e.StartKubelet(ctx, kubelet.Registration{NodeName: name})
		if err != nil {
			return nil, err
		}
		e.workers = append(e.workers, k)
		e.Workers = append(e.Workers, name)
	}

	e.Booter = kubelet.NewBooter(opts.Kubelet)
	e.Cloud, err = StartCloud(ctx, opts.Provider, CloudOptions{
		ClusterName: cfg.ClusterName,
		Booter:      e.Booter,
		BootDelay:   opts.BootDelay,
		// Each instance joins with the token the controller mints for it.
		Join:                cp.MintedJoin(),
		RegistrationTimeout: opts.RegistrationTimeout,
	})
	if err != nil {
		return nil, err
	}
	e.Cloud.SetFaults(cloudemu.Faults{NeverBoot: e.isNeverBoot})
	// The controller requires the NodeClass CRD: installed for as long as an IPP runs.
	if e.releaseCRD, err = cp.UseCRD(ctx, deploy.NodeClassCRD); err != nil {
		return nil, err
	}
	if err := e.StartController(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// startNodeClasses runs the webhook's NodeClass cache, with the admin's credentials, until Stop,
// and returns once it has synced.
func (e *IPP) startNodeClasses(ctx context.Context) error {
	restCfg := rest.CopyConfig(e.Cluster.AdminConfig)
	restCfg.UserAgent = "ipp-webhook"
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("making the webhook's client: %w", err)
	}
	ipp, err := ippclient.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("making the webhook's NodeClass client: %w", err)
	}
	if e.NodeClasses, err = nodeclass.NewCache(kube, ipp); err != nil {
		return err
	}
	logger := klog.FromContext(ctx).WithName("nodeclasses")
	cctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), logger))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.NodeClasses.Run(cctx)
	}()
	e.stopNodeClasses = func() {
		cancel()
		<-done
	}
	err = wait.PollUntilContextTimeout(ctx, PollInterval, time.Minute, true, func(context.Context) (bool, error) {
		return e.NodeClasses.HasSynced(), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the webhook's NodeClasses and namespaces to sync (is the NodeClass CRD installed?): %w", err)
	}
	return nil
}

// NeverBoot makes the emulator never boot the instance of the dedicated node name: it is created
// but its Node never registers.
func (e *IPP) NeverBoot(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.neverBoot[name] = true
}

func (e *IPP) isNeverBoot(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.neverBoot[name]
}

// StartKubelet runs an emulated kubelet outside the cloud, with the node's own credentials: a
// plain worker, or a rogue node that claims what it likes.
func (e *IPP) StartKubelet(ctx context.Context, reg kubelet.Registration) (*kubelet.Kubelet, error) {
	creds, err := e.Cluster.NodeConfig(reg.NodeName)
	if err != nil {
		return nil, err
	}
	cfg := e.opts.Kubelet
	cfg.Registration, cfg.RESTConfig = reg, creds
	return kubelet.Start(ctx, cfg)
}

// StartController starts the controller (a new one, with new informers), as a restarted replica
// would. It is an error to start it while it runs.
func (e *IPP) StartController(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopController != nil {
		return errors.New("the controller is already running")
	}
	restCfg := rest.CopyConfig(e.Cluster.AdminConfig)
	restCfg.UserAgent = "ipp-controller"
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(restCfg)) // as `ipp controller` does
	if err != nil {
		return fmt.Errorf("making the controller's client: %w", err)
	}
	ipp, err := ippclient.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("making the controller's NodeClass client: %w", err)
	}
	logger := klog.FromContext(ctx).WithName("controller")
	ctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), logger))
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ipp-controller"})
	m, err := controller.NewManager(kube, e.Cloud.Provider(), recorder, controller.Options{
		Config:               e.Config,
		IPPClient:            ipp,
		MaxInstances:         e.opts.MaxInstances,
		IdleTTL:              e.opts.IdleTTL,
		RegistrationTimeout:  e.opts.RegistrationTimeout,
		ProviderResync:       e.opts.ProviderResync,
		MintJoinTokens:       true,
		JournalNamespace:     metav1.NamespaceSystem,
		NamespaceCreateQPS:   e.opts.NamespaceCreateQPS,
		NamespaceCreateBurst: e.opts.NamespaceCreateBurst,
	})
	if err != nil {
		cancel()
		broadcaster.Shutdown()
		return fmt.Errorf("making the controller: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer broadcaster.Shutdown()
		if err := m.Run(ctx, e.opts.ControllerWorkers); err != nil && ctx.Err() == nil {
			logger.Error(err, "Controller stopped")
		}
	}()
	e.stopController = func() {
		cancel()
		<-done
	}
	return nil
}

// SwitchPlacement moves the webhook and the controller to placement p, as an upgrade that
// changes --placement does: the controller stops, the webhook is registered again with the new
// configuration, and the controller starts with it. Pods, Nodes and instances stay.
func (e *IPP) SwitchPlacement(ctx context.Context, p isolation.Placement) error {
	e.StopController()
	if err := e.Webhook.Unregister(ctx); err != nil {
		return err
	}
	e.Config.Placement = p
	w, err := e.Cluster.RegisterWebhook(ctx, webhook.NewHandler(e.Config, e.hopts...), WebhookOptions{ExemptNamespaces: sets.List(e.Config.ExemptNamespaces)})
	if err != nil {
		return err
	}
	e.Webhook = w
	return e.StartController(ctx)
}

// StopController stops the controller and waits until it has stopped. It does nothing if the
// controller is not running.
func (e *IPP) StopController() {
	e.mu.Lock()
	stop := e.stopController
	e.stopController = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Stop stops the controller, unregisters the webhook, stops every kubelet, deletes the Nodes of
// the emulator's instances and of the workers, and closes the provider and the emulator.
func (e *IPP) Stop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	e.StopController()
	if e.Webhook != nil {
		if err := e.Webhook.Unregister(ctx); err != nil {
			logger.Error(err, "Unregistering the webhook")
		}
	}
	if e.stopNodeClasses != nil {
		e.stopNodeClasses()
	}
	names := append([]string(nil), e.Workers...)
	for _, k := range e.workers {
		k.Stop()
	}
	if e.Booter != nil {
		e.Booter.Stop()
	}
	if e.Cloud != nil {
		// Close first: it cancels the boots in flight, and a boot holds its instance while its
		// kubelet waits for a certificate that no one approves once the controller has stopped.
		e.Cloud.Close()
		for _, inst := range e.Cloud.Instances() {
			names = append(names, inst.NodeName)
		}
	}
	for _, name := range names {
		err := e.Cluster.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			logger.Error(err, "Deleting node", "node", name)
		}
	}
	if e.releaseCRD != nil {
		if err := e.releaseCRD(ctx); err != nil {
			logger.Error(err, "Removing the NodeClass CRD")
		}
	}
}
