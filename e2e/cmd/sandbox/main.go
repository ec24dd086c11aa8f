// Command sandbox runs IPP on a laptop, in one process: a real control plane (etcd,
// kube-apiserver, kube-scheduler, kube-controller-manager), the Compute emulator whose instances
// boot into Nodes through emulated kubelets, one plain worker node, and `ipp run` (the webhook
// and the controller, with the real gce provider pointed at the emulator).
//
// It prints one line, export KUBECONFIG=<path>, as soon as the cluster answers, applies the
// examples (examples.yaml: NodeClasses default and metal, which keeps a warm pool of one node,
// namespace tenant-a that may use metal, and, once metal's warm node is Ready, three example
// Deployments: class0 on default, class1 on metal, and class2 on default, whose Pods need two
// nodes), shows the webhook denying NodeClass metal to namespace default, and then reports
// instances created with their NodeClass and machine type, nodes appearing and being bound to
// their class, class1 claiming the warm node at once and its replacement booting, Pods being
// placed by ipp (--placement=controller, the default here) and landing, which nodes each class
// runs on, the NodeClasses' status and nodes being reaped, until Ctrl-C. With
// --placement=admission, which never claims warm nodes, metal's warm pool is left out.
//
//	cd e2e && go run ./cmd/sandbox [--boot-delay=5s] [--idle-ttl=1m] [--placement=controller]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ipp-project/ipp/pkg/isolation"
)

func main() {
	var o options
	// A flag set of its own: packages of the control plane register flags on the global one.
	fs := flag.NewFlagSet("sandbox", flag.ExitOnError)
	fs.DurationVar(&o.bootDelay, "boot-delay", 5*time.Second, "How long an emulated instance takes from creation until its kubelet registers the Node.")
	fs.DurationVar(&o.idleTTL, "idle-ttl", time.Minute, "How long a dedicated node may have no Pod of its class before ipp deletes it (ipp's --idle-ttl), unless its NodeClass sets idleTTL (the example NodeClass metal sets 10m).")
	fs.IntVar(&o.workers, "workers", 1, "Plain worker nodes (no IPP taint), for Pods without a class.")
	fs.BoolVar(&o.examples, "examples", true, "Apply the examples: NodeClasses default and metal, namespace tenant-a, and three example Deployments (class0 in namespace default on NodeClass default, class1 in tenant-a on NodeClass metal, and class2 in namespace default on NodeClass default, whose four Pods of 1.5 CPUs need two nodes; NodeClass metal keeps a warm pool of one node, which class1 claims; with --placement=admission, which gives a class one node and claims no warm node, class2 and the warm pool are left out).")
	placementFlag := fs.String("placement", string(isolation.PlacementController), "Who chooses an IPP Pod's node (ipp's --placement): "+strings.Join(isolation.Placements, " or ")+". controller places each Pod on a node of its class with room and grows a class to more nodes; admission pins each class to one dedicated node.")
	fs.BoolVar(&o.exitWhenRunning, "exit-when-running", false, "Exit once the examples' Pods run, after printing how long each took (for measurements).")
	fs.StringVar(&o.dir, "dir", "", "Directory for the kubeconfig, certificates and log, kept on exit. Empty makes a temporary one, removed on a clean exit.")
	fs.IntVar(&o.verbosity, "v", 2, "Verbosity of the log file (klog -v).")
	fs.StringVar(&o.metricsAddress, "metrics-address", "127.0.0.1:8080", "Where ipp serves its Prometheus metrics (ipp's --metrics-address); empty disables them.")
	_ = fs.Parse(os.Args[1:])
	o.placement = isolation.Placement(*placementFlag)
	if !slices.Contains(isolation.Placements, *placementFlag) {
		fmt.Fprintf(os.Stderr, "sandbox: invalid --placement %q: must be one of %s\n", *placementFlag, strings.Join(isolation.Placements, ", "))
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

// options are the sandbox's flags.
type options struct {
	bootDelay       time.Duration
	idleTTL         time.Duration
	workers         int
	examples        bool
	exitWhenRunning bool
	dir             string
	verbosity       int
	metricsAddress  string
	placement       isolation.Placement
}

// run runs the sandbox until ctx ends (or, with exitWhenRunning, until the examples run),
// printing to out.
func run(ctx context.Context, o options, out io.Writer) (err error) {
	s, err := start(ctx, o, out)
	if err != nil {
		return err
	}
	defer func() {
		s.stop()
		if err == nil {
			s.removeTempDir() // the log of a failed run stays
		}
	}()
	if o.examples {
		if err := s.applyExamples(ctx); err != nil {
			return err
		}
	}
	if o.exitWhenRunning {
		return s.waitExamplesRunning(ctx)
	}
	if o.examples {
		// The same report as with --exit-when-running, then the sandbox keeps running.
		settled := make(chan struct{})
		defer func() { <-settled }()
		go func() {
			defer close(settled)
			if err := s.waitExamplesRunning(ctx); err != nil && ctx.Err() == nil {
				s.printf("The examples did not settle: %v", err)
			}
		}()
	}
	<-ctx.Done()
	s.ippStopping = true
	s.printf("Stopping")
	return nil
}
