package app

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/controller"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/nodeclass"
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
	// watchNodeClasses turns on, in dedicated mode, the check of an IPP Pod's NodeClass against
	// a watch of the NodeClasses and the namespaces' labels.
	watchNodeClasses bool
}

func newWebhookOptions() *webhookOptions {
	return &webhookOptions{listenAddress: ":8443", watchIPPNodes: true, watchNodeClasses: true}
}

func (o *webhookOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.listenAddress, "listen-address", o.listenAddress, "host:port the admission webhook serves HTTPS on (/mutate, /validate, /healthz, /readyz).")
	fs.StringVar(&o.certFile, "tls-cert-file", o.certFile, "PEM file of the webhook's serving certificate (with any intermediates). Re-read when it changes, such as a rotated Secret.")
	fs.StringVar(&o.keyFile, "tls-private-key-file", o.keyFile, "PEM file of the private key of --tls-cert-file. Re-read when it changes.")
	fs.BoolVar(&o.watchIPPNodes, "watch-ipp-nodes", o.watchIPPNodes, "Watch the names of the IPP nodes (label --node-label=true; needs list and watch on nodes) so that /validate denies a Pod without a class that names one in spec.nodeName. Until the first list is loaded such Pods are denied with a message to retry, and /readyz answers 503. false turns the check off: the NoExecute taint is then all that keeps such a Pod off an IPP node.")
	fs.BoolVar(&o.watchNodeClasses, "watch-node-classes", o.watchNodeClasses, "In --mode=dedicated, watch the NodeClasses (nodeclasses.ipp.io; its CRD must be installed) and the namespaces' labels (needs get, list and watch on both) so that /validate denies an IPP Pod whose NodeClass (label "+isolation.NodeClassLabel+", absent meaning \""+isolation.DefaultNodeClass+"\") does not exist or may not be used in its namespace (the NodeClass's namespaceSelector). Until both are loaded IPP Pods are denied with a message to retry, and /readyz answers 503. false turns the check off. Ignored in --mode=autoscaler, where NodeClasses do not apply.")
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
read nothing but the request, except what the webhook watches (with --kubeconfig or the in-cluster
service account): the names of the IPP nodes (--watch-ipp-nodes), to deny a Pod without a class
that names one in spec.nodeName, and in dedicated mode the NodeClasses and the namespaces' labels
(--watch-node-classes), to deny an IPP Pod whose NodeClass does not exist or may not be used in its
namespace. See docs/webhook.md.`,
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
			watches, err := wh.watches(cfg, &api)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(klog.Background())
			defer cancel()
			if _, err := mo.Start(ctx); err != nil {
				return err
			}
			return runWebhook(ctx, cfg, opts, watches)
		},
	}
	iso.addFlags(cmd.Flags())
	wh.addFlags(cmd.Flags())
	api.addFlags(cmd.Flags())
	mo.AddFlags(cmd.Flags())
	addKlogFlags(cmd)
	return cmd
}

// webhookWatches are the informers the webhook decides with; each is nil when its check is off.
type webhookWatches struct {
	// nodes are the IPP nodes that spec.nodeName is checked against (--watch-ipp-nodes).
	nodes *nodeset.Set
	// classes are the NodeClasses and namespace labels that an IPP Pod's NodeClass is checked
	// against (--watch-node-classes, dedicated mode only).
	classes *nodeclass.Cache
}

// watches returns the informers of the webhook's checks, watched through the API server that api
// names; none when every check is off.
func (o *webhookOptions) watches(cfg isolation.Config, api *apiOptions) (webhookWatches, error) {
	var w webhookWatches
	classes := o.watchNodeClasses && cfg.Mode == isolation.ModeDedicated
	if !o.watchIPPNodes && !classes {
		return w, nil
	}
	if err := api.validate(); err != nil {
		return w, err
	}
	what := "watching IPP nodes (--watch-ipp-nodes)"
	if !o.watchIPPNodes {
		what = "watching NodeClasses (--watch-node-classes)"
	}
	restCfg, err := api.restConfig("ipp-webhook")
	if err != nil {
		return w, fmt.Errorf("%s: %w", what, err)
	}
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(restCfg))
	if err != nil {
		return w, fmt.Errorf("%s: creating the Kubernetes client: %w", what, err)
	}
	if o.watchIPPNodes {
		if w.nodes, err = nodeset.New(kube, cfg.NodeLabel, isolation.LabelValue); err != nil {
			return w, err
		}
	}
	if classes {
		ipp, err := ippclient.NewForConfig(restCfg)
		if err != nil {
			return w, fmt.Errorf("watching NodeClasses (--watch-node-classes): creating the NodeClass client: %w", err)
		}
		if w.classes, err = nodeclass.NewCache(kube, ipp); err != nil {
			return w, err
		}
	}
	return w, nil
}

// runWebhook serves the webhook until ctx is cancelled. The watches that are not nil are run
// beside it and checked by /validate.
func runWebhook(ctx context.Context, cfg isolation.Config, opts webhook.ServerOptions, w webhookWatches) error {
	logger := klog.FromContext(ctx)
	logger.Info("Starting the IPP webhook", "mode", cfg.Mode, "classScope", cfg.ClassScope,
		"clusterName", cfg.ClusterName, "pinNodeName", cfg.PinNodeName, "exemptNamespaces", sets.List(cfg.ExemptNamespaces),
		"watchIPPNodes", w.nodes != nil, "watchNodeClasses", w.classes != nil)
	if w.nodes == nil {
		logger.Info("WARNING: --watch-ipp-nodes=false: a Pod without a class that names an IPP node in spec.nodeName is not denied; only the IPP taint's NoExecute effect keeps it off the node")
	}
	switch {
	case cfg.Mode != isolation.ModeDedicated:
		logger.Info("NodeClasses do not apply in this mode: the label is ignored", "mode", cfg.Mode, "label", isolation.NodeClassLabel)
	case w.classes == nil:
		logger.Info("WARNING: --watch-node-classes=false: an IPP Pod is not denied for a NodeClass that does not exist or that its namespace may not use")
	}
	ctx, cancel := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() {
		cancel()
		running.Wait()
	}()
	if w.nodes != nil {
		opts.Nodes = w.nodes
		running.Go(func() { w.nodes.Run(klog.NewContext(ctx, logger.WithName("nodes"))) })
	}
	if w.classes != nil {
		opts.NodeClasses = w.classes
		running.Go(func() { w.classes.Run(klog.NewContext(ctx, logger.WithName("nodeclasses"))) })
	}
	return webhook.Serve(ctx, cfg, opts)
}
