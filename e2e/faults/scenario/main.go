// Package scenario is what the fault tests (e2e/faults) and the crash and failover tests
// (e2e/crash) share: an emulated cloud of either kind whose instances boot into emulated kubelets
// (Cloud), a slice of the shared control plane that one test owns (Tenant), IPP's controller run
// in the test process (Tenant.StartController) or as separate ipp processes (Process), and the
// TestMain that starts the control plane (Main).
package scenario

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/framework"
)

var (
	logVerbosity = flag.Int("cluster-v", 2, "klog verbosity of the control plane's log")
	logPath      = flag.String("cluster-log", "", "file for the control plane's log, kept after the run (default: a temp file, removed if the tests pass)")
)

// DefaultParallel is how many parallel tests run at once unless -test.parallel says otherwise.
// The tests here spend their time waiting for timers, boots and the control plane, not computing,
// so more of them than GOMAXPROCS (go test's default) share even a 2-core machine well.
const DefaultParallel = 6

// setDefaultParallel sets -test.parallel to DefaultParallel if the command line did not set it.
func setDefaultParallel() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(DefaultParallel))
	}
}

// Main starts the control plane into *cluster, runs the tests and stops it, for a TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(scenario.Main(m, &cluster, nil)) }
//
// Tests marked parallel run DefaultParallel at a time unless -test.parallel is given.
// before, if not nil, runs while the control plane starts (building a binary, say); if it fails,
// no test runs. The control plane logs to a file, which is kept if a test fails.
func Main(m *testing.M, cluster **framework.ControlPlane, before func() error) (code int) {
	flag.Parse()
	setDefaultParallel()
	logFile := *logPath
	if logFile == "" {
		logDir, err := os.MkdirTemp("", "ipp-e2e-logs-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		logFile = filepath.Join(logDir, "cluster.log")
		defer func() {
			if code == 0 {
				_ = os.RemoveAll(logDir)
			}
		}()
	}
	if err := framework.LogToFile(logFile, *logVerbosity); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	beforeErr := make(chan error, 1)
	go func() {
		if before == nil {
			beforeErr <- nil
			return
		}
		beforeErr <- before()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctx = klog.NewContext(ctx, klog.Background())
	cp, err := framework.Start(ctx, framework.Options{EtcdLogFile: logFile})
	if err != nil {
		fmt.Fprintf(os.Stderr, "Starting the control plane: %v (log: %s)\n", err, logFile)
		return 1
	}
	defer func() {
		stopped := time.Now()
		cp.Stop()
		fmt.Fprintf(os.Stderr, "Control plane stopped in %v\n", time.Since(stopped).Round(time.Millisecond))
	}()
	t := cp.Timings
	fmt.Fprintf(os.Stderr, "Control plane up in %v; log: %s\n", t.Total.Round(time.Millisecond), logFile)
	// The controller requires the NodeClass CRD; it stays for the whole run.
	if _, err := cp.UseCRD(ctx, deploy.NodeClassCRD); err != nil {
		fmt.Fprintf(os.Stderr, "Installing the NodeClass CRD: %v\n", err)
		return 1
	}
	if err := <-beforeErr; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*cluster = cp
	return m.Run()
}
