package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/gce"
)

// gceOptions are the --gce-* flags.
type gceOptions struct {
	project             string
	zone                string
	machineType         string
	instanceTemplate    string
	image               string
	network             string
	subnetwork          string
	endpoint            string
	registrationTimeout time.Duration
}

// closeProvider closes the GCE provider's SDK client on shutdown; this keeps it an io.Closer.
var _ io.Closer = (*gce.Provider)(nil)

// newGCEFactory returns the factory of the gce provider, with its own flags.
func newGCEFactory() providerFactory {
	o := &gceOptions{}
	return providerFactory{addFlags: o.addFlags, build: o.build}
}

func (o *gceOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.project, "gce-project", "", "GCE project that the dedicated instances are created in. Required with --provider=gce.")
	fs.StringVar(&o.zone, "gce-zone", "", "GCE zone that the dedicated instances are created in, such as us-central1-a. Required with --provider=gce.")
	fs.StringVar(&o.machineType, "gce-machine-type", "", "Machine type of the dedicated instances. Empty means the instance template's, or "+gce.DefaultMachineType+" without a template.")
	fs.StringVar(&o.instanceTemplate, "gce-instance-template", "", "Source instance template, such as projects/<p>/global/instanceTemplates/<t> or projects/<p>/regions/<r>/instanceTemplates/<t> (one made from a node pool, say). IPP overrides its name, labels and metadata. Either this or --gce-image is required.")
	fs.StringVar(&o.image, "gce-image", "", "Boot image of the dedicated instances when there is no template, such as projects/<p>/global/images/family/<family>. It must have a kubelet and kubeadm.")
	fs.StringVar(&o.network, "gce-network", "", "Network of the dedicated instances when there is no template. Empty means "+gce.DefaultNetwork+" unless --gce-subnetwork is set.")
	fs.StringVar(&o.subnetwork, "gce-subnetwork", "", "Subnetwork of the dedicated instances when there is no template, such as regions/<r>/subnetworks/<s>.")
	fs.StringVar(&o.endpoint, "gce-endpoint", "", "Compute API endpoint, for local emulators, such as http://127.0.0.1:8080. An http:// endpoint is called without credentials. Empty means the real API, with Application Default Credentials.")
	fs.DurationVar(&o.registrationTimeout, "gce-registration-timeout", gce.DefaultRegistrationTimeout, "How long a new GCE instance may take to register its Node before it is replaced.")
}

// gceFlags names the flag of each gce.Config field that gce.New may refuse.
var gceFlags = map[string]string{
	"Project":          "gce-project",
	"Zone":             "gce-zone",
	"InstanceTemplate": "gce-instance-template",
	"Image":            "gce-image",
}

func (o *gceOptions) build(ctx context.Context, common providerCommon) (cloudprovider.Provider, error) {
	// gce.Config takes a zero timeout for the default; the flag has the default already, so an
	// explicit zero is a mistake. gce.New checks the rest.
	if o.registrationTimeout <= 0 {
		return nil, fmt.Errorf("invalid --gce-registration-timeout %v: must be positive", o.registrationTimeout)
	}
	p, err := gce.New(ctx, gce.Config{
		ClusterName:         common.ClusterName,
		Project:             o.project,
		Zone:                o.zone,
		MachineType:         o.machineType,
		InstanceTemplate:    o.instanceTemplate,
		Image:               o.image,
		Network:             o.network,
		Subnetwork:          o.subnetwork,
		Endpoint:            o.endpoint,
		Renderer:            common.Renderer,
		Join:                common.Join,
		RegistrationTimeout: o.registrationTimeout,
	})
	if err != nil {
		if ferr := flagError(gce.ProviderName, gceFlags, err); ferr != err {
			return nil, ferr
		}
		return nil, fmt.Errorf("building the gce provider: %w", err)
	}
	return p, nil
}
