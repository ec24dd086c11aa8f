// Package gce implements cloudprovider.Provider on Google Compute Engine, with the compute SDK's
// REST client (cloud.google.com/go/compute/apiv1).
//
// Each dedicated node is one instance in one zone, named after the node. Ownership is recorded as
// GCE labels (cloudprovider.TagCluster, TagNode, TagClass, TagNamespace, with values encoded to
// GCE's label character set) and, exactly, as metadata items; the node's bootstrap is the
// instance's startup-script metadata.
package gce

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

const (
	// ProviderName is the provider's --provider value.
	ProviderName = "gce"
	// DefaultMachineType is the machine type of instances made without an instance template,
	// when Config.MachineType is empty.
	DefaultMachineType = "n2-standard-2"
	// DefaultRegistrationTimeout is how long an instance may take from creation to its Node
	// registering. A GCE VM boots in well under a minute; the rest is the image pulling and
	// starting the kubelet, and kubeadm join.
	DefaultRegistrationTimeout = 15 * time.Minute
	// DefaultNetwork is the network of instances made without an instance template, when neither
	// Config.Network nor Config.Subnetwork is set.
	DefaultNetwork = "global/networks/default"

	// MetadataStartupScript is the metadata key that holds the rendered bootstrap. The guest
	// environment of GCE images runs it at every boot.
	MetadataStartupScript = "startup-script"
	// MetadataClass and MetadataNamespace hold the exact class and namespace; the labels hold them
	// encoded.
	MetadataClass     = cloudprovider.TagClass
	MetadataNamespace = cloudprovider.TagNamespace
)

// requestIDSpace is the UUID namespace of the requestIds derived from idempotency keys.
var requestIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ipp-project/ipp/providers/gce"))

// Config configures the GCE provider.
type Config struct {
	// ClusterName goes into the ipp-cluster label; List finds instances by it.
	ClusterName string
	// Project and Zone are where instances are created.
	Project string
	Zone    string
	// MachineType is the machine type name, such as n2-standard-2. Empty means the instance
	// template's, or DefaultMachineType without a template.
	MachineType string
	// InstanceTemplate is a source instance template, such as
	// projects/p/global/instanceTemplates/t or projects/p/regions/r/instanceTemplates/t (one made
	// from a GKE node pool, say). The fields the provider sets (name, labels, metadata, and the
	// machine type if MachineType is set) override the template's.
	InstanceTemplate string
	// Image is the boot disk's source image, such as
	// projects/my-project/global/images/family/k8s-node. Required without InstanceTemplate;
	// ignored with one.
	Image string
	// Network and Subnetwork place the instance's one network interface when there is no
	// template. Empty Network and Subnetwork mean DefaultNetwork.
	Network    string
	Subnetwork string
	// Endpoint overrides the Compute API endpoint, for local emulators, such as
	// http://127.0.0.1:8080. An http:// endpoint is called without credentials.
	Endpoint string
	// ClientOptions are added to the SDK client's options, after those the fields above make.
	ClientOptions []option.ClientOption
	// Renderer renders the startup script; nil selects the default kubeadm-style script.
	Renderer *bootstrap.Renderer
	// Join says how the node joins the cluster; it goes into the startup script.
	Join bootstrap.Join
	// RegistrationTimeout is what RegistrationTimeout returns; zero means
	// DefaultRegistrationTimeout.
	RegistrationTimeout time.Duration
}

// Provider creates, deletes and lists the GCE instances of dedicated nodes. It is safe for
// concurrent use.
type Provider struct {
	cfg          Config
	client       computeClient
	clusterLabel string

	mu sync.Mutex
	// failed counts, per idempotency key, creations whose operation ended with an error. GCE
	// answers a repeated requestId with the original operation, failed or not, for a while; a
	// creation that definitely failed (and so created nothing) is retried under a new requestId.
	// Losing this count in a restart costs one replay of the failed operation, never a duplicate.
	failed map[string]int
}

var _ cloudprovider.Provider = &Provider{}

// New validates cfg and returns a provider with an SDK client. Credentials come from Application
// Default Credentials unless cfg.Endpoint is an http:// emulator.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	cfg, err := complete(cfg)
	if err != nil {
		return nil, err
	}
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
		if strings.HasPrefix(cfg.Endpoint, "http://") {
			opts = append(opts, option.WithoutAuthentication())
		}
	}
	opts = append(opts, cfg.ClientOptions...)
	c, err := newSDKClient(ctx, cfg.Project, cfg.Zone, opts...)
	if err != nil {
		return nil, err
	}
	return newProvider(cfg, c), nil
}

// missing is a ConfigError for a required setting, one of fields.
func missing(msg string, fields ...string) error {
	return &cloudprovider.ConfigError{Fields: fields, Missing: true, Err: errors.New(msg)}
}

// complete checks cfg and fills in defaults.
func complete(cfg Config) (Config, error) {
	switch {
	case cfg.ClusterName == "":
		return cfg, missing("gce: no cluster name", "ClusterName")
	case cfg.Project == "":
		return cfg, missing("gce: no project", "Project")
	case cfg.Zone == "":
		return cfg, missing("gce: no zone", "Zone")
	case cfg.InstanceTemplate == "" && cfg.Image == "":
		return cfg, missing("gce: neither an instance template nor an image", "InstanceTemplate", "Image")
	}
	if cfg.InstanceTemplate == "" && cfg.MachineType == "" {
		cfg.MachineType = DefaultMachineType
	}
	if cfg.RegistrationTimeout == 0 {
		cfg.RegistrationTimeout = DefaultRegistrationTimeout
	}
	if cfg.RegistrationTimeout < 0 {
		return cfg, fmt.Errorf("gce: negative registration timeout %v", cfg.RegistrationTimeout)
	}
	if cfg.Renderer == nil {
		r, err := bootstrap.NewRenderer("")
		if err != nil {
			return cfg, err
		}
		cfg.Renderer = r
	}
	return cfg, nil
}

func newProvider(cfg Config, c computeClient) *Provider {
	return &Provider{cfg: cfg, client: c, clusterLabel: encodeLabelValue(cfg.ClusterName), failed: map[string]int{}}
}

// Close releases the SDK client's connections.
func (p *Provider) Close() error { return p.client.close() }

// Name returns "gce".
func (p *Provider) Name() string { return ProviderName }

// RegistrationTimeout returns the configured registration timeout.
func (p *Provider) RegistrationTimeout() time.Duration { return p.cfg.RegistrationTimeout }

// ProviderID returns gce://<project>/<zone>/<name>, the providerID of the instance's Node.
func ProviderID(project, zone, name string) string {
	return "gce://" + project + "/" + zone + "/" + name
}

// Create implements cloudprovider.Provider. It inserts an instance named spec.NodeName with a
// requestId derived from spec.IdempotencyKey and waits for the operation. An instance of that
// name that this cluster owns is returned as it is; one that it does not own is an Invalid error.
func (p *Provider) Create(ctx context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	name := spec.NodeName
	action := "creating instance " + name
	if name == "" {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "", errors.New("creating instance: no node name"))
	}
	script, err := p.cfg.Renderer.Render(bootstrap.Params{
		Join:     spec.Join(p.cfg.Join),
		NodeName: name,
		Labels:   spec.NodeLabels,
		Taints:   spec.NodeTaints,
	})
	if err != nil {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "", fmt.Errorf("%s: %w", action, err))
	}
	req := &computepb.InsertInstanceRequest{
		Project:          p.cfg.Project,
		Zone:             p.cfg.Zone,
		InstanceResource: p.instanceResource(spec, script),
	}
	if p.cfg.InstanceTemplate != "" {
		req.SourceInstanceTemplate = proto.String(p.cfg.InstanceTemplate)
	}
	if spec.IdempotencyKey != "" {
		req.RequestId = proto.String(p.requestID(spec.IdempotencyKey))
	}

	logger := klog.LoggerWithValues(klog.FromContext(ctx), "instance", name, "zone", p.cfg.Zone)
	op, err := p.client.insertInstance(ctx, req)
	if err == nil {
		err = p.wait(ctx, op)
		var oe *operationError
		if errors.As(err, &oe) && spec.IdempotencyKey != "" {
			p.mu.Lock()
			p.failed[spec.IdempotencyKey]++
			p.mu.Unlock()
		}
	}
	if err != nil && !isAlreadyExists(err) {
		return nil, providerError("create", action, err)
	}
	if spec.IdempotencyKey != "" {
		p.mu.Lock()
		delete(p.failed, spec.IdempotencyKey)
		p.mu.Unlock()
	}
	if err != nil {
		logger.V(4).Info("Instance exists already")
		return p.existing(ctx, name)
	}
	logger.V(4).Info("Inserted instance", "operation", op.Proto().GetName())
	gi, err := p.client.getInstance(ctx, name)
	if err != nil {
		return nil, providerError("create", "reading created instance "+name, err)
	}
	inst := p.instance(gi)
	return &inst, nil
}

// requestID derives a GCE requestId (a UUID) from an idempotency key and the number of
// creations under that key that are known to have failed.
func (p *Provider) requestID(key string) string {
	p.mu.Lock()
	n := p.failed[key]
	p.mu.Unlock()
	if n > 0 {
		key += "#" + strconv.Itoa(n)
	}
	return uuid.NewSHA1(requestIDSpace, []byte(key)).String()
}

// existing returns the instance called name, which an insert found to exist, if this cluster
// owns it.
func (p *Provider) existing(ctx context.Context, name string) (*cloudprovider.Instance, error) {
	gi, err := p.client.getInstance(ctx, name)
	if err != nil {
		return nil, providerError("create", "reading existing instance "+name, err)
	}
	if got := gi.GetLabels()[cloudprovider.TagCluster]; got != p.clusterLabel {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "",
			fmt.Errorf("creating instance %s: an instance of that name exists and is not owned by cluster %s (its %s label is %q)",
				name, p.cfg.ClusterName, cloudprovider.TagCluster, got))
	}
	inst := p.instance(gi)
	return &inst, nil
}

// instanceResource is the instance to insert for spec. With a template, only the fields that
// must differ from the template are set.
func (p *Provider) instanceResource(spec cloudprovider.InstanceSpec, script string) *computepb.Instance {
	inst := &computepb.Instance{
		Name: proto.String(spec.NodeName),
		Labels: map[string]string{
			cloudprovider.TagCluster:   p.clusterLabel,
			cloudprovider.TagNode:      encodeLabelValue(spec.NodeName),
			cloudprovider.TagClass:     encodeLabelValue(spec.Class),
			cloudprovider.TagNamespace: encodeLabelValue(spec.Namespace),
		},
		Metadata: &computepb.Metadata{Items: []*computepb.Items{
			{Key: proto.String(MetadataStartupScript), Value: proto.String(script)},
			{Key: proto.String(MetadataClass), Value: proto.String(spec.Class)},
			{Key: proto.String(MetadataNamespace), Value: proto.String(spec.Namespace)},
		}},
	}
	if spec.JoinTokenID != "" {
		// A token id is six characters of [a-z0-9], a valid label value as it is.
		inst.Labels[cloudprovider.TagJoinToken] = spec.JoinTokenID
	}
	if p.cfg.MachineType != "" {
		inst.MachineType = proto.String("zones/" + p.cfg.Zone + "/machineTypes/" + p.cfg.MachineType)
	}
	if p.cfg.InstanceTemplate != "" {
		return inst
	}
	inst.Disks = []*computepb.AttachedDisk{{
		Boot:       proto.Bool(true),
		AutoDelete: proto.Bool(true),
		InitializeParams: &computepb.AttachedDiskInitializeParams{
			SourceImage: proto.String(p.cfg.Image),
		},
	}}
	nic := &computepb.NetworkInterface{}
	if p.cfg.Network != "" {
		nic.Network = proto.String(p.cfg.Network)
	}
	if p.cfg.Subnetwork != "" {
		nic.Subnetwork = proto.String(p.cfg.Subnetwork)
	}
	if nic.Network == nil && nic.Subnetwork == nil {
		nic.Network = proto.String(DefaultNetwork)
	}
	inst.NetworkInterfaces = []*computepb.NetworkInterface{nic}
	return inst
}

// wait waits for op with the SDK's waiter. An operation that ends with errors is an
// *operationError, whose codes say why; the waiter's own error is returned only when the
// operation carries none.
func (p *Provider) wait(ctx context.Context, op operation) error {
	werr := op.Wait(ctx)
	if oe := operationErrorOf(op.Proto()); oe != nil {
		return oe
	}
	return werr
}

// Delete implements cloudprovider.Provider. It deletes the instance and waits for the
// operation; an instance that is already gone is success.
func (p *Provider) Delete(ctx context.Context, instance cloudprovider.Instance) error {
	name := instance.ID
	if name == "" {
		name = instance.NodeName
	}
	if name == "" {
		return cloudprovider.NewError(cloudprovider.KindInvalid, "delete", "", errors.New("deleting instance: no name"))
	}
	action := "deleting instance " + name
	op, err := p.client.deleteInstance(ctx, name)
	if err == nil {
		err = p.wait(ctx, op)
	}
	if err != nil {
		if k, _ := classify(err); k == cloudprovider.KindNotFound {
			return nil
		}
		return providerError("delete", action, err)
	}
	klog.FromContext(ctx).V(4).Info("Deleted instance", "instance", name, "zone", p.cfg.Zone, "operation", op.Proto().GetName())
	return nil
}

// List implements cloudprovider.Provider: every instance in the zone with this cluster's
// ipp-cluster label, from every page.
func (p *Provider) List(ctx context.Context) ([]cloudprovider.Instance, error) {
	filter := fmt.Sprintf("labels.%s = %q", cloudprovider.TagCluster, p.clusterLabel)
	gis, err := p.client.listInstances(ctx, filter)
	if err != nil {
		return nil, providerError("list", "listing instances in "+p.cfg.Zone, err)
	}
	out := make([]cloudprovider.Instance, 0, len(gis))
	for _, gi := range gis {
		// The filter is the cloud's; check it here too, so that an instance of another cluster
		// can never be taken for ours.
		if gi.GetLabels()[cloudprovider.TagCluster] != p.clusterLabel {
			continue
		}
		inst := p.instance(gi)
		if inst.State == cloudprovider.StateTerminated {
			continue
		}
		out = append(out, inst)
	}
	return out, nil
}

// instance converts a GCE instance. The exact class and namespace come from metadata; the
// labels are the fallback.
func (p *Provider) instance(gi *computepb.Instance) cloudprovider.Instance {
	labels := gi.GetLabels()
	meta := map[string]string{}
	for _, it := range gi.GetMetadata().GetItems() {
		meta[it.GetKey()] = it.GetValue()
	}
	exact := func(key string) string {
		if v, ok := meta[key]; ok {
			return v
		}
		v, _ := decodeLabelValue(labels[key])
		return v
	}
	nodeName, ok := decodeLabelValue(labels[cloudprovider.TagNode])
	if !ok || nodeName == "" {
		nodeName = gi.GetName()
	}
	created, _ := time.Parse(time.RFC3339, gi.GetCreationTimestamp())
	return cloudprovider.Instance{
		NodeName:   nodeName,
		ID:         gi.GetName(),
		ProviderID: ProviderID(p.cfg.Project, p.cfg.Zone, gi.GetName()),
		Class:      exact(MetadataClass),
		Namespace:  exact(MetadataNamespace),
		State:      state(gi.GetStatus()),
		CreatedAt:  created,

		JoinTokenID: labels[cloudprovider.TagJoinToken],
	}
}

// state maps a GCE instance status. GCE's TERMINATED means stopped, not deleted: the instance
// still exists and holds its name, so it is listed (as Stopped) for the controller to delete.
func state(status string) cloudprovider.InstanceState {
	switch status {
	case "PROVISIONING", "STAGING", "REPAIRING", "PENDING":
		return cloudprovider.StatePending
	case "RUNNING":
		return cloudprovider.StateRunning
	case "STOPPING", "SUSPENDING", "PENDING_STOP":
		return cloudprovider.StateStopping
	case "TERMINATED", "SUSPENDED", "STOPPED":
		return cloudprovider.StateStopped
	}
	return cloudprovider.StatePending
}
