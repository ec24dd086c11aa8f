// Package tests holds IPP's end-to-end tests. They share one control plane per test binary,
// started in TestMain; each test works in namespaces and nodes of its own, so tests can run in
// parallel.
//
// The tests that go through the controller and a cloud run once per provider chosen by the
// -provider flag: gce (the Compute emulator), ec2 (the EC2 emulator), or all, the default, which
// runs gce then ec2 with the same test code. The flag's default can also be set with
// IPP_E2E_PROVIDER. Tests of one provider alone (its provider and emulator without the
// controller) are skipped when their provider is not chosen. To run one provider:
//
//	cd e2e && go test ./tests -args -provider=ec2
//	cd e2e && go test ./tests -run 'TestDedicated/ec2/' -v
package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/framework"
)

// cluster is the control plane every test in this package uses.
var cluster *framework.ControlPlane

// providers are the providers chosen by -provider, in the order their tests run.
var providers []string

var (
	providerList = flag.String("provider", envOr("IPP_E2E_PROVIDER", "all"),
		"providers to run the tests that go through a cloud on: gce, ec2, gce,ec2 or all (default from $IPP_E2E_PROVIDER, else all)")
	logVerbosity = flag.Int("cluster-v", 2, "klog verbosity of the control plane's log")
	logPath      = flag.String("cluster-log", "", "file for the control plane's log, kept after the run (default: a temp file, removed if the tests pass)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if providers, err = framework.ParseProviders(*providerList); err != nil {
		fmt.Fprintf(os.Stderr, "-provider: %v\n", err)
		os.Exit(2)
	}
	os.Exit(run(m))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// forEachProvider runs f as a subtest named after each chosen provider, one after the other: two
// IPPs must not run on the control plane at once.
func forEachProvider(t *testing.T, f func(t *testing.T, provider string)) {
	t.Helper()
	for _, p := range providers {
		t.Run(p, func(t *testing.T) { f(t, p) })
	}
}

// requireProvider skips a test of one provider alone unless -provider chose it.
func requireProvider(t *testing.T, provider string) {
	t.Helper()
	if !slices.Contains(providers, provider) {
		t.Skipf("Provider %s not chosen (-provider=%s)", provider, *providerList)
	}
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
