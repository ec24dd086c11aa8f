package app

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/nodeset"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// webhookOptions are the flags of the webhook's HTTPS server. `ipp webhook` and `ipp run` share
// them.
type webhookOptions struct {
	listenAddress string
	certFile      string
	keyFile       string
	// certsFromSecret is set by `ipp run --tls-secret`: the certificate comes from the Secret that
	// pkg/certs manages, not from files.
	certsFromSecret bool
	// watchIPPNodes turns on the check of spec.nodeName against a watch of the IPP nodes.
	watchIPPNodes bool
}

func newWebhookOptions() *webhookOptions {
	return &webhookOptions{listenAddress: ":8443", watchIPPNodes: true}
}

func (o *webhookOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.listenAddress, "listen-address", o.listenAddress, "host:port the admission webhook serves HTTPS on (/mutate, /validate, /healthz, /readyz).")
	fs.StringVar(&o.certFile, "tls-cert-file", o.certFile, "PEM file of the webhook's serving certificate (with any intermediates). Re-read when it changes, such as a rotated Secret.")
	fs.StringVar(&o.keyFile, "tls-private-key-file", o.keyFile, "PEM file of the private key of --tls-cert-file. Re-read when it changes.")
	fs.BoolVar(&o.watchIPPNodes, "watch-ipp-nodes", o.watchIPPNodes, "Watch the names of the IPP nodes (label --node-label=true; needs list and watch on nodes) so that /validate denies a Pod without a class that names one in spec.nodeName. Until the first list is loaded such Pods are denied with a message to retry, and /readyz answers 503. false turns the check off: the NoExecute taint is then all that keeps such a Pod off an IPP node.")
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
	api := newAPIOptions()
	mo := metrics.NewOptions()
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Serve the mutating and validating admission webhook",
		Long: `Serve IPP's admission webhook over HTTPS.

POST /mutate gives every Pod with the class label (--pod-label) the tolerations and the pin of its
isolation class; POST /validate refuses Pods whose final form would break isolation. The decisions
read nothing but the request, except the names of the IPP nodes, which the webhook watches
(--watch-ipp-nodes, with --kubeconfig or the in-cluster service account) to deny a Pod without a
class that names one in spec.nodeName. See docs/webhook.md.`,
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
			nodes, err := wh.nodeSet(cfg, &api)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(klog.Background())
			defer cancel()
			if _, err := mo.Start(ctx); err != nil {
				return err
			}
			return runWebhook(ctx, cfg, opts, nodes)
		},
	}
	iso.addFlags(cmd.Flags())
	wh.addFlags(cmd.Flags())
	api.addFlags(cmd.Flags())
	mo.AddFlags(cmd.Flags())
	addKlogFlags(cmd)
	return cmd
}

// nodeSet returns the set of IPP nodes that /validate checks spec.nodeName against, watched
// through the API server that api names; nil when --watch-ipp-nodes=false.
func (o *webhookOptions) nodeSet(cfg isolation.Config, api *apiOptions) (*nodeset.Set, error) {
	if !o.watchIPPNodes {
		return nil, nil
	}
	if err := api.validate(); err != nil {
		return nil, err
	}
	restCfg, err := api.restConfig("ipp-webhook")
	if err != nil {
		return nil, fmt.Errorf("watching IPP nodes (--watch-ipp-nodes): %w", err)
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("watching IPP nodes (--watch-ipp-nodes): creating the Kubernetes client: %w", err)
	}
	return nodeset.New(kube, cfg.NodeLabel, isolation.LabelValue)
}

// runWebhook serves the webhook until ctx is cancelled. nodes, when not nil, is run beside it and
// checked by /validate.
func runWebhook(ctx context.Context, cfg isolation.Config, opts webhook.ServerOptions, nodes *nodeset.Set) error {
	logger := klog.FromContext(ctx)
	logger.Info("Starting the IPP webhook", "mode", cfg.Mode, "classScope", cfg.ClassScope,
		"clusterName", cfg.ClusterName, "pinNodeName", cfg.PinNodeName, "exemptNamespaces", sets.List(cfg.ExemptNamespaces),
		"watchIPPNodes", nodes != nil)
	if nodes == nil {
		logger.Info("WARNING: --watch-ipp-nodes=false: a Pod without a class that names an IPP node in spec.nodeName is not denied; only the IPP taint's NoExecute effect keeps it off the node")
		return webhook.Serve(ctx, cfg, opts)
	}
	opts.Nodes = nodes
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nodes.Run(klog.NewContext(ctx, logger.WithName("nodes")))
	}()
	defer func() {
		cancel()
		<-done
	}()
	return webhook.Serve(ctx, cfg, opts)
}
