package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/certs"
	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/webhook"
)

func newRunCommand() *cobra.Command {
	iso := newIsolationOptions()
	wh := newWebhookOptions()
	co := newControllerOptions()
	mo := metrics.NewOptions()
	tlsOpts := certs.NewOptions()
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
			wh.certsFromSecret = tlsOpts.Enabled()
			serverOpts, err := wh.complete()
			if err != nil {
				return err
			}
			if tlsOpts.Enabled() {
				if err := tlsOpts.Validate(); err != nil {
					return err
				}
			}
			if cfg.Mode == isolation.ModeDedicated {
				if err := co.validate(); err != nil {
					return err
				}
			}
			watches, err := wh.watches(cfg, &co.api)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(klog.Background())
			defer cancel()
			if _, err := mo.Start(ctx); err != nil {
				return err
			}
			var background []func(context.Context) error
			if tlsOpts.Enabled() {
				tlsManager, err := newTLSManager(co, *tlsOpts)
				if err != nil {
					return err
				}
				serverOpts.GetCertificate = tlsManager.GetCertificate
				background = append(background, func(ctx context.Context) error {
					logger := klog.FromContext(ctx).WithName("tls")
					if err := tlsManager.Run(klog.NewContext(ctx, logger)); err != nil {
						return fmt.Errorf("self-managed TLS: %w", err)
					}
					return nil
				})
			}
			return runAll(ctx, cfg, serverOpts, watches, co, background...)
		},
	}
	iso.addFlags(cmd.Flags())
	wh.addFlags(cmd.Flags())
	tlsOpts.AddFlags(cmd.Flags())
	mo.AddFlags(cmd.Flags())
	co.addFlags(cmd.Flags())
	addKlogFlags(cmd)
	return cmd
}

// newTLSManager returns the manager of self-managed TLS, with the controller's API connection
// settings (--kubeconfig, --kube-api-qps, --kube-api-burst).
func newTLSManager(co *controllerOptions, opts certs.Options) (*certs.Manager, error) {
	restCfg, err := co.restConfig()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(rest.AddUserAgent(restCfg, "ipp-tls")))
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return certs.NewManager(kube, opts)
}

// runAll serves the webhook (with its watches) and, in dedicated mode, runs the controller, until
// ctx ends or either fails; a failure of one stops the other. background are more functions to
// run beside them (self-managed TLS), under the same rule.
func runAll(ctx context.Context, cfg isolation.Config, serverOpts webhook.ServerOptions, watches webhookWatches, co *controllerOptions, background ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, run := range background {
		g.Go(func() error { return run(ctx) })
	}
	g.Go(func() error {
		logger := klog.FromContext(ctx).WithName("webhook")
		if err := runWebhook(klog.NewContext(ctx, logger), cfg, serverOpts, watches); err != nil {
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
