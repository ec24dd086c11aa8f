package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

func init() { subcommands = append(subcommands, newRunCommand) }

func newRunCommand() *cobra.Command {
	iso := newIsolationOptions()
	wh := newWebhookOptions()
	co := newControllerOptions()
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the webhook and run the controller in one process (the default deployment)",
		Long: `ipp run serves the admission webhook and, in --mode=dedicated, runs the controller in the
same process. Every replica serves the webhook; only the replica holding the leader Lease
reconciles. In --mode=autoscaler only the webhook runs: Cluster Autoscaler creates the nodes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := iso.complete()
			if err != nil {
				return err
			}
			serverOpts, err := wh.complete()
			if err != nil {
				return err
			}
			if cfg.Mode == isolation.ModeDedicated {
				if err := co.validate(); err != nil {
					return err
				}
			}
			ctx, cancel := signalContext()
			defer cancel()
			return runAll(klog.NewContext(ctx, klog.Background()), cfg, serverOpts, co)
		},
	}
	iso.addFlags(cmd.Flags())
	wh.addFlags(cmd.Flags())
	co.addFlags(cmd.Flags())
	addKlogFlags(cmd)
	return cmd
}

// runAll serves the webhook and, in dedicated mode, runs the controller, until ctx ends or either
// fails; a failure of one stops the other.
func runAll(ctx context.Context, cfg isolation.Config, serverOpts webhook.ServerOptions, co *controllerOptions) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		logger := klog.FromContext(ctx).WithName("webhook")
		if err := runWebhook(klog.NewContext(ctx, logger), cfg, serverOpts); err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		return nil
	})
	if cfg.Mode == isolation.ModeDedicated {
		g.Go(func() error {
			logger := klog.FromContext(ctx).WithName("controller")
			if err := runController(klog.NewContext(ctx, logger), cfg, co); err != nil {
				return fmt.Errorf("controller: %w", err)
			}
			return nil
		})
	} else {
		klog.FromContext(ctx).Info("Controller not started: Cluster Autoscaler creates the nodes in this mode", "mode", cfg.Mode)
	}
	return g.Wait()
}
