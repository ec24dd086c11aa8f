package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/ec2"
	"github.com/ipp-project/ipp/providers/gce"
)

// providerCommon is what every provider constructor gets besides its own flags.
type providerCommon struct {
	// ClusterName goes into the ownership tags.
	ClusterName string
	// Renderer renders the first-boot script; Join is how the node joins.
	Renderer *bootstrap.Renderer
	Join     bootstrap.Join
}

// providerFactory builds one kind of provider; each has a file of its own (provider_gce.go,
// provider_ec2.go).
type providerFactory struct {
	// addFlags adds the provider's own flags (--gce-*, --ec2-*).
	addFlags func(fs *pflag.FlagSet)
	// build builds the provider from its flags and the common inputs.
	build func(ctx context.Context, common providerCommon) (cloudprovider.Provider, error)
}

// newProviderFactories returns the factory of every provider, by its --provider value. Each call
// returns new factories with flags of their own, so two commands never share flag values.
func newProviderFactories() map[string]providerFactory {
	return map[string]providerFactory{
		gce.ProviderName: newGCEFactory(),
		ec2.ProviderName: newEC2Factory(),
	}
}

// providerNames returns the --provider values, sorted.
func providerNames() []string {
	factories := newProviderFactories()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// providerOptions are the flags that choose and configure the cloud provider.
type providerOptions struct {
	provider          string
	bootstrapTemplate string
	join              bootstrap.Join
	joinTokenFile     string
	// factories are the providers' own flags and constructors; nil until first used.
	factories map[string]providerFactory
}

// factoriesOf returns o's provider factories, making them on first use.
func (o *providerOptions) factoriesOf() map[string]providerFactory {
	if o.factories == nil {
		o.factories = newProviderFactories()
	}
	return o.factories
}

func (o *providerOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.provider, "provider", o.provider, "Cloud that creates the dedicated instances: "+strings.Join(providerNames(), " or ")+".")
	fs.StringVar(&o.bootstrapTemplate, "bootstrap-template", "", "Go text/template file for the instances' first-boot script (GCE startup-script, EC2 user data). Empty uses the built-in kubeadm-style join. It must make the kubelet register under the dedicated node name with the IPP node label and taints; see docs/operations.md.")
	fs.StringVar(&o.join.APIServerEndpoint, "join-endpoint", "", "host:port of the API server that new nodes join (kubeadm join). Empty leaves joining to the image.")
	fs.StringVar(&o.join.Token, "join-token", "", "Shared bootstrap token (<id>.<secret>) rendered into every instance's bootstrap: an insecure opt-out, since root on any IPP node can then get a certificate for any node name (see docs/operations.md). Without it (and --join-token-file) and with --join-endpoint, IPP mints a single-use token per instance and approves its kubelet CSR for that node only.")
	fs.StringVar(&o.joinTokenFile, "join-token-file", "", "File holding the shared bootstrap token, such as a mounted Secret key; the same insecure opt-out as --join-token.")
	fs.StringVar(&o.join.CACertHash, "join-ca-cert-hash", "", "sha256:<64 hex> of the cluster CA's public key, which new nodes pin when they join (kubeadm join --discovery-token-ca-cert-hash; `kubeadm token create --print-join-command` prints it). Required with --join-endpoint unless --join-insecure-skip-ca-verification.")
	fs.BoolVar(&o.join.InsecureSkipCAVerification, "join-insecure-skip-ca-verification", false, "Let new nodes join through --join-endpoint without checking the API server's CA (kubeadm's --discovery-token-unsafe-skip-ca-verification): anyone who can answer at that address gets the node's token and can hand the node a cluster of its own. An insecure opt-out, logged as a WARNING at start; use --join-ca-cert-hash instead.")
	for _, name := range providerNames() {
		o.factoriesOf()[name].addFlags(fs)
	}
}

// perInstanceTokens reports whether the controller mints a join token per instance: nodes join
// through the API server (--join-endpoint) and no shared token was given.
func (o *providerOptions) perInstanceTokens() bool {
	return o.join.APIServerEndpoint != "" && o.join.Token == "" && o.joinTokenFile == ""
}

// validate checks the flags that need no file or cloud access.
func (o *providerOptions) validate() error {
	if _, ok := o.factoriesOf()[o.provider]; !ok {
		return fmt.Errorf("invalid --provider %q: must be one of %s", o.provider, strings.Join(providerNames(), ", "))
	}
	return o.validateJoin()
}

// validateJoin refuses a join through --join-endpoint that does not pin the cluster CA, unless
// the operator opted out explicitly: an empty --join-ca-cert-hash must never mean "skip the check".
func (o *providerOptions) validateJoin() error {
	j := o.join
	if j.CACertHash != "" {
		if err := bootstrap.ValidateCACertHash(j.CACertHash); err != nil {
			return fmt.Errorf("invalid --join-ca-cert-hash: %w", err)
		}
	}
	switch {
	case j.APIServerEndpoint == "" && j.InsecureSkipCAVerification:
		return errors.New("--join-insecure-skip-ca-verification without --join-endpoint: there is no join to skip the check of")
	case j.APIServerEndpoint == "":
		return nil
	case j.CACertHash != "" && j.InsecureSkipCAVerification:
		return errors.New("both --join-ca-cert-hash and --join-insecure-skip-ca-verification: give only the pin")
	case j.CACertHash == "" && !j.InsecureSkipCAVerification:
		return fmt.Errorf("--join-endpoint %s without --join-ca-cert-hash: new nodes could not tell the cluster's API server from an impostor at that address; "+
			"pass the CA's pin (sha256:<64 hex>, as `kubeadm token create --print-join-command` prints it), or, knowingly, --join-insecure-skip-ca-verification", j.APIServerEndpoint)
	}
	return nil
}

// warn logs what the flags leave insecure, once, when a command that builds a provider starts.
func (o *providerOptions) warn(logger klog.Logger) {
	if o.join.APIServerEndpoint != "" && o.join.InsecureSkipCAVerification {
		logger.Info("WARNING: new nodes join without checking the API server's CA (--join-insecure-skip-ca-verification); whoever answers at the join endpoint gets their bootstrap token and can give them a cluster of its own. Pass --join-ca-cert-hash instead",
			"joinEndpoint", o.join.APIServerEndpoint)
	}
}

// flagError says which flags to set when err, from a provider's constructor, is a
// cloudprovider.ConfigError about Config fields that flags (field name to flag name, without the
// dashes) map; it returns any other error as it is.
func flagError(provider string, flags map[string]string, err error) error {
	var ce *cloudprovider.ConfigError
	if !errors.As(err, &ce) || len(ce.Fields) == 0 {
		return err
	}
	names := make([]string, 0, len(ce.Fields))
	for _, f := range ce.Fields {
		flag, ok := flags[f]
		if !ok {
			return err
		}
		names = append(names, "--"+flag)
	}
	if ce.Missing {
		return fmt.Errorf("%s is required with --provider=%s", strings.Join(names, " or "), provider)
	}
	return fmt.Errorf("invalid %s: %w", strings.Join(names, " or "), ce.Err)
}

// closeProvider releases what p holds, such as the GCE client's connections, when p is an
// io.Closer; a failure is logged, as there is nothing else to do with it on the way out.
func closeProvider(logger klog.Logger, p cloudprovider.Provider) {
	c, ok := p.(io.Closer)
	if !ok {
		return
	}
	if err := c.Close(); err != nil {
		logger.Error(err, "Closing the cloud provider", "provider", p.Name())
	}
}

// build returns the provider the flags choose. The caller calls closeProvider when done with it.
func (o *providerOptions) build(ctx context.Context, clusterName string) (cloudprovider.Provider, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.warn(klog.FromContext(ctx))
	f := o.factoriesOf()[o.provider]
	r, err := bootstrap.NewRendererFromFile(o.bootstrapTemplate)
	if err != nil {
		return nil, fmt.Errorf("invalid --bootstrap-template: %w", err)
	}
	join := o.join
	if o.joinTokenFile != "" {
		b, err := os.ReadFile(o.joinTokenFile)
		if err != nil {
			return nil, fmt.Errorf("invalid --join-token-file: %w", err)
		}
		join.Token = strings.TrimSpace(string(b))
	}
	return f.build(ctx, providerCommon{ClusterName: clusterName, Renderer: r, Join: join})
}
