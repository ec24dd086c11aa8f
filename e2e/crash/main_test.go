// Package crash holds IPP's crash and failover end-to-end tests (issue 4 §4): the controller
// runs as separate `ipp controller` processes with leader election, against the real control
// plane, with the IPP webhook served by this process and the GCE and EC2 emulators booting
// instances into emulated kubelets. Processes are killed with SIGKILL, as a node failure or an OOM
// kill ends them, and the tests check that no dedicated node's instance is created twice or
// leaked and that every Pod ends up running on its class's node.
package crash

import (
	"fmt"
	"os"
	"testing"

	"github.com/ipp-project/ipp/e2e/faults/scenario"
	"github.com/ipp-project/ipp/e2e/framework"
)

var (
	// cluster is the control plane every test in this package shares.
	cluster *framework.ControlPlane
	// ippBin is the ipp command built from this checkout for the tests.
	ippBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ipp-crash-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// ipp is built while the control plane starts.
	return scenario.Main(m, &cluster, func() error {
		root, err := scenario.RepoRoot()
		if err != nil {
			return err
		}
		ippBin, err = scenario.BuildIPP(root, dir)
		return err
	})
}
