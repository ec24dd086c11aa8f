// Package framework runs a real Kubernetes control plane in the current process for IPP's
// end-to-end tests and sandbox: an embedded etcd, kube-apiserver (with the NodeRestriction
// admission plugin and the Node and RBAC authorizers), kube-scheduler and kube-controller-manager.
//
// It is started once per process, from a TestMain or a main, not per test: Start returns a
// ControlPlane whose Stop tears everything down. Every client certificate is issued by the control
// plane's own test CA, so a node's credentials (system:node:<name> in system:nodes) are checked by
// the real Node authorizer and NodeRestriction plugin.
package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"k8s.io/kubernetes/test/utils/ktesting"
)

// Options configure Start. The zero value starts the default control plane.
type Options struct {
	// APIServerFlags, SchedulerFlags and ControllerManagerFlags are appended to the framework's
	// own flags for each component, so they can override them.
	APIServerFlags         []string
	SchedulerFlags         []string
	ControllerManagerFlags []string
	// EtcdLogFile receives etcd's error log; empty means stderr.
	EtcdLogFile string
	// NoScheduler leaves kube-scheduler out, for a caller that runs its own (the benchmarks
	// start and stop one per measurement).
	NoScheduler bool
}

// Timings says how long each part of the start took.
type Timings struct {
	Etcd, APIServer, Scheduler, ControllerManager, Total time.Duration
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// CA signs the client certificates the apiserver accepts (--client-ca-file), the apiserver's
	// serving certificate and the webhook servers' certificates: CA.CertPEM verifies every endpoint.
	CA *CA
	// Host is the apiserver's URL, https://127.0.0.1:<port>.
	Host string
	// AdminConfig authenticates as a cluster admin (group system:masters) with a client certificate.
	AdminConfig *rest.Config
	// Client is a clientset for AdminConfig.
	Client kubernetes.Interface
	// Timings of the start.
	Timings Timings

	dir      string
	tb       *processTB
	stopOnce sync.Once
	mu       sync.Mutex
	stops    []func()

	// crdMu guards crds, the users of each CRD that UseCRD installed, by name.
	crdMu sync.Mutex
	crds  map[string]*crdUse
}

// AdminUser is the user name of AdminConfig.
const AdminUser = "ipp-e2e-admin"

// Start starts etcd, kube-apiserver, kube-scheduler and kube-controller-manager and waits until
// the apiserver is healthy, the scheduler's informers have synced and the controller-manager has
// created the default ServiceAccount (which the ServiceAccount admission plugin requires before a
// Pod can be created in a namespace). ctx bounds the start only; Stop ends the control plane.
// On error, everything already started is stopped.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	logger := klog.FromContext(ctx)
	begin := time.Now()
	cp := &ControlPlane{tb: newProcessTB("ipp-e2e-control-plane", logger)}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()

	cp.dir, err = os.MkdirTemp("", "ipp-control-plane-")
	if err != nil {
		return nil, fmt.Errorf("making control plane dir: %w", err)
	}
	cp.addStop(func() { _ = os.RemoveAll(cp.dir) })
	if cp.CA, err = NewCA("ipp-e2e-ca"); err != nil {
		return nil, err
	}
	caFile := filepath.Join(cp.dir, "ca.crt")
	if err := os.WriteFile(caFile, cp.CA.CertPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing CA: %w", err)
	}
	// kube-controller-manager signs the kubelets' client certificates with the test CA.
	caKeyFile := filepath.Join(cp.dir, "ca.key")
	if err := cp.CA.writeKey(caKeyFile); err != nil {
		return nil, err
	}

	t0 := time.Now()
	etcd, err := startEtcd(ctx, opts.EtcdLogFile)
	if err != nil {
		return nil, err
	}
	cp.addStop(etcd.stop)
	cp.Timings.Etcd = time.Since(t0)
	logger.V(2).Info("Started etcd", "endpoint", etcd.endpoint, "took", cp.Timings.Etcd)

	t0 = time.Now()
	if err := cp.startAPIServer(ctx, etcd.endpoint, caFile, opts.APIServerFlags); err != nil {
		return nil, err
	}
	cp.Timings.APIServer = time.Since(t0)
	logger.V(2).Info("Started kube-apiserver", "host", cp.Host, "took", cp.Timings.APIServer)

	if err := cp.setUpJoining(ctx); err != nil {
		return nil, err
	}
	admin := filepath.Join(cp.dir, "admin.kubeconfig")
	if err := cp.WriteKubeconfig(admin); err != nil {
		return nil, err
	}
	// The scheduler and the controller-manager start side by side; each waits for itself.
	var wg sync.WaitGroup
	var schedErr, kcmErr error
	if !opts.NoScheduler {
		wg.Go(func() {
			t0 := time.Now()
			schedErr = cp.startScheduler(ctx, admin, opts.SchedulerFlags)
			cp.Timings.Scheduler = time.Since(t0)
		})
	}
	wg.Go(func() {
		t0 := time.Now()
		kcmErr = cp.startControllerManager(ctx, admin, caFile, caKeyFile, opts.ControllerManagerFlags)
		if kcmErr == nil {
			kcmErr = cp.waitForServiceAccount(ctx, metav1.NamespaceDefault)
		}
		cp.Timings.ControllerManager = time.Since(t0)
	})
	wg.Wait()
	if err := errors.Join(schedErr, kcmErr); err != nil {
		return nil, err
	}
	cp.Timings.Total = time.Since(begin)
	logger.Info("Control plane is up", "host", cp.Host, "took", cp.Timings.Total.Round(time.Millisecond),
		"etcd", cp.Timings.Etcd.Round(time.Millisecond), "apiserver", cp.Timings.APIServer.Round(time.Millisecond),
		"scheduler", cp.Timings.Scheduler.Round(time.Millisecond), "controllerManager", cp.Timings.ControllerManager.Round(time.Millisecond))
	return cp, nil
}

// Stop stops every component, last started first, and removes their files. It is safe to call
// more than once.
func (cp *ControlPlane) Stop() {
	cp.stopOnce.Do(func() {
		cp.mu.Lock()
		stops := cp.stops
		cp.mu.Unlock()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		cp.tb.runCleanups()
	})
}

func (cp *ControlPlane) addStop(f func()) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.stops = append(cp.stops, f)
}

// Dir is a directory that lives as long as the control plane, for kubeconfigs and logs.
func (cp *ControlPlane) Dir() string { return cp.dir }

func (cp *ControlPlane) startAPIServer(ctx context.Context, etcdEndpoint, caFile string, extra []string) (err error) {
	// The serving certificate is signed by the test CA and put where the test server looks for
	// one (--cert-dir, parsed after the test server's own default), so it neither generates a
	// self-signed one nor points its peer-proxy CA at a file that does not exist.
	certDir := filepath.Join(cp.dir, "apiserver")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return fmt.Errorf("making apiserver cert dir: %w", err)
	}
	serving, err := cp.CA.ServingCert("kube-apiserver", []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "apiserver.crt"), append(slices.Clone(serving.CertPEM), cp.CA.CertPEM...), 0o600); err != nil {
		return fmt.Errorf("writing apiserver certificate: %w", err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "apiserver.key"), serving.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("writing apiserver key: %w", err)
	}
	flags := append([]string{
		"--enable-admission-plugins=NodeRestriction",
		"--authorization-mode=Node,RBAC",
		"--enable-bootstrap-token-auth",
		"--client-ca-file=" + caFile,
		"--cert-dir=" + certDir,
	}, extra...)

	storage := storagebackend.NewDefaultConfig(path.Join(uuid.New().String(), "registry"), nil)
	storage.Transport.ServerList = []string{etcdEndpoint}

	// The test server reports fatal errors through its TB; a fatal call unwinds to here.
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatalUnwind); !ok {
				panic(r)
			}
			err = fmt.Errorf("starting kube-apiserver: %w", cp.tb.err())
		}
	}()
	// A TContext without per-test output: the apiserver logs through the context's logger (klog),
	// and its lifetime is cancelled by the teardown, not by a test's end.
	tCtx := ktesting.InitCtx(klog.NewContext(context.WithoutCancel(ctx), klog.FromContext(ctx)), cp.tb)
	server, err := kubeapiservertesting.StartTestServer(tCtx, &kubeapiservertesting.TestServerInstanceOptions{
		EnableCertAuth:         true,
		DisableInvariantChecks: true,
	}, flags, storage)
	if err != nil {
		return fmt.Errorf("starting kube-apiserver: %w", err)
	}
	cp.addStop(server.TearDownFn)

	cp.Host = server.ClientConfig.Host
	adminCert, err := cp.CA.ClientCert(AdminUser, "system:masters")
	if err != nil {
		return err
	}
	cp.AdminConfig = cp.configFor(adminCert)
	cp.Client, err = kubernetes.NewForConfig(cp.AdminConfig)
	if err != nil {
		return fmt.Errorf("making admin client: %w", err)
	}
	return nil
}

// configFor returns a rest.Config that authenticates with kp and trusts only the test CA.
func (cp *ControlPlane) configFor(kp KeyPair) *rest.Config {
	return &rest.Config{
		Host: cp.Host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   cp.CA.CertPEM,
			CertData: kp.CertPEM,
			KeyData:  kp.KeyPEM,
		},
		QPS:   500,
		Burst: 1000,
	}
}

// UserConfig returns a rest.Config that authenticates as user in groups, by a client certificate
// signed by the test CA.
func (cp *ControlPlane) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := cp.CA.ClientCert(user, groups...)
	if err != nil {
		return nil, err
	}
	return cp.configFor(kp), nil
}

// NodeConfig returns the credentials a kubelet on node nodeName would hold: user
// system:node:<nodeName> in group system:nodes. Requests made with them are subject to the Node
// authorizer and the NodeRestriction admission plugin.
func (cp *ControlPlane) NodeConfig(nodeName string) (*rest.Config, error) {
	cfg, err := cp.UserConfig("system:node:"+nodeName, "system:nodes")
	if err != nil {
		return nil, fmt.Errorf("making credentials of node %s: %w", nodeName, err)
	}
	cfg.UserAgent = "kubelet/" + nodeName
	return cfg, nil
}

// CreateNamespace creates a namespace with the given name (or, when generateName ends with "-",
// a generated name) and waits until its default ServiceAccount exists, so Pods can be created.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	if len(name) > 0 && name[len(name)-1] == '-' {
		ns.GenerateName = name
	} else {
		ns.Name = name
	}
	ns, err := cp.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	if err := cp.waitForServiceAccount(ctx, ns.Name); err != nil {
		return nil, err
	}
	return ns, nil
}

func (cp *ControlPlane) waitForServiceAccount(ctx context.Context, namespace string) error {
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cp.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for the default ServiceAccount of namespace %s: %w", namespace, err)
	}
	return nil
}
