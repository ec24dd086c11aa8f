package app

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/webhook"
)

func init() { subcommands = append(subcommands, newWebhookCommand) }

// webhookOptions are the flags of the webhook's HTTPS server. `ipp webhook` and `ipp run` share
// them.
type webhookOptions struct {
	listenAddress string
	certFile      string
	keyFile       string
	// certsFromSecret is set by `ipp run --tls-secret`: the certificate comes from the Secret that
	// pkg/certs manages, not from files.
	certsFromSecret bool
}

func newWebhookOptions() *webhookOptions {
	return &webhookOptions{listenAddress: ":8443"}
}

func (o *webhookOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.listenAddress, "listen-address", o.listenAddress, "host:port the admission webhook serves HTTPS on (/mutate, /validate, /healthz, /readyz).")
	fs.StringVar(&o.certFile, "tls-cert-file", o.certFile, "PEM file of the webhook's serving certificate (with any intermediates). Re-read when it changes, such as a rotated Secret.")
	fs.StringVar(&o.keyFile, "tls-private-key-file", o.keyFile, "PEM file of the private key of --tls-cert-file. Re-read when it changes.")
}

// validate reports the first flag whose value cannot work, in one line that names it.
func (o *webhookOptions) validate() error {
	_, port, err := net.SplitHostPort(o.listenAddress)
	if err == nil {
		var n int
		if n, err = strconv.Atoi(port); err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil {
		return fmt.Errorf("invalid --listen-address %q: must be host:port with a port number, such as :8443", o.listenAddress)
	}
	if o.certsFromSecret {
		if o.certFile != "" || o.keyFile != "" {
			return fmt.Errorf("invalid --tls-cert-file/--tls-private-key-file with --tls-secret: the webhook serves either its own certificate from the Secret or the files, not both")
		}
		return nil
	}
	if o.certFile == "" {
		return fmt.Errorf("missing --tls-cert-file: the webhook serves HTTPS only and needs a certificate file (or, with ipp run, --tls-secret for a certificate ipp manages itself)")
	}
	if o.keyFile == "" {
		return fmt.Errorf("missing --tls-private-key-file: the webhook serves HTTPS only and needs the certificate's key file")
	}
	return nil
}

// complete validates the flags and returns the server options they describe.
func (o *webhookOptions) complete() (webhook.ServerOptions, error) {
	if err := o.validate(); err != nil {
		return webhook.ServerOptions{}, err
	}
	return webhook.ServerOptions{ListenAddress: o.listenAddress, CertFile: o.certFile, KeyFile: o.keyFile, Observer: observeAdmission}, nil
}

func newWebhookCommand() *cobra.Command {
	iso := newIsolationOptions()
	wh := newWebhookOptions()
	mo := metrics.NewOptions()
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Serve the mutating and validating admission webhook",
		Long: `Serve IPP's admission webhook over HTTPS.

POST /mutate gives every Pod with the class label (--pod-label) the tolerations and the pin of its
isolation class; POST /validate refuses Pods whose final form would break isolation. The decisions
need no Kubernetes API access, so no kubeconfig is needed. See docs/webhook.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := iso.complete()
			if err != nil {
				return err
			}
			opts, err := wh.complete()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			ctx = klog.NewContext(ctx, klog.Background())
			if _, err := mo.Start(ctx); err != nil {
				return err
			}
			return runWebhook(ctx, cfg, opts)
		},
	}
	iso.addFlags(cmd.Flags())
	wh.addFlags(cmd.Flags())
	mo.AddFlags(cmd.Flags())
	addKlogFlags(cmd)
	return cmd
}

// runWebhook serves the webhook until ctx is cancelled.
func runWebhook(ctx context.Context, cfg isolation.Config, opts webhook.ServerOptions) error {
	klog.FromContext(ctx).Info("Starting the IPP webhook", "mode", cfg.Mode, "classScope", cfg.ClassScope,
		"clusterName", cfg.ClusterName, "pinNodeName", cfg.PinNodeName, "exemptNamespaces", sets.List(cfg.ExemptNamespaces))
	return webhook.Serve(ctx, cfg, opts)
}
