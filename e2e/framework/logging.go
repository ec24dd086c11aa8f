package framework

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"k8s.io/klog/v2"
)

// LogToFile sends all klog output of the process (every component of the control plane logs
// through klog) to the file at path, appending, at the given verbosity; nothing goes to stderr.
// The control plane is chatty: tests and the sandbox keep their own output readable this way.
func LogToFile(path string, verbosity int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for name, value := range map[string]string{
		"logtostderr":     "false",
		"alsologtostderr": "false",
		"stderrthreshold": "FATAL",
		"v":               strconv.Itoa(verbosity),
	} {
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("setting klog flag %s: %w", name, err)
		}
	}
	klog.SetOutput(f)
	return nil
}
