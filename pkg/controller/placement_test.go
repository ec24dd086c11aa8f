package controller

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// gatedPod returns a Pod of class in namespace "team" as the webhook admits it under controller
// placement: the class-key nodeSelector, the tolerations and the placement gate; it requests cpu.
func (f *fixture) gatedPod(name, class, cpu string, created time.Time) *corev1.Pod {
	p := f.pod(name, class, created)
	p.Spec.NodeSelector = map[string]string{isolation.ClassLabel: f.cfg.ClassKey("team", class)}
	p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: placement.Gate}}
	p.Spec.Containers = []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
	}}}
	return p
}

// classNode returns a Ready node of 4 CPUs bound to class under controller placement.
func (f *fixture) classNode(name, class string, created time.Time) *corev1.Node {
	n := label(f.node(name, "fake:///"+name, created),
		isolation.BindingLabel, name,
		isolation.ClassLabel, f.cfg.ClassKey("team", class),
		isolation.NamespaceLabel, "team",
		isolation.ClassNameLabel, class,
		isolation.NodeClassNodeLabel, isolation.DefaultNodeClass,
		corev1.LabelTopologyZone, "zone-a")
	n.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	return n
}

func newPlacementFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.cfg.Placement = isolation.PlacementController
	f.newController()
	f.list()
	return f
}

// placements returns, by Pod, the node each placement PATCH since the last call names.
func (f *fixture) placements() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	for _, a := range f.actions() {
		if !strings.HasPrefix(a, "patch pods/") {
			continue
		}
		name := strings.Fields(strings.TrimPrefix(a, "patch pods/"))[0]
		i := strings.Index(a, `"values":["`)
		if i < 0 {
			f.t.Fatalf("placement patch without a node name: %s", a)
		}
		rest := a[i+len(`"values":["`):]
		out[name] = rest[:strings.IndexByte(rest, '"')]
	}
	return out
}

func (f *fixture) place(class string) {
	f.t.Helper()
	f.refresh()
	if err := f.c.place(f.ctx, f.cfg.ClassKey("team", class)); err != nil {
		f.t.Fatalf("place(%s): %v", class, err)
	}
}

// TestPlaceFillsRoomThenPlansNodes: Pods go to the class's nodes with room, the fullest first,
// never beyond a node's allocatable; those that fit nowhere get exactly the new nodes they need
// (two 1.5-CPU Pods per 4-CPU node), and a second round, on the same or a newer view, neither
// places a Pod twice nor plans again.
func TestPlaceFillsRoomThenPlansNodes(t *testing.T) {
	f := newPlacementFixture(t)
	f.addNode(f.classNode("ipp-grow-a", "grow", t0))
	f.addNode(f.classNode("ipp-grow-b", "grow", t0))
	running := f.gatedPod("running", "grow", "1500m", t0)
	running.Spec.SchedulingGates = nil
	running.Spec.NodeName = "ipp-grow-a"
	running.Status.Phase = corev1.PodRunning
	f.addPod(running)
	for i, name := range []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6"} {
		f.addPod(f.gatedPod(name, "grow", "1500m", t0.Add(time.Duration(i)*time.Second)))
	}
	f.place("grow")
	got := f.placements()
	perNode := map[string]int{}
	for _, n := range got {
		perNode[n]++
	}
	// a has 2.5 CPUs left: one more Pod; b has 4: two.
	if perNode["ipp-grow-a"] != 1 || perNode["ipp-grow-b"] != 2 || len(got) != 3 {
		t.Fatalf("placed %v, want one Pod on ipp-grow-a (the fullest) and two on ipp-grow-b", got)
	}
	if got["p0"] != "ipp-grow-a" {
		t.Errorf("the oldest Pod went to %s, want the fullest node ipp-grow-a", got["p0"])
	}
	key := f.cfg.ClassKey("team", "grow")
	if n := f.c.inflight(key, isolation.DefaultNodeClass, nil); n != 2 {
		t.Errorf("planned %d new nodes for four 1.5-CPU Pods on 4-CPU nodes, want 2", n)
	}
	if !strings.Contains(strings.Join(f.events(), " "), "Normal "+ReasonWaitingForRoom) {
		t.Errorf("no %s Event for the Pods that wait", ReasonWaitingForRoom)
	}

	// The same view again (the informer has not shown the patches yet): nothing new.
	if err := f.c.place(f.ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := f.placements(); len(got) != 0 {
		t.Errorf("a round on the old view placed %v again", got)
	}
	// The newer view: still nothing, and no more nodes planned.
	f.place("grow")
	if got := f.placements(); len(got) != 0 {
		t.Errorf("a round on the new view placed %v", got)
	}
	if n := f.c.inflight(key, isolation.DefaultNodeClass, nil); n != 2 {
		t.Errorf("after a second round %d nodes are planned, want still 2", n)
	}
}

// TestPlaceOnlyOnItsOwnClass: a node that carries the Pod's class key but records another
// namespace or class never gets the Pod, nor does a node of another class with room.
func TestPlaceOnlyOnItsOwnClass(t *testing.T) {
	f := newPlacementFixture(t)
	forged := f.classNode("ipp-forged", "a", t0)
	forged.Labels[isolation.ClassNameLabel] = "b"
	f.addNode(forged)
	f.addNode(f.classNode("ipp-other", "b", t0))
	f.addPod(f.gatedPod("p", "a", "100m", t0))
	f.place("a")
	if got := f.placements(); len(got) != 0 {
		t.Fatalf("placed %v on a node not bound to the Pod's class", got)
	}
	if n := f.c.inflight(f.cfg.ClassKey("team", "a"), isolation.DefaultNodeClass, nil); n != 1 {
		t.Errorf("planned %d nodes, want 1 of its own", n)
	}
}

// TestPlaceHonoursThePodsAffinity: a Pod is placed only on a node its own node selector matches;
// one that asks for a zone its class's nodes are not in, while one of them has room, plans no node
// (a new one would come up in the same zone, and the next, without end); one that asks for a label
// no IPP node has gets an Unsatisfiable Event and plans nothing.
func TestPlaceHonoursThePodsAffinity(t *testing.T) {
	f := newPlacementFixture(t)
	f.addNode(f.classNode("ipp-a", "a", t0))
	zoned := f.gatedPod("zoned", "a", "100m", t0)
	zoned.Spec.NodeSelector[corev1.LabelTopologyZone] = "zone-b"
	f.addPod(zoned)
	f.place("a")
	if got := f.placements(); len(got) != 0 {
		t.Fatalf("placed %v on a node in another zone", got)
	}
	key := f.cfg.ClassKey("team", "a")
	if n := f.c.inflight(key, isolation.DefaultNodeClass, nil); n != 0 {
		t.Errorf("a Pod for zone-b, with room in zone-a, planned %d nodes, want 0", n)
	}
	if ev := strings.Join(f.events(), " "); !strings.Contains(ev, "Warning "+ReasonUnsatisfiable) {
		t.Errorf("events %q, want %s", ev, ReasonUnsatisfiable)
	}

	f2 := newPlacementFixture(t)
	f2.addNode(f2.classNode("ipp-a", "a", t0))
	gpu := f2.gatedPod("gpu", "a", "100m", t0)
	gpu.Spec.NodeSelector["gpu"] = "true"
	f2.addPod(gpu)
	f2.place("a")
	if got := f2.placements(); len(got) != 0 {
		t.Fatalf("placed %v on a node without the label", got)
	}
	if n := f2.c.inflight(key, isolation.DefaultNodeClass, nil); n != 0 {
		t.Errorf("a Pod no IPP node can take planned %d nodes", n)
	}
	if ev := strings.Join(f2.events(), " "); !strings.Contains(ev, "Warning "+ReasonUnsatisfiable) {
		t.Errorf("events %q, want %s", ev, ReasonUnsatisfiable)
	}
}

// TestPlaceSkipsNodesBeingReaped: a node marked for reaping, cordoned or not Ready takes no Pod.
func TestPlaceSkipsNodesBeingReaped(t *testing.T) {
	f := newPlacementFixture(t)
	reaping := f.classNode("ipp-reaping", "a", t0)
	reaping.Labels[isolation.ReapingLabel] = unix(t0)
	f.addNode(reaping)
	cordoned := f.classNode("ipp-cordoned", "a", t0)
	cordoned.Spec.Unschedulable = true
	f.addNode(cordoned)
	notReady := f.classNode("ipp-notready", "a", t0)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	f.addNode(notReady)
	// Tainted by an admin: IPP Pods do not tolerate it.
	tainted := f.classNode("ipp-tainted", "a", t0)
	tainted.Spec.Taints = append(tainted.Spec.Taints, corev1.Taint{Key: "maintenance", Effect: corev1.TaintEffectNoSchedule})
	f.addNode(tainted)
	f.addPod(f.gatedPod("p", "a", "100m", t0))
	f.place("a")
	if got := f.placements(); len(got) != 0 {
		t.Fatalf("placed %v on a node that takes no Pod", got)
	}
	// The not-Ready node will take Pods in a moment: no node is planned.
	if n := f.c.inflight(f.cfg.ClassKey("team", "a"), isolation.DefaultNodeClass, nil); n != 0 {
		t.Errorf("planned %d new nodes while one of the class's nodes is coming up, want 0", n)
	}

	// A Ready node that still carries node.kubernetes.io/not-ready takes the Pod: IPP Pods
	// tolerate it under controller placement.
	f2 := newPlacementFixture(t)
	fresh := f2.classNode("ipp-fresh", "a", t0)
	fresh.Spec.Taints = append(fresh.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule})
	f2.addNode(fresh)
	f2.addPod(f2.gatedPod("p", "a", "100m", t0))
	f2.place("a")
	if got := f2.placements(); got["p"] != "ipp-fresh" {
		t.Errorf("placed %v, want p on the Ready node still tainted not-ready", got)
	}
	if _, err := f.kube.CoreV1().Pods("team").Get(f.ctx, "p", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestUnregisteredNodeWithoutPods: an instance created for a class's waiting Pods whose Pods all
// went away before it registered is deleted after the idle TTL, not kept for the whole
// registration timeout; while a Pod of the class waits, it is kept.
func TestUnregisteredNodeWithoutPods(t *testing.T) {
	f := newPlacementFixture(t)
	name := isolation.InstanceName("a", []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if _, err := f.provider.Provider.Create(f.ctx, cloudprovider.InstanceSpec{NodeName: name, Class: "a", Namespace: "team", IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	f.list()
	p := f.addPod(f.gatedPod("p", "a", "100m", t0))
	f.clock.Step(testIdleTTL + time.Second)
	f.mustSync(name)
	if n := len(f.liveInstances()); n != 1 {
		t.Fatalf("with a Pod waiting, %d instances are left, want the one", n)
	}
	f.deletePod(p)
	if after := f.mustSync(name); after != 0 {
		t.Errorf("sync returned %v, want the instance deleted now", after)
	}
	if n := len(f.liveInstances()); n != 0 {
		t.Fatalf("without Pods, %d instances are left after the idle TTL, want 0 (the registration timeout is %v)", n, testRegTimeout)
	}
}

// warmNode returns a Ready warm node of NodeClass nc, as the controller binds it.
func (f *fixture) warmNode(name, nc string, created time.Time) *corev1.Node {
	n := f.classNode(name, "x", created)
	delete(n.Labels, isolation.ClassLabel)
	delete(n.Labels, isolation.NamespaceLabel)
	delete(n.Labels, isolation.ClassNameLabel)
	n.Labels[isolation.WarmLabel] = isolation.LabelValue
	n.Labels[isolation.NodeClassNodeLabel] = nc
	return n
}

// TestClaimRespectsTheClassLimits: a class whose namespace is at its NodeClass's
// limits.instancesPerNamespace cannot take a warm node (which would put the namespace over the
// limit), while one of another namespace can; and a claimed warm instance counts against the
// namespace and class it was claimed for, not against the pool.
func TestClaimRespectsTheClassLimits(t *testing.T) {
	f := newFixture(t)
	f.cfg.Placement = isolation.PlacementController
	nc := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec: ippv1alpha1.NodeClassSpec{
			Limits: &ippv1alpha1.NodeClassLimits{InstancesPerNamespace: ptr.To[int32](1)},
			Warm:   &ippv1alpha1.WarmPool{Size: 2},
		},
	}
	f.withNodeClasses(nc)
	// team has one instance of pool already; two warm instances wait.
	for _, spec := range []cloudprovider.InstanceSpec{
		{NodeName: "ipp-a-0000000000000001", Class: "a", Namespace: "team", NodeClass: "pool", IdempotencyKey: "1"},
		{NodeName: "ipp-warm-0000000000000002", NodeClass: "pool", IdempotencyKey: "2"},
		{NodeName: "ipp-warm-0000000000000003", NodeClass: "pool", IdempotencyKey: "3"},
	} {
		if _, err := f.provider.Provider.Create(f.ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	f.list()
	f.addNode(f.warmNode("ipp-warm-0000000000000002", "pool", t0))
	f.addNode(f.warmNode("ipp-warm-0000000000000003", "pool", t0.Add(time.Second)))
	p := f.gatedPod("b0", "b", "100m", t0)
	p.Labels[isolation.NodeClassLabel] = "pool"
	f.addPod(p)
	f.place("b")
	for _, a := range f.actions() {
		if strings.HasPrefix(a, "patch nodes/") {
			t.Errorf("claimed a warm node past limits.instancesPerNamespace 1 of namespace team: %s", a)
		}
	}

	// Another namespace may claim one, and then counts it.
	other := f.gatedPod("c0", "c", "100m", t0)
	other.Namespace = "other"
	other.Spec.NodeSelector[isolation.ClassLabel] = f.cfg.ClassKey("other", "c")
	other.Labels[isolation.NodeClassLabel] = "pool"
	f.addPod(other)
	f.refresh()
	if err := f.c.place(f.ctx, f.cfg.ClassKey("other", "c")); err != nil {
		t.Fatal(err)
	}
	claims := 0
	for _, a := range f.actions() {
		if strings.HasPrefix(a, "patch nodes/ipp-warm-0000000000000002") && strings.Contains(a, "ipp-class") {
			claims++
		}
	}
	if claims != 1 {
		t.Fatalf("namespace other claimed %d warm nodes, want the oldest one", claims)
	}
	f.refresh()
	if hit := f.c.ledger.claim(f.c.instances, "ipp-warm-0000000000000003", nc, "other", "d"); hit == nil || hit.Limit != LimitInstancesPerNamespace {
		t.Errorf("a second claim for namespace other: %v, want limits.instancesPerNamespace (the first claim counts)", hit)
	}
}

// TestControllerPlacementBindsWhateverNameRegistered: under controller placement a node's Pods are
// pinned to the name its Node registered with, so a Node named otherwise than its instance (EKS
// names Nodes after their private DNS name) is bound by its providerID alone, with the class labels
// of its instance, even with the node-name pin on; a second Node claiming the same instance is
// never bound and is warned about.
func TestControllerPlacementBindsWhateverNameRegistered(t *testing.T) {
	f := newPlacementFixture(t)
	name := isolation.InstanceName("a", []byte{9, 9, 9, 9, 9, 9, 9, 9})
	inst, err := f.provider.Provider.Create(f.ctx, cloudprovider.InstanceSpec{NodeName: name, Class: "a", Namespace: "team", IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	f.list()
	f.addPod(f.gatedPod("p", "a", "100m", t0))
	first := "ip-10-0-0-2.ec2.internal"
	f.addNode(f.node(first, inst.ProviderID, t0))
	f.mustSync(name)
	got := f.getNode(first).Labels
	for k, want := range map[string]string{
		isolation.BindingLabel: name, isolation.ClassLabel: f.cfg.ClassKey("team", "a"),
		isolation.NamespaceLabel: "team", isolation.ClassNameLabel: "a",
	} {
		if got[k] != want {
			t.Errorf("Node %s: %s=%q, want %q", first, k, got[k], want)
		}
	}
	f.events()
	f.actions()

	second := "ip-10-0-0-1.ec2.internal"
	f.addNode(f.node(second, inst.ProviderID, t0))
	f.clock.Step(3 * time.Second)
	f.list()
	f.mustSync(name)
	if v, ok := f.getNode(second).Labels[isolation.ClassLabel]; ok {
		t.Errorf("the second Node of one instance was bound to class key %q", v)
	}
	if ev := strings.Join(f.events(), " "); !strings.Contains(ev, "Warning "+ReasonUntrustedNode) {
		t.Errorf("events %q, want %s", ev, ReasonUntrustedNode)
	}
}
