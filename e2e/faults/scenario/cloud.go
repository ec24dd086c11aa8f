package scenario

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/ec2emu"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/ec2"
	"github.com/ipp-project/ipp/providers/gce"
)

// Kind is a cloud: the value of ipp's --provider.
type Kind string

// The clouds the tests run against.
const (
	GCE Kind = gce.ProviderName
	EC2 Kind = ec2.ProviderName
)

// Kinds are every cloud, in the order tests run them.
var Kinds = []Kind{GCE, EC2}

// EC2Subnets are the subnets of the emulated EC2 cloud and their availability zones, one subnet
// per zone, so that a test can take the capacity of a zone away and see the provider move to the
// next subnet. The provider tries them in sorted order.
var EC2Subnets = map[string]string{
	"subnet-0000000000000000a": ec2emu.DefaultRegion + "a",
	"subnet-0000000000000000b": ec2emu.DefaultRegion + "b",
}

// CloudOptions configure StartCloud.
type CloudOptions struct {
	// BootDelay is how long an instance takes from creation to its kubelet registering.
	BootDelay time.Duration
	// Seed seeds the emulator's fault draws.
	Seed uint64
}

// Cloud is an emulated cloud of one kind whose instances boot into emulated kubelets of the
// shared control plane. Exactly one of its emulators is set.
type Cloud struct {
	Kind   Kind
	Booter *kubelet.Booter

	gce *gceemu.Server
	ec2 *ec2emu.Server
	// join is rendered into every instance's bootstrap: IPP mints each instance's token.
	join bootstrap.Join
}

// Instance is what the tests need to know of an emulated instance of either cloud.
type Instance struct {
	// NodeName is the dedicated node the instance was created for (GCE name, EC2 Name tag).
	NodeName string
	// ID is the cloud's id (GCE name, EC2 instance id).
	ID string
	// State is the cloud's own state name.
	State string
	// Live is false once the instance is being deleted or gone.
	Live bool
	// Subnet is the EC2 subnet, empty on GCE.
	Subnet string
	// Booted says the emulator booted it into a kubelet.
	Booted bool
}

func (i Instance) String() string {
	s := fmt.Sprintf("%s id=%s state=%s booted=%t", i.NodeName, i.ID, i.State, i.Booted)
	if i.Subnet != "" {
		s += " subnet=" + i.Subnet
	}
	return s
}

// StartCloud starts the emulator of kind, whose instances boot into kubelets of cp with the
// nodes' own credentials. It is closed, and its kubelets stopped, when the test ends; if the test
// failed, its instances and call statistics are logged first.
func StartCloud(t testing.TB, kind Kind, cp *framework.ControlPlane, opts CloudOptions) *Cloud {
	t.Helper()
	c := &Cloud{Kind: kind, Booter: kubelet.NewBooter(kubelet.Config{}), join: cp.MintedJoin()}
	t.Cleanup(c.Booter.Stop)
	switch kind {
	case GCE:
		c.gce = gceemu.New(gceemu.Options{BootDelay: opts.BootDelay, Booter: c.Booter, Seed: opts.Seed})
		if err := c.gce.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.gce.Close)
	case EC2:
		c.ec2 = ec2emu.New(ec2emu.Options{Subnets: EC2Subnets, BootDelay: opts.BootDelay, Booter: c.Booter, Seed: opts.Seed})
		if err := c.ec2.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.ec2.Close)
	default:
		t.Fatalf("Unknown cloud %q", kind)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.Dump(t)
		}
	})
	return c
}

// GCE returns the Compute emulator, nil for another cloud.
func (c *Cloud) GCE() *gceemu.Server { return c.gce }

// EC2 returns the EC2 emulator, nil for another cloud.
func (c *Cloud) EC2() *ec2emu.Server { return c.ec2 }

// Provider returns the real provider of the cloud's kind, pointed at the emulator, for a
// controller in the test process. EC2's SDK retries are kept short so that faults cost little time.
func (c *Cloud) Provider(t testing.TB, clusterName string) cloudprovider.Provider {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	switch c.Kind {
	case GCE:
		p, err := gce.New(ctx, gce.Config{
			ClusterName: clusterName,
			Project:     c.gce.Project(),
			Zone:        c.gce.Zones()[0],
			Image:       gceemu.Image,
			Endpoint:    c.gce.URL(),
			Join:        c.join,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	default:
		p, err := ec2.New(ctx, ec2.Config{
			ClusterName: clusterName,
			Region:      c.ec2.Region(),
			ImageID:     ec2emu.ImageID,
			SubnetIDs:   c.ec2.SubnetIDs(),
			Endpoint:    c.ec2.URL(),
			Join:        c.join,
			Credentials: credentials.NewStaticCredentialsProvider("AKIDEC2EMULATOR", "ec2-emulator-secret", ""),
			MaxAttempts: 3,
			MaxBackoff:  20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// IPPFlags are the ipp flags that point its provider at the emulator and make it mint a join
// token per instance.
func (c *Cloud) IPPFlags() []string {
	join := []string{"--join-endpoint=" + c.join.APIServerEndpoint, "--join-ca-cert-hash=" + c.join.CACertHash}
	if c.gce != nil {
		return append(c.gce.IPPFlags(), join...)
	}
	return append(c.ec2.IPPFlags(), join...)
}

// Env is the environment an ipp process needs for the emulator (EC2 credentials), beyond its own.
func (c *Cloud) Env() []string {
	if c.ec2 != nil {
		return ec2emu.Env()
	}
	return nil
}

// SetFaults replaces the emulator's injected faults.
func (c *Cloud) SetFaults(f cloudemu.Faults) {
	if c.gce != nil {
		c.gce.SetFaults(f)
		return
	}
	c.ec2.SetFaults(f)
}

// CreatedCounts returns how many instances were ever created for each dedicated node name.
func (c *Cloud) CreatedCounts() map[string]int {
	if c.gce != nil {
		return c.gce.CreatedCounts()
	}
	return c.ec2.CreatedCounts()
}

// Instances returns every instance the emulator shows, including EC2's terminated ones, sorted by
// node name.
func (c *Cloud) Instances() []Instance {
	var out []Instance
	if c.gce != nil {
		// Deleted GCE instances are gone at once.
		for _, i := range c.gce.Instances() {
			out = append(out, Instance{NodeName: i.Name, ID: i.Name, State: i.Status, Live: true, Booted: i.Booted})
		}
	} else {
		for _, i := range c.ec2.Instances() {
			live := i.State == "pending" || i.State == "running"
			out = append(out, Instance{NodeName: i.Name, ID: i.ID, State: i.State, Live: live, Subnet: i.SubnetID, Booted: i.Booted})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].NodeName < out[b].NodeName })
	return out
}

// LiveInstances returns the live instances by dedicated node name.
func (c *Cloud) LiveInstances() map[string][]Instance {
	out := map[string][]Instance{}
	for _, i := range c.Instances() {
		if i.Live {
			out[i.NodeName] = append(out[i.NodeName], i)
		}
	}
	return out
}

// CallStats counts the API calls the emulator answered, and those of them that a fault hit, by
// the emulator's name for the fault.
type CallStats struct {
	Calls   int
	Faulted map[string]int
}

// Rate returns the fraction of calls that the named faults hit.
func (s CallStats) Rate(faults ...string) float64 {
	if s.Calls == 0 {
		return 0
	}
	n := 0
	for _, f := range faults {
		n += s.Faulted[f]
	}
	return float64(n) / float64(s.Calls)
}

func (s CallStats) String() string {
	keys := slices.Sorted(maps.Keys(s.Faulted))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, s.Faulted[k]))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	return fmt.Sprintf("%d calls, faults: %s", s.Calls, strings.Join(parts, " "))
}

// Fault names of either emulator, for CallStats.Rate.
var (
	ErrorFaults     = []string{"error"}
	ThrottleFaults  = []string{"throttle"}
	CapacityFaults  = []string{"capacity"}
	LostReplyFaults = []string{"lostReply", "lost-reply", "dropped-connection"}
)

// CallStats counts the calls answered so far.
func (c *Cloud) CallStats() CallStats {
	s := CallStats{Faulted: map[string]int{}}
	add := func(fault string) {
		s.Calls++
		if fault != "" {
			s.Faulted[fault]++
		}
	}
	if c.gce != nil {
		for _, call := range c.gce.Calls() {
			add(call.Fault)
		}
	} else {
		for _, call := range c.ec2.Calls() {
			add(call.Fault)
		}
	}
	return s
}

// ListedSince reports whether a List of instances succeeded after since.
func (c *Cloud) ListedSince(since time.Time) bool { return c.ListsSince(since) > 0 }

// ListsSince counts the successful Lists of instances after since: on GCE instances.list or
// aggregatedList calls answered 200, on EC2 DescribeInstances calls answered 200 (which include
// the ec2 provider's look-ups before a creation).
func (c *Cloud) ListsSince(since time.Time) int {
	n := 0
	if c.gce != nil {
		for _, call := range c.gce.Calls() {
			if (call.Op == "instances.list" || call.Op == "instances.aggregatedList") && call.Status == 200 && !call.Time.Before(since) {
				n++
			}
		}
		return n
	}
	for _, call := range c.ec2.Calls() {
		if call.Action == "DescribeInstances" && call.Status == 200 && !call.Time.Before(since) {
			n++
		}
	}
	return n
}

// CreateAttempts returns when each provider Create that began after since reached the cloud: on
// GCE each instances.aggregatedList (the gce provider's Create starts by looking for the instance
// in every zone), on EC2 the first try of each DescribeInstances call (the ec2 provider's Create
// starts with one; the SDK's own retries of it share its invocation id). On both a List is the
// same call, so callers keep Lists out of the window.
func (c *Cloud) CreateAttempts(since time.Time) []time.Time {
	var out []time.Time
	if c.gce != nil {
		for _, call := range c.gce.Calls() {
			if call.Op == "instances.aggregatedList" && !call.Time.Before(since) {
				out = append(out, call.Time)
			}
		}
		return out
	}
	seen := map[string]bool{}
	for _, call := range c.ec2.Calls() {
		if call.Action != "DescribeInstances" || call.Time.Before(since) || seen[call.InvocationID] {
			continue
		}
		seen[call.InvocationID] = true
		out = append(out, call.Time)
	}
	return out
}

// Dump logs the instances, the creation counts and the call statistics.
func (c *Cloud) Dump(t testing.TB) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s emulator: %s\n", c.Kind, c.CallStats())
	for _, i := range c.Instances() {
		fmt.Fprintf(&b, "  instance %s\n", i)
	}
	counts := c.CreatedCounts()
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "  created %s: %d\n", name, counts[name])
	}
	t.Log(b.String())
}
