package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/compatibility"
	"k8s.io/klog/v2"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	"k8s.io/kubernetes/cmd/kube-controller-manager/names"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// Controllers is the set of kube-controller-manager controllers the framework runs: what
// Deployments, namespaces, ServiceAccounts, garbage collection and node health need, plus the
// taint-eviction controller, which deletes running Pods that do not tolerate a node's NoExecute taint,
// and the controllers that let nodes join with bootstrap tokens.
var Controllers = []string{
	names.ServiceAccountController,
	names.NamespaceController,
	names.GarbageCollectorController,
	names.DeploymentController,
	names.ReplicaSetController,
	names.DaemonSetController,
	names.JobController,
	names.StatefulSetController,
	names.PodGarbageCollectorController,
	names.NodeLifecycleController,
	names.TaintEvictionController,
	// Joining nodes: sign kubelet client CSRs, approve those of groups bound to node-client
	// auto-approval, delete old CSRs and expired bootstrap tokens, and sign the cluster-info
	// ConfigMap with every signing token (kubeadm join's token discovery checks it).
	names.CertificateSigningRequestSigningController,
	names.CertificateSigningRequestApprovingController,
	names.CertificateSigningRequestCleanerController,
	names.TokenCleanerController,
	names.BootstrapSignerController,
}

// The scheduler and controller-manager are started the way their cmd/*/app/testing helpers do it
// (a fresh component-globals registry, a listener on a free port, Setup then Run), but without
// those helpers, which take a *testing.T: the sandbox is a main, not a test.

// newRegistry returns a component-globals registry of its own for one component, with a copy of
// the process-wide feature gate, so components started in one process do not register twice.
func newRegistry() (compatibility.ComponentGlobalsRegistry, error) {
	featureGate := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	effectiveVersion := utilcompatibility.DefaultKubeEffectiveVersionForTest()
	effectiveVersion.SetEmulationVersion(featureGate.EmulationVersion())
	effectiveVersion.SetMinCompatibilityVersion(featureGate.MinCompatibilityVersion())
	registry := compatibility.NewComponentGlobalsRegistry()
	if err := registry.Register(compatibility.DefaultKubeComponent, effectiveVersion, featureGate); err != nil {
		return nil, fmt.Errorf("registering component globals: %w", err)
	}
	return registry, nil
}

// runComponent runs run in a goroutine and registers a stop that cancels it and waits for it.
func (cp *ControlPlane) runComponent(ctx context.Context, name string, run func(ctx context.Context) error) <-chan error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	errCh := make(chan error, 1)
	go func() {
		defer close(errCh)
		if err := run(ctx); err != nil && ctx.Err() == nil {
			errCh <- fmt.Errorf("%s: %w", name, err)
		}
	}()
	cp.addStop(func() {
		cancel()
		if err, ok := <-errCh; ok && err != nil {
			klog.FromContext(ctx).Error(err, "Component did not stop cleanly", "component", name)
		}
	})
	return errCh
}

func (cp *ControlPlane) startScheduler(ctx context.Context, kubeconfig string, extra []string) error {
	opts := scheduleroptions.NewOptions()
	registry, err := newRegistry()
	if err != nil {
		return err
	}
	opts.ComponentGlobalsRegistry = registry
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	flags := append([]string{"--kubeconfig=" + kubeconfig, "--leader-elect=false"}, extra...)
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("parsing kube-scheduler flags: %w", err)
	}
	if err := registry.Set(); err != nil {
		return fmt.Errorf("setting kube-scheduler component globals: %w", err)
	}
	if opts.SecureServing.BindPort != 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listening for kube-scheduler: %w", err)
		}
		opts.SecureServing.Listener, opts.SecureServing.BindPort = ln, ln.Addr().(*net.TCPAddr).Port
		// A certificate from the test CA where the scheduler looks for its pair, so it does not
		// generate a self-signed one.
		opts.SecureServing.ServerCert.CertDirectory = cp.dir
		if err := cp.writeServingPair(opts.SecureServing.ServerCert.PairName); err != nil {
			return err
		}
	}
	opts.Authorization.AlwaysAllowPaths = append(opts.Authorization.AlwaysAllowPaths, "/healthz", "/readyz")

	cc, sched, err := schedulerapp.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("setting up kube-scheduler: %w", err)
	}
	errCh := cp.runComponent(ctx, "kube-scheduler", func(ctx context.Context) error { return schedulerapp.Run(ctx, cc, sched) })
	if cc.SecureServing == nil {
		return nil
	}
	serverCert, _ := cc.SecureServing.Cert.CurrentCertKeyContent()
	clientConfig, err := cc.SecureServing.NewClientConfig(serverCert)
	if err != nil {
		return fmt.Errorf("making kube-scheduler health client: %w", err)
	}
	clientConfig.TLSClientConfig.ServerName = "127.0.0.1"
	client, err := kubernetes.NewForConfig(clientConfig)
	if err != nil {
		return fmt.Errorf("making kube-scheduler health client: %w", err)
	}
	// /readyz includes sched-handler-sync: the scheduler has synced its informers and handlers.
	return waitHealthy(ctx, "kube-scheduler", errCh, func(ctx context.Context) bool {
		status := 0
		client.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		return status == http.StatusOK
	})
}

func (cp *ControlPlane) startControllerManager(ctx context.Context, kubeconfig, caFile, caKeyFile string, extra []string) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return fmt.Errorf("making kube-controller-manager options: %w", err)
	}
	registry, err := newRegistry()
	if err != nil {
		return err
	}
	s.ComponentGlobalsRegistry = registry
	all, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	namedFlagSets := s.Flags(all, disabled, aliases)
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	controllers := ""
	for i, c := range Controllers {
		if i > 0 {
			controllers += ","
		}
		controllers += c
	}
	flags := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		// Readiness is observed through the API (the default ServiceAccount), so the
		// controller-manager needs no serving port, nor delegated authentication for one.
		"--secure-port=0",
		"--controllers=" + controllers,
		"--root-ca-file=" + caFile,
		"--cluster-signing-cert-file=" + caFile,
		"--cluster-signing-key-file=" + caKeyFile,
	}, extra...)
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("parsing kube-controller-manager flags: %w", err)
	}
	s.ParsedFlags = &namedFlagSets
	if err := registry.Set(); err != nil {
		return fmt.Errorf("setting kube-controller-manager component globals: %w", err)
	}
	config, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return fmt.Errorf("configuring kube-controller-manager: %w", err)
	}
	errCh := cp.runComponent(ctx, "kube-controller-manager", func(ctx context.Context) error {
		return kcmapp.Run(ctx, config.Complete())
	})
	select {
	case err := <-errCh:
		if err != nil {
			return err
		}
	default:
	}
	return nil
}

// writeServingPair writes <dir>/<pair>.crt (with the CA appended) and <pair>.key for 127.0.0.1.
func (cp *ControlPlane) writeServingPair(pair string) error {
	kp, err := cp.CA.ServingCert(pair, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cp.dir, pair+".crt"), append(slices.Clone(kp.CertPEM), cp.CA.CertPEM...), 0o600); err != nil {
		return fmt.Errorf("writing %s certificate: %w", pair, err)
	}
	if err := os.WriteFile(filepath.Join(cp.dir, pair+".key"), kp.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("writing %s key: %w", pair, err)
	}
	return nil
}

// waitHealthy polls healthy until it holds, the component fails, or a minute passes.
func waitHealthy(ctx context.Context, name string, errCh <-chan error, healthy func(context.Context) bool) error {
	var failed error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err, ok := <-errCh:
			if ok && err != nil {
				failed = err
				return false, err
			}
			failed = errors.New("stopped")
			return false, failed
		default:
		}
		return healthy(ctx), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to be ready: %w", name, err)
	}
	return nil
}
