// Package faults holds IPP's fault end-to-end tests (issue 4 §3): the real control plane, the
// IPP webhook, the controller in this process with the real GCE and EC2 providers pointed at the
// emulators, and emulated kubelets; the emulators inject 5xx errors, throttling, capacity errors,
// lost replies and instances that never register. Every test runs once per cloud.
package faults

import (
	"os"
	"testing"

	"github.com/ipp-project/ipp/e2e/faults/scenario"
	"github.com/ipp-project/ipp/e2e/framework"
)

// cluster is the control plane every test in this package shares; each test works in a Tenant
// of its own, so tests run in parallel.
var cluster *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(scenario.Main(m, &cluster, nil))
}
