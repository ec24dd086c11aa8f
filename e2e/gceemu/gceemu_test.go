package gceemu_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/gce"
)

const (
	project = "emu-project"
	zone    = "europe-west1-b"
)

// recorder is a cloudemu.Booter that records what it is asked.
type recorder struct {
	mu        sync.Mutex
	boots     []cloudemu.BootRequest
	shutdowns []string
}

func (r *recorder) Boot(_ context.Context, req cloudemu.BootRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.boots = append(r.boots, req)
	return nil
}

func (r *recorder) Shutdown(_ context.Context, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shutdowns = append(r.shutdowns, id)
}

func (r *recorder) Boots() []cloudemu.BootRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cloudemu.BootRequest(nil), r.boots...)
}

func (r *recorder) Shutdowns() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.shutdowns...)
}

type env struct {
	emu    *gceemu.Server
	booter *recorder
	clock  *testingclock.FakeClock
}

func startEmulator(t *testing.T, mutate func(*gceemu.Options)) *env {
	t.Helper()
	e := &env{booter: &recorder{}, clock: testingclock.NewFakeClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))}
	opts := gceemu.Options{
		Project:   project,
		Zones:     []string{zone, "europe-west1-c"},
		BootDelay: 30 * time.Second,
		Booter:    e.booter,
		Seed:      1,
		Clock:     e.clock,
	}
	if mutate != nil {
		mutate(&opts)
	}
	e.emu = gceemu.New(opts)
	if err := e.emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.emu.Close)
	return e
}

// provider returns the real GCE provider, talking to the emulator through the SDK.
func (e *env) provider(t *testing.T, cluster string) *gce.Provider {
	t.Helper()
	p, err := gce.New(context.Background(), gce.Config{
		ClusterName: cluster,
		Project:     project,
		Zone:        zone,
		Image:       "projects/emu-project/global/images/family/k8s-node",
		Endpoint:    e.emu.URL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func spec(name, key string) cloudprovider.InstanceSpec {
	return cloudprovider.InstanceSpec{
		NodeName:   name,
		Class:      "Web.V1",
		Namespace:  "team-a",
		NodeLabels: map[string]string{"ipp": "true"},
		NodeTaints: []corev1.Taint{
			{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoSchedule},
			{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoExecute},
		},
		IdempotencyKey: key,
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestCreateBootAndList(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)

	got, err := p.Create(ctx, spec("ipp-web-abc", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	want := &cloudprovider.Instance{
		NodeName:   "ipp-web-abc",
		ID:         "ipp-web-abc",
		ProviderID: "gce://emu-project/europe-west1-b/ipp-web-abc",
		Class:      "Web.V1",
		Namespace:  "team-a",
		State:      cloudprovider.StatePending,
		CreatedAt:  e.clock.Now(),

		Zone:         zone,
		InstanceType: "n2-standard-2",
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Create (-want +got):\n%s", diff)
	}

	inst, ok := e.emu.Instance("ipp-web-abc")
	if !ok {
		t.Fatal("no instance in the emulator")
	}
	wantLabels := map[string]string{"ipp-cluster": "prod", "ipp-node": "ipp-web-abc", "ipp-class": "_web_-_v1", "ipp-namespace": "team-a"}
	if diff := cmp.Diff(wantLabels, inst.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	script := inst.Metadata["startup-script"]
	wantLine := "KUBELET_EXTRA_ARGS='--hostname-override=ipp-web-abc --node-labels=ipp=true --register-with-taints=ipp=true:NoSchedule,ipp=true:NoExecute'"
	if !strings.Contains(script, wantLine) {
		t.Errorf("startup-script lacks %q:\n%s", wantLine, script)
	}
	if inst.Metadata["ipp-class"] != "Web.V1" || inst.Metadata["ipp-namespace"] != "team-a" {
		t.Errorf("metadata = %v", inst.Metadata)
	}
	if !strings.HasSuffix(inst.MachineType, "/zones/europe-west1-b/machineTypes/n2-standard-2") {
		t.Errorf("machine type = %q", inst.MachineType)
	}
	if inst.Status != "PROVISIONING" || len(e.booter.Boots()) != 0 {
		t.Fatalf("before the boot delay: status %s, boots %v", inst.Status, e.booter.Boots())
	}

	// The boot delay passes: the instance runs and its kubelet is asked to boot from the script.
	waitFor(t, "the boot timer", e.clock.HasWaiters)
	e.clock.Step(30 * time.Second)
	waitFor(t, "the boot", func() bool { return len(e.booter.Boots()) == 1 })
	wantBoot := cloudemu.BootRequest{InstanceID: "ipp-web-abc", ProviderID: "gce://emu-project/europe-west1-b/ipp-web-abc", Zone: zone, Bootstrap: script}
	if diff := cmp.Diff(wantBoot, e.booter.Boots()[0]); diff != "" {
		t.Errorf("boot request (-want +got):\n%s", diff)
	}
	if got.ProviderID != wantBoot.ProviderID {
		t.Errorf("provider's ProviderID %q differs from the emulator's %q", got.ProviderID, wantBoot.ProviderID)
	}

	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want.State = cloudprovider.StateRunning
	if diff := cmp.Diff([]cloudprovider.Instance{*want}, list, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	// The SDK waited on the operation through zoneOperations.get.
	if n := e.emu.CallCount("zoneOperations.get"); n != 1 {
		t.Errorf("%d zoneOperations.get calls, want 1", n)
	}
}

func TestBootDelayZero(t *testing.T) {
	e := startEmulator(t, func(o *gceemu.Options) { o.BootDelay = 0 })
	p := e.provider(t, "prod")
	if _, err := p.Create(ctxT(t), spec("ipp-now", "k")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the boot", func() bool { return len(e.booter.Boots()) == 1 })
	inst, _ := e.emu.Instance("ipp-now")
	if inst.Status != "RUNNING" || !inst.Booted {
		t.Errorf("after boot: status %s, booted %v", inst.Status, inst.Booted)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	first, err := p.Create(ctx, spec("ipp-a", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k1", "k2", ""} {
		again, err := p.Create(ctx, spec("ipp-a", key))
		if err != nil {
			t.Fatalf("Create again with key %q: %v", key, err)
		}
		if diff := cmp.Diff(first, again); diff != "" {
			t.Errorf("Create again with key %q (-first +again):\n%s", key, diff)
		}
	}
	if n := e.emu.Created("ipp-a"); n != 1 {
		t.Errorf("ipp-a created %d times, want 1", n)
	}
	if n := len(e.emu.Instances()); n != 1 {
		t.Errorf("%d instances, want 1", n)
	}
}

func TestLostReplyCreatesOnce(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	modes := map[int]bool{} // HTTP status of the lost replies: 0 dropped, 503
	for i := 0; i < 20 && len(modes) < 2; i++ {
		name := fmt.Sprintf("ipp-lost-%d", i)
		key := ""
		if i%2 == 0 {
			key = "key-" + name // with a key the retry replays the operation, without one it meets 409
		}
		e.emu.SetFaults(cloudemu.Faults{LostReplyRate: 1})
		_, err := p.Create(ctx, spec(name, key))
		if err == nil || !cloudprovider.IsRetryable(err) || cloudprovider.KindOf(err) != cloudprovider.KindTransient {
			t.Fatalf("Create with the reply lost: err = %v, want a Transient error", err)
		}
		e.emu.SetFaults(cloudemu.Faults{})
		got, err := p.Create(ctx, spec(name, key))
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		if got.NodeName != name {
			t.Errorf("retry returned %q", got.NodeName)
		}
		if n := e.emu.Created(name); n != 1 {
			t.Errorf("%s created %d times, want 1", name, n)
		}
		for _, c := range e.emu.Calls() {
			if c.Fault == "lostReply" && c.Instance == "" && strings.Contains(c.Path, "/instances") && c.Op == "instances.insert" {
				modes[c.Status] = true
			}
		}
	}
	if !modes[0] || !modes[503] {
		t.Errorf("lost replies seen as %v, want both a dropped connection (0) and a 503", modes)
	}
}

func TestDelete(t *testing.T) {
	e := startEmulator(t, func(o *gceemu.Options) { o.BootDelay = 0 })
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	inst, err := p.Create(ctx, spec("ipp-del", "k"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the boot", func() bool { return len(e.booter.Boots()) == 1 })
	if err := p.Delete(ctx, *inst); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.emu.Instance("ipp-del"); ok {
		t.Error("instance still there after Delete")
	}
	if diff := cmp.Diff([]string{"ipp-del"}, e.booter.Shutdowns()); diff != "" {
		t.Errorf("shutdowns (-want +got):\n%s", diff)
	}
	if err := p.Delete(ctx, *inst); err != nil {
		t.Errorf("deleting again: %v", err)
	}

	// A lost reply: the instance is gone, the caller sees an error; its retry succeeds.
	inst2, err := p.Create(ctx, spec("ipp-del-2", "k2"))
	if err != nil {
		t.Fatal(err)
	}
	e.emu.SetFaults(cloudemu.Faults{LostReplyRate: 1})
	if err := p.Delete(ctx, *inst2); err == nil {
		t.Fatal("Delete with the reply lost succeeded")
	}
	e.emu.SetFaults(cloudemu.Faults{})
	if err := p.Delete(ctx, *inst2); err != nil {
		t.Errorf("retrying Delete: %v", err)
	}
	if n := len(e.emu.Instances()); n != 0 {
		t.Errorf("%d instances left", n)
	}
}

func TestDeleteBeforeBoot(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	inst, err := p.Create(ctx, spec("ipp-early", "k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, *inst); err != nil {
		t.Fatal(err)
	}
	if e.clock.HasWaiters() {
		t.Error("the boot timer of a deleted instance is still set")
	}
	e.clock.Step(time.Minute)
	if n := len(e.booter.Boots()) + len(e.booter.Shutdowns()); n != 0 {
		t.Errorf("deleted instance: boots %v, shutdowns %v", e.booter.Boots(), e.booter.Shutdowns())
	}
}

func TestNeverBoot(t *testing.T) {
	e := startEmulator(t, func(o *gceemu.Options) { o.BootDelay = 0 })
	e.emu.SetFaults(cloudemu.Faults{NeverBoot: func(name string) bool { return name == "ipp-mute" }})
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	for _, n := range []string{"ipp-mute", "ipp-talks"} {
		if _, err := p.Create(ctx, spec(n, n)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both instances running", func() bool {
		insts := e.emu.Instances()
		return len(insts) == 2 && insts[0].Status == "RUNNING" && insts[1].Status == "RUNNING"
	})
	// A snapshot showing RUNNING is taken after the boot decision.
	mute, _ := e.emu.Instance("ipp-mute")
	talks, _ := e.emu.Instance("ipp-talks")
	if mute.Booted || !talks.Booted {
		t.Errorf("booted: ipp-mute %v (want false), ipp-talks %v (want true)", mute.Booted, talks.Booted)
	}
	if diff := cmp.Diff([]string{"ipp-talks"}, bootedNames(e.booter.Boots())); diff != "" {
		t.Errorf("boots (-want +got):\n%s", diff)
	}
}

func bootedNames(reqs []cloudemu.BootRequest) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.InstanceID)
	}
	return out
}

func TestListPagesAndFiltersByCluster(t *testing.T) {
	e := startEmulator(t, func(o *gceemu.Options) { o.PageSize = 3 })
	prod := e.provider(t, "prod")
	staging := e.provider(t, "staging")
	ctx := ctxT(t)
	var want []string
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("ipp-p-%d", i)
		want = append(want, name)
		if _, err := prod.Create(ctx, spec(name, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := staging.Create(ctx, spec("ipp-s-0", "s0")); err != nil {
		t.Fatal(err)
	}
	before := e.emu.CallCount("instances.aggregatedList")
	list, err := prod.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range list {
		got = append(got, i.NodeName)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if n := e.emu.CallCount("instances.aggregatedList") - before; n != 3 {
		t.Errorf("List made %d instances.aggregatedList calls, want 3 pages of 3", n)
	}
	for _, c := range e.emu.Calls() {
		if c.Op == "instances.aggregatedList" && !strings.Contains(c.Query, "filter=") {
			t.Errorf("instances.aggregatedList without a filter: %q", c.Query)
		}
	}

	sl, err := staging.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sl) != 1 || sl[0].NodeName != "ipp-s-0" {
		t.Errorf("staging List = %v", sl)
	}
	// A name that another cluster's instance holds is never adopted.
	_, err = prod.Create(ctx, spec("ipp-s-0", "x"))
	if cloudprovider.KindOf(err) != cloudprovider.KindInvalid {
		t.Errorf("Create over another cluster's instance: err = %v, want Invalid", err)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name     string
		faults   cloudemu.Faults
		failNext string
		call     func(context.Context, *gce.Provider) error
		wantKind cloudprovider.ErrorKind
		wantCode string
	}{
		{name: "5xx on create", faults: cloudemu.Faults{ErrorRate: 1}, call: create, wantKind: cloudprovider.KindTransient, wantCode: "backendError"},
		{name: "5xx on list", faults: cloudemu.Faults{ErrorRate: 1}, call: list, wantKind: cloudprovider.KindTransient, wantCode: "backendError"},
		{name: "5xx on delete", faults: cloudemu.Faults{ErrorRate: 1}, call: deleteOne, wantKind: cloudprovider.KindTransient, wantCode: "backendError"},
		{name: "throttled create", faults: cloudemu.Faults{ThrottleRate: 1}, call: create, wantKind: cloudprovider.KindRateLimited, wantCode: "rateLimitExceeded"},
		{name: "throttled list", faults: cloudemu.Faults{ThrottleRate: 1}, call: list, wantKind: cloudprovider.KindRateLimited, wantCode: "rateLimitExceeded"},
		{name: "throttled delete", faults: cloudemu.Faults{ThrottleRate: 1}, call: deleteOne, wantKind: cloudprovider.KindRateLimited, wantCode: "rateLimitExceeded"},
		{name: "capacity", faults: cloudemu.Faults{CapacityRate: 1}, call: create, wantKind: cloudprovider.KindCapacity, wantCode: "ZONE_RESOURCE_POOL_EXHAUSTED"},
		{name: "quota", failNext: "QUOTA_EXCEEDED", call: create, wantKind: cloudprovider.KindQuota, wantCode: "QUOTA_EXCEEDED"},
		// The reply is a 503 or a dropped connection, chosen at random; either is Transient.
		{name: "lost reply", faults: cloudemu.Faults{LostReplyRate: 1}, call: create, wantKind: cloudprovider.KindTransient, wantCode: "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEmulator(t, nil)
			p := e.provider(t, "prod")
			ctx := ctxT(t)
			if _, err := p.Create(ctx, spec("ipp-existing", "e")); err != nil {
				t.Fatal(err)
			}
			e.emu.SetFaults(tt.faults)
			if tt.failNext != "" {
				e.emu.FailNextCreate(tt.failNext)
			}
			err := tt.call(ctx, p)
			var perr *cloudprovider.Error
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v, want a *cloudprovider.Error", err)
			}
			if tt.wantCode == "*" {
				tt.wantCode = perr.Code
			}
			if diff := cmp.Diff([]string{string(tt.wantKind), tt.wantCode}, []string{string(perr.Kind), perr.Code}); diff != "" {
				t.Errorf("kind and code (-want +got):\n%s", diff)
			}
		})
	}
}

func create(ctx context.Context, p *gce.Provider) error {
	_, err := p.Create(ctx, spec("ipp-new", "n"))
	return err
}

func list(ctx context.Context, p *gce.Provider) error {
	_, err := p.List(ctx)
	return err
}

func deleteOne(ctx context.Context, p *gce.Provider) error {
	return p.Delete(ctx, cloudprovider.Instance{ID: "ipp-existing", NodeName: "ipp-existing"})
}

func TestCapacityThenRetrySucceeds(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	e.emu.SetFaults(cloudemu.Faults{CapacityRate: 1})
	if _, err := p.Create(ctx, spec("ipp-c", "k")); !cloudprovider.IsCapacity(err) {
		t.Fatalf("err = %v, want Capacity", err)
	}
	if n := len(e.emu.Instances()); n != 0 {
		t.Fatalf("%d instances after a capacity failure", n)
	}
	e.emu.SetFaults(cloudemu.Faults{})
	// The same idempotency key again: GCE would replay the failed operation for that requestId,
	// so the provider must not send it again.
	if _, err := p.Create(ctx, spec("ipp-c", "k")); err != nil {
		t.Fatalf("retry after capacity: %v", err)
	}
	if n := e.emu.Created("ipp-c"); n != 1 {
		t.Errorf("created %d times, want 1", n)
	}
}

func TestUnknownZoneIsInvalid(t *testing.T) {
	e := startEmulator(t, nil)
	p, err := gce.New(context.Background(), gce.Config{ClusterName: "prod", Project: project, Zone: "mars-north1-a", Image: "i", Endpoint: e.emu.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Create(ctxT(t), spec("ipp-x", "k")); cloudprovider.KindOf(err) != cloudprovider.KindInvalid {
		t.Errorf("Create in an unknown zone: err = %v, want Invalid", err)
	}
}

// TestSDKDirect checks what the provider does not call: zonal lists, the
// operation wait endpoint, and googleapi error replies.
func TestSDKDirect(t *testing.T) {
	e := startEmulator(t, func(o *gceemu.Options) { o.PageSize = 2 })
	ctx := ctxT(t)
	c, err := compute.NewInstancesRESTClient(ctx, option.WithEndpoint(e.emu.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ops, err := compute.NewZoneOperationsRESTClient(ctx, option.WithEndpoint(e.emu.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()

	var opName string
	for i, z := range []string{zone, zone, "europe-west1-c"} {
		op, err := c.Insert(ctx, &computepb.InsertInstanceRequest{
			Project: project, Zone: z,
			SourceInstanceTemplate: proto.String("projects/emu-project/global/instanceTemplates/pool"),
			InstanceResource:       &computepb.Instance{Name: proto.String(fmt.Sprintf("vm-%d", i)), Labels: map[string]string{"team": fmt.Sprint(i % 2)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !op.Done() {
			t.Errorf("insert operation %s not DONE", op.Name())
		}
		opName = op.Name()
	}
	waited, err := ops.Wait(ctx, &computepb.WaitZoneOperationRequest{Project: project, Zone: "europe-west1-c", Operation: opName})
	if err != nil {
		t.Fatal(err)
	}
	if waited.GetStatus() != computepb.Operation_DONE || waited.GetOperationType() != "insert" || !strings.HasSuffix(waited.GetTargetLink(), "/zones/europe-west1-c/instances/vm-2") {
		t.Errorf("waited operation = %v", waited)
	}

	got := map[string][]string{}
	it := c.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{Project: project})
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, inst := range pair.Value.GetInstances() {
			got[pair.Key] = append(got[pair.Key], inst.GetName())
		}
	}
	want := map[string][]string{"zones/" + zone: {"vm-0", "vm-1"}, "zones/europe-west1-c": {"vm-2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("aggregated list (-want +got):\n%s", diff)
	}

	it2 := c.List(ctx, &computepb.ListInstancesRequest{Project: project, Zone: zone, Filter: proto.String(`(labels.team = "1") (name != vm-0)`)})
	inst, err := it2.Next()
	if err != nil || inst.GetName() != "vm-1" {
		t.Errorf("filtered list: %v, %v; want vm-1", inst.GetName(), err)
	}

	_, err = c.Get(ctx, &computepb.GetInstanceRequest{Project: project, Zone: zone, Instance: "nope"})
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != 404 || len(ge.Errors) != 1 || ge.Errors[0].Reason != "notFound" {
		t.Errorf("Get of a missing instance: %#v", err)
	}
	_, err = c.Insert(ctx, &computepb.InsertInstanceRequest{Project: project, Zone: zone, InstanceResource: &computepb.Instance{Name: proto.String("vm-0")}, SourceInstanceTemplate: proto.String("t")})
	if !errors.As(err, &ge) || ge.Code != 409 || ge.Errors[0].Reason != "alreadyExists" {
		t.Errorf("Insert of an existing name: %v", err)
	}
	_, err = c.Insert(ctx, &computepb.InsertInstanceRequest{Project: project, Zone: zone, InstanceResource: &computepb.Instance{Name: proto.String("Bad_Name")}, SourceInstanceTemplate: proto.String("t")})
	if !errors.As(err, &ge) || ge.Code != 400 || ge.Errors[0].Reason != "invalid" {
		t.Errorf("Insert of a bad name: %v", err)
	}
	_, err = c.Insert(ctx, &computepb.InsertInstanceRequest{Project: project, Zone: zone, InstanceResource: &computepb.Instance{Name: proto.String("vm-9"), Labels: map[string]string{"k": "Upper"}}, SourceInstanceTemplate: proto.String("t")})
	if !errors.As(err, &ge) || ge.Code != 400 {
		t.Errorf("Insert with a bad label value: %v", err)
	}
	_, err = c.Insert(ctx, &computepb.InsertInstanceRequest{Project: project, Zone: zone, InstanceResource: &computepb.Instance{Name: proto.String("vm-9")}})
	if !errors.As(err, &ge) || ge.Code != 400 {
		t.Errorf("Insert without template, machine type or disk: %v", err)
	}
}
