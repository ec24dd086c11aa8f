package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/cmd/ipp/app"
	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/e2e/kubelet"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

//go:embed examples.yaml
var examplesYAML []byte

// sandbox is a running sandbox.
type sandbox struct {
	out   io.Writer
	begin time.Time
	outMu sync.Mutex

	cp       *framework.ControlPlane
	gce      *gceemu.Server
	booter   *kubelet.Booter
	workers  []*kubelet.Kubelet
	progress *progress
	ippDone  chan int
	// tempDir is the sandbox dir if the sandbox made it; it is removed on a clean stop.
	tempDir string
	// ippStopping is set when `ipp run` got the signal that stops the sandbox.
	ippStopping bool
	examples    []string // app labels of the example Deployments
	// exampleDeployments are the example Deployments applied.
	exampleDeployments []*appsv1.Deployment
	replicas           int // the example Deployments' replicas, in all
	// nodeClasses are the example NodeClasses applied; expectPods counts the example Pods of each.
	nodeClasses []string
	expectPods  map[string]int
	// ipp is a client of the NodeClass API.
	ipp ippclient.Interface
	// placement is ipp's --placement.
	placement isolation.Placement
	// bootDelay is the Compute emulator's boot delay.
	bootDelay time.Duration
	// warmPools are the example NodeClasses with a warm pool, by name, with its size
	// (controller placement only); firstWarm are the warm nodes that were Ready before the
	// example Deployments were created, by name, with their NodeClass.
	warmPools map[string]int
	firstWarm map[string]string
	// appliedAt says when each example NodeClass with a warm pool was applied.
	appliedAt map[string]time.Time
}

// start brings everything up and prints the export line once the cluster answers. On error,
// what started is stopped.
func start(ctx context.Context, o options, out io.Writer) (_ *sandbox, err error) {
	s := &sandbox{out: out, begin: time.Now(), placement: o.placement, bootDelay: o.bootDelay, warmPools: map[string]int{}, firstWarm: map[string]string{}, appliedAt: map[string]time.Time{}}
	if s.placement == "" {
		s.placement = isolation.PlacementController
	}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ipp-sandbox-"); err != nil {
			return nil, fmt.Errorf("making the sandbox dir: %w", err)
		}
		s.tempDir = dir
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making the sandbox dir: %w", err)
	}
	logFile := filepath.Join(dir, "sandbox.log")
	if err := framework.LogToFile(logFile, o.verbosity); err != nil {
		return nil, err
	}
	ctx = klog.NewContext(ctx, klog.Background())

	s.cp, err = framework.Start(ctx, framework.Options{EtcdLogFile: logFile})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane (log: %s): %w", logFile, err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := s.cp.WriteKubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	s.outMu.Lock()
	fmt.Fprintf(out, "export KUBECONFIG=%s\n", kubeconfig)
	s.outMu.Unlock()
	s.printf("Control plane up in %v; log: %s", s.cp.Timings.Total.Round(time.Millisecond), logFile)

	// ipp's leader-election Lease lives in its own namespace, which the webhook exempts.
	if _, err := s.cp.CreateNamespace(ctx, "ipp-system"); err != nil {
		return nil, err
	}
	// ipp's controller requires the NodeClass CRD of deploy/, as an installation has it.
	if _, err := s.cp.InstallCRD(ctx, deploy.NodeClassCRD); err != nil {
		return nil, err
	}
	if s.ipp, err = ippclient.NewForConfig(s.cp.AdminConfig); err != nil {
		return nil, err
	}
	s.progress = newProgress(s)
	if err := s.progress.start(ctx, s.cp.Client, s.ipp); err != nil {
		return nil, err
	}

	for i := range o.workers {
		name := fmt.Sprintf("sandbox-worker-%d", i)
		creds, err := s.cp.NodeConfig(name)
		if err != nil {
			return nil, err
		}
		k, err := kubelet.Start(ctx, kubelet.Config{Registration: kubelet.Registration{NodeName: name}, RESTConfig: creds})
		if err != nil {
			return nil, fmt.Errorf("starting worker %s: %w", name, err)
		}
		s.workers = append(s.workers, k)
	}

	s.booter = kubelet.NewBooter(kubelet.Config{})
	s.gce = gceemu.New(gceemu.Options{BootDelay: o.bootDelay, Booter: s.booter})
	if err := s.gce.Start(); err != nil {
		return nil, fmt.Errorf("starting the Compute emulator: %w", err)
	}
	s.printf("Compute emulator at %s (project %s, zone %s), boot delay %v", s.gce.URL(), s.gce.Project(), s.gce.Zones()[0], o.bootDelay)
	s.progress.watchInstances(s.gce)

	listen, err := freeAddress()
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "webhook.crt"), filepath.Join(dir, "webhook.key")
	kp, err := s.cp.CA.ServingCert("ipp-webhook", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, kp.CertPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing the webhook certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, kp.KeyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing the webhook key: %w", err)
	}
	args := []string{"run",
		"--kubeconfig=" + kubeconfig,
		"--listen-address=" + listen,
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--provider=gce",
		"--gce-project=" + s.gce.Project(),
		"--gce-zone=" + s.gce.Zones()[0],
		"--gce-endpoint=" + s.gce.URL(),
		"--gce-image=projects/ipp-emulated/global/images/family/k8s-node",
		// Every instance joins with a token of its own, which ipp mints and whose CSR it approves.
		"--join-endpoint=" + s.cp.JoinEndpoint(),
		"--join-ca-cert-hash=" + s.cp.CAPin(),
		"--idle-ttl=" + o.idleTTL.String(),
		"--placement=" + string(s.placement),
		"--metrics-address=" + o.metricsAddress,
	}
	s.ippDone = make(chan int, 1)
	go func() { s.ippDone <- app.Main(args) }()
	s.printf("ipp %s", strings.Join(args, " "))

	cfg := isolation.DefaultConfig()
	// The webhook's pin: the class key under controller placement, the dedicated node's name
	// under admission placement.
	pinLabel := isolation.BindingLabel
	if s.placement == isolation.PlacementController {
		pinLabel = isolation.ClassLabel
	}
	_, err = s.cp.RegisterWebhookURL(ctx, "https://"+listen, framework.WebhookOptions{ProbeLabels: map[string]string{cfg.PodLabel: "probe"}},
		func(p *corev1.Pod, err error) bool {
			select {
			case code := <-s.ippDone:
				s.ippDone <- code
				return true // fail fast below
			default:
			}
			return err == nil && p.Spec.NodeSelector[pinLabel] != ""
		})
	select {
	case code := <-s.ippDone:
		s.ippDone <- code
		return nil, fmt.Errorf("ipp run exited with code %d (log: %s)", code, logFile)
	default:
	}
	if err != nil {
		return nil, err
	}
	if s.placement == isolation.PlacementController {
		s.printf("Webhook registered (https://%s), idle TTL %v, placement by the controller. Pods labelled %s=<class> get nodes of their own: gated (%s) and pinned to their class key at admission, then placed by ipp on a node of their class with room, new nodes added as the class grows",
			listen, o.idleTTL, cfg.PodLabel, placement.Gate)
	} else {
		s.printf("Webhook registered (https://%s), idle TTL %v, placement at admission. Pods labelled %s=<class> get a node of their own", listen, o.idleTTL, cfg.PodLabel)
	}
	return s, nil
}

// freeAddress returns 127.0.0.1:<a port that was free a moment ago>.
func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitExamplesRunning waits until every example Pod runs and prints the time each took from its
// creation to Running and the nodes of each class, and which class claimed a warm node; then
// waits for each warm pool to be back to its size, and for the NodeClasses' status to count the
// Pods and warm nodes, and prints it.
func (s *sandbox) waitExamplesRunning(ctx context.Context) error {
	var took []time.Duration
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		var ok bool
		took, ok = s.progress.runningTimes(s.examples, s.replicas)
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the examples to run: %w", err)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	var parts []string
	for _, d := range took {
		parts = append(parts, d.Round(10*time.Millisecond).String())
	}
	s.printf("All %d example Pods run; creation to Running: min %v, median %v, max %v (%s)", len(took),
		took[0].Round(10*time.Millisecond), took[len(took)/2].Round(10*time.Millisecond), took[len(took)-1].Round(10*time.Millisecond), strings.Join(parts, " "))
	for _, d := range s.exampleDeployments {
		s.printClassNodes(d)
	}
	s.printWarmClaims()
	if err := s.waitWarmReplacements(ctx); err != nil {
		return err
	}
	return s.waitNodeClassesSettled(ctx)
}

// printf prints one progress line, stamped with the time since the sandbox started.
func (s *sandbox) printf(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, "[%6.1fs] %s\n", time.Since(s.begin).Seconds(), fmt.Sprintf(format, args...))
}

// stop stops what runs, last started first. `ipp run` stops on the same signal as the sandbox;
// it is given a few seconds to.
func (s *sandbox) stop() {
	if s.ippDone != nil && s.ippStopping {
		select {
		case <-s.ippDone:
		case <-time.After(5 * time.Second):
		}
	}
	if s.progress != nil {
		s.progress.stop()
	}
	if s.booter != nil {
		s.booter.Stop()
	}
	if s.gce != nil {
		s.gce.Close()
	}
	for _, k := range s.workers {
		k.Stop()
	}
	if s.cp != nil {
		s.cp.Stop()
	}
}

// removeTempDir removes the sandbox dir if the sandbox made it (not with --dir).
func (s *sandbox) removeTempDir() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}
