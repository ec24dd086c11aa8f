package controller

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func TestCreateOnDemand(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.addPod(f.pod("p2", "a", t0.Add(time.Second)))
	f.list()

	after := f.mustSync(n)

	diff(t, "provider calls", []string{"create " + n}, f.calls())
	diff(t, "kube actions", []string(nil), f.actions())
	diff(t, "events", []string{"Normal Provisioning", "Normal Provisioning"}, f.events())
	diff(t, "requeue after", testRegTimeout, after)
	want := []cloudprovider.InstanceSpec{{
		NodeName:       n,
		Class:          "a",
		Namespace:      "team",
		NodeLabels:     map[string]string{"ipp": "true"},
		NodeTaints:     f.cfg.Taints(),
		IdempotencyKey: IdempotencyKey(n, "uid-p1", t0.UnixNano()/int64(testRegTimeout), 0),
		NodeClass:      "default",
	}}
	diff(t, "instance specs", want, f.provider.specs)
}

func TestCreateInClusterScopeHasNoNamespace(t *testing.T) {
	f := newFixture(t)
	f.cfg.ClassScope = isolation.ScopeCluster
	f.newController()
	n := f.cfg.NodeName("", "a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	if len(f.provider.specs) != 1 || f.provider.specs[0].Namespace != "" || f.provider.specs[0].NodeName != n {
		t.Fatalf("specs = %+v, want one for %s without namespace", f.provider.specs, n)
	}
}

func TestNoDuplicateCreateWhilePending(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.calls()
	f.events()

	// Again at once, after a List, and with a new Pod of the class.
	f.mustSync(n)
	f.list()
	f.clock.Step(time.Minute)
	f.addPod(f.pod("p2", "a", f.clock.Now()))
	after := f.mustSync(n)

	diff(t, "provider calls", []string(nil), f.calls())
	diff(t, "events", []string{"Normal WaitingForNode"}, f.events()) // for p2 only
	diff(t, "requeue after", testRegTimeout-time.Minute, after)
}

func TestDemand(t *testing.T) {
	now := metav1.NewTime(t0)
	tests := []struct {
		name   string
		mutate func(f *fixture, p *corev1.Pod)
		want   bool
	}{
		{"pinned pending", func(*fixture, *corev1.Pod) {}, true},
		{"pinned running", func(_ *fixture, p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }, true},
		{"unpinned", func(_ *fixture, p *corev1.Pod) { p.Spec.NodeSelector = nil }, false},
		{"pinned elsewhere", func(_ *fixture, p *corev1.Pod) {
			p.Spec.NodeSelector[isolation.BindingLabel] = "ipp-other-0123456789ab"
		}, false},
		{"exempt namespace", func(f *fixture, p *corev1.Pod) { p.Namespace = "kube-system" }, false},
		{"succeeded", func(_ *fixture, p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, false},
		{"failed", func(_ *fixture, p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, false},
		{"being deleted", func(_ *fixture, p *corev1.Pod) {
			p.DeletionTimestamp = &now
			p.Finalizers = []string{"example.com/wait"}
		}, false},
		{"empty class", func(_ *fixture, p *corev1.Pod) { p.Labels["ipp-class"] = "" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := f.pod("p1", "a", t0)
			tc.mutate(f, p)
			f.addPod(p)
			f.list()
			// The name of the pod's own namespace and class, and the one it is pinned to.
			names := sets.New(f.nodeName("a"), f.cfg.NodeName(p.Namespace, "a"), p.Spec.NodeSelector[isolation.BindingLabel])
			names.Delete("")
			for _, n := range sets.List(names) {
				f.mustSync(n)
			}
			got := len(f.calls()) > 0
			if got != tc.want {
				t.Errorf("created = %v, want %v", got, tc.want)
			}
			if !tc.want {
				diff(t, "events", []string(nil), f.events())
			}
		})
	}
}

func TestIdempotencyKeyStableAcrossRetries(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	// Lost replies: the first two calls fail. The second retry crosses an epoch boundary.
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindTransient, "create", "503", errors.New("unavailable")))
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindTransient, "create", "503", errors.New("unavailable")))
	if _, err := f.sync(n); err == nil {
		t.Fatal("sync succeeded, want the injected error")
	}
	f.clock.Step(time.Second)
	if _, err := f.sync(n); err == nil {
		t.Fatal("sync succeeded, want the injected error")
	}
	f.clock.Step(testRegTimeout)
	f.mustSync(n)
	keys := []string{}
	for _, s := range f.provider.specs {
		keys = append(keys, s.IdempotencyKey)
	}
	first := keys[0]
	diff(t, "keys", []string{first, first, first}, keys)
	diff(t, "events", []string{"Normal Provisioning", "Warning ProvisioningFailed"}, f.events())
}

func TestIdempotencyKeyNewAfterRegistrationTimeout(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.events()
	f.calls()

	// No Node registers.
	f.clock.Step(testRegTimeout - time.Second)
	f.list()
	if after := f.mustSync(n); after != time.Second {
		t.Fatalf("requeue after %v, want 1s", after)
	}
	diff(t, "provider calls before the timeout", []string(nil), f.calls())
	f.clock.Step(time.Second)
	f.mustSync(n)
	diff(t, "provider calls at the timeout", []string{"delete " + n}, f.calls())
	diff(t, "events", []string{"Warning RegistrationTimeout"}, f.events())
	if got := f.c.queue.Len(); got != 1 { // the List queued it too, once
		t.Errorf("queue length = %d, want the node requeued", got)
	}

	f.mustSync(n)
	diff(t, "provider calls after the timeout", []string{"create " + n}, f.calls())
	if k0, k1 := f.provider.specs[0].IdempotencyKey, f.provider.specs[1].IdempotencyKey; k0 == k1 {
		t.Errorf("re-creation reused idempotency key %s", k0)
	}
	if got := len(f.liveInstances()); got != 1 {
		t.Errorf("live instances = %d, want 1", got)
	}
}

func TestIdempotencyKeyUsedUp(t *testing.T) {
	// The instance created with the key was deleted behind the controller's back, and the cloud
	// answers a create with that key by returning the terminated instance (as EC2 does).
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	inst := f.liveInstances()[0]
	if err := f.provider.Provider.Delete(f.ctx, inst); err != nil {
		t.Fatal(err)
	}
	f.list()
	f.calls()

	if _, err := f.sync(n); err == nil {
		t.Fatal("sync succeeded, want an error for the terminated instance")
	}
	f.mustSync(n)
	diff(t, "provider calls", []string{"create " + n, "create " + n}, f.calls())
	if k1, k2 := f.provider.specs[1].IdempotencyKey, f.provider.specs[2].IdempotencyKey; k1 == k2 {
		t.Errorf("retry after a used-up key reused it")
	}
	if got := len(f.liveInstances()); got != 1 {
		t.Errorf("live instances = %d, want 1", got)
	}
}

func TestIdempotencyKeyNewAfterReap(t *testing.T) {
	if k1, k2 := IdempotencyKey("n", "uid-1", 7, 0), IdempotencyKey("n", "uid-2", 7, 0); k1 == k2 {
		t.Errorf("keys for different oldest Pods are equal")
	}
	for _, k := range []string{IdempotencyKey("n", "u", 1, 0), IdempotencyKey("n", "u", 2, 0), IdempotencyKey("n", "u", 1, 1)} {
		if len(k) != 32 {
			t.Errorf("key %q: want 32 hex digits", k)
		}
	}
	if IdempotencyKey("n", "u", 1, 0) != IdempotencyKey("n", "u", 1, 0) {
		t.Error("key is not deterministic")
	}
}

func TestBind(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	inst := f.liveInstances()[0]
	f.events()
	f.clock.Step(time.Minute)
	f.addNode(f.node(n, inst.ProviderID, f.clock.Now()))

	after := f.mustSync(n)

	want := fmt.Sprintf(`patch nodes/%s json [{"op":"test","path":"/metadata/uid","value":"uid-%s-%s"},{"op":"test","path":"/spec/providerID","value":"%s"},{"op":"add","path":"/metadata/labels/node-restriction.kubernetes.io~1ipp-node","value":"%s"}]`,
		n, n, inst.ProviderID, inst.ProviderID, n)
	diff(t, "kube actions", []string{want}, f.actions())
	diff(t, "events", []string{"Normal Bound"}, f.events())
	diff(t, "binding label", n, f.getNode(n).Labels[isolation.BindingLabel])
	diff(t, "requeue after", time.Duration(0), after)

	// The informer has not delivered the label yet: the patch is repeated, the Event is not.
	if _, err := f.c.sync(f.ctx, n); err != nil {
		t.Fatal(err)
	}
	diff(t, "kube actions with a stale cache", []string{want}, f.actions())
	diff(t, "events with a stale cache", []string(nil), f.events())

	// Bound and in use: nothing more to do.
	f.mustSync(n)
	diff(t, "kube actions after binding", []string(nil), f.actions())
	diff(t, "provider calls", []string{"create " + n}, f.calls())
}

func TestUntrustedNode(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.events()
	f.addNode(f.node(n, "fake:///somebody-else", t0))
	f.clock.Step(3 * time.Second) // past the creation timestamp's precision
	f.list()

	f.mustSync(n)
	diff(t, "kube actions", []string(nil), f.actions())
	diff(t, "events", []string{"Warning UntrustedNode"}, f.events())

	// Once per Node.
	f.mustSync(n)
	diff(t, "events again", []string(nil), f.events())
	if _, ok := f.getNode(n).Labels[isolation.BindingLabel]; ok {
		t.Error("untrusted Node was bound")
	}
}

func TestUntrustedNodeWithBindingLabelIsUnbound(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.events()
	// A Node with another name that claims the class by label, and the named one, both forged.
	f.addNode(bound(f.node("intruder", "fake:///x", t0), n))
	f.addNode(bound(f.node(n, "fake:///y", t0), n))

	f.mustSync(n)

	remove := mergePatch(labelsPatch(map[string]any{isolation.BindingLabel: nil}))
	diff(t, "kube actions", []string{"patch nodes/" + n + " merge " + remove, "patch nodes/intruder merge " + remove}, f.actions())
	diff(t, "events", []string{"Warning UntrustedNode", "Warning UntrustedNode"}, f.events())
	for _, name := range []string{"intruder", n} {
		if _, ok := f.getNode(name).Labels[isolation.BindingLabel]; ok {
			t.Errorf("Node %s still has the binding label", name)
		}
	}
}

func TestUntrustedNodeWarningWaitsForAList(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.list()
	f.clock.Step(time.Second)
	// A Node newer than the last List may belong to an instance that List did not show yet.
	f.addNode(f.node(n, "fake:///i-new", f.clock.Now()))
	after := f.mustSync(n)
	diff(t, "events before a List", []string(nil), f.events())
	diff(t, "requeue after", testResync, after)

	// A List that starts within the creation timestamp's whole-second precision is not enough.
	f.clock.Step(time.Second)
	f.list()
	f.mustSync(n)
	diff(t, "events after a List in the same second", []string(nil), f.events())

	f.clock.Step(2 * time.Second)
	f.list()
	f.mustSync(n)
	diff(t, "events after a List", []string{"Warning UntrustedNode"}, f.events())
	diff(t, "kube actions", []string(nil), f.actions())
	diff(t, "provider calls", []string(nil), f.calls())
}

func TestNodeWithoutProviderIDWaits(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	f.events()
	f.addNode(f.node(n, "", t0))
	f.clock.Step(time.Minute)
	f.list()
	after := f.mustSync(n)
	diff(t, "events", []string(nil), f.events())
	diff(t, "kube actions", []string(nil), f.actions())
	diff(t, "requeue after", testRegTimeout-time.Minute, after)
}

// boundFixture is a class "a" whose instance and Node are up and bound, created at t0, with the
// clock at t0+1m and no Pods.
func boundFixture(t *testing.T) (*fixture, string, cloudprovider.Instance) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.provider.Add(cloudprovider.Instance{NodeName: n, Class: "a", Namespace: "team", State: cloudprovider.StateRunning, CreatedAt: t0})
	inst := f.liveInstances()[0]
	f.addNode(bound(f.node(n, inst.ProviderID, t0), n))
	f.clock.Step(time.Minute)
	f.list()
	return f, n, inst
}

func TestIdleClockSetAndCleared(t *testing.T) {
	f, n, _ := boundFixture(t)
	node := f.getNode(n)

	after := f.mustSync(n)
	set := guarded(node, addLabelOp(isolation.IdleSinceLabel, unix(f.clock.Now())))
	diff(t, "kube actions when idle", []string{set}, f.actions())
	diff(t, "requeue after", testIdleTTL, after)

	// Demand returns.
	f.clock.Step(time.Minute)
	f.addPod(f.pod("p1", "a", f.clock.Now()))
	node = f.getNode(n)
	f.mustSync(n)
	clear := guarded(node, jsonpatch.Remove(jsonpatch.LabelPath(isolation.IdleSinceLabel)))
	diff(t, "kube actions with demand", []string{clear}, f.actions())
	if _, ok := f.getNode(n).Labels[isolation.IdleSinceLabel]; ok {
		t.Error("idle clock still set")
	}
	diff(t, "provider calls", []string(nil), f.calls())
	diff(t, "events", []string(nil), f.events())
}

func TestTerminalPodsAreNotDemand(t *testing.T) {
	f, n, _ := boundFixture(t)
	p := f.pod("p1", "a", t0)
	p.Status.Phase = corev1.PodSucceeded
	f.addPod(p)
	f.mustSync(n)
	if _, ok := f.getNode(n).Labels[isolation.IdleSinceLabel]; !ok {
		t.Error("Node with only a Succeeded Pod is not idle")
	}
}

func TestNoReapBeforeTTL(t *testing.T) {
	f, n, _ := boundFixture(t)
	f.mustSync(n)
	f.actions()
	f.clock.Step(testIdleTTL - time.Second)
	after := f.mustSync(n)
	diff(t, "kube actions", []string(nil), f.actions())
	diff(t, "provider calls", []string(nil), f.calls())
	diff(t, "requeue after", time.Second, after)
}

func TestReapAfterTTL(t *testing.T) {
	f, n, _ := boundFixture(t)
	f.mustSync(n) // idle since t0+1m
	f.actions()
	f.clock.Step(testIdleTTL)
	node := f.getNode(n)

	f.mustSync(n)

	cordon := guarded(node,
		addLabelOp(isolation.ReapingLabel, unix(f.clock.Now())),
		addLabelOp(isolation.CordonedLabel, "true"),
		jsonpatch.Add("/spec/unschedulable", true))
	diff(t, "kube actions", []string{
		cordon,
		"list pods spec.nodeName=" + n,
		"delete nodes/" + n,
	}, f.actions())
	diff(t, "provider calls", []string{"delete " + n}, f.calls())
	diff(t, "events", []string{"Normal Reaped"}, f.events())
	diff(t, "live instances", 0, len(f.liveInstances()))
	if f.nodeExists(n) {
		t.Error("Node still exists")
	}

	// Nothing left: the next reconcile does nothing, and a Pod arriving now gets a new instance.
	f.list()
	f.mustSync(n)
	diff(t, "provider calls after reaping", []string(nil), f.calls())
	f.addPod(f.pod("late", "a", f.clock.Now()))
	f.mustSync(n)
	diff(t, "provider calls for a late Pod", []string{"create " + n}, f.calls())
}

func TestRestartKeepsIdleTime(t *testing.T) {
	f, n, _ := boundFixture(t)
	idleSince := f.clock.Now()
	f.mustSync(n)
	f.actions()
	f.clock.Step(7 * time.Minute)

	f.newController() // a restart: nothing in memory
	f.list()
	after := f.mustSync(n)
	diff(t, "kube actions", []string(nil), f.actions())
	diff(t, "requeue after", testIdleTTL-7*time.Minute, after)
	diff(t, "idle since", unix(idleSince), f.getNode(n).Labels[isolation.IdleSinceLabel])

	f.clock.Step(3 * time.Minute)
	f.mustSync(n)
	diff(t, "provider calls", []string{"delete " + n}, f.calls())
}

func TestReapCancelledByBoundPod(t *testing.T) {
	f, n, _ := boundFixture(t)
	f.mustSync(n)
	f.clock.Step(testIdleTTL)
	f.refresh()
	f.actions()
	// The scheduler bound a Pod that the informer has not delivered yet.
	p := f.pod("p1", "a", f.clock.Now())
	p.Spec.NodeName = n
	f.addPod(p)

	node := f.getNode(n)
	if _, err := f.c.sync(f.ctx, n); err != nil {
		t.Fatal(err)
	}

	cordon := guarded(node,
		addLabelOp(isolation.ReapingLabel, unix(f.clock.Now())),
		addLabelOp(isolation.CordonedLabel, "true"),
		jsonpatch.Add("/spec/unschedulable", true))
	uncordon := guarded(node,
		jsonpatch.Remove(jsonpatch.LabelPath(isolation.IdleSinceLabel)),
		jsonpatch.Remove(jsonpatch.LabelPath(isolation.ReapingLabel)),
		jsonpatch.Remove(jsonpatch.LabelPath(isolation.CordonedLabel)),
		jsonpatch.Add("/spec/unschedulable", false))
	diff(t, "kube actions", []string{cordon, "list pods spec.nodeName=" + n, uncordon}, f.actions())
	diff(t, "labels", bound(f.node(n, "", t0), n).Labels, f.getNode(n).Labels)
	diff(t, "provider calls", []string(nil), f.calls())
	if f.getNode(n).Spec.Unschedulable {
		t.Error("Node left cordoned")
	}
	if !f.nodeExists(n) {
		t.Error("Node deleted")
	}
}

func TestDemandDuringReapUncordons(t *testing.T) {
	// A restart after the cordon: the Node is marked as reaping, and a Pod has arrived.
	f, n, _ := boundFixture(t)
	node := f.getNode(n)
	node.Spec.Unschedulable = true
	label(node, isolation.IdleSinceLabel, unix(t0), isolation.ReapingLabel, unix(t0), isolation.CordonedLabel, "true")
	if _, err := f.kube.CoreV1().Nodes().Update(f.ctx, node, metav1.UpdateOptions{FieldManager: testFieldManager}); err != nil {
		t.Fatal(err)
	}
	f.addPod(f.pod("p1", "a", f.clock.Now()))
	f.actions()

	f.mustSync(n)

	got := f.getNode(n)
	if got.Spec.Unschedulable {
		t.Error("Node still cordoned")
	}
	diff(t, "labels", bound(f.node(n, "", t0), n).Labels, got.Labels)
	diff(t, "provider calls", []string(nil), f.calls())
}

func TestReapResumesAfterRestart(t *testing.T) {
	// Crashed after deleting the instance, before deleting the Node: the Node is stale.
	f, n, inst := boundFixture(t)
	node := f.getNode(n)
	node.Spec.Unschedulable = true
	label(node, isolation.IdleSinceLabel, unix(t0), isolation.ReapingLabel, unix(t0), isolation.CordonedLabel, "true")
	if _, err := f.kube.CoreV1().Nodes().Update(f.ctx, node, metav1.UpdateOptions{FieldManager: testFieldManager}); err != nil {
		t.Fatal(err)
	}
	if err := f.provider.Provider.Delete(f.ctx, inst); err != nil {
		t.Fatal(err)
	}
	f.newController()
	f.list()
	f.actions()
	f.calls()

	f.mustSync(n)
	diff(t, "kube actions", []string{"delete nodes/" + n}, f.actions())
	diff(t, "provider calls", []string(nil), f.calls())
}

func TestOrphanInstance(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("gone")
	f.provider.Add(cloudprovider.Instance{NodeName: n, Class: "gone", Namespace: "team", State: cloudprovider.StateRunning, CreatedAt: t0})
	f.clock.Step(time.Minute)
	f.list()

	after := f.mustSync(n)
	diff(t, "provider calls before the timeout", []string(nil), f.calls())
	diff(t, "requeue after", testRegTimeout-time.Minute, after)

	f.clock.Step(after)
	f.drainQueue()
	f.mustSync(n)
	diff(t, "provider calls", []string{"delete " + n}, f.calls())
	diff(t, "events", []string(nil), f.events())
	diff(t, "live instances", 0, len(f.liveInstances()))
	if f.c.queue.Len() != 0 {
		t.Error("orphan's node requeued without demand")
	}
}

func TestDuplicates(t *testing.T) {
	tests := []struct {
		name       string
		nodeOf     int // index of the instance whose Node registered, -1 for none
		wantKeepID string
	}{
		{"keep the registered one", 1, "i-2"},
		{"keep the oldest", -1, "i-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			n := f.nodeName("a")
			f.addPod(f.pod("p1", "a", t0))
			f.provider.Add(cloudprovider.Instance{NodeName: n, State: cloudprovider.StateRunning, CreatedAt: t0})
			f.provider.Add(cloudprovider.Instance{NodeName: n, State: cloudprovider.StateRunning, CreatedAt: t0.Add(time.Second)})
			insts := f.liveInstances()
			if tc.nodeOf >= 0 {
				f.addNode(f.node(n, insts[tc.nodeOf].ProviderID, t0))
			}
			f.clock.Step(time.Minute)
			f.list()

			f.mustSync(n)

			diff(t, "provider calls", []string{"delete " + n}, f.calls())
			left := f.liveInstances()
			if len(left) != 1 || left[0].ID != tc.wantKeepID {
				t.Errorf("live instances = %+v, want only %s", left, tc.wantKeepID)
			}
		})
	}
}

func TestStaleNodeOfDeletedInstance(t *testing.T) {
	// The instance was deleted behind the controller's back and is shutting down; its Node
	// stays registered.
	f, n, _ := boundFixture(t)
	f.addPod(f.pod("p1", "a", f.clock.Now()))
	f.provider.SetState(n, cloudprovider.StateStopping)
	f.list()

	if _, err := f.sync(n); err == nil {
		t.Error("sync succeeded; want an error to retry while the old instance goes")
	}

	diff(t, "kube actions", []string{"delete nodes/" + n}, f.actions())
	// The instance is still going, so the create returns it and the controller waits.
	diff(t, "provider calls", []string{"create " + n}, f.calls())
}

func TestProviderErrors(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantDelays []time.Duration // hold after each of three failures
		wantKind   string
	}{
		{"rate limited backs off exponentially", cloudprovider.NewError(cloudprovider.KindRateLimited, "create", "429", errors.New("slow down")),
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, "RateLimited"},
		{"capacity backs off exponentially", cloudprovider.NewError(cloudprovider.KindCapacity, "create", "ZONE_RESOURCE_POOL_EXHAUSTED", errors.New("no capacity")),
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, "Capacity"},
		{"invalid waits the max delay", cloudprovider.NewError(cloudprovider.KindInvalid, "create", "400", errors.New("bad machine type")),
			[]time.Duration{DefaultRetryMaxDelay, DefaultRetryMaxDelay, DefaultRetryMaxDelay}, "Invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			n := f.nodeName("a")
			f.addPod(f.pod("p1", "a", t0))
			f.list()
			f.refresh()
			var got []time.Duration
			for range 3 {
				f.provider.FailNext("create", tc.err)
				f.c.queue.Add(n)
				f.c.processNextWorkItem(f.ctx)
				hold := f.c.nodeStateOf(n).holdUntil.Sub(f.clock.Now())
				got = append(got, hold)

				// An event meanwhile does not shorten the back-off.
				f.c.queue.Add(n)
				f.c.processNextWorkItem(f.ctx)
				f.clock.Step(hold)
			}
			diff(t, "back-off", tc.wantDelays, got)
			diff(t, "provider calls", []string{"create " + n, "create " + n, "create " + n}, f.calls())
			diff(t, "events", []string{"Warning ProvisioningFailed"}, f.events())

			// Success resets the back-off.
			f.c.queue.Add(n)
			f.c.processNextWorkItem(f.ctx)
			diff(t, "provider calls after recovery", []string{"create " + n}, f.calls())
			diff(t, "requeues after success", 0, f.c.queue.NumRequeues(n))
		})
	}
}

func TestProvisioningFailedNamesKind(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindCapacity, "create", "InsufficientInstanceCapacity", errors.New("no i3.metal")))
	if _, err := f.sync(n); !cloudprovider.IsCapacity(err) {
		t.Fatalf("sync error = %v, want a capacity error", err)
	}
	e := <-f.recorder.Events
	want := "Warning ProvisioningFailed Creating instance for dedicated node " + n + " failed (Capacity): "
	if len(e) < len(want) || e[:len(want)] != want {
		t.Errorf("event = %q, want prefix %q", e, want)
	}
}

func TestNoReconcileBeforeList(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	if _, err := f.sync(n); !errors.Is(err, errNotListed) {
		t.Fatalf("sync error = %v, want errNotListed", err)
	}
	diff(t, "provider calls", []string(nil), f.calls())
}

func TestNewRejectsAutoscalerMode(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Mode = isolation.ModeAutoscaler
	pods, nodes := newInformerFactories(f.kube, cfg)
	if _, err := newWithInformers(f.kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), f.provider, f.recorder, Options{Config: cfg}); err == nil {
		t.Fatal("New accepted autoscaler mode")
	}
}

func TestBindWithoutNodeNamePin(t *testing.T) {
	// Where node names cannot be chosen (EKS), the Node of the instance has another name: it is
	// found by providerID and bound by label alone.
	f := newFixture(t)
	f.cfg.PinNodeName = false
	f.newController()
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	inst := f.liveInstances()[0]
	f.addNode(f.node("ip-10-0-0-1.ec2.internal", inst.ProviderID, t0))
	f.events()

	f.mustSync(n)

	diff(t, "binding label", n, f.getNode("ip-10-0-0-1.ec2.internal").Labels[isolation.BindingLabel])
	diff(t, "events", []string{"Normal Bound"}, f.events())
}

func TestNodeOfAnotherNameIsNotBoundWithNodeNamePin(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	inst := f.liveInstances()[0]
	f.addNode(f.node("ip-10-0-0-1.ec2.internal", inst.ProviderID, t0))
	f.actions()

	f.mustSync(n)
	f.mustSync("ip-10-0-0-1.ec2.internal")
	diff(t, "kube actions", []string(nil), f.actions())
}

func TestEventHandlersEnqueue(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.provider.Add(cloudprovider.Instance{NodeName: n, State: cloudprovider.StateRunning, CreatedAt: t0})
	f.list()
	f.drainQueue()
	inst := f.liveInstances()[0]
	queued := func() []string {
		var out []string
		for f.c.queue.Len() > 0 {
			k, _ := f.c.queue.Get()
			f.c.queue.Done(k)
			out = append(out, k)
		}
		return sets.List(sets.New(out...))
	}

	f.c.enqueuePod(f.pod("p1", "a", t0))
	diff(t, "after a Pod event", []string{n}, queued())

	unlabelled := f.pod("p2", "a", t0)
	delete(unlabelled.Labels, f.cfg.PodLabel)
	f.c.enqueuePod(unlabelled)
	diff(t, "after a Pod event without class", []string{}, queued())

	f.c.enqueueNode(bound(f.node("other", inst.ProviderID, t0), "ipp-x-000000000000"))
	diff(t, "after a Node event", sets.List(sets.New("other", "ipp-x-000000000000", n)), queued())
}

func TestReapWithoutNodeNamePinResumesAfterRestart(t *testing.T) {
	// As TestReapResumesAfterRestart, with a Node that has its own name (EKS): it is found by
	// its binding label.
	f := newFixture(t)
	f.cfg.PinNodeName = false
	f.newController()
	n := f.nodeName("a")
	f.provider.Add(cloudprovider.Instance{NodeName: n, State: cloudprovider.StateRunning, CreatedAt: t0})
	inst := f.liveInstances()[0]
	node := bound(f.node("ip-10-0-0-1.ec2.internal", inst.ProviderID, t0), n)
	node.Spec.Unschedulable = true
	label(node, isolation.IdleSinceLabel, unix(t0), isolation.ReapingLabel, unix(t0), isolation.CordonedLabel, "true")
	f.addNode(node)
	if err := f.provider.Provider.Delete(f.ctx, inst); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Hour)
	f.list()
	f.calls()

	f.mustSync(n)
	diff(t, "kube actions", []string{"delete nodes/ip-10-0-0-1.ec2.internal"}, f.actions())
}

// gceLike adds to the fake cloud an instance of node n named after it, as GCE names instances:
// every instance of n has the same ID and providerID.
func gceLike(f *fixture, n string, created time.Time) cloudprovider.Instance {
	inst := cloudprovider.Instance{NodeName: n, ID: n, ProviderID: "gce://p/z/" + n, Class: "a", Namespace: "team", State: cloudprovider.StateRunning, CreatedAt: created}
	f.provider.Add(inst)
	return inst
}

func TestReplacementUnderTheSameIDIsBoundAndKept(t *testing.T) {
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	gceLike(f, n, t0)
	f.list()
	f.mustSync(n)
	f.clock.Step(testRegTimeout)
	f.list()
	f.mustSync(n)
	diff(t, "provider calls at the registration timeout", []string{"delete " + n}, f.calls())

	// The cloud creates the replacement under the same name; the controller's Create gets it.
	inst := gceLike(f, n, f.clock.Now())
	f.mustSync(n)
	diff(t, "provider calls after the timeout", []string{"create " + n}, f.calls())

	// Its Node registers, and Lists show the replacement from now on.
	f.clock.Step(time.Minute)
	f.addNode(f.node(n, inst.ProviderID, f.clock.Now()))
	f.list()
	f.mustSync(n)
	f.list()
	f.mustSync(n)
	if !f.nodeExists(n) {
		t.Fatal("the replacement's Node was deleted")
	}
	diff(t, "binding label", n, f.getNode(n).Labels[isolation.BindingLabel])
	diff(t, "provider calls after the Node registered", []string(nil), f.calls())
}

func TestReplacementNodeRegisteringBeforeItsCreationIsConfirmed(t *testing.T) {
	// The reply to the replacement's creation is lost, and its Node registers before the
	// controller learns of the instance. The Node has the deleted instance's providerID (GCE
	// names instances after their node), but it is the replacement's: it must not be deleted.
	f := newFixture(t)
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	gceLike(f, n, t0)
	f.list()
	f.mustSync(n)
	f.clock.Step(testRegTimeout)
	f.list()
	f.mustSync(n)
	diff(t, "provider calls at the registration timeout", []string{"delete " + n}, f.calls())

	inst := gceLike(f, n, f.clock.Now())
	f.provider.FailNext("create", cloudprovider.NewError(cloudprovider.KindTransient, "create", "", errors.New("connection reset")))
	if _, err := f.sync(n); err == nil {
		t.Fatal("sync succeeded, want the lost reply's error")
	}
	f.addNode(f.node(n, inst.ProviderID, f.clock.Now()))
	f.mustSync(n)
	diff(t, "kube actions while the creation is unconfirmed", []string(nil), f.actions())

	f.mustSync(n)
	if !f.nodeExists(n) {
		t.Fatal("the replacement's Node was deleted")
	}
	diff(t, "binding label", n, f.getNode(n).Labels[isolation.BindingLabel])
	diff(t, "provider calls", []string{"create " + n, "create " + n}, f.calls())
}

func TestLateNodeOfDeletedInstanceIsDeleted(t *testing.T) {
	// An instance without demand is deleted at the registration timeout; its Node registers
	// just after. No creation follows, so the Node can only be the deleted instance's.
	f := newFixture(t)
	n := f.nodeName("a")
	inst := gceLike(f, n, t0)
	f.clock.Step(testRegTimeout)
	f.list()
	f.mustSync(n)
	diff(t, "provider calls at the registration timeout", []string{"delete " + n}, f.calls())

	f.addNode(f.node(n, inst.ProviderID, f.clock.Now()))
	f.mustSync(n)
	diff(t, "kube actions", []string{"delete nodes/" + n}, f.actions())
}

func TestSecondNodeOfOneInstanceIsNotBound(t *testing.T) {
	// Two Nodes claim one instance (the same providerID) where Node names are not pinned: the one
	// bound first keeps the binding, whatever the names' order; the other is never bound and is
	// warned about.
	f := newFixture(t)
	f.cfg.PinNodeName = false
	f.newController()
	n := f.nodeName("a")
	f.addPod(f.pod("p1", "a", t0))
	f.list()
	f.mustSync(n)
	inst := f.liveInstances()[0]
	first := "ip-10-0-0-2.ec2.internal"
	f.addNode(f.node(first, inst.ProviderID, t0))
	f.mustSync(n)
	diff(t, "binding label of the first Node", n, f.getNode(first).Labels[isolation.BindingLabel])
	f.events()
	f.actions()

	second := "ip-10-0-0-1.ec2.internal" // sorts before the first
	f.addNode(f.node(second, inst.ProviderID, t0))
	f.clock.Step(3 * time.Second)
	f.list()
	f.mustSync(n)
	f.mustSync(second)

	diff(t, "binding label of the first Node afterwards", n, f.getNode(first).Labels[isolation.BindingLabel])
	if v, ok := f.getNode(second).Labels[isolation.BindingLabel]; ok {
		t.Errorf("the second Node of one instance was bound (%q)", v)
	}
	diff(t, "events", []string{"Warning UntrustedNode"}, f.events())
}

func TestGatedPodCreatesNothing(t *testing.T) {
	// A Pod held by another scheduling gate could not run on the node: it creates no instance and
	// is told why, once; when its gates are removed, its node is created.
	f := newFixture(t)
	n := f.nodeName("a")
	p := f.pod("p1", "a", t0)
	p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/quota"}}
	p = f.addPod(p)
	f.list()
	f.refresh()

	f.mustSync(n)
	f.mustSync(n)
	diff(t, "provider calls while gated", []string(nil), f.calls())
	diff(t, "events while gated", []string{"Normal SchedulingGated"}, f.events())

	p.Spec.SchedulingGates = nil
	if _, err := f.kube.CoreV1().Pods(p.Namespace).Update(f.ctx, p, metav1.UpdateOptions{FieldManager: testFieldManager}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.mustSync(n)
	diff(t, "provider calls once ungated", []string{"create " + n}, f.calls())
}
