package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/cloudprovider/fake"
	ippfake "github.com/ipp-project/ipp/pkg/generated/clientset/versioned/fake"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// withNodeClasses rebuilds the fixture's controller reading NodeClasses, which ncs are.
func (f *fixture) withNodeClasses(ncs ...*ippv1alpha1.NodeClass) {
	f.t.Helper()
	f.ipp = ippfake.NewSimpleClientset()
	for _, nc := range ncs {
		f.addNodeClass(nc)
	}
	f.newController()
}

func (f *fixture) addNodeClass(nc *ippv1alpha1.NodeClass) {
	f.t.Helper()
	if nc.UID == "" {
		nc.UID = types.UID("uid-nc-" + nc.Name)
	}
	if _, err := f.ipp.IppV1alpha1().NodeClasses().Create(f.ctx, nc, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.ipp.ClearActions()
}

func limited(name string, instances int32) *ippv1alpha1.NodeClass {
	return &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       ippv1alpha1.NodeClassSpec{Limits: &ippv1alpha1.NodeClassLimits{Instances: ptr.To(instances)}},
	}
}

// ncPod is f.pod of NodeClass nc.
func (f *fixture) ncPod(name, class, nc string, created time.Time) *corev1.Pod {
	p := f.pod(name, class, created)
	p.Labels[isolation.NodeClassLabel] = nc
	return p
}

// eventsWith drains the recorder and returns the Events whose text has reason.
func (f *fixture) eventsWith(reason string) []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			if strings.Contains(e, " "+reason+" ") {
				out = append(out, e)
			}
		default:
			return out
		}
	}
}

// countLive returns how many live instances the fake cloud has. Its List shows in f.calls as a
// list, which f.calls leaves out.
func (f *fixture) countLive() int {
	f.t.Helper()
	insts, err := f.provider.Provider.List(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return len(insts)
}

// TestNodeClassShapeReachesProvider: the instance of a Pod of NodeClass metal is created with
// metal's shape and records metal; the index then counts it as metal's.
func TestNodeClassShapeReachesProvider(t *testing.T) {
	f := newFixture(t)
	metal := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec: ippv1alpha1.NodeClassSpec{
			GCE: &ippv1alpha1.GCENodeClass{MachineType: "n2-standard-8", Zones: []string{"us-central1-a", "us-central1-b"}},
			EC2: &ippv1alpha1.EC2NodeClass{InstanceTypes: []string{"i3.metal", "m5.metal"}, AMI: "ami-0123"},
		},
	}
	f.withNodeClasses(metal)
	n := f.nodeName("a")
	f.addPod(f.ncPod("p1", "a", "metal", t0))
	f.list()
	f.mustSync(n)
	if len(f.provider.specs) != 1 {
		t.Fatalf("specs = %+v, want one", f.provider.specs)
	}
	spec := f.provider.specs[0]
	diff(t, "NodeClass", "metal", spec.NodeClass)
	diff(t, "GCE shape", metal.Spec.GCE, spec.GCE)
	diff(t, "EC2 shape", metal.Spec.EC2, spec.EC2)
	insts := f.liveInstances()
	if len(insts) != 1 || insts[0].NodeClass != "metal" {
		t.Errorf("instances = %+v, want one of NodeClass metal", insts)
	}
}

// TestNodeClassTimeoutsOverrideFlags: a NodeClass's registrationTimeout decides when its instance
// is replaced, and its idleTTL when its node is reaped; the flags apply to the built-in default.
func TestNodeClassTimeoutsOverrideFlags(t *testing.T) {
	f := newFixture(t)
	f.withNodeClasses(&ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "slow"},
		Spec: ippv1alpha1.NodeClassSpec{
			IdleTTL:             &metav1.Duration{Duration: 2 * time.Minute},
			RegistrationTimeout: &metav1.Duration{Duration: 40 * time.Minute},
		},
	})
	n, d := f.nodeName("a"), f.nodeName("b")
	f.addPod(f.ncPod("p1", "a", "slow", t0))
	f.addPod(f.pod("p2", "b", t0))
	f.list()
	diff(t, "requeue of NodeClass slow", 40*time.Minute, f.mustSync(n))
	diff(t, "requeue of the default", testRegTimeout, f.mustSync(d))

	// Once its instance exists, the instance's NodeClass decides, whatever the Pods ask for.
	f.clock.Step(time.Minute)
	diff(t, "requeue later", 39*time.Minute, f.mustSync(n))

	// Bound and idle: the idle clock runs for the NodeClass's idleTTL.
	var inst cloudprovider.Instance
	for _, i := range f.liveInstances() {
		if i.NodeName == n {
			inst = i
		}
	}
	f.addNode(bound(f.node(n, inst.ProviderID, f.clock.Now()), n))
	f.deletePod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p1"}})
	f.clock.Step(time.Minute)
	f.list()
	diff(t, "idle requeue of NodeClass slow", 2*time.Minute, f.mustSync(n))
}

// TestLimitInstances: five classes of a NodeClass limited to three instances get exactly three
// instances, and the other two LimitReached Events naming the limit; once one instance goes, a
// waiting class is enqueued and gets its instance.
func TestLimitInstances(t *testing.T) {
	f := newFixture(t)
	f.withNodeClasses(limited("small", 3))
	var names []string
	for i := range 5 {
		class := fmt.Sprintf("c%d", i)
		f.addPod(f.ncPod("p-"+class, class, "small", t0.Add(time.Duration(i)*time.Second)))
		names = append(names, f.nodeName(class))
	}
	f.list()
	for _, n := range names {
		f.mustSync(n)
	}
	if got := f.countLive(); got != 3 {
		t.Fatalf("instances = %d, want 3", got)
	}
	hits := f.eventsWith(ReasonLimitReached)
	if len(hits) != 2 {
		t.Fatalf("LimitReached Events = %q, want 2", hits)
	}
	for _, e := range hits {
		if !strings.Contains(e, "NodeClass small allows 3 instances (spec.limits.instances)") {
			t.Errorf("Event %q does not name the limit, its value and the NodeClass", e)
		}
	}
	// Reconciling the waiting ones again changes nothing and tells nobody twice.
	f.mustSync(names[3])
	if got := f.countLive(); got != 3 || len(f.eventsWith(ReasonLimitReached)) != 0 {
		t.Fatalf("a retry created (%d instances) or repeated its Event", got)
	}

	// The first class's Pod goes; its instance, which never registered, is deleted after the
	// registration timeout. That frees a slot: the waiting classes are enqueued.
	f.deletePod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p-c0"}})
	f.clock.Step(testRegTimeout)
	f.drainQueue()
	f.mustSync(names[0])
	diff(t, "provider calls", []string{"create " + names[0], "create " + names[1], "create " + names[2], "delete " + names[0]}, f.calls())
	queued := f.drainQueue()
	want := []string{names[3], names[4]}
	slices.Sort(want)
	diff(t, "enqueued after the deletion", want, queued)
	f.mustSync(names[3])
	f.mustSync(names[4])
	diff(t, "provider calls after", []string{"create " + names[3]}, f.calls())
	if got := f.countLive(); got != 3 {
		t.Errorf("instances = %d, want 3", got)
	}
}

// TestMaxInstances: --max-instances bounds the instances of every NodeClass together, without any
// NodeClass object.
func TestMaxInstances(t *testing.T) {
	f := newFixture(t)
	f.maxInstances = 2
	f.newController()
	for i := range 3 {
		f.addPod(f.pod(fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i), t0.Add(time.Duration(i)*time.Second)))
	}
	f.list()
	for i := range 3 {
		f.mustSync(f.nodeName(fmt.Sprintf("c%d", i)))
	}
	if got := f.countLive(); got != 2 {
		t.Fatalf("instances = %d, want 2", got)
	}
	hits := f.eventsWith(ReasonLimitReached)
	if len(hits) != 1 || !strings.Contains(hits[0], "limit of 2 IPP instances (--max-instances)") || !strings.Contains(hits[0], "NodeClass default") {
		t.Errorf("LimitReached Events = %q, want one naming --max-instances, 2 and NodeClass default", hits)
	}
}

// TestInstancesPerNamespace: a namespace that has its NodeClass's instancesPerNamespace waits,
// another namespace does not.
func TestInstancesPerNamespace(t *testing.T) {
	f := newFixture(t)
	nc := limited("shared", 10)
	nc.Spec.Limits.InstancesPerNamespace = ptr.To[int32](1)
	f.withNodeClasses(nc)
	f.addPod(f.ncPod("p1", "a", "shared", t0))
	f.addPod(f.ncPod("p2", "b", "shared", t0.Add(time.Second)))
	other := f.ncPod("p3", "a", "shared", t0.Add(2*time.Second))
	other.Namespace = "other"
	other.Spec.NodeSelector[isolation.BindingLabel] = f.cfg.NodeName("other", "a")
	f.addPod(other)
	f.list()
	f.mustSync(f.nodeName("a"))
	f.mustSync(f.nodeName("b"))
	f.mustSync(f.cfg.NodeName("other", "a"))
	diff(t, "provider calls", []string{"create " + f.nodeName("a"), "create " + f.cfg.NodeName("other", "a")}, f.calls())
	hits := f.eventsWith(ReasonLimitReached)
	if len(hits) != 1 || !strings.Contains(hits[0], "1 instances per namespace (spec.limits.instancesPerNamespace) and namespace team has 1") {
		t.Errorf("LimitReached Events = %q, want one for namespace team", hits)
	}
}

// TestNodeClassRefusals: a Pod of a NodeClass that does not exist, of one whose namespaceSelector
// leaves its namespace out, or of another NodeClass than its class's instance, creates nothing
// and is told why.
func TestNodeClassRefusals(t *testing.T) {
	f := newFixture(t)
	picky := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "picky"},
		Spec:       ippv1alpha1.NodeClassSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}},
	}
	if _, err := f.kube.CoreV1().Namespaces().Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"tier": "tin"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.withNodeClasses(picky)
	f.addPod(f.ncPod("p1", "a", "missing", t0))
	f.addPod(f.ncPod("p2", "b", "picky", t0))
	f.list()
	f.mustSync(f.nodeName("a"))
	f.mustSync(f.nodeName("b"))
	diff(t, "provider calls", []string(nil), f.calls())
	diff(t, "events", []string{"Warning " + ReasonNodeClassNotAdmitted, "Warning " + ReasonNodeClassNotFound}, f.events())

	// The namespace is labelled: the NodeClass admits it now.
	if _, err := f.kube.CoreV1().Namespaces().Update(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"tier": "gold"}}}, metav1.UpdateOptions{FieldManager: testFieldManager}); err != nil {
		t.Fatal(err)
	}
	f.mustSync(f.nodeName("b"))
	diff(t, "provider calls once admitted", []string{"create " + f.nodeName("b")}, f.calls())
	f.events()

	// A younger Pod of the same class asks for the default NodeClass: it gets a mismatch Warning.
	f.addPod(f.pod("p3", "b", t0.Add(time.Minute)))
	f.mustSync(f.nodeName("b"))
	diff(t, "events of the mismatch", []string{"Warning " + ReasonNodeClassMismatch}, f.events())
	diff(t, "provider calls", []string(nil), f.calls())
}

// TestLimitCountsJournalAfterRestart: after a restart, the join tokens that the journal records
// and no listed instance carries are creations that may be in flight (the previous controller
// crashed before it saw Create's reply): they count against the limit until an instance carries
// them or the orphan collection removes them. Until the journal has been read, nothing is created.
func TestLimitCountsJournalAfterRestart(t *testing.T) {
	f := newFixture(t)
	f.ipp = ippfake.NewSimpleClientset()
	f.addNodeClass(limited("small", 3))
	f.withTokens(map[string]string{})
	// The previous controller minted tokens for three creations of NodeClass small just now: two
	// for classes whose Pods have gone since, one for class c0, whose creation c0's takes over.
	for i, id := range []string{"aaaaaa", "bbbbbb", "cccccc"} {
		node := f.nodeName(fmt.Sprintf("old%d", i))
		if i == 2 {
			node = f.nodeName("c0")
		}
		v := journalValue{NodeName: node, NodeClass: "small", Namespace: "team"}
		if err := f.c.journal.record(f.ctx, id, v, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		class := fmt.Sprintf("c%d", i)
		f.addPod(f.ncPod("p-"+class, class, "small", t0))
	}
	// No List yet: the journal is unknown, so nothing is created (a real controller does not
	// even start its workers before the first List).
	f.c.instances.replace(f.c.instances.beginList(f.clock.Now()), nil, f.clock.Now())
	f.mustSync(f.nodeName("c0"))
	diff(t, "provider calls before the journal is read", []string(nil), f.calls())

	f.list()
	for i := range 3 {
		f.mustSync(f.nodeName(fmt.Sprintf("c%d", i)))
	}
	diff(t, "provider calls", []string{"create " + f.nodeName("c0")}, f.calls())
	if hits := f.eventsWith(ReasonLimitReached); len(hits) != 2 {
		t.Errorf("LimitReached Events = %q, want 2", hits)
	}

	// Later Lists collect the orphan tokens (no instance ever carried them): the slots free up.
	f.clock.Step(time.Minute)
	f.list()
	f.mustSync(f.nodeName("c1"))
	f.mustSync(f.nodeName("c2"))
	diff(t, "provider calls once the orphans are collected", []string{"create " + f.nodeName("c1"), "create " + f.nodeName("c2")}, f.calls())
}

// TestNodeClassStatusClasses: the status counts classes, not nodes: two nodes of one class
// (controller placement, each uniquely named) and one of another are two classes on three nodes.
func TestNodeClassStatusClasses(t *testing.T) {
	f := newFixture(t)
	f.withNodeClasses(limited("small", 10))
	for _, inst := range []cloudprovider.Instance{
		{NodeName: "ipp-grow-0000000000000001", Namespace: "ns", Class: "grow", NodeClass: "small", State: cloudprovider.StateRunning, CreatedAt: t0},
		{NodeName: "ipp-grow-0000000000000002", Namespace: "ns", Class: "grow", NodeClass: "small", State: cloudprovider.StateRunning, CreatedAt: t0},
		{NodeName: "ipp-other-0000000000000003", Namespace: "ns", Class: "other", NodeClass: "small", State: cloudprovider.StateRunning, CreatedAt: t0},
	} {
		f.provider.Add(inst)
	}
	f.list()
	if err := f.c.syncStatus(f.ctx, "small"); err != nil {
		t.Fatal(err)
	}
	nc, err := f.ipp.IppV1alpha1().NodeClasses().Get(f.ctx, "small", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "nodes and classes", []int32{3, 2}, []int32{nc.Status.Nodes, nc.Status.Classes})
}

// TestNodeClassStatus: the status counts the NodeClass's instances, classes and bound Pods, and
// says Ready and whether a limit keeps a Pod waiting; it is written only when it changed, through
// the status subresource, with the controller's field manager.
func TestNodeClassStatus(t *testing.T) {
	f := newFixture(t)
	f.withNodeClasses(limited("small", 1))
	a, b := f.nodeName("a"), f.nodeName("b")
	pa := f.ncPod("pa", "a", "small", t0)
	pa.Spec.NodeName = a
	f.addPod(pa)
	f.addPod(f.ncPod("pb", "b", "small", t0))
	f.list()
	f.mustSync(a)
	f.mustSync(b)
	if err := f.c.syncStatus(f.ctx, "small"); err != nil {
		t.Fatal(err)
	}
	var updates int
	for _, a := range f.ipp.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			updates++
		}
	}
	if updates != 1 {
		t.Fatalf("status updates = %d, want 1 (actions %v)", updates, f.ipp.Actions())
	}
	nc, err := f.ipp.IppV1alpha1().NodeClasses().Get(f.ctx, "small", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := nc.Status
	diff(t, "counts", []int32{1, 1, 1}, []int32{st.Nodes, st.Classes, st.Pods})
	cond := map[string]metav1.Condition{}
	for _, c := range st.Conditions {
		cond[c.Type] = c
	}
	if c := cond[ippv1alpha1.ConditionReady]; c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v, want True", c)
	}
	if c := cond[ippv1alpha1.ConditionLimitReached]; c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "NodeClass small allows 1 instances") {
		t.Errorf("LimitReached = %+v, want True naming the limit", c)
	}

	// Unchanged: no write.
	f.ipp.ClearActions()
	f.refresh()
	if err := f.c.syncStatus(f.ctx, "small"); err != nil {
		t.Fatal(err)
	}
	for _, a := range f.ipp.Actions() {
		if a.GetVerb() == "update" {
			t.Errorf("status written again though unchanged: %v", a)
		}
	}
	// A NodeClass that is gone is no error.
	if err := f.ipp.IppV1alpha1().NodeClasses().Delete(f.ctx, "small", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	if err := f.c.syncStatus(f.ctx, "small"); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("syncStatus of a deleted NodeClass: %v", err)
	}
}

// slowProvider is the fake provider whose Create takes a while, so that concurrent workers'
// creations overlap, and which records the most live instances it ever had.
type slowProvider struct {
	*fake.Provider
	mu      sync.Mutex
	maxLive int
}

func (p *slowProvider) Create(ctx context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	// Latency of a cloud call, to make the workers' creations overlap; nothing waits on it.
	time.Sleep(5 * time.Millisecond)
	inst, err := p.Provider.Create(ctx, spec)
	insts, _ := p.Provider.List(ctx)
	p.mu.Lock()
	p.maxLive = max(p.maxLive, len(insts))
	p.mu.Unlock()
	return inst, err
}

// TestLimitsUnderConcurrency drives the controller through informers with eight workers and
// twenty classes against a NodeClass limited to three instances and --max-instances 5 over two
// NodeClasses: no limit is ever exceeded.
func TestLimitsUnderConcurrency(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clk := testingclock.NewFakeClock(t0)
	kube := k8sfake.NewClientset()
	ipp := ippfake.NewSimpleClientset(limited("small", 3))
	provider := &slowProvider{Provider: fake.New(clk)}
	cfg := isolation.DefaultConfig()
	pods, nodes := newInformerFactories(kube, cfg)
	ncs := ippinformers.NewSharedInformerFactory(ipp, 0)
	nss := newNamespaceInformerFactory(kube)
	c, err := newWithInformers(kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), provider, record.NewFakeRecorder(10000), Options{
		Config: cfg, IdleTTL: testIdleTTL, ProviderResync: testResync, Clock: clk,
		MaxInstances: 5, IPPClient: ipp, NodeClasses: ncs.Ipp().V1alpha1().NodeClasses(), Namespaces: nss.Core().V1().Namespaces(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []interface{ Start(<-chan struct{}) }{pods, nodes, ncs, nss} {
		f.Start(ctx.Done())
	}
	done := make(chan error)
	go func() { done <- c.Run(ctx, 8) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		pods.Shutdown()
		nodes.Shutdown()
		ncs.Shutdown()
		nss.Shutdown()
	}()

	f := &fixture{cfg: cfg}
	for i := range 20 {
		nc := "small"
		if i%2 == 1 {
			nc = isolation.DefaultNodeClass
		}
		class := fmt.Sprintf("c%d", i)
		if _, err := kube.CoreV1().Pods("team").Create(ctx, f.ncPod("p-"+class, class, nc, t0), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Every class is reconciled; the creations stop at the limits.
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		insts, err := provider.Provider.List(ctx)
		if len(insts) > 5 {
			return false, fmt.Errorf("%d instances, above --max-instances 5", len(insts))
		}
		return len(insts) == 5 && len(c.ledger.waitingNodes("", true)) == 15, err
	})
	if err != nil {
		t.Fatalf("waiting for 5 instances and 15 waiting classes: %v (waiting %d)", err, len(c.ledger.waitingNodes("", true)))
	}
	insts, _ := provider.Provider.List(ctx)
	byNC := map[string]int{}
	for _, inst := range insts {
		byNC[inst.NodeClass]++
	}
	if byNC["small"] > 3 || len(insts) != 5 {
		t.Errorf("instances by NodeClass = %v, want at most 3 of small and 5 in all", byNC)
	}
	if provider.maxLive > 5 {
		t.Errorf("at most %d instances at once, want at most 5", provider.maxLive)
	}
	if n := provider.CallCount("create"); n != 5 {
		t.Errorf("creates = %d, want 5", n)
	}
}

func TestNodeClassNotReadyWhileCreationsAreRejected(t *testing.T) {
	// The cloud refuses a NodeClass's creation as invalid (a machine type that does not exist):
	// retrying cannot help, so its Ready condition turns False, saying why, until an instance of it
	// is created.
	f := newFixture(t)
	f.withNodeClasses(limited("small", 5))
	a := f.nodeName("a")
	f.addPod(f.ncPod("pa", "a", "small", t0))
	f.list()
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindInvalid, "create", "invalid", errors.New("machine type n9-huge does not exist")))
	if _, err := f.sync(a); err == nil {
		t.Fatal("sync succeeded though the creation was refused")
	}
	ready := func() metav1.Condition {
		t.Helper()
		f.refresh()
		if err := f.c.syncStatus(f.ctx, "small"); err != nil {
			t.Fatal(err)
		}
		nc, err := f.ipp.IppV1alpha1().NodeClasses().Get(f.ctx, "small", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range nc.Status.Conditions {
			if c.Type == ippv1alpha1.ConditionReady {
				return c
			}
		}
		t.Fatal("no Ready condition")
		return metav1.Condition{}
	}
	if c := ready(); c.Status != metav1.ConditionFalse || c.Reason != "CreationRejected" || !strings.Contains(c.Message, "n9-huge") {
		t.Errorf("Ready after a refused creation = %+v, want False, CreationRejected, naming the error", c)
	}

	f.c.forgetState(a, f.clock.Now()) // past the back-off
	f.mustSync(a)
	diff(t, "creations", 1, len(f.liveInstances()))
	if c := ready(); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready after an instance was created = %+v, want True", c)
	}
}

// TestPlanWaitingForALimitIsDroppedWhenItsPodsGo: under controller placement, a node planned for
// a class that a limit keeps from being created is let go once no Pod of the class waits for it
// any more: placing the class (which finds no Pod waiting) enqueues the plan, whose reconcile
// drops it, so that the NodeClass no longer counts it as waiting for the limit. (Nothing else
// enqueues such a node: gated Pods are not placed on it.)
func TestPlanWaitingForALimitIsDroppedWhenItsPodsGo(t *testing.T) {
	f := newFixture(t)
	f.cfg.Placement = isolation.PlacementController
	f.withNodeClasses(limited("small", 1))
	gated := func(name, class string, created time.Time) *corev1.Pod {
		p := f.ncPod(name, class, "small", created)
		p.Spec.NodeSelector = map[string]string{isolation.ClassLabel: f.cfg.ClassKey("team", class)}
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: placement.Gate}}
		return p
	}
	f.addPod(gated("pa", "a", t0))
	f.addPod(gated("pb", "b", t0.Add(time.Second)))
	f.list()
	planned := func(class string) string {
		t.Helper()
		key := f.cfg.ClassKey("team", class)
		f.refresh()
		if err := f.c.place(f.ctx, key); err != nil {
			t.Fatalf("place(%s): %v", class, err)
		}
		f.c.mu.Lock()
		defer f.c.mu.Unlock()
		if len(f.c.plans[key]) != 1 {
			t.Fatalf("Plans of class %s = %v, want one", class, f.c.plans[key])
		}
		for name := range f.c.plans[key] {
			return name
		}
		return ""
	}
	na, nb := planned("a"), planned("b")
	f.mustSync(na)
	f.mustSync(nb)
	if got := f.countLive(); got != 1 {
		t.Fatalf("instances = %d, want 1", got)
	}
	if hits := f.c.ledger.waitingFor("small"); len(hits) != 1 {
		t.Fatalf("Nodes waiting for NodeClass small's limit: %v, want the one planned for class b", hits)
	}

	// Class b's Pod goes. Its class is placed again (the Pod's deletion enqueues it): no Pod
	// waits, so the plan is enqueued, and its reconcile lets it go.
	f.deletePod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pb"}})
	f.refresh()
	f.drainQueue()
	if err := f.c.place(f.ctx, f.cfg.ClassKey("team", "b")); err != nil {
		t.Fatal(err)
	}
	var queued []string
	for f.c.queue.Len() > 0 {
		key, _ := f.c.queue.Get()
		f.c.queue.Done(key)
		queued = append(queued, key)
	}
	diff(t, "enqueued after class b's Pod went", []string{nb}, queued)
	f.mustSync(nb)
	if hits := f.c.ledger.waitingFor("small"); len(hits) != 0 {
		t.Errorf("Nodes waiting for NodeClass small's limit after class b's Pod went: %v, want none", hits)
	}
	if n := f.c.inflight(f.cfg.ClassKey("team", "b"), "small", nil); n != 0 {
		t.Errorf("Nodes coming for class b after its Pod went: %d, want 0", n)
	}
}

// TestNodeClassChangeEnqueuesItsPods: a change to a NodeClass looks again at the nodes of the
// Pods that ask for it, and at no other.
func TestNodeClassChangeEnqueuesItsPods(t *testing.T) {
	f := newFixture(t)
	metal := limited("metal", 3)
	f.withNodeClasses(metal)
	now := f.clock.Now()
	f.addPod(f.ncPod("p1", "a", "metal", now))
	f.addPod(f.pod("p2", "b", now))
	f.addPod(f.ncPod("p3", "c", "metal", now))
	f.refresh()
	f.drainQueue()
	f.c.nodeClassChanged(metal)
	if got, want := f.drainQueue(), []string{f.nodeName("a"), f.nodeName("c")}; !slices.Equal(got, want) {
		t.Errorf("enqueued %v after NodeClass metal changed; want the nodes of its Pods %v", got, want)
	}
}
