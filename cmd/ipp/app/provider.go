package app

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// providerCommon is what every provider constructor gets besides its own flags.
type providerCommon struct {
	// ClusterName goes into the ownership tags.
	ClusterName string
	// Renderer renders the first-boot script; Join is how the node joins.
	Renderer *bootstrap.Renderer
	Join     bootstrap.Join
}

// providerFactory builds one kind of provider. Each provider registers its factory from a file
// of its own (provider_gce.go, provider_ec2.go) in an init function.
type providerFactory struct {
	// addFlags adds the provider's own flags (--gce-*, --ec2-*).
	addFlags func(fs *pflag.FlagSet)
	// build builds the provider from its flags and the common inputs.
	build func(ctx context.Context, common providerCommon) (cloudprovider.Provider, error)
}

var providerFactories = map[string]providerFactory{}

func providerNames() []string {
	names := make([]string, 0, len(providerFactories))
	for n := range providerFactories {
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
}

func (o *providerOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.provider, "provider", o.provider, "Cloud that creates the dedicated instances: "+strings.Join(providerNames(), " or ")+".")
	fs.StringVar(&o.bootstrapTemplate, "bootstrap-template", "", "Go text/template file for the instances' first-boot script (GCE startup-script, EC2 user data). Empty uses the built-in kubeadm-style join. It must make the kubelet register under the dedicated node name with the IPP node label and taints; see docs/operations.md.")
	fs.StringVar(&o.join.APIServerEndpoint, "join-endpoint", "", "host:port of the API server that new nodes join (kubeadm join). Empty leaves joining to the image.")
	fs.StringVar(&o.join.Token, "join-token", "", "Shared bootstrap token (<id>.<secret>) rendered into every instance's bootstrap: an insecure opt-out, since root on any IPP node can then get a certificate for any node name (see docs/operations.md). Without it (and --join-token-file) and with --join-endpoint, IPP mints a single-use token per instance and approves its kubelet CSR for that node only.")
	fs.StringVar(&o.joinTokenFile, "join-token-file", "", "File holding the shared bootstrap token, such as a mounted Secret key; the same insecure opt-out as --join-token.")
	fs.StringVar(&o.join.CACertHash, "join-ca-cert-hash", "", "sha256:<hex> of the cluster CA public key, for kubeadm join's discovery.")
	for _, name := range providerNames() {
		providerFactories[name].addFlags(fs)
	}
}

// perInstanceTokens reports whether the controller mints a join token per instance: nodes join
// through the API server (--join-endpoint) and no shared token was given.
func (o *providerOptions) perInstanceTokens() bool {
	return o.join.APIServerEndpoint != "" && o.join.Token == "" && o.joinTokenFile == ""
}

// validate checks the flags that need no file or cloud access.
func (o *providerOptions) validate() error {
	if _, ok := providerFactories[o.provider]; !ok {
		return fmt.Errorf("invalid --provider %q: must be one of %s", o.provider, strings.Join(providerNames(), ", "))
	}
	return nil
}

// build returns the provider the flags choose.
func (o *providerOptions) build(ctx context.Context, clusterName string) (cloudprovider.Provider, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	f := providerFactories[o.provider]
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
