// Package gce implements cloudprovider.Provider on Google Compute Engine, with the compute SDK's
// REST client (cloud.google.com/go/compute/apiv1).
//
// Each dedicated node is one instance, named after the node, in the first zone of its NodeClass
// (or of the configured zone) that has capacity. Ownership is recorded as GCE labels
// (cloudprovider.TagCluster, TagNode, TagClass, TagNamespace, TagNodeClass, with values encoded
// to GCE's label character set) and, exactly, as metadata items; the node's bootstrap is the
// instance's startup-script metadata. List reads every zone of the project with one aggregated
// list.
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

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
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
	// MetadataNodeClass holds the exact NodeClass name; the ipp-node-class label holds it
	// encoded.
	MetadataNodeClass = cloudprovider.TagNodeClass
)

// requestIDSpace is the UUID namespace of the requestIds derived from idempotency keys.
var requestIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ipp-project/ipp/providers/gce"))

// Config configures the GCE provider.
type Config struct {
	// ClusterName goes into the ipp-cluster label; List finds instances by it.
	ClusterName string
	// Project is where instances are created. Zone is the zone of instances whose NodeClass
	// names no zones.
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

	// machineTypeDefaulted says that complete filled in MachineType: a NodeClass's instance
	// template then keeps its own machine type.
	machineTypeDefaulted bool
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
	c, err := newSDKClient(ctx, cfg.Project, opts...)
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
		cfg.machineTypeDefaulted = true
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

// RegistrationTimeoutFor returns the registration timeout of an instance of spec. A GCE VM's
// boot does not depend on its machine type as much as bare metal's does, so it is the
// configured one for every shape.
func (p *Provider) RegistrationTimeoutFor(cloudprovider.InstanceSpec) time.Duration {
	return p.cfg.RegistrationTimeout
}

// ProviderID returns gce://<project>/<zone>/<name>, the providerID of the instance's Node.
func ProviderID(project, zone, name string) string {
	return "gce://" + project + "/" + zone + "/" + name
}

// shape is what one creation asks for: the spec's NodeClass fields, and the Config's where the
// NodeClass leaves one empty.
type shape struct {
	// zones are tried in order.
	zones []string
	// machineType is a machine type name; empty means the template's.
	machineType string
	// template is the source instance template, or empty.
	template string
	// image is the boot disk's source image; empty means the template's boot disk.
	image string
	// serviceAccount is the email of the instance's service account; empty means the
	// template's, or the project's default.
	serviceAccount string
}

// shapeOf resolves spec's shape. An image or machine type that the NodeClass names overrides an
// instance template's; the Config's image is used only without any template, and its machine
// type only if it was set (not defaulted) or there is no template, as before NodeClasses.
func (p *Provider) shapeOf(spec cloudprovider.InstanceSpec) shape {
	g := spec.GCE
	if g == nil {
		g = &ippv1alpha1.GCENodeClass{}
	}
	sh := shape{
		zones:          g.Zones,
		machineType:    g.MachineType,
		template:       g.InstanceTemplate,
		image:          g.Image,
		serviceAccount: g.ServiceAccount,
	}
	if len(sh.zones) == 0 {
		sh.zones = []string{p.cfg.Zone}
	}
	if sh.template == "" {
		sh.template = p.cfg.InstanceTemplate
	}
	if sh.image == "" && sh.template == "" {
		sh.image = p.cfg.Image
	}
	if sh.machineType == "" {
		switch {
		case p.cfg.MachineType != "" && (!p.cfg.machineTypeDefaulted || sh.template == ""):
			sh.machineType = p.cfg.MachineType
		case sh.template == "":
			sh.machineType = DefaultMachineType
		}
	}
	return sh
}

// Create implements cloudprovider.Provider. An instance of the node's name that this cluster
// owns, in any zone, is returned as it is. Otherwise Create inserts an instance named
// spec.NodeName in each of the shape's zones in turn, moving to the next while a zone has no
// capacity, and waits for each operation. Each zone's insert has a requestId of its own, derived
// from spec.IdempotencyKey and the zone, so that a retry replays the same requests. An instance
// of that name that this cluster does not own is an Invalid error.
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
	sh := p.shapeOf(spec)
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "instance", name)

	// GCE names are unique per zone only: look in every zone, since an earlier try may have
	// created the instance in a later zone of the list, or in a zone no longer in it.
	found, err := p.find(ctx, name)
	if err != nil {
		return nil, providerError("create", "looking for instance "+name+" in every zone", err)
	}
	if found != nil {
		logger.V(4).Info("Instance exists already", "zone", found.Zone)
		return found, nil
	}

	var tried []string
	var lastErr error
	// failedOps counts the zones whose insert operation ended with an error: nothing was created
	// there, and GCE would replay that failure for the same requestId.
	failedOps := 0
	for i, zone := range sh.zones {
		zlogger := klog.LoggerWithValues(logger, "zone", zone)
		op, err := p.insert(ctx, spec, sh, zone, script)
		var oe *operationError
		if errors.As(err, &oe) {
			failedOps++
		}
		if err != nil && isAlreadyExists(err) {
			zlogger.V(4).Info("Instance exists already")
			p.forgetFailures(spec.IdempotencyKey)
			return p.existing(ctx, zone, name)
		}
		if err != nil {
			kind, code := classify(err)
			if kind == cloudprovider.KindCapacity {
				zlogger.V(2).Info("No capacity in zone, trying the next", "code", code, "machineType", sh.machineType, "zonesLeft", len(sh.zones)-i-1)
				tried = append(tried, zone+": "+code)
				lastErr = err
				continue
			}
			if failedOps == i+1 {
				p.noteFailure(spec.IdempotencyKey)
			}
			return nil, providerError("create", action+" in zone "+zone, err)
		}
		p.forgetFailures(spec.IdempotencyKey)
		zlogger.V(4).Info("Inserted instance", "operation", op.Proto().GetName(), "machineType", sh.machineType)
		gi, err := p.client.getInstance(ctx, zone, name)
		if err != nil {
			return nil, providerError("create", "reading created instance "+name+" in zone "+zone, err)
		}
		inst := p.instance(gi)
		return &inst, nil
	}
	if failedOps == len(sh.zones) {
		p.noteFailure(spec.IdempotencyKey)
	}
	_, code := classify(lastErr)
	return nil, cloudprovider.NewError(cloudprovider.KindCapacity, "create", code,
		fmt.Errorf("%s: no capacity in any of its zones (%s): %w", action, strings.Join(tried, "; "), lastErr))
}

// insert inserts spec's instance in zone and waits for the operation. Its errors are the SDK's,
// or an *operationError.
func (p *Provider) insert(ctx context.Context, spec cloudprovider.InstanceSpec, sh shape, zone, script string) (operation, error) {
	req := &computepb.InsertInstanceRequest{
		Project:          p.cfg.Project,
		Zone:             zone,
		InstanceResource: p.instanceResource(spec, sh, zone, script),
	}
	if sh.template != "" {
		req.SourceInstanceTemplate = proto.String(sh.template)
	}
	if spec.IdempotencyKey != "" {
		req.RequestId = proto.String(p.requestID(spec.IdempotencyKey, zone))
	}
	op, err := p.client.insertInstance(ctx, req)
	if err != nil {
		return nil, err
	}
	return op, p.wait(ctx, op)
}

// noteFailure records that a creation under key failed in every zone it tried, with operations
// that created nothing: its next try gets new requestIds.
func (p *Provider) noteFailure(key string) {
	if key == "" {
		return
	}
	p.mu.Lock()
	p.failed[key]++
	p.mu.Unlock()
}

// forgetFailures drops key's failure count once the creation succeeded.
func (p *Provider) forgetFailures(key string) {
	if key == "" {
		return
	}
	p.mu.Lock()
	delete(p.failed, key)
	p.mu.Unlock()
}

// requestID derives the GCE requestId (a UUID) of one zone's insert from an idempotency key, the
// zone, and the number of creations under that key that are known to have failed.
func (p *Provider) requestID(key, zone string) string {
	p.mu.Lock()
	n := p.failed[key]
	p.mu.Unlock()
	if n > 0 {
		key += "#" + strconv.Itoa(n)
	}
	return uuid.NewSHA1(requestIDSpace, []byte(key+"\x00"+zone)).String()
}

// find returns this cluster's instance called name in any zone, or nil if there is none.
func (p *Provider) find(ctx context.Context, name string) (*cloudprovider.Instance, error) {
	filter := fmt.Sprintf("(labels.%s = %q) (name = %q)", cloudprovider.TagCluster, p.clusterLabel, name)
	gis, err := p.client.listInstances(ctx, filter)
	if err != nil {
		return nil, err
	}
	for _, gi := range gis {
		// The filter is the cloud's; check it here too.
		if gi.GetName() != name || gi.GetLabels()[cloudprovider.TagCluster] != p.clusterLabel {
			continue
		}
		inst := p.instance(gi)
		return &inst, nil
	}
	return nil, nil
}

// existing returns the instance called name in zone, which an insert found to exist, if this
// cluster owns it.
func (p *Provider) existing(ctx context.Context, zone, name string) (*cloudprovider.Instance, error) {
	gi, err := p.client.getInstance(ctx, zone, name)
	if err != nil {
		return nil, providerError("create", "reading existing instance "+name+" in zone "+zone, err)
	}
	if got := gi.GetLabels()[cloudprovider.TagCluster]; got != p.clusterLabel {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "",
			fmt.Errorf("creating instance %s: an instance of that name exists in zone %s and is not owned by cluster %s (its %s label is %q)",
				name, zone, p.cfg.ClusterName, cloudprovider.TagCluster, got))
	}
	inst := p.instance(gi)
	return &inst, nil
}

// instanceResource is the instance to insert for spec in zone. With a template, only the fields
// that must differ from the template are set.
func (p *Provider) instanceResource(spec cloudprovider.InstanceSpec, sh shape, zone, script string) *computepb.Instance {
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
	if spec.NodeClass != "" {
		inst.Labels[cloudprovider.TagNodeClass] = encodeLabelValue(spec.NodeClass)
		inst.Metadata.Items = append(inst.Metadata.Items,
			&computepb.Items{Key: proto.String(MetadataNodeClass), Value: proto.String(spec.NodeClass)})
	}
	if spec.JoinTokenID != "" {
		// A token id is six characters of [a-z0-9], a valid label value as it is.
		inst.Labels[cloudprovider.TagJoinToken] = spec.JoinTokenID
	}
	if sh.machineType != "" {
		inst.MachineType = proto.String("zones/" + zone + "/machineTypes/" + sh.machineType)
	}
	if sh.serviceAccount != "" {
		// Access is granted by the service account's IAM roles; the cloud-platform scope leaves
		// it to them, as Google recommends.
		inst.ServiceAccounts = []*computepb.ServiceAccount{{
			Email:  proto.String(sh.serviceAccount),
			Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"},
		}}
	}
	if sh.image != "" {
		inst.Disks = []*computepb.AttachedDisk{{
			Boot:       proto.Bool(true),
			AutoDelete: proto.Bool(true),
			InitializeParams: &computepb.AttachedDiskInitializeParams{
				SourceImage: proto.String(sh.image),
			},
		}}
	}
	if sh.template != "" {
		return inst
	}
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

// Delete implements cloudprovider.Provider. It deletes the instance in its own zone (Zone, or
// the zone of its ProviderID; the configured zone if it has neither) and waits for the
// operation; an instance that is already gone is success.
func (p *Provider) Delete(ctx context.Context, instance cloudprovider.Instance) error {
	name := instance.ID
	if name == "" {
		name = instance.NodeName
	}
	if name == "" {
		return cloudprovider.NewError(cloudprovider.KindInvalid, "delete", "", errors.New("deleting instance: no name"))
	}
	zone := p.zoneOf(instance)
	action := "deleting instance " + name + " in zone " + zone
	op, err := p.client.deleteInstance(ctx, zone, name)
	if err == nil {
		err = p.wait(ctx, op)
	}
	if err != nil {
		if k, _ := classify(err); k == cloudprovider.KindNotFound {
			return nil
		}
		return providerError("delete", action, err)
	}
	klog.FromContext(ctx).V(4).Info("Deleted instance", "instance", name, "zone", zone, "operation", op.Proto().GetName())
	return nil
}

// zoneOf returns the zone of instance: its Zone, else the zone in its providerID, else the
// configured zone.
func (p *Provider) zoneOf(instance cloudprovider.Instance) string {
	if instance.Zone != "" {
		return instance.Zone
	}
	if rest, ok := strings.CutPrefix(instance.ProviderID, "gce://"+p.cfg.Project+"/"); ok {
		if zone, _, ok := strings.Cut(rest, "/"); ok && zone != "" {
			return zone
		}
	}
	return p.cfg.Zone
}

// List implements cloudprovider.Provider: every instance in every zone of the project with this
// cluster's ipp-cluster label, from every page of one aggregated list, so that instances in a
// zone that no NodeClass names any more are found too.
func (p *Provider) List(ctx context.Context) ([]cloudprovider.Instance, error) {
	filter := fmt.Sprintf("labels.%s = %q", cloudprovider.TagCluster, p.clusterLabel)
	gis, err := p.client.listInstances(ctx, filter)
	if err != nil {
		return nil, providerError("list", "listing instances in every zone of project "+p.cfg.Project, err)
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

// lastSegment returns what follows the last '/' of a resource URL or path.
func lastSegment(s string) string {
	return s[strings.LastIndex(s, "/")+1:]
}

// instance converts a GCE instance. The exact class, namespace and NodeClass come from
// metadata; the labels are the fallback. The zone is the instance's own, from its zone URL.
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
	zone := lastSegment(gi.GetZone())
	if zone == "" {
		zone = p.cfg.Zone
	}
	created, _ := time.Parse(time.RFC3339, gi.GetCreationTimestamp())
	return cloudprovider.Instance{
		NodeName:   nodeName,
		ID:         gi.GetName(),
		ProviderID: ProviderID(p.cfg.Project, zone, gi.GetName()),
		Class:      exact(MetadataClass),
		Namespace:  exact(MetadataNamespace),
		State:      state(gi.GetStatus()),
		CreatedAt:  created,

		JoinTokenID:  labels[cloudprovider.TagJoinToken],
		NodeClass:    exact(MetadataNodeClass),
		Zone:         zone,
		InstanceType: lastSegment(gi.GetMachineType()),
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
