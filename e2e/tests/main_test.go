// Package tests holds IPP's end-to-end tests. They share one control plane per test binary,
// started in TestMain; each test works in namespaces and nodes of its own, so tests can run in
// parallel.
package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/framework"
)

// cluster is the control plane every test in this package uses.
var cluster *framework.ControlPlane

var (
	logVerbosity = flag.Int("cluster-v", 2, "klog verbosity of the control plane's log")
	logPath      = flag.String("cluster-log", "", "file for the control plane's log, kept after the run (default: a temp file, removed if the tests pass)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctx = klog.NewContext(ctx, klog.Background())
	var err error
	cluster, err = framework.Start(ctx, framework.Options{EtcdLogFile: logFile})
	if err != nil {
		fmt.Fprintf(os.Stderr, "Starting the control plane: %v (log: %s)\n", err, logFile)
		return 1
	}
	t := cluster.Timings
	fmt.Fprintf(os.Stderr, "Control plane up in %v (etcd %v, apiserver %v, scheduler %v, controller-manager %v); log: %s\n",
		t.Total.Round(time.Millisecond), t.Etcd.Round(time.Millisecond), t.APIServer.Round(time.Millisecond),
		t.Scheduler.Round(time.Millisecond), t.ControllerManager.Round(time.Millisecond), logFile)
	code = m.Run()
	stopped := time.Now()
	cluster.Stop()
	fmt.Fprintf(os.Stderr, "Control plane stopped in %v\n", time.Since(stopped).Round(time.Millisecond))
	return code
}
