// Package app wires the ipp subcommands: flags, signal handling and the long-running parts from
// pkg/. It holds no decisions of its own.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// Main runs the ipp command line with args and returns the process exit code.
func Main(args []string) int {
	root := NewRootCommand()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		// One line that names what was wrong; cobra already printed usage errors.
		var usage usageError
		if !errors.As(err, &usage) {
			fmt.Fprintln(os.Stderr, "ipp:", err)
		}
		return 1
	}
	return 0
}

// usageError marks errors that cobra has already printed.
type usageError struct{ error }

// NewRootCommand returns the ipp command with all its subcommands.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ipp",
		Short: "Instance-per-Pod: one cloud instance per isolation class of Pods",
		Long: `ipp gives every isolation class of Pods (label ipp-class=<class>) its own cloud instance,
so that a container breakout cannot reach Pods of another class.

  ipp webhook     serve the mutating and validating admission webhook
  ipp controller  create, bind and reap the dedicated instances
  ipp run         both in one process (the default deployment)
  ipp cleanup     delete every node and instance this cluster owns (uninstall)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(os.Stderr, "ipp %s: %v\n", c.Name(), err)
		return usageError{err}
	})
	root.AddCommand(
		newWebhookCommand(),
		newControllerCommand(),
		newRunCommand(),
		newCleanupCommand(),
	)
	return root
}

// addKlogFlags adds klog's flags (-v, --vmodule, ...) to cmd.
func addKlogFlags(cmd *cobra.Command) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	cmd.Flags().AddGoFlagSet(fs)
}

// signalContext returns a context that carries logger and is cancelled on SIGINT or SIGTERM. A
// second signal exits at once.
func signalContext(logger klog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		logger.Info("Shutting down", "signal", sig.String())
		cancel()
		<-ch
		os.Exit(1)
	}()
	return ctx, cancel
}
