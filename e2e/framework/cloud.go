package framework

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/ec2emu"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/ec2"
	"github.com/ipp-project/ipp/providers/gce"
)

// The providers IPP runs on in the e2e tests, named as ipp's --provider names them.
const (
	GCE = gce.ProviderName
	EC2 = ec2.ProviderName
)

// Providers are every provider the e2e tests run on, in the order they run.
var Providers = []string{GCE, EC2}

// ParseProviders reads a list of providers such as a -provider test flag gives it: "all" (every
// one of Providers), one provider, or several separated by commas. The result is in the order of
// Providers, without repeats.
func ParseProviders(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(Providers), nil
	}
	want := map[string]bool{}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(Providers, p) {
			return nil, fmt.Errorf("unknown provider %q: want all or some of %s, separated by commas", p, strings.Join(Providers, ", "))
		}
		want[p] = true
	}
	var out []string
	for _, p := range Providers {
		if want[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

// CloudInstance is what the tests see of an emulated instance, in either cloud.
type CloudInstance struct {
	// NodeName is the dedicated node the instance was made for: the GCE instance name, the EC2
	// Name tag.
	NodeName string
	// ID is the cloud's id: GCE's numeric id, EC2's instance id.
	ID string
	// ProviderID is what the cloud gives the instance's Node: gce://<project>/<zone>/<name>,
	// aws:///<az>/<instance-id>.
	ProviderID string
	// Zone is the zone or availability zone.
	Zone string
	// State is the cloud's own name of the state (RUNNING, running, terminated...).
	State string
	// Bootstrap is the instance's rendered bootstrap (GCE startup-script metadata, EC2 user
	// data): what root on the instance can read from its metadata server.
	Bootstrap string
	// Live is false once the instance is being deleted; GCE forgets deleted instances at once,
	// EC2 shows them shutting-down, then terminated, for a while.
	Live bool
	// Booted says the emulator booted it into a kubelet.
	Booted bool
	// CreatedAt is when the cloud created it (GCE creationTimestamp, EC2 launchTime).
	CreatedAt time.Time
}

// Cloud is an emulated cloud and IPP's real provider pointed at it: what the tests need to see of
// either cloud, so that one test runs on both. GCECloud and EC2Cloud implement it; a test that
// needs more of one cloud asserts the type.
type Cloud interface {
	// Name is the provider's name, GCE or EC2.
	Name() string
	// Provider is IPP's real provider, talking to the emulator through the cloud's SDK.
	Provider() cloudprovider.Provider
	// NewProvider makes another provider for the emulator, with a client of its own, as another
	// ipp process has. Close it with CloseProvider.
	NewProvider(ctx context.Context) (cloudprovider.Provider, error)
	// Created returns how many instances the cloud has created for a dedicated node since it
	// started; idempotent repeats of one creation do not count.
	Created(nodeName string) int
	// CreatedCounts returns Created for every dedicated node.
	CreatedCounts() map[string]int
	// Instance returns the live instance of a dedicated node, if there is one.
	Instance(nodeName string) (CloudInstance, bool)
	// Instances returns every instance the cloud still shows, live or not.
	Instances() []CloudInstance
	// ForeignProviderID returns a providerID of this cloud's shape, in the zone IPP creates
	// nodeName's instance in, that no instance of this cloud has: what an impostor's kubelet
	// would claim.
	ForeignProviderID(nodeName string) string
	// SetFaults replaces the faults injected into the emulator.
	SetFaults(cloudemu.Faults)
	// IPPFlags are the ipp command-line flags that point an ipp process at the emulator; ipp
	// also needs --cluster-name.
	IPPFlags() []string
	// Env is the environment such an ipp process needs (credentials), as KEY=value.
	Env() []string
	// Close closes the provider and stops the emulator; its kubelets are the Booter's to stop.
	Close()
}

// CloudOptions configure StartCloud.
type CloudOptions struct {
	// ClusterName is the provider's cluster name, in its ownership labels or tags. Required.
	ClusterName string
	// Booter boots the emulator's instances into Nodes.
	Booter cloudemu.Booter
	// BootDelay is how long an instance takes from creation to booting.
	BootDelay time.Duration
	// Join is rendered into the instances' bootstrap; the emulated kubelets join with it
	// (ControlPlane.MintedJoin when the controller mints a token per instance,
	// ControlPlane.SharedJoin for the shared token).
	Join bootstrap.Join
	// RegistrationTimeout is the provider's; zero takes the provider's default.
	RegistrationTimeout time.Duration
}

// StartCloud starts the emulator of the provider named by provider (GCE or EC2) and makes IPP's
// real provider for it. Each emulator has two zones (EC2: two subnets, in two availability
// zones); the provider is configured with the first alone, so an instance lands in the second
// only when its NodeClass names it (GCECloud.Server.Zones, EC2Cloud.Subnets).
func StartCloud(ctx context.Context, provider string, opts CloudOptions) (Cloud, error) {
	switch provider {
	case GCE:
		return startGCE(ctx, opts)
	case EC2:
		return startEC2(ctx, opts)
	default:
		return nil, fmt.Errorf("unknown provider %q: want one of %s", provider, strings.Join(Providers, ", "))
	}
}

// CloseProvider closes a provider that holds connections (gce's), and does nothing for one that
// does not.
func CloseProvider(p cloudprovider.Provider) {
	if c, ok := p.(io.Closer); ok {
		_ = c.Close()
	}
}

// GCECloud is the Compute emulator with the gce provider.
type GCECloud struct {
	// Server is the Compute emulator.
	Server   *gceemu.Server
	config   gce.Config
	provider *gce.Provider
}

var _ Cloud = (*GCECloud)(nil)

// gceZones are the zones of the emulated GCE region. The provider's zone, where every instance
// whose NodeClass names no zones goes, is the first; NodeClasses may name the second.
var gceZones = []string{gceemu.DefaultZone, "us-central1-b"}

func startGCE(ctx context.Context, opts CloudOptions) (*GCECloud, error) {
	srv := gceemu.New(gceemu.Options{BootDelay: opts.BootDelay, Booter: opts.Booter, Zones: gceZones})
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("starting the Compute emulator: %w", err)
	}
	c := &GCECloud{Server: srv, config: gce.Config{
		ClusterName:         opts.ClusterName,
		Project:             srv.Project(),
		Zone:                srv.Zones()[0],
		Image:               gceemu.Image,
		Endpoint:            srv.URL(),
		Join:                opts.Join,
		RegistrationTimeout: opts.RegistrationTimeout,
	}}
	var err error
	if c.provider, err = gce.New(ctx, c.config); err != nil {
		srv.Close()
		return nil, fmt.Errorf("making the gce provider: %w", err)
	}
	return c, nil
}

// Name returns GCE.
func (c *GCECloud) Name() string { return GCE }

// Provider returns the gce provider.
func (c *GCECloud) Provider() cloudprovider.Provider { return c.provider }

// NewProvider implements Cloud.
func (c *GCECloud) NewProvider(ctx context.Context) (cloudprovider.Provider, error) {
	p, err := gce.New(ctx, c.config)
	if err != nil {
		return nil, fmt.Errorf("making a gce provider: %w", err)
	}
	return p, nil
}

// Created implements Cloud.
func (c *GCECloud) Created(nodeName string) int { return c.Server.Created(nodeName) }

// CreatedCounts implements Cloud.
func (c *GCECloud) CreatedCounts() map[string]int { return c.Server.CreatedCounts() }

// Instance implements Cloud: the instance named nodeName, in any zone.
func (c *GCECloud) Instance(nodeName string) (CloudInstance, bool) {
	inst, ok := c.Server.Instance(nodeName)
	if !ok {
		return CloudInstance{}, false
	}
	return c.convert(inst), true
}

// Instances implements Cloud. The Compute emulator forgets an instance once it is deleted, so
// every instance it shows is live.
func (c *GCECloud) Instances() []CloudInstance {
	var out []CloudInstance
	for _, inst := range c.Server.Instances() {
		out = append(out, c.convert(inst))
	}
	return out
}

func (c *GCECloud) convert(inst gceemu.Instance) CloudInstance {
	return CloudInstance{
		NodeName:   inst.Name,
		ID:         strconv.FormatUint(inst.ID, 10),
		ProviderID: gce.ProviderID(c.Server.Project(), inst.Zone, inst.Name),
		Zone:       inst.Zone,
		State:      inst.Status,
		Bootstrap:  inst.Metadata["startup-script"],
		Live:       true,
		Booted:     inst.Booted,
		CreatedAt:  inst.CreatedAt,
	}
}

// ForeignProviderID implements Cloud: an instance of nodeName's name in the provider's zone, but
// in another project. (In the project itself the name would be the instance's own: a GCE
// providerID is made of the project, zone and name.)
func (c *GCECloud) ForeignProviderID(nodeName string) string {
	return gce.ProviderID("ipp-e2e-impostor", c.Server.Zones()[0], nodeName)
}

// SetFaults implements Cloud.
func (c *GCECloud) SetFaults(f cloudemu.Faults) { c.Server.SetFaults(f) }

// IPPFlags implements Cloud.
func (c *GCECloud) IPPFlags() []string { return c.Server.IPPFlags() }

// Env implements Cloud: the gce provider needs no credentials for an emulator endpoint.
func (c *GCECloud) Env() []string { return nil }

// Close implements Cloud.
func (c *GCECloud) Close() {
	CloseProvider(c.provider)
	c.Server.Close()
}

// EC2Cloud is the EC2 emulator with the ec2 provider.
type EC2Cloud struct {
	// Server is the EC2 emulator.
	Server   *ec2emu.Server
	config   ec2.Config
	provider *ec2.Provider
}

var _ Cloud = (*EC2Cloud)(nil)

// foreignInstanceID is an EC2 instance id that the emulator never gives out: with seed 0, its ids
// count up from i-00000000000000001.
const foreignInstanceID = "i-0badc0ffee0dd0001"

// The subnets of the emulated EC2 region. ec2Subnet, in ec2AZ, is the provider's: every instance
// whose NodeClass names no subnets goes there. NodeClasses may also name ec2Subnet2, in ec2AZ2.
// The emulator sorts subnets by id and uses the first for a launch without one: ec2Subnet.
const (
	ec2Subnet  = "subnet-0e2e00000000000a1"
	ec2AZ      = ec2emu.DefaultRegion + "a"
	ec2Subnet2 = "subnet-0e2e00000000000b2"
	ec2AZ2     = ec2emu.DefaultRegion + "b"
)

func startEC2(ctx context.Context, opts CloudOptions) (*EC2Cloud, error) {
	srv := ec2emu.New(ec2emu.Options{BootDelay: opts.BootDelay, Booter: opts.Booter, Subnets: map[string]string{ec2Subnet: ec2AZ, ec2Subnet2: ec2AZ2}})
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("starting the EC2 emulator: %w", err)
	}
	c := &EC2Cloud{Server: srv, config: ec2.Config{
		ClusterName: opts.ClusterName,
		Region:      srv.Region(),
		ImageID:     ec2emu.ImageID,
		// Only the first subnet: a launch that finds no capacity there fails, as before the
		// second subnet existed, unless its NodeClass names more.
		SubnetIDs: []string{ec2Subnet},
		Endpoint:  srv.URL(),
		// The emulator checks only that requests are signed.
		Credentials:         credentials.NewStaticCredentialsProvider("AKIDEC2EMULATOR", "ec2-emulator-secret", ""),
		Join:                opts.Join,
		RegistrationTimeout: opts.RegistrationTimeout,
	}}
	var err error
	if c.provider, err = ec2.New(ctx, c.config); err != nil {
		srv.Close()
		return nil, fmt.Errorf("making the ec2 provider: %w", err)
	}
	return c, nil
}

// Name returns EC2.
func (c *EC2Cloud) Name() string { return EC2 }

// Provider returns the ec2 provider.
func (c *EC2Cloud) Provider() cloudprovider.Provider { return c.provider }

// NewProvider implements Cloud.
func (c *EC2Cloud) NewProvider(ctx context.Context) (cloudprovider.Provider, error) {
	p, err := ec2.New(ctx, c.config)
	if err != nil {
		return nil, fmt.Errorf("making an ec2 provider: %w", err)
	}
	return p, nil
}

// Created implements Cloud: instances launched with the Name tag nodeName.
func (c *EC2Cloud) Created(nodeName string) int { return c.Server.Created(nodeName) }

// CreatedCounts implements Cloud.
func (c *EC2Cloud) CreatedCounts() map[string]int { return c.Server.CreatedCounts() }

// Instance implements Cloud: the newest instance tagged Name=nodeName that is neither
// shutting down nor terminated.
func (c *EC2Cloud) Instance(nodeName string) (CloudInstance, bool) {
	var found CloudInstance
	ok := false
	for _, inst := range c.Instances() {
		if inst.NodeName == nodeName && inst.Live {
			found, ok = inst, true
		}
	}
	return found, ok
}

// Instances implements Cloud, in launch order, terminated instances included while EC2 still
// shows them.
func (c *EC2Cloud) Instances() []CloudInstance {
	var out []CloudInstance
	for _, inst := range c.Server.Instances() {
		out = append(out, CloudInstance{
			NodeName:   inst.Name,
			ID:         inst.ID,
			ProviderID: inst.ProviderID,
			Zone:       inst.AvailabilityZone,
			State:      inst.State,
			Bootstrap:  inst.UserData,
			Live:       inst.State != "shutting-down" && inst.State != "terminated",
			Booted:     inst.Booted,
			CreatedAt:  inst.LaunchTime,
		})
	}
	return out
}

// ForeignProviderID implements Cloud: aws:///<az>/<id> in the availability zone of the
// provider's subnet, where the provider launches every instance whose NodeClass names no
// subnets, with an instance id the emulator never gives out.
func (c *EC2Cloud) ForeignProviderID(string) string {
	return ec2.ProviderID(ec2AZ, foreignInstanceID)
}

// SetFaults implements Cloud.
func (c *EC2Cloud) SetFaults(f cloudemu.Faults) { c.Server.SetFaults(f) }

// IPPFlags implements Cloud, with the provider's one subnet (the emulator's own flags name every
// subnet).
func (c *EC2Cloud) IPPFlags() []string {
	flags := c.Server.IPPFlags()
	for i, f := range flags {
		if strings.HasPrefix(f, "--ec2-subnet-ids=") {
			flags[i] = "--ec2-subnet-ids=" + ec2Subnet
		}
	}
	return flags
}

// Subnets returns the ids of the emulated region's subnets and their availability zones, the
// provider's subnet first.
func (c *EC2Cloud) Subnets() (ids, zones []string) {
	return []string{ec2Subnet, ec2Subnet2}, []string{ec2AZ, ec2AZ2}
}

// Env implements Cloud: static credentials for the SDK's default chain.
func (c *EC2Cloud) Env() []string { return ec2emu.Env() }

// Close implements Cloud.
func (c *EC2Cloud) Close() {
	CloseProvider(c.provider)
	c.Server.Close()
}

// LiveInstances returns the cloud's live instances: those not being deleted.
func LiveInstances(c Cloud) []CloudInstance {
	var out []CloudInstance
	for _, inst := range c.Instances() {
		if inst.Live {
			out = append(out, inst)
		}
	}
	return out
}
