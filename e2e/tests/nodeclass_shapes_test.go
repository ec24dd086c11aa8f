package tests

import (
	"context"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/gceemu"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// TestNodeClassShapes: on each provider, two NodeClasses in one cluster, shapes-small and
// shapes-big, each with a machine type (EC2: instance types), zones (EC2: subnets), image (AMI)
// and, for big, a service account (EC2: security groups and instance profile) of its own. A class
// of each gets an instance, and the emulator receives each NodeClass's shape; the instance records
// its NodeClass, and the provider's List returns it. With the first zone of big out of capacity
// (EC2: its first subnet's zone and its first instance type), a third class lands in big's next
// zone (EC2: subnet and type), its Node registers with that zone's providerID, is bound, and its
// Pod runs there.
//
// Then a NodeClass shapes-one, not the default one, limited to one instance: of two classes, one
// gets an instance and the other waits with a LimitReached Event. The limit counts the instances
// by the NodeClass the real provider recorded on them and List returns: the second class is
// created only after the controller has listed the first class's instance from the cloud, and
// the instances of the other NodeClasses do not count against shapes-one's limit.
//
// No Pod breaks I1-I3, and no node got two instances.
func TestNodeClassShapes(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "shapes-" + provider
		// --placement=admission: the instances are found by each class's dedicated node name
		// (cfg.NodeName).
		cfg.Placement = isolation.PlacementAdmission
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Provider: provider, Config: &cfg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })
		emu := newShapeEmulator(t, ipp.Cloud)

		small := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "shapes-small"},
			Spec: ippv1alpha1.NodeClassSpec{
				GCE: &ippv1alpha1.GCENodeClass{
					MachineType: "e2-small",
					Zones:       first(emu.zones),
					Image:       "projects/" + gceemu.DefaultProject + "/global/images/family/ipp-small",
				},
				EC2: &ippv1alpha1.EC2NodeClass{
					InstanceTypes: []string{"t3.small"},
					Subnets:       first(emu.subnets),
					AMI:           "ami-00000000000005a11",
				},
			},
		}
		big := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "shapes-big"},
			Spec: ippv1alpha1.NodeClassSpec{
				GCE: &ippv1alpha1.GCENodeClass{
					MachineType:    "n2-standard-8",
					Zones:          emu.zones,
					Image:          "projects/" + gceemu.DefaultProject + "/global/images/family/ipp-big",
					ServiceAccount: "big-nodes@" + gceemu.DefaultProject + ".iam.gserviceaccount.com",
				},
				EC2: &ippv1alpha1.EC2NodeClass{
					InstanceTypes:   []string{"m5.large", "m5.xlarge"},
					Subnets:         emu.subnets,
					AMI:             "ami-0000000000000b1b0",
					SecurityGroups:  []string{"sg-0000000000000b1b0"},
					InstanceProfile: "ipp-big-nodes",
				},
			},
		}
		one := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "shapes-one"},
			Spec:       ippv1alpha1.NodeClassSpec{Limits: &ippv1alpha1.NodeClassLimits{Instances: ptr.To[int32](1)}},
		}
		// Each NodeClass names the shape of the provider under test only.
		for _, nc := range []*ippv1alpha1.NodeClass{small, big} {
			if provider == framework.GCE {
				nc.Spec.EC2 = nil
			} else {
				nc.Spec.GCE = nil
			}
		}
		createNodeClasses(t, small, big, one)

		// Two classes, one of each NodeClass, get the instances of their NodeClasses.
		ns := namespace(t, "shapes")
		want := map[string]recordedShape{}
		for _, c := range []struct {
			class string
			nc    *ippv1alpha1.NodeClass
		}{{"s0", small}, {"b0", big}} {
			createPod(t, ns, pod(c.class, classOf(cfg, c.class), ofNodeClass(c.nc.Name)))
			want[cfg.NodeName(ns, c.class)] = emu.expect(c.nc, 0, 0)
		}
		for _, class := range []string{"s0", "b0"} {
			waitRunningBound(t, ipp, ns, class)
		}
		for node, w := range want {
			emu.check(t, node, w)
		}

		// Big's first zone (EC2: its first subnet's zone, and its first instance type in every
		// zone) has no capacity: the next class lands in its second zone (EC2: second subnet,
		// second type), and its Node registers and is bound there.
		restore := emu.exhaustFirst()
		b1 := cfg.NodeName(ns, "b1")
		createPod(t, ns, pod("b1", classOf(cfg, "b1"), ofNodeClass(big.Name)))
		want[b1] = emu.expect(big, 1, 1)
		node := waitRunningBound(t, ipp, ns, "b1")
		restore()
		got := emu.check(t, b1, want[b1])
		if node.Spec.ProviderID != got.providerID || !strings.Contains(got.providerID, "/"+want[b1].zone+"/") {
			t.Errorf("Node %s has providerID %q; its instance in the fallback zone %s has %q", b1, node.Spec.ProviderID, want[b1].zone, got.providerID)
		}
		if n := emu.failedCreates(); n == 0 {
			t.Errorf("The emulator refused no creation for lack of capacity: the fallback was not exercised")
		}

		// The provider's List returns each instance with its NodeClass and zone.
		listed, err := ipp.Cloud.Provider().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byNode := map[string]cloudprovider.Instance{}
		for _, inst := range listed {
			byNode[inst.NodeName] = inst
		}
		for node, w := range want {
			inst, ok := byNode[node]
			switch {
			case !ok:
				t.Errorf("List does not return the instance of %s", node)
			case inst.NodeClass != w.nodeClass || inst.Zone != w.zone:
				t.Errorf("List returns %s with NodeClass %q in zone %q, want %q in %q", node, inst.NodeClass, inst.Zone, w.nodeClass, w.zone)
			}
		}

		// shapes-one allows one instance: o0 gets it. Once the controller has listed o0's
		// instance from the cloud (so the count comes from what the provider recorded, not from
		// what the controller remembers of its own creation), o1 waits for the limit.
		createPod(t, ns, pod("o0", classOf(cfg, "o0"), ofNodeClass(one.Name)))
		waitRunningBound(t, ipp, ns, "o0")
		o0, ok := ipp.Cloud.Instance(cfg.NodeName(ns, "o0"))
		if !ok {
			t.Fatalf("No instance of o0's node %s", cfg.NodeName(ns, "o0"))
		}
		if got := emu.recorded(cfg.NodeName(ns, "o0")); got.nodeClass != one.Name {
			t.Errorf("o0's instance records NodeClass %q, want %s", got.nodeClass, one.Name)
		}
		emu.waitLists(t, o0.CreatedAt, 2)
		createPod(t, ns, pod("o1", classOf(cfg, "o1"), ofNodeClass(one.Name)))
		var msg string
		o1 := cfg.NodeName(ns, "o1")
		err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			if inst, ok := ipp.Cloud.Instance(o1); ok {
				return false, fmt.Errorf("o1 got instance %s beyond shapes-one's limit of 1: the instances of shapes-one were not counted", inst.ID)
			}
			msg = limitEvent(t, ns, "o1")
			return msg != "", nil
		})
		if err != nil {
			t.Fatalf("Waiting for a LimitReached Event on o1: %v", err)
		}
		if want := "NodeClass shapes-one allows 1 instances (spec.limits.instances)"; !strings.Contains(msg, want) {
			t.Errorf("LimitReached Event of o1 = %q, want it to say %q", msg, want)
		}
		// Still waiting after two more resyncs.
		emu.waitLists(t, time.Now(), 2)
		if inst, ok := ipp.Cloud.Instance(o1); ok {
			t.Errorf("o1 got instance %s beyond shapes-one's limit of 1", inst.ID)
		}
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "o1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.NodeName != "" {
			t.Errorf("o1 was scheduled to %s, want it waiting", p.Spec.NodeName)
		}

		for name, n := range ipp.Cloud.CreatedCounts() {
			if n > 1 {
				t.Errorf("Instances created for %s: %d, want at most 1", name, n)
			}
		}
		checkIsolation(t, ipp.Config)
	})
}

// ofNodeClass labels the Pod with the NodeClass it asks for.
func ofNodeClass(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[isolation.NodeClassLabel] = name
	}
}

// createNodeClasses creates the NodeClasses, deletes them when the test ends, and waits until the
// controller has seen each (it writes its Ready condition).
func createNodeClasses(t *testing.T, ncs ...*ippv1alpha1.NodeClass) {
	t.Helper()
	ctx := t.Context()
	client, err := ippclientset.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	api := client.IppV1alpha1().NodeClasses()
	for _, nc := range ncs {
		if _, err := api.Create(ctx, nc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("Creating NodeClass %s: %v", nc.Name, err)
		}
		t.Cleanup(func() {
			if err := api.Delete(context.Background(), nc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
		})
	}
	for _, nc := range ncs {
		err := waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			got, err := api.Get(ctx, nc.Name, metav1.GetOptions{})
			return err == nil && meta.IsStatusConditionTrue(got.Status.Conditions, ippv1alpha1.ConditionReady), err
		})
		if err != nil {
			t.Fatalf("Waiting for NodeClass %s to be Ready: %v", nc.Name, err)
		}
	}
}

// waitRunningBound waits until the class's Pod (named after the class) runs on the class's
// dedicated node, and the Node is Ready and bound to the class; it returns the Node.
func waitRunningBound(t *testing.T, ipp *framework.IPP, ns, class string) *corev1.Node {
	t.Helper()
	name := ipp.Config.NodeName(ns, class)
	waitRunningOn(t, ns, class, name)
	node, err := framework.WaitForNode(t.Context(), cluster.Client, name, ippTimeout, "Ready and bound to its class", func(n *corev1.Node) bool {
		return framework.NodeReady(n) && n.Labels[isolation.BindingLabel] == name
	})
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// recordedShape is the shape of an instance, as its emulator recorded it from the provider's
// request.
type recordedShape struct {
	zone         string
	subnet       string // EC2
	instanceType string // GCE: the machine type's name
	image        string
	// serviceAccount is GCE's; securityGroups (joined by commas) and instanceProfile EC2's.
	serviceAccount  string
	securityGroups  string
	instanceProfile string
	nodeClass       string
	providerID      string
}

// shapeEmulator is what TestNodeClassShapes needs of either emulator.
type shapeEmulator struct {
	cloud framework.Cloud
	gce   *framework.GCECloud
	ec2   *framework.EC2Cloud
	// zones are GCE's zones; subnets and subnetZones EC2's subnets and their zones. The first
	// is the provider's default.
	zones, subnets, subnetZones []string
}

func newShapeEmulator(t *testing.T, c framework.Cloud) *shapeEmulator {
	e := &shapeEmulator{cloud: c}
	switch c := c.(type) {
	case *framework.GCECloud:
		e.gce = c
		e.zones = c.Server.Zones()
	case *framework.EC2Cloud:
		e.ec2 = c
		e.subnets, e.subnetZones = c.Subnets()
	default:
		t.Fatalf("Unknown cloud %T", c)
	}
	if len(e.zones) < 2 && len(e.subnets) < 2 {
		t.Fatalf("The %s emulator has one zone: no fallback to test", c.Name())
	}
	return e
}

// expect returns the shape an instance of nc gets when it lands in its zone (EC2: subnet) of index
// zone with its instance type of index typ.
func (e *shapeEmulator) expect(nc *ippv1alpha1.NodeClass, zone, typ int) recordedShape {
	if e.gce != nil {
		g := nc.Spec.GCE
		return recordedShape{zone: g.Zones[zone], instanceType: g.MachineType, image: g.Image, serviceAccount: g.ServiceAccount, nodeClass: nc.Name}
	}
	x := nc.Spec.EC2
	s := recordedShape{
		zone: e.subnetZones[indexOf(e.subnets, x.Subnets[zone])], subnet: x.Subnets[zone],
		instanceType: x.InstanceTypes[typ], image: x.AMI, instanceProfile: x.InstanceProfile,
		securityGroups: strings.Join(x.SecurityGroups, ","), nodeClass: nc.Name,
	}
	if s.securityGroups == "" {
		s.securityGroups = "sg-0000000000000000a" // the emulator's default group
	}
	return s
}

// first returns s's first element alone, or nil.
func first(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s[:1]
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// recorded returns what the emulator recorded of node's live instance.
func (e *shapeEmulator) recorded(node string) recordedShape {
	if e.gce != nil {
		inst, ok := e.gce.Server.Instance(node)
		if !ok {
			return recordedShape{}
		}
		return recordedShape{
			zone:           inst.Zone,
			instanceType:   path.Base(inst.MachineType),
			image:          inst.Image,
			serviceAccount: inst.ServiceAccount,
			nodeClass:      inst.Metadata[cloudprovider.TagNodeClass],
			providerID:     e.gce.Server.ProviderID(inst.Zone, inst.Name),
		}
	}
	for _, inst := range e.ec2.Server.Instances() {
		if inst.Name != node || inst.State == "shutting-down" || inst.State == "terminated" {
			continue
		}
		return recordedShape{
			zone:            inst.AvailabilityZone,
			subnet:          inst.SubnetID,
			instanceType:    inst.InstanceType,
			image:           inst.ImageID,
			securityGroups:  strings.Join(inst.SecurityGroupIDs, ","),
			instanceProfile: inst.InstanceProfile,
			nodeClass:       inst.Tags[cloudprovider.TagNodeClass],
			providerID:      inst.ProviderID,
		}
	}
	return recordedShape{}
}

// check checks that node's instance has the shape want (GCE: its machine type in its own zone),
// and returns what the emulator recorded.
func (e *shapeEmulator) check(t *testing.T, node string, want recordedShape) recordedShape {
	t.Helper()
	got := e.recorded(node)
	cmpGot, cmpWant := got, want
	cmpGot.providerID = ""
	if cmpGot != cmpWant {
		t.Errorf("The %s emulator recorded the instance of %s as\n  %+v\nwant\n  %+v", e.cloud.Name(), node, got, want)
	}
	if e.gce != nil {
		inst, _ := e.gce.Server.Instance(node)
		if suffix := "/zones/" + want.zone + "/machineTypes/" + want.instanceType; !strings.HasSuffix(inst.MachineType, suffix) {
			t.Errorf("Instance of %s has machine type %q, want one ending in %s", node, inst.MachineType, suffix)
		}
	}
	return got
}

// exhaustFirst takes away the capacity that the first choice of shapes-big needs: GCE's first
// zone; EC2's first subnet's zone, and the first instance type everywhere, so that the provider
// must move on to both the next subnet and the next type. It returns the function that gives
// the capacity back.
func (e *shapeEmulator) exhaustFirst() (restore func()) {
	if e.gce != nil {
		e.gce.Server.SetZoneCapacity(e.zones[0], false)
		return func() { e.gce.Server.SetZoneCapacity(e.zones[0], true) }
	}
	e.ec2.Server.SetCapacity(e.subnetZones[0], "", false)
	e.ec2.Server.SetCapacity("", "m5.large", false)
	return func() {
		e.ec2.Server.SetCapacity(e.subnetZones[0], "", true)
		e.ec2.Server.SetCapacity("", "m5.large", true)
	}
}

// failedCreates counts the creations the emulator refused for lack of capacity.
func (e *shapeEmulator) failedCreates() int {
	n := 0
	if e.gce != nil {
		for _, c := range e.gce.Server.Calls() {
			if c.Op == "instances.insert" && c.Fault == "capacity" {
				n++
			}
		}
		return n
	}
	for _, c := range e.ec2.Server.Calls() {
		if c.Action == "RunInstances" && c.Code == "InsufficientInstanceCapacity" {
			n++
		}
	}
	return n
}

// waitLists waits until the emulator has answered n list calls (the controller's resyncs; GCE
// instances.aggregatedList, EC2 DescribeInstances) that arrived after since: the controller has
// read back from the cloud what it holds since then.
func (e *shapeEmulator) waitLists(t *testing.T, since time.Time, n int) {
	t.Helper()
	count := func() int {
		got := 0
		if e.gce != nil {
			for _, c := range e.gce.Server.Calls() {
				if c.Op == "instances.aggregatedList" && c.Time.After(since) && c.Status == 200 {
					got++
				}
			}
			return got
		}
		for _, c := range e.ec2.Server.Calls() {
			if c.Action == "DescribeInstances" && c.Time.After(since) && c.Status == 200 {
				got++
			}
		}
		return got
	}
	err := waitFor(t.Context(), ippTimeout, func(context.Context) (bool, error) { return count() >= n, nil })
	if err != nil {
		t.Fatalf("Waiting for %d list calls to the %s emulator after %v: %v (got %d)", n, e.cloud.Name(), since, err, count())
	}
}
