package gceemu_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/gce"
)

// otherZone is the emulator's second zone; the providers of these tests are configured with
// zone, so an instance in otherZone is one that only a NodeClass put there.
const otherZone = "europe-west1-c"

// metalSpec is the spec of an instance of NodeClass "metal.v2", which prefers zone, then
// otherZone.
func metalSpec(name, key string) cloudprovider.InstanceSpec {
	s := spec(name, key)
	s.NodeClass = "metal.v2"
	s.GCE = &ippv1alpha1.GCENodeClass{
		MachineType:    "n2-standard-8",
		Zones:          []string{zone, otherZone},
		Image:          "projects/emu-project/global/images/family/metal",
		ServiceAccount: "nodes@emu-project.iam.gserviceaccount.com",
	}
	return s
}

// insertCalls returns the zones and requestIds of the instances.insert calls.
func insertCalls(e *env) (zones, requestIDs []string) {
	for _, c := range e.emu.Calls() {
		if c.Op == "instances.insert" {
			zones = append(zones, c.Zone)
			requestIDs = append(requestIDs, c.RequestID)
		}
	}
	return zones, requestIDs
}

// A NodeClass's first zone out of capacity: the instance lands in its second zone, with the
// NodeClass's machine type (in that zone), image and service account, and the NodeClass
// recorded; List returns it with its zone and NodeClass, and Delete removes it there.
func TestNodeClassZoneFallback(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	e.emu.SetZoneCapacity(zone, false)

	got, err := p.Create(ctx, metalSpec("ipp-metal-1", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	wantID := gce.ProviderID(project, otherZone, "ipp-metal-1")
	if got.ProviderID != wantID || got.Zone != otherZone || got.NodeClass != "metal.v2" || got.InstanceType != "n2-standard-8" {
		t.Errorf("Create = %+v, want providerID %s, NodeClass metal.v2, n2-standard-8", got, wantID)
	}
	inst, ok := e.emu.Instance("ipp-metal-1")
	if !ok {
		t.Fatal("no instance in the emulator")
	}
	if inst.Zone != otherZone ||
		!strings.HasSuffix(inst.MachineType, "/zones/"+otherZone+"/machineTypes/n2-standard-8") ||
		inst.Image != "projects/emu-project/global/images/family/metal" ||
		inst.ServiceAccount != "nodes@emu-project.iam.gserviceaccount.com" ||
		inst.Labels["ipp-node-class"] != "metal_-v2" || inst.Metadata["ipp-node-class"] != "metal.v2" {
		t.Errorf("emulator recorded %+v", inst)
	}
	zones, ids := insertCalls(e)
	if !cmp.Equal(zones, []string{zone, otherZone}) || ids[0] == "" || ids[0] == ids[1] {
		t.Errorf("inserts in zones %v with requestIds %v, want %s then %s with a requestId each", zones, ids, zone, otherZone)
	}

	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ProviderID != wantID || list[0].NodeClass != "metal.v2" {
		t.Errorf("List = %+v", list)
	}
	// Delete in the instance's zone, which is not the provider's configured one; also from an
	// Instance that has only the providerID, as one built from a Node would.
	if err := p.Delete(ctx, cloudprovider.Instance{ID: "ipp-metal-1", ProviderID: wantID}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.emu.Instance("ipp-metal-1"); ok {
		t.Error("instance still there after Delete")
	}
}

// Every zone out of capacity: a Capacity error that names each zone, and no instance.
func TestNodeClassAllZonesExhausted(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	e.emu.SetZoneCapacity(zone, false)
	e.emu.SetZoneCapacity(otherZone, false)

	_, err := p.Create(ctx, metalSpec("ipp-metal-1", "k1"))
	if !cloudprovider.IsCapacity(err) {
		t.Fatalf("Create: err = %v, want Capacity", err)
	}
	for _, z := range []string{zone, otherZone} {
		if !strings.Contains(err.Error(), z+": ZONE_RESOURCE_POOL_EXHAUSTED") {
			t.Errorf("error %q does not name zone %s", err, z)
		}
	}
	if insts := e.emu.Instances(); len(insts) != 0 {
		t.Errorf("instances after no zone had capacity: %v", insts)
	}

	// Capacity comes back in the second zone: the next try creates the instance there.
	e.emu.SetZoneCapacity(otherZone, true)
	got, err := p.Create(ctx, metalSpec("ipp-metal-1", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Zone != otherZone || e.emu.Created("ipp-metal-1") != 1 {
		t.Errorf("retry: instance in %s, created %d times", got.Zone, e.emu.Created("ipp-metal-1"))
	}
}

// loseInserts is a proxy in front of the emulator that performs the instances.insert calls of
// zone and then loses their replies, as a broken connection to GCE would.
type loseInserts struct {
	emu  http.Handler
	zone string

	mu   sync.Mutex
	lose bool
}

func (l *loseInserts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	lose := l.lose
	l.mu.Unlock()
	if lose && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/zones/"+l.zone+"/instances") {
		l.emu.ServeHTTP(httptest.NewRecorder(), r)
		http.Error(w, `{"error":{"code":503,"message":"unavailable","errors":[{"reason":"backendError"}]}}`, http.StatusServiceUnavailable)
		return
	}
	l.emu.ServeHTTP(w, r)
}

// The reply of the insert in the second zone is lost, after the first zone said it had no
// capacity; by the retry the first zone has capacity again. The retry returns the instance in the
// second zone and creates nothing in the first.
func TestNodeClassLostReplyAcrossZones(t *testing.T) {
	e := startEmulator(t, nil)
	proxy := &loseInserts{emu: e.emu, zone: otherZone, lose: true}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	p, err := gce.New(ctxT(t), gce.Config{
		ClusterName:   "prod",
		Project:       project,
		Zone:          zone,
		Image:         "projects/emu-project/global/images/family/k8s-node",
		Endpoint:      front.URL,
		ClientOptions: []option.ClientOption{option.WithoutAuthentication()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx := ctxT(t)

	e.emu.SetZoneCapacity(zone, false)
	if _, err := p.Create(ctx, metalSpec("ipp-metal-1", "k1")); cloudprovider.KindOf(err) != cloudprovider.KindTransient {
		t.Fatalf("Create with the reply lost: err = %v, want Transient", err)
	}
	if e.emu.Created("ipp-metal-1") != 1 {
		t.Fatalf("the lost insert created %d instances, want 1", e.emu.Created("ipp-metal-1"))
	}
	proxy.mu.Lock()
	proxy.lose = false
	proxy.mu.Unlock()
	e.emu.SetZoneCapacity(zone, true)

	for range 2 {
		got, err := p.Create(ctx, metalSpec("ipp-metal-1", "k1"))
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		if got.Zone != otherZone {
			t.Errorf("retry returned the instance in %s, want %s", got.Zone, otherZone)
		}
	}
	// Another creation of the same node (another idempotency key) finds the instance too, though
	// the first zone, where GCE names do not collide with it, has capacity.
	if got, err := p.Create(ctx, metalSpec("ipp-metal-1", "k2")); err != nil || got.Zone != otherZone {
		t.Errorf("Create under another key: %+v, %v; want the instance in %s", got, err, otherZone)
	}
	if n := e.emu.Created("ipp-metal-1"); n != 1 {
		t.Errorf("created %d times, want 1", n)
	}
	if insts := e.emu.Instances(); len(insts) != 1 {
		t.Errorf("instances %v, want one", insts)
	}
}

// List finds the cluster's instances in every zone, including one that no spec names any more,
// and an instance template of a NodeClass is passed on with no machine type or image of its own.
func TestNodeClassListEveryZoneAndTemplate(t *testing.T) {
	e := startEmulator(t, nil)
	p := e.provider(t, "prod")
	ctx := ctxT(t)
	a, err := p.Create(ctx, spec("ipp-a", "ka"))
	if err != nil {
		t.Fatal(err)
	}
	s := spec("ipp-b", "kb")
	s.NodeClass = "from-template"
	s.GCE = &ippv1alpha1.GCENodeClass{Zones: []string{otherZone}, InstanceTemplate: "projects/emu-project/global/instanceTemplates/big"}
	b, err := p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := e.emu.Instance("ipp-b")
	if inst.SourceInstanceTemplate != "projects/emu-project/global/instanceTemplates/big" || inst.MachineType != "" || inst.Image != "" {
		t.Errorf("instance from a NodeClass's template: %+v", inst)
	}
	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, i := range list {
		got[i.ProviderID] = i.NodeClass
	}
	want := map[string]string{a.ProviderID: "", b.ProviderID: "from-template"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List providerID -> NodeClass (-want +got):\n%s", diff)
	}
	if a.Zone != zone || b.Zone != otherZone {
		t.Errorf("zones %s and %s, want %s and %s", a.Zone, b.Zone, zone, otherZone)
	}
	for _, i := range list {
		if err := p.Delete(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if insts := e.emu.Instances(); len(insts) != 0 {
		t.Errorf("instances left after deleting every listed one: %v", insts)
	}
}
