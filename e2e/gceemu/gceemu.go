// Package gceemu is a local server that speaks the Compute Engine REST API (v1) for the calls IPP
// makes, so that the real compute SDK client, pointed at it with option.WithEndpoint, cannot tell
// it from GCE:
//
//	POST   /compute/v1/projects/{p}/zones/{z}/instances           instances.insert (requestId, sourceInstanceTemplate)
//	GET    /compute/v1/projects/{p}/zones/{z}/instances           instances.list (filter, maxResults, pageToken)
//	GET    /compute/v1/projects/{p}/zones/{z}/instances/{name}    instances.get
//	DELETE /compute/v1/projects/{p}/zones/{z}/instances/{name}    instances.delete (requestId)
//	GET    /compute/v1/projects/{p}/aggregated/instances          instances.aggregatedList (filter, maxResults, pageToken)
//	GET    /compute/v1/projects/{p}/zones/{z}/operations/{op}     zoneOperations.get
//	POST   /compute/v1/projects/{p}/zones/{z}/operations/{op}/wait zoneOperations.wait
//
// Operations are DONE when they are returned, so the SDK's op.Wait returns at its first poll.
// Creating an instance starts it PROVISIONING; after the boot delay it is RUNNING and the Booter
// is asked to boot it from its startup-script metadata, as a kubelet on it would. Deleting an
// instance removes it at once and shuts its kubelet down.
//
// Faults (cloudemu.Faults) are drawn per call: 500 backendError, 429 rateLimitExceeded, an insert
// operation that ends with ZONE_RESOURCE_POOL_EXHAUSTED, and replies lost after the action (a 503
// or a dropped connection, chosen at random). SetZoneCapacity takes a zone out of capacity, and
// FailNextCreate fails the next insert with a code of the test's choosing.
package gceemu

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ipp-project/ipp/e2e/cloudemu"
)

// Defaults of Options.
const (
	// DefaultProject is the project when Options.Project is empty.
	DefaultProject = "ipp-emulated"
	// DefaultZone is the one zone when Options.Zones is empty.
	DefaultZone = "us-central1-a"
	// DefaultPageSize is the page size of list calls without maxResults, as in GCE.
	DefaultPageSize = 500
	// maxPageSize is the largest maxResults GCE honours.
	maxPageSize = 500
)

// Options configure a Server.
type Options struct {
	// Project is the one project the server knows; calls for others get 404. Empty means
	// DefaultProject.
	Project string
	// Zones are the zones the server knows; calls for others get 400. Empty means DefaultZone.
	Zones []string
	// BootDelay is how long an instance stays PROVISIONING before it is RUNNING and booted.
	BootDelay time.Duration
	// Booter boots instances into Nodes and shuts them down. Nil boots nothing.
	Booter cloudemu.Booter
	// Seed seeds the fault injector and the operation names.
	Seed uint64
	// PageSize is the page size of list calls that do not ask for one. Zero means
	// DefaultPageSize; it is capped at 500 as in GCE.
	PageSize int
	// Clock times the boot delay and stamps creation times. Nil means the real clock.
	Clock clock.WithDelayedExecution
}

// Instance is a snapshot of one emulated instance.
type Instance struct {
	Name string
	Zone string
	ID   uint64
	// Status is the GCE status: PROVISIONING, then RUNNING.
	Status   string
	Labels   map[string]string
	Metadata map[string]string
	// MachineType is the machine type's URL, as GCE returns it; empty when it came from the
	// template.
	MachineType            string
	SourceInstanceTemplate string
	// Image is the boot disk's source image, empty when it came from the template.
	Image string
	// ServiceAccount is the email of the service account the instance runs as, empty when it
	// came from the template or was not given.
	ServiceAccount string
	CreatedAt      time.Time
	// Booted says whether the Booter was asked to boot it.
	Booted bool
}

// Call is one API call the server answered.
type Call struct {
	// Method and Path are the request's.
	Method string
	Path   string
	// Op is the API method, such as "instances.insert" or "zoneOperations.get".
	Op string
	// Zone and Instance are from the path, where it has them.
	Zone     string
	Instance string
	// RequestID is the requestId query parameter of a mutating call.
	RequestID string
	// Query is the raw query string.
	Query string
	// Status is the HTTP status sent; 0 when the connection was dropped.
	Status int
	// Fault is the fault injected into the call: "", "error", "throttle", "capacity",
	// "lostReply" or "injected" (FailNextCreate).
	Fault string
	// Time is when the request arrived, by the server's clock.
	Time time.Time
}

// instance is an emulated instance.
type instance struct {
	name string
	zone string
	// template is the sourceInstanceTemplate it was made from.
	template string
	created  time.Time

	pb    *computepb.Instance // guarded by Server.mu
	timer clock.Timer         // the pending boot; guarded by Server.mu

	// life serializes booting and shutting down.
	life    sync.Mutex
	deleted bool // guarded by life
	booted  bool // guarded by life
}

// Server is an emulated Compute Engine API. It is safe for concurrent use.
type Server struct {
	opts   Options
	faults *cloudemu.Injector
	mux    *http.ServeMux

	ctx    context.Context // the Booter's; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	instances  map[string]*instance            // by zone + "/" + name
	operations map[string]*computepb.Operation // by name
	requestIDs map[string]string               // zone + "/" + requestId -> operation name
	creations  map[string]int                  // instance name -> instances created under it
	calls      []Call
	nextID     uint64
	failNext   []string        // operation error codes for the next inserts
	exhausted  map[string]bool // zones without capacity
	closed     bool

	httpServer *http.Server
	listener   net.Listener
}

// New returns a server with opts. It serves nothing until Start, or until it is used as an
// http.Handler.
func New(opts Options) *Server {
	if opts.Project == "" {
		opts.Project = DefaultProject
	}
	if len(opts.Zones) == 0 {
		opts.Zones = []string{DefaultZone}
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.PageSize > maxPageSize {
		opts.PageSize = maxPageSize
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:       opts,
		faults:     cloudemu.NewInjector(opts.Seed),
		ctx:        ctx,
		cancel:     cancel,
		instances:  map[string]*instance{},
		operations: map[string]*computepb.Operation{},
		requestIDs: map[string]string{},
		creations:  map[string]int{},
		exhausted:  map[string]bool{},
		nextID:     1_000_000_000_000 + opts.Seed%1_000_000*1_000_000,
	}
	s.routes()
	return s
}

// Start serves the API on a free port of 127.0.0.1.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("starting the GCE emulator: %w", err)
	}
	s.listener = ln
	s.httpServer = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpServer.Serve(ln); err != nil && err != http.ErrServerClosed {
			klog.ErrorS(err, "GCE emulator stopped serving")
		}
	}()
	return nil
}

// URL is the endpoint to give the SDK (option.WithEndpoint) or ipp (--gce-endpoint), such as
// http://127.0.0.1:34567. It is empty before Start.
func (s *Server) URL() string {
	if s.listener == nil {
		return ""
	}
	return "http://" + s.listener.Addr().String()
}

// Image is a boot image for configuring the provider; the emulator accepts any image.
const Image = "projects/" + DefaultProject + "/global/images/family/ipp-node"

// IPPFlags returns the ipp command-line flags that point its gce provider at this emulator, in
// the first zone, with Image. Add --gce-machine-type to pick a type.
func (s *Server) IPPFlags() []string {
	return []string{
		"--provider=gce",
		"--gce-project=" + s.opts.Project,
		"--gce-zone=" + s.opts.Zones[0],
		"--gce-endpoint=" + s.URL(),
		"--gce-image=" + Image,
	}
}

// Project is the project the server knows.
func (s *Server) Project() string { return s.opts.Project }

// Zones are the zones the server knows.
func (s *Server) Zones() []string { return append([]string(nil), s.opts.Zones...) }

// Close stops serving, stops pending boots and waits for running Boot calls to return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, inst := range s.instances {
		s.stopBootLocked(inst)
	}
	s.mu.Unlock()
	s.cancel()
	if s.httpServer != nil {
		_ = s.httpServer.Close()
	}
	s.wg.Wait()
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f cloudemu.Faults) { s.faults.Set(f) }

// Faults returns the injected faults.
func (s *Server) Faults() cloudemu.Faults { return s.faults.Get() }

// FailNextCreate makes the next instance insertion end with an operation error of code, such as
// "QUOTA_EXCEEDED" or "ZONE_RESOURCE_POOL_EXHAUSTED", once. Calling it several times queues
// several failures.
func (s *Server) FailNextCreate(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, code)
}

// SetZoneCapacity makes a zone run out of capacity (available false): every instance insertion
// there ends with ZONE_RESOURCE_POOL_EXHAUSTED, as GCE reports it, until it is set back.
func (s *Server) SetZoneCapacity(zone string, available bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exhausted[zone] = !available
}

// Instances returns a snapshot of every instance, sorted by zone and name.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	insts := make([]*instance, 0, len(s.instances))
	pbs := make([]*computepb.Instance, 0, len(s.instances))
	for _, inst := range s.instances {
		insts = append(insts, inst)
		pbs = append(pbs, proto.CloneOf(inst.pb))
	}
	s.mu.Unlock()
	out := make([]Instance, 0, len(insts))
	for i, inst := range insts {
		inst.life.Lock()
		booted := inst.booted
		inst.life.Unlock()
		out = append(out, snapshot(inst, pbs[i], booted))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Zone != out[j].Zone {
			return out[i].Zone < out[j].Zone
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Instance returns a snapshot of the named instance in any zone.
func (s *Server) Instance(name string) (Instance, bool) {
	for _, inst := range s.Instances() {
		if inst.Name == name {
			return inst, true
		}
	}
	return Instance{}, false
}

func snapshot(inst *instance, pb *computepb.Instance, booted bool) Instance {
	meta := map[string]string{}
	for _, it := range pb.GetMetadata().GetItems() {
		meta[it.GetKey()] = it.GetValue()
	}
	labels := map[string]string{}
	for k, v := range pb.GetLabels() {
		labels[k] = v
	}
	image := ""
	for _, d := range pb.GetDisks() {
		if d.GetBoot() {
			image = d.GetInitializeParams().GetSourceImage()
		}
	}
	sa := ""
	if sas := pb.GetServiceAccounts(); len(sas) > 0 {
		sa = sas[0].GetEmail()
	}
	return Instance{
		Name:                   pb.GetName(),
		Zone:                   inst.zone,
		ID:                     pb.GetId(),
		Status:                 pb.GetStatus(),
		Labels:                 labels,
		Metadata:               meta,
		MachineType:            pb.GetMachineType(),
		SourceInstanceTemplate: inst.template,
		Image:                  image,
		ServiceAccount:         sa,
		CreatedAt:              inst.created,
		Booted:                 booted,
	}
}

// Created returns how many instances have been created under name, in any zone, since the
// server started. A correct client never makes it exceed the number of times it meant to create
// that instance.
func (s *Server) Created(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creations[name]
}

// CreatedCounts returns Created for every name ever created.
func (s *Server) CreatedCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.creations))
	for k, v := range s.creations {
		out[k] = v
	}
	return out
}

// Calls returns every call answered so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount returns how many calls of op (such as "instances.insert") were answered.
func (s *Server) CallCount(op string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Op == op {
			n++
		}
	}
	return n
}

// SetStatus sets the status of the named instance in zone, as if GCE had changed it (a guest
// shutting down makes it TERMINATED, say). It reports whether the instance exists.
func (s *Server) SetStatus(zone, name, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[zone+"/"+name]
	if !ok {
		return false
	}
	inst.pb.Status = proto.String(status)
	return true
}

// ProviderID returns gce://<project>/<zone>/<name>.
func (s *Server) ProviderID(zone, name string) string {
	return "gce://" + s.opts.Project + "/" + zone + "/" + name
}

// scheduleBootLocked boots inst after the boot delay. s.mu must be held.
func (s *Server) scheduleBootLocked(inst *instance) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	if s.opts.BootDelay <= 0 {
		go s.boot(inst)
		return
	}
	// Boot in a goroutine of its own: a fake clock runs the function inside Step, under its lock.
	inst.timer = s.opts.Clock.AfterFunc(s.opts.BootDelay, func() { go s.boot(inst) })
}

// stopBootLocked cancels inst's pending boot, if it has not started. s.mu must be held.
func (s *Server) stopBootLocked(inst *instance) {
	if inst.timer != nil && inst.timer.Stop() {
		s.wg.Done() // the boot will never run
	}
	inst.timer = nil
}

// boot marks inst RUNNING and calls the Booter, unless inst was deleted first.
func (s *Server) boot(inst *instance) {
	defer s.wg.Done()
	inst.life.Lock()
	defer inst.life.Unlock()
	if inst.deleted || s.ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	inst.pb.Status = proto.String("RUNNING")
	inst.timer = nil
	script := ""
	for _, it := range inst.pb.GetMetadata().GetItems() {
		if it.GetKey() == "startup-script" {
			script = it.GetValue()
		}
	}
	s.mu.Unlock()
	if nb := s.faults.Get().NeverBoot; nb != nil && nb(inst.name) {
		klog.V(4).InfoS("Emulated instance never boots", "instance", inst.name)
		return
	}
	if s.opts.Booter == nil {
		return
	}
	inst.booted = true
	req := cloudemu.BootRequest{InstanceID: inst.name, ProviderID: s.ProviderID(inst.zone, inst.name), Zone: inst.zone, Bootstrap: script}
	if err := s.opts.Booter.Boot(s.ctx, req); err != nil {
		klog.ErrorS(err, "Booting emulated instance", "instance", inst.name)
	}
}

// shutdown cancels inst's pending boot and shuts down its kubelet if it booted. inst must be out
// of s.instances already.
func (s *Server) shutdown(inst *instance) {
	s.mu.Lock()
	s.stopBootLocked(inst)
	s.mu.Unlock()
	inst.life.Lock()
	defer inst.life.Unlock()
	inst.deleted = true
	if inst.booted && s.opts.Booter != nil {
		s.opts.Booter.Shutdown(s.ctx, inst.name)
	}
}
