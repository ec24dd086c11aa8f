// Command bench runs IPP's benchmarks (issue 6) and writes their JSON results and the P1 plot:
//
//	bench -suite short -part p1 -out bench/results/short
//
// `make bench` runs the short suite of every part, `make bench-full` the full one. See
// BENCHMARKS.md for what each part measures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/ipp-project/ipp/e2e/bench"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/isolation"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	suite := flag.String("suite", "short", "Sizes: short (minutes on 2 cores) or full (the sizes of issue 6).")
	part := flag.String("part", "p1,p2,p3,p4", "Comma-separated parts to run: p1, p2, p3, p4.")
	out := flag.String("out", "", "Directory for the results (default bench/results/<suite>).")
	logFile := flag.String("log", "", "File for the control plane's log (default <out>/<part>-cluster.log).")
	verbosity := flag.Int("log-v", 1, "klog verbosity of the control plane's log.")
	nodes := flag.String("p1-nodes", "", "Override P1's node counts, such as 500,1000.")
	pods := flag.Int("p1-pods", 0, "Override P1's measured Pods per run.")
	existing := flag.String("p1-existing", "", "Override P1's Pods already running per node, such as 0,6.")
	variants := flag.String("p1-variants", "", "Run only these P1 variants (baseline, dedicated, dedicated-label-only, autoscaler, dedicated-placed).")
	modes := flag.String("p1-modes", "", "Run only these P1 modes (create-to-bind, scheduler-only, placement, placement-only, patch-only; the last three are dedicated-placed's alone).")
	placedPerClass := flag.Int("p1-placed-nodes-per-class", 0, "Nodes per class of P1's dedicated-placed variant, bound by the IPP controller (default: the suite's nodes per class, so as many placed nodes as N).")
	placementWorkers := flag.Int("p1-placement-workers", 0, "The IPP controller's --placement-workers in P1's dedicated-placed variant (default: the controller's).")
	profile := flag.Int("p1-profile-nodes", -1, "CPU-profile P1's runs (every mode) at this node count (default: the largest).")
	p2Placement := flag.String("p2-placement", string(isolation.PlacementController), "The --placement of P2's webhook, which decides its patch: "+strings.Join(isolation.Placements, " or ")+".")
	p3Placement := flag.String("p3-placement", string(isolation.PlacementController), "Who places P3's IPP Pods: "+strings.Join(isolation.Placements, " or ")+" (the webhook's and the controller's --placement).")
	bootDelay := flag.Duration("p4-boot-delay", 0, "Override P4's emulated boot delay (default 60s; a short one, such as 5s, for a quick check).")
	ippBinary := flag.String("ipp", "", "ipp binary for P2 and P3 (default: built from the repository into <out>).")
	repo := flag.String("repo", "..", "Repository root, to build ipp from.")
	replot := flag.String("plot", "", "Only draw the P1 plot from this p1.json, next to it, and exit.")
	reportDir := flag.String("report", "", "Only print the results in this directory as Markdown tables, and exit.")
	flag.Parse()

	if *replot != "" {
		return plotFrom(*replot)
	}
	if *reportDir != "" {
		return report(os.Stdout, *reportDir)
	}

	cfg, ok := bench.Suites[*suite]
	if !ok {
		return fmt.Errorf("invalid -suite %q: must be short or full", *suite)
	}
	if *out == "" {
		*out = filepath.Join("bench", "results", *suite)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := override(&cfg.P1, *nodes, *pods, *existing, *variants, *modes, *profile); err != nil {
		return err
	}
	if *placedPerClass < 0 || *placementWorkers < 0 {
		return fmt.Errorf("invalid -p1-placed-nodes-per-class %d / -p1-placement-workers %d: must not be negative", *placedPerClass, *placementWorkers)
	}
	cfg.P1.PlacedNodesPerClass, cfg.P1.PlacementWorkers = *placedPerClass, *placementWorkers
	cfg.P2.Placement = isolation.Placement(*p2Placement)
	if !slices.Contains(isolation.Placements, *p2Placement) {
		return fmt.Errorf("invalid -p2-placement %q: must be %s", *p2Placement, strings.Join(isolation.Placements, " or "))
	}
	cfg.P3.Placement = isolation.Placement(*p3Placement)
	if !slices.Contains(isolation.Placements, *p3Placement) {
		return fmt.Errorf("invalid -p3-placement %q: must be %s", *p3Placement, strings.Join(isolation.Placements, " or "))
	}
	if *bootDelay < 0 {
		return fmt.Errorf("invalid -p4-boot-delay %v: must not be negative", *bootDelay)
	}
	if *bootDelay > 0 {
		cfg.P4.BootDelay.Duration = *bootDelay
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	machine := bench.DescribeMachine()
	command := "bench " + strings.Join(os.Args[1:], " ")

	parts := strings.Split(*part, ",")
	if len(parts) > 1 {
		return runEach(ctx, parts)
	}
	var errs []error
	for _, p := range parts {
		p = strings.TrimSpace(p)
		lf := *logFile
		if lf == "" {
			lf = filepath.Join(*out, p+"-cluster.log")
		}
		_ = os.Remove(lf)
		if err := framework.LogToFile(lf, *verbosity); err != nil {
			return err
		}
		// The benchmark's own progress goes to stderr; everything else in the process logs to lf.
		stderr, err := redirectStderr(lf)
		if err != nil {
			return err
		}
		ctx := klog.NewContext(ctx, textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(stderr))))

		res := &bench.Result{Part: p, Suite: *suite, Started: time.Now(), Machine: machine, Command: command, LoadAvgStart: bench.LoadAvg()}
		fmt.Fprintf(stderr, "== %s (%s suite), load average %.2f; control plane log %s\n", p, *suite, res.LoadAvgStart, lf)
		switch p {
		case "p1":
			c := cfg.P1
			c.LogFile, c.ProfileDir = lf, filepath.Join(*out, "profiles")
			res.P1, err = bench.RunP1(ctx, c)
			if res.P1 != nil && len(res.P1.Runs) > 0 {
				if perr := bench.PlotP1(res.P1, filepath.Join(*out, "p1.png")); perr != nil {
					err = errors.Join(err, perr)
				}
			}
		case "p2":
			c := cfg.P2
			c.LogFile, c.IPPBinary, c.Repo, c.WorkDir = lf, *ippBinary, *repo, *out
			res.P2, err = bench.RunP2(ctx, c)
		case "p3":
			c := cfg.P3
			c.LogFile, c.IPPBinary, c.Repo, c.WorkDir = lf, *ippBinary, *repo, *out
			res.P3, err = bench.RunP3(ctx, c)
		case "p4":
			c := cfg.P4
			c.LogFile = lf
			res.P4, err = bench.RunP4(ctx, c)
		default:
			err = fmt.Errorf("unknown part %q", p)
		}
		res.Finished, res.LoadAvgEnd = time.Now(), bench.LoadAvg()
		if werr := bench.WriteJSON(filepath.Join(*out, p+".json"), res); werr != nil {
			err = errors.Join(err, werr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "== %s failed: %v\n", p, err)
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		fmt.Fprintf(stderr, "== %s done in %v, results in %s\n", p, res.Finished.Sub(res.Started).Round(time.Second), filepath.Join(*out, p+".json"))
	}
	return errors.Join(errs...)
}

func override(c *bench.P1Config, nodes string, pods int, existing, variants, modes string, profile int) error {
	ints := func(s string) ([]int, error) {
		var out []int
		for _, f := range strings.Split(s, ",") {
			var n int
			if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil {
				return nil, fmt.Errorf("invalid number %q", f)
			}
			out = append(out, n)
		}
		return out, nil
	}
	var err error
	if nodes != "" {
		if c.Nodes, err = ints(nodes); err != nil {
			return fmt.Errorf("invalid -p1-nodes: %w", err)
		}
	}
	if existing != "" {
		if c.ExistingPerNode, err = ints(existing); err != nil {
			return fmt.Errorf("invalid -p1-existing: %w", err)
		}
	}
	if pods > 0 {
		c.Pods = pods
	}
	if variants != "" {
		c.Variants = strings.Split(variants, ",")
	}
	if modes != "" {
		c.Modes = strings.Split(modes, ",")
	}
	c.ProfileNodes = profile
	if profile < 0 && len(c.Nodes) > 0 {
		c.ProfileNodes = c.Nodes[len(c.Nodes)-1]
	}
	return nil
}

// plotFrom redraws p1.png from a p1.json.
func plotFrom(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res bench.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if res.P1 == nil {
		return fmt.Errorf("%s holds no P1 result", path)
	}
	return bench.PlotP1(res.P1, filepath.Join(filepath.Dir(path), "p1.png"))
}

// runEach runs each part in a process of its own: the in-process kube-controller-manager can be
// started once per process, and each part should start from a clean heap.
func runEach(ctx context.Context, parts []string) error {
	var args []string
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "part" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	var errs []error
	for _, p := range parts {
		cmd := exec.CommandContext(ctx, os.Args[0], append(args, "-part="+strings.TrimSpace(p))...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
