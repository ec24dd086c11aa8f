package gce

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// fakeOp is an operation that is already done.
type fakeOp struct{ op *computepb.Operation }

func (o fakeOp) Wait(context.Context, ...gax.CallOption) error { return nil }
func (o fakeOp) Proto() *computepb.Operation                   { return o.op }

// fakeClient is a computeClient in memory. Its errors are returned once each.
type fakeClient struct {
	mu         sync.Mutex
	instances  map[string]*computepb.Instance // by zone + "/" + name
	inserts    []*computepb.InsertInstanceRequest
	filters    []string
	insertErr  error
	opErrCodes []string // the next insert's operation ends with these
	// exhausted zones end every insert's operation with ZONE_RESOURCE_POOL_EXHAUSTED.
	exhausted map[string]bool
	deleteErr error
	deletes   []string // zone + "/" + name
}

func newFakeClient() *fakeClient {
	return &fakeClient{instances: map[string]*computepb.Instance{}, exhausted: map[string]bool{}}
}

func (f *fakeClient) getInstance(_ context.Context, zone, name string) (*computepb.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gi, ok := f.instances[zone+"/"+name]; ok {
		return proto.CloneOf(gi), nil
	}
	return nil, googleErr(404, "notFound")
}

func (f *fakeClient) listInstances(_ context.Context, filter string) ([]*computepb.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, filter)
	var out []*computepb.Instance
	for _, gi := range f.instances {
		out = append(out, proto.CloneOf(gi))
	}
	return out, nil
}

func (f *fakeClient) insertInstance(_ context.Context, req *computepb.InsertInstanceRequest) (operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inserts = append(f.inserts, req)
	if err := f.insertErr; err != nil {
		f.insertErr = nil
		return nil, err
	}
	if codes := f.opErrCodes; codes != nil {
		f.opErrCodes = nil
		return fakeOp{failedOp(503, codes...)}, nil
	}
	if f.exhausted[req.GetZone()] {
		return fakeOp{failedOp(503, "ZONE_RESOURCE_POOL_EXHAUSTED")}, nil
	}
	name := req.GetInstanceResource().GetName()
	key := req.GetZone() + "/" + name
	if _, ok := f.instances[key]; ok {
		return nil, googleErr(409, "alreadyExists")
	}
	gi := proto.CloneOf(req.GetInstanceResource())
	gi.Status = proto.String("PROVISIONING")
	gi.CreationTimestamp = proto.String("2026-01-02T03:04:05.000-08:00")
	gi.Zone = proto.String("https://www.googleapis.com/compute/v1/projects/p/zones/" + req.GetZone())
	f.instances[key] = gi
	return fakeOp{&computepb.Operation{Name: proto.String("op-" + name), Status: computepb.Operation_DONE.Enum()}}, nil
}

func (f *fakeClient) deleteInstance(_ context.Context, zone, name string) (operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, zone+"/"+name)
	if err := f.deleteErr; err != nil {
		f.deleteErr = nil
		return nil, err
	}
	if _, ok := f.instances[zone+"/"+name]; !ok {
		return nil, googleErr(404, "notFound")
	}
	delete(f.instances, zone+"/"+name)
	return fakeOp{&computepb.Operation{Name: proto.String("op-del-" + name), Status: computepb.Operation_DONE.Enum()}}, nil
}

func (f *fakeClient) close() error { return nil }

func testProvider(t *testing.T, mutate func(*Config)) (*Provider, *fakeClient) {
	t.Helper()
	cfg := Config{ClusterName: "prod", Project: "p", Zone: "z-a", Image: "projects/p/global/images/node"}
	if mutate != nil {
		mutate(&cfg)
	}
	cfg, err := complete(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeClient()
	return newProvider(cfg, c), c
}

func testSpec() cloudprovider.InstanceSpec {
	return cloudprovider.InstanceSpec{
		NodeName:       "ipp-web-v1-abc123",
		Class:          "Web.V1",
		Namespace:      "team-a",
		NodeLabels:     map[string]string{"ipp": "true"},
		NodeTaints:     []corev1.Taint{{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoSchedule}, {Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoExecute}},
		IdempotencyKey: "key-1",
	}
}

func metadataOf(gi *computepb.Instance) map[string]string {
	m := map[string]string{}
	for _, it := range gi.GetMetadata().GetItems() {
		m[it.GetKey()] = it.GetValue()
	}
	return m
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	got, err := p.Create(ctx, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	want := &cloudprovider.Instance{
		NodeName:   "ipp-web-v1-abc123",
		ID:         "ipp-web-v1-abc123",
		ProviderID: "gce://p/z-a/ipp-web-v1-abc123",
		Class:      "Web.V1",
		Namespace:  "team-a",
		State:      cloudprovider.StatePending,
		CreatedAt:  time.Date(2026, 1, 2, 11, 4, 5, 0, time.UTC),

		Zone:         "z-a",
		InstanceType: "n2-standard-2",
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Create (-want +got):\n%s", diff)
	}
	if len(c.inserts) != 1 {
		t.Fatalf("%d inserts, want 1", len(c.inserts))
	}
	req := c.inserts[0]
	if _, err := uuid.Parse(req.GetRequestId()); err != nil {
		t.Errorf("requestId %q is not a UUID: %v", req.GetRequestId(), err)
	}
	gi := req.GetInstanceResource()
	wantLabels := map[string]string{"ipp-cluster": "prod", "ipp-node": "ipp-web-v1-abc123", "ipp-class": "_web_-_v1", "ipp-namespace": "team-a"}
	if diff := cmp.Diff(wantLabels, gi.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	meta := metadataOf(gi)
	if meta["ipp-class"] != "Web.V1" || meta["ipp-namespace"] != "team-a" {
		t.Errorf("metadata = %v, want exact class and namespace", meta)
	}
	wantArgs := "--hostname-override=ipp-web-v1-abc123 --node-labels=ipp=true --register-with-taints=ipp=true:NoSchedule,ipp=true:NoExecute"
	if !strings.Contains(meta[MetadataStartupScript], wantArgs) {
		t.Errorf("startup-script does not hold %q:\n%s", wantArgs, meta[MetadataStartupScript])
	}
	if gi.GetMachineType() != "zones/z-a/machineTypes/n2-standard-2" {
		t.Errorf("machine type = %q", gi.GetMachineType())
	}
	if req.SourceInstanceTemplate != nil {
		t.Errorf("sourceInstanceTemplate = %q without a template", req.GetSourceInstanceTemplate())
	}
	if len(gi.GetDisks()) != 1 || gi.GetDisks()[0].GetInitializeParams().GetSourceImage() != "projects/p/global/images/node" {
		t.Errorf("disks = %v, want one boot disk from the image", gi.GetDisks())
	}
}

func TestCreateFromTemplate(t *testing.T) {
	p, c := testProvider(t, func(cfg *Config) {
		cfg.Image = ""
		cfg.InstanceTemplate = "projects/p/regions/r/instanceTemplates/pool-1"
	})
	if _, err := p.Create(context.Background(), testSpec()); err != nil {
		t.Fatal(err)
	}
	req := c.inserts[0]
	if req.GetSourceInstanceTemplate() != "projects/p/regions/r/instanceTemplates/pool-1" {
		t.Errorf("sourceInstanceTemplate = %q", req.GetSourceInstanceTemplate())
	}
	gi := req.GetInstanceResource()
	if gi.MachineType != nil || gi.Disks != nil || gi.NetworkInterfaces != nil {
		t.Errorf("instance overrides the template's machine type, disks or network: %v", gi)
	}
}

func TestCreateExisting(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	first, err := p.Create(ctx, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec()
	spec.IdempotencyKey = "key-2"
	again, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("second Create (-first +second):\n%s", diff)
	}
	if len(c.instances) != 1 {
		t.Errorf("%d instances, want 1", len(c.instances))
	}

	// An instance of the same name that another cluster owns is never adopted.
	other, _ := testProvider(t, func(cfg *Config) { cfg.ClusterName = "staging" })
	other.client = c
	_, err = other.Create(ctx, testSpec())
	if cloudprovider.KindOf(err) != cloudprovider.KindInvalid {
		t.Errorf("Create over another cluster's instance: err = %v, want Invalid", err)
	}
}

func TestCreateRetriesFailedOperationUnderNewRequestID(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	c.opErrCodes = []string{"ZONE_RESOURCE_POOL_EXHAUSTED"}
	_, err := p.Create(ctx, testSpec())
	if !cloudprovider.IsCapacity(err) {
		t.Fatalf("Create: err = %v, want Capacity", err)
	}
	// A lost reply says nothing about the outcome: the retry must reuse the requestId.
	c.insertErr = googleErr(503)
	if _, err := p.Create(ctx, testSpec()); cloudprovider.KindOf(err) != cloudprovider.KindTransient {
		t.Fatalf("Create: err = %v, want Transient", err)
	}
	if _, err := p.Create(ctx, testSpec()); err != nil {
		t.Fatal(err)
	}
	ids := []string{c.inserts[0].GetRequestId(), c.inserts[1].GetRequestId(), c.inserts[2].GetRequestId()}
	if ids[0] == ids[1] || ids[1] != ids[2] {
		t.Errorf("requestIds = %v, want a new one after the failed operation only", ids)
	}
	// Another provider (a restarted controller) starts from the original requestId.
	p2, c2 := testProvider(t, nil)
	if _, err := p2.Create(ctx, testSpec()); err != nil {
		t.Fatal(err)
	}
	if got := c2.inserts[0].GetRequestId(); got != ids[0] {
		t.Errorf("requestId after restart = %q, want %q", got, ids[0])
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	inst, err := p.Create(ctx, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, *inst); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, *inst); err != nil {
		t.Errorf("deleting a deleted instance: %v", err)
	}
	c.deleteErr = googleErr(429, "rateLimitExceeded")
	if err := p.Delete(ctx, *inst); !cloudprovider.IsRateLimited(err) {
		t.Errorf("Delete: err = %v, want RateLimited", err)
	}
}

func TestList(t *testing.T) {
	p, c := testProvider(t, nil)
	c.instances = map[string]*computepb.Instance{
		"z-a/a": {Name: proto.String("a"), Status: proto.String("RUNNING"),
			Labels:   map[string]string{"ipp-cluster": "prod", "ipp-node": "a", "ipp-class": "_x", "ipp-namespace": "ns"},
			Metadata: &computepb.Metadata{Items: []*computepb.Items{{Key: proto.String("ipp-class"), Value: proto.String("X")}}}},
		"z-b/b": {Name: proto.String("b"), Status: proto.String("TERMINATED"), Zone: proto.String("https://www.googleapis.com/compute/v1/projects/p/zones/z-b"),
			MachineType: proto.String("https://www.googleapis.com/compute/v1/projects/p/zones/z-b/machineTypes/n2-standard-8"),
			Labels:      map[string]string{"ipp-cluster": "prod", "ipp-node": "b", "ipp-class": "_y_-z", "ipp-namespace": "", "ipp-node-class": "metal_-v2"}},
		"z-a/c": {Name: proto.String("c"), Status: proto.String("RUNNING"),
			Labels: map[string]string{"ipp-cluster": "staging", "ipp-node": "c"}},
	}
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []cloudprovider.Instance{
		{NodeName: "a", ID: "a", ProviderID: "gce://p/z-a/a", Class: "X", Namespace: "ns", State: cloudprovider.StateRunning, Zone: "z-a"},
		{NodeName: "b", ID: "b", ProviderID: "gce://p/z-b/b", Class: "Y.z", Namespace: "", State: cloudprovider.StateStopped,
			NodeClass: "metal.v2", Zone: "z-b", InstanceType: "n2-standard-8"},
	}
	if diff := cmp.Diff(want, got, cmpSortInstances); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`labels.ipp-cluster = "prod"`}, c.filters); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}
}

var cmpSortInstances = cmp.Transformer("sort", func(in []cloudprovider.Instance) map[string]cloudprovider.Instance {
	m := map[string]cloudprovider.Instance{}
	for _, i := range in {
		m[i.ID] = i
	}
	return m
})

func TestState(t *testing.T) {
	tests := map[string]cloudprovider.InstanceState{
		"PROVISIONING": cloudprovider.StatePending,
		"STAGING":      cloudprovider.StatePending,
		"REPAIRING":    cloudprovider.StatePending,
		"RUNNING":      cloudprovider.StateRunning,
		"STOPPING":     cloudprovider.StateStopping,
		"SUSPENDING":   cloudprovider.StateStopping,
		"SUSPENDED":    cloudprovider.StateStopped,
		"TERMINATED":   cloudprovider.StateStopped,
	}
	for status, want := range tests {
		if got := state(status); got != want {
			t.Errorf("state(%q) = %q, want %q", status, got, want)
		}
	}
}

func TestComplete(t *testing.T) {
	base := Config{ClusterName: "c", Project: "p", Zone: "z", Image: "i"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "ok"},
		{name: "no cluster", mutate: func(c *Config) { c.ClusterName = "" }, wantErr: "cluster name"},
		{name: "no project", mutate: func(c *Config) { c.Project = "" }, wantErr: "project"},
		{name: "no zone", mutate: func(c *Config) { c.Zone = "" }, wantErr: "zone"},
		{name: "no image or template", mutate: func(c *Config) { c.Image = "" }, wantErr: "template nor an image"},
		{name: "negative timeout", mutate: func(c *Config) { c.RegistrationTimeout = -time.Second }, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			got, err := complete(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.RegistrationTimeout != DefaultRegistrationTimeout || got.MachineType != DefaultMachineType || got.Renderer == nil {
					t.Errorf("defaults not filled in: %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("complete: err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// The default renderer refuses the binding label; Create must report that as Invalid.
func TestCreateRefusesBindingLabel(t *testing.T) {
	r, err := bootstrap.NewRenderer("")
	if err != nil {
		t.Fatal(err)
	}
	p, c := testProvider(t, func(cfg *Config) { cfg.Renderer = r })
	spec := testSpec()
	spec.NodeLabels = map[string]string{"node-restriction.kubernetes.io/ipp-node": spec.NodeName}
	if _, err := p.Create(context.Background(), spec); cloudprovider.KindOf(err) != cloudprovider.KindInvalid {
		t.Errorf("Create: err = %v, want Invalid", err)
	}
	if len(c.inserts) != 0 {
		t.Errorf("%d inserts after a refused spec", len(c.inserts))
	}
}

func nodeClassSpec() cloudprovider.InstanceSpec {
	spec := testSpec()
	spec.NodeClass = "metal.v2"
	spec.GCE = &ippv1alpha1.GCENodeClass{
		MachineType:    "n2-standard-8",
		Zones:          []string{"z-b", "z-c"},
		Image:          "projects/p/global/images/family/metal",
		ServiceAccount: "nodes@p.iam.gserviceaccount.com",
	}
	return spec
}

// A NodeClass's zones are tried in order; a zone out of capacity is skipped for the next, with a
// requestId of its own, and the instance has the NodeClass's shape in the zone it landed in.
func TestCreateNodeClassFallsBackToNextZone(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	c.exhausted["z-b"] = true
	got, err := p.Create(ctx, nodeClassSpec())
	if err != nil {
		t.Fatal(err)
	}
	if got.ProviderID != "gce://p/z-c/ipp-web-v1-abc123" || got.Zone != "z-c" || got.NodeClass != "metal.v2" || got.InstanceType != "n2-standard-8" {
		t.Errorf("Create = %+v, want the instance in z-c of NodeClass metal.v2", got)
	}
	if len(c.inserts) != 2 || c.inserts[0].GetZone() != "z-b" || c.inserts[1].GetZone() != "z-c" {
		t.Fatalf("inserts = %v, want z-b then z-c", c.inserts)
	}
	if c.inserts[0].GetRequestId() == c.inserts[1].GetRequestId() {
		t.Errorf("both zones' inserts have requestId %q", c.inserts[0].GetRequestId())
	}
	gi := c.inserts[1].GetInstanceResource()
	if gi.GetMachineType() != "zones/z-c/machineTypes/n2-standard-8" {
		t.Errorf("machine type = %q", gi.GetMachineType())
	}
	if d := gi.GetDisks(); len(d) != 1 || d[0].GetInitializeParams().GetSourceImage() != "projects/p/global/images/family/metal" {
		t.Errorf("disks = %v, want the NodeClass's image", d)
	}
	if sa := gi.GetServiceAccounts(); len(sa) != 1 || sa[0].GetEmail() != "nodes@p.iam.gserviceaccount.com" {
		t.Errorf("service accounts = %v", sa)
	}
	if gi.GetLabels()["ipp-node-class"] != "metal_-v2" || metadataOf(gi)["ipp-node-class"] != "metal.v2" {
		t.Errorf("labels %v, metadata %v: want the NodeClass encoded and exact", gi.GetLabels(), metadataOf(gi))
	}
}

// Every zone out of capacity is a Capacity error that names each zone; the next try of the
// creation replays none of the failed requests, and a restarted provider starts from the
// original ones.
func TestCreateAllZonesExhausted(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	c.exhausted["z-b"], c.exhausted["z-c"] = true, true
	_, err := p.Create(ctx, nodeClassSpec())
	if !cloudprovider.IsCapacity(err) || !strings.Contains(err.Error(), "z-b: ZONE_RESOURCE_POOL_EXHAUSTED") || !strings.Contains(err.Error(), "z-c: ZONE_RESOURCE_POOL_EXHAUSTED") {
		t.Fatalf("Create: err = %v, want Capacity naming z-b and z-c", err)
	}
	if len(c.instances) != 0 {
		t.Errorf("%d instances after no zone had capacity", len(c.instances))
	}
	first := []string{c.inserts[0].GetRequestId(), c.inserts[1].GetRequestId()}
	delete(c.exhausted, "z-b")
	if _, err := p.Create(ctx, nodeClassSpec()); err != nil {
		t.Fatal(err)
	}
	if got := c.inserts[2].GetRequestId(); got == first[0] || got == first[1] {
		t.Errorf("retry after failed operations replays requestId %q", got)
	}
	p2, c2 := testProvider(t, nil)
	c2.exhausted["z-b"] = true
	if _, err := p2.Create(ctx, nodeClassSpec()); err != nil {
		t.Fatal(err)
	}
	if got := []string{c2.inserts[0].GetRequestId(), c2.inserts[1].GetRequestId()}; !slices.Equal(got, first) {
		t.Errorf("requestIds after restart = %v, want %v", got, first)
	}
}

// An instance of the node in any zone is returned, and nothing is inserted: not even in a zone
// earlier in the list that has capacity again.
func TestCreateFindsInstanceInAnyZone(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	c.exhausted["z-b"] = true
	first, err := p.Create(ctx, nodeClassSpec())
	if err != nil {
		t.Fatal(err)
	}
	delete(c.exhausted, "z-b")
	inserts := len(c.inserts)
	again, err := p.Create(ctx, nodeClassSpec())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("second Create (-first +second):\n%s", diff)
	}
	if len(c.inserts) != inserts || len(c.instances) != 1 {
		t.Errorf("%d inserts, %d instances after Create of an existing instance", len(c.inserts)-inserts, len(c.instances))
	}
}

// Delete uses the instance's own zone: its Zone, else its providerID's.
func TestDeleteInInstanceZone(t *testing.T) {
	ctx := context.Background()
	p, c := testProvider(t, nil)
	for _, inst := range []cloudprovider.Instance{
		{ID: "a", Zone: "z-b"},
		{ID: "b", ProviderID: "gce://p/z-c/b"},
		{ID: "c", ProviderID: "gce://other-project/z-c/c"},
		{ID: "d"},
	} {
		if err := p.Delete(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"z-b/a", "z-c/b", "z-a/c", "z-a/d"}; !slices.Equal(c.deletes, want) {
		t.Errorf("deletes = %v, want %v", c.deletes, want)
	}
}

// How a NodeClass's fields and the Config's combine.
func TestShapeOf(t *testing.T) {
	tests := []struct {
		name   string
		config func(*Config)
		gce    *ippv1alpha1.GCENodeClass
		want   shape
	}{
		{name: "flags", want: shape{zones: []string{"z-a"}, machineType: DefaultMachineType, image: "projects/p/global/images/node"}},
		{name: "flags with template", config: func(c *Config) { c.InstanceTemplate = "t" },
			want: shape{zones: []string{"z-a"}, template: "t"}},
		{name: "flags with template and machine type", config: func(c *Config) { c.InstanceTemplate, c.MachineType = "t", "e2-small" },
			want: shape{zones: []string{"z-a"}, template: "t", machineType: "e2-small"}},
		{name: "NodeClass template keeps its machine type and image", gce: &ippv1alpha1.GCENodeClass{InstanceTemplate: "nt"},
			want: shape{zones: []string{"z-a"}, template: "nt"}},
		{name: "NodeClass template with explicit flag machine type", config: func(c *Config) { c.MachineType = "e2-small" },
			gce:  &ippv1alpha1.GCENodeClass{InstanceTemplate: "nt"},
			want: shape{zones: []string{"z-a"}, template: "nt", machineType: "e2-small"}},
		{name: "NodeClass overrides the template", config: func(c *Config) { c.InstanceTemplate = "t" },
			gce:  &ippv1alpha1.GCENodeClass{MachineType: "m", Image: "i", Zones: []string{"z1", "z2"}, ServiceAccount: "sa"},
			want: shape{zones: []string{"z1", "z2"}, template: "t", machineType: "m", image: "i", serviceAccount: "sa"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := testProvider(t, tt.config)
			spec := testSpec()
			spec.GCE = tt.gce
			if diff := cmp.Diff(tt.want, p.shapeOf(spec), cmp.AllowUnexported(shape{})); diff != "" {
				t.Errorf("shapeOf (-want +got):\n%s", diff)
			}
		})
	}
}
