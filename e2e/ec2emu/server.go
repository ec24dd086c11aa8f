// Package ec2emu is a local emulator of the Amazon EC2 Query API, for the calls IPP's ec2
// provider makes: RunInstances, DescribeInstances and TerminateInstances. The real aws-sdk-go-v2
// client is pointed at it (ec2.Config.Endpoint, or ipp's --ec2-endpoint) and cannot tell it from
// EC2: requests are form-encoded Action=...&Version=2016-11-15, replies are EC2's XML, errors
// carry EC2's codes and HTTP statuses.
//
// It behaves as EC2 does where IPP depends on it: ClientToken idempotency (a repeated token
// returns the same reservation; a token reused with other parameters is
// IdempotentParameterMismatch), tag filters, paging, and terminated instances that stay visible
// for a while. Instances boot after a configurable delay by calling a cloudemu.Booter with their
// decoded user data, and shut down through it when terminated. Faults (5xx, throttling,
// capacity, lost replies, instances that never boot) are injected through cloudemu.Faults.
package ec2emu

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/cloudemu"
)

// DefaultTerminatedRetention is how long a terminated instance stays visible when
// Options.TerminatedRetention is zero. EC2 keeps them for about an hour.
const DefaultTerminatedRetention = time.Hour

// DefaultRegion is the region when Options.Region is empty.
const DefaultRegion = "us-east-1"

// Options configure a Server.
type Options struct {
	// Region is the region the emulator claims to be; DefaultRegion if empty.
	Region string
	// Subnets maps each subnet id to its availability zone. RunInstances without a SubnetId uses
	// the first id in sorted order, as EC2 uses the default subnet. Empty means one subnet,
	// "subnet-0000000000000000a" in <region>a.
	Subnets map[string]string
	// BootDelay is how long an instance takes from RunInstances to its Booter.Boot call (and to
	// the running state). Zero boots at once.
	BootDelay time.Duration
	// Booter boots instances into Nodes. Nil leaves instances running with nothing booted.
	Booter cloudemu.Booter
	// Seed seeds fault injection and the instance ids.
	Seed uint64
	// ShutdownDelay is how long a terminated instance is shutting-down before it is terminated.
	ShutdownDelay time.Duration
	// TerminatedRetention is how long a terminated instance stays visible to DescribeInstances;
	// zero means DefaultTerminatedRetention.
	TerminatedRetention time.Duration
	// MaxPageSize caps DescribeInstances pages (EC2 may return fewer items than MaxResults, and
	// may page without being asked). Zero means no cap beyond MaxResults.
	MaxPageSize int
	// InstanceLimit, if positive, is how many instances may be live at once; RunInstances beyond
	// it fails with InstanceLimitExceeded, as an account limit does.
	InstanceLimit int
}

// Call is one request the emulator answered.
type Call struct {
	Action string
	// ClientToken is RunInstances' idempotency token.
	ClientToken string
	// InstanceType and SubnetID are RunInstances' parameters of those names, empty if not given.
	InstanceType string
	SubnetID     string
	// InvocationID is the SDK's Amz-Sdk-Invocation-Id: equal for every attempt of one SDK call.
	InvocationID string
	// Attempt is the SDK's attempt number of that call (1 for the first try).
	Attempt int
	// InstanceIDs are the instances the call named or created.
	InstanceIDs []string
	// Status is the HTTP status of the reply (0 when the connection was dropped instead).
	Status int
	// Code is the EC2 error code of the reply, empty on success.
	Code string
	// Fault names the fault injected into this call: "throttle", "error", "capacity",
	// "lost-reply", "dropped-connection", "injected", or empty.
	Fault string
	Time  time.Time
}

// Instance is a snapshot of an emulated instance.
type Instance struct {
	ID            string
	ReservationID string
	// Name is the Name tag.
	Name string
	// State is the EC2 state: pending, running, shutting-down or terminated.
	State            string
	AvailabilityZone string
	SubnetID         string
	InstanceType     string
	ImageID          string
	// LaunchTemplate is the LaunchTemplateId or LaunchTemplateName, with ":<version>" if given.
	LaunchTemplate   string
	SecurityGroupIDs []string
	// InstanceProfile is the IAM instance profile asked for at launch, its name or ARN; empty if
	// none was.
	InstanceProfile string
	ClientToken     string
	// Tags are the instance's tags; VolumeTags those its volumes got at launch.
	Tags       map[string]string
	VolumeTags map[string]string
	// UserData is the decoded user data: the rendered bootstrap.
	UserData string
	// MetadataHTTPTokens is the IMDS setting asked for at launch ("required" for IMDSv2 only).
	MetadataHTTPTokens string
	// MetadataHopLimit is the IMDSv2 PUT response hop limit asked for at launch (0: not set).
	MetadataHopLimit int
	ProviderID       string
	LaunchTime       time.Time
	// Booted says Booter.Boot was called for the instance.
	Booted bool
}

// injected is a one-shot error queued by FailNext.
type injected struct {
	status int
	code   string
}

// Server is the EC2 emulator. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	subnets  []string // sorted
	faults   *cloudemu.Injector
	ctx      context.Context
	cancel   context.CancelFunc
	bootWG   sync.WaitGroup
	httpSrv  *http.Server
	listener net.Listener

	mu            sync.Mutex
	instances     map[string]*instance
	seq           uint64
	tokens        map[string]*tokenRecord
	created       map[string]int
	calls         []Call
	noCapacity    map[string]bool // zone + "/" + instance type, either may be empty for any
	failNext      map[string][]injected
	requestSerial uint64
}

// New returns an emulator with opts. Start serves it on a local port; it is also an
// http.Handler, for httptest.
func New(opts Options) *Server {
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if len(opts.Subnets) == 0 {
		opts.Subnets = map[string]string{"subnet-0000000000000000a": opts.Region + "a"}
	}
	if opts.TerminatedRetention == 0 {
		opts.TerminatedRetention = DefaultTerminatedRetention
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:       opts,
		subnets:    slices.Sorted(maps.Keys(opts.Subnets)),
		faults:     cloudemu.NewInjector(opts.Seed),
		ctx:        ctx,
		cancel:     cancel,
		instances:  map[string]*instance{},
		tokens:     map[string]*tokenRecord{},
		created:    map[string]int{},
		noCapacity: map[string]bool{},
		failNext:   map[string][]injected{},
	}
}

// Start serves the emulator on 127.0.0.1 at a free port.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("starting the EC2 emulator: %w", err)
	}
	s.listener = ln
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.Background().Error(err, "EC2 emulator stopped serving")
		}
	}()
	return nil
}

// URL is the emulator's base URL, the SDK's endpoint. Empty before Start.
func (s *Server) URL() string {
	if s.listener == nil {
		return ""
	}
	return "http://" + s.listener.Addr().String()
}

// Close stops serving, cancels pending boots and waits for running Boot and Shutdown calls.
func (s *Server) Close() {
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	// Cancel under mu: handlers still running add boot goroutines only under mu and only
	// before the cancel, so none is added once Wait has begun.
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.bootWG.Wait()
}

// Region is the emulator's region.
func (s *Server) Region() string { return s.opts.Region }

// SubnetIDs returns the subnet ids, sorted; the first is the default subnet.
func (s *Server) SubnetIDs() []string { return slices.Clone(s.subnets) }

// ImageID is an AMI id the emulator accepts, for configuring the provider.
const ImageID = "ami-0123456789abcdef0"

// IPPFlags returns the ipp command-line flags that point its ec2 provider at this emulator,
// with every subnet in sorted order and ImageID. Add --ec2-instance-type to pick a type.
func (s *Server) IPPFlags() []string {
	return []string{
		"--provider=ec2",
		"--ec2-region=" + s.opts.Region,
		"--ec2-endpoint=" + s.URL(),
		"--ec2-image-id=" + ImageID,
		"--ec2-subnet-ids=" + strings.Join(s.subnets, ","),
	}
}

// Env returns environment variables for an ipp process using this emulator: static credentials
// for the SDK's default chain (the emulator checks only that requests are signed), and no
// instance-metadata lookups.
func Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=AKIDEC2EMULATOR",
		"AWS_SECRET_ACCESS_KEY=ec2-emulator-secret",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f cloudemu.Faults) { s.faults.Set(f) }

// SetZoneCapacity makes an availability zone run out of capacity (available false): every
// RunInstances there fails with InsufficientInstanceCapacity until it is set back.
func (s *Server) SetZoneCapacity(zone string, available bool) { s.SetCapacity(zone, "", available) }

// SetCapacity makes an instance type in an availability zone run out of capacity (available
// false): RunInstances of that type there fails with InsufficientInstanceCapacity until it is set
// back. An empty zone means every zone, an empty type every type.
func (s *Server) SetCapacity(zone, instanceType string, available bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noCapacity[zone+"/"+instanceType] = !available
}

// hasCapacity reports whether instanceType can be launched in zone. Callers hold s.mu.
func (s *Server) hasCapacity(zone, instanceType string) bool {
	return !s.noCapacity[zone+"/"] && !s.noCapacity["/"+instanceType] && !s.noCapacity[zone+"/"+instanceType]
}

// FailNext makes the next request for action fail with the given HTTP status and EC2 error code,
// once, before it does anything. Calling it several times queues several failures.
func (s *Server) FailNext(action string, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[action] = append(s.failNext[action], injected{status: status, code: code})
}

// Calls returns the requests answered so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Created returns how many instances RunInstances actually created with the Name tag name.
// Idempotent repeats (same ClientToken) do not count.
func (s *Server) Created(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created[name]
}

// CreatedCounts returns Created for every Name tag.
func (s *Server) CreatedCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.created)
}

// Instances returns a snapshot of every instance, in creation order, including terminated ones
// still retained.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []Instance
	for _, inst := range s.sortedInstances() {
		state, gone := s.stateOf(inst, now)
		if gone {
			continue
		}
		out = append(out, inst.snapshot(state))
	}
	return out
}

// Instance returns the snapshot of one instance.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	state, gone := s.stateOf(inst, time.Now())
	if gone {
		return Instance{}, false
	}
	return inst.snapshot(state), true
}

// mutating are the actions whose replies LostReplyRate may lose after acting.
var mutating = map[string]bool{"RunInstances": true, "TerminateInstances": true}

// ServeHTTP answers one EC2 Query API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	s.mu.Lock()
	s.requestSerial++
	requestID := fmt.Sprintf("%08x-0000-4000-8000-%012x", s.opts.Seed&0xffffffff, s.requestSerial)
	s.mu.Unlock()

	call := Call{InvocationID: r.Header.Get("Amz-Sdk-Invocation-Id"), Attempt: attemptOf(r.Header.Get("Amz-Sdk-Request")), Time: time.Now()}
	fail := func(e *apiError, fault string) {
		call.Status, call.Code, call.Fault = e.Status, e.Code, fault
		s.record(call)
		writeError(w, requestID, e)
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		fail(errf(http.StatusMethodNotAllowed, "InvalidHttpRequest", "The EC2 API accepts GET and POST"), "")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(errf(400, "MalformedQueryString", err.Error()), "")
		return
	}
	form := r.Form
	call.Action = form.Get("Action")
	call.ClientToken = form.Get("ClientToken")
	if call.Action == "RunInstances" {
		call.InstanceType, call.SubnetID = form.Get("InstanceType"), form.Get("SubnetId")
	}
	handler, ok := map[string]func(*http.Request, string) (any, []string, *apiError){
		"RunInstances":       s.runInstances,
		"DescribeInstances":  s.describeInstances,
		"TerminateInstances": s.terminateInstances,
	}[call.Action]
	switch {
	case call.Action == "":
		fail(errf(400, "MissingAction", "The request must contain the parameter Action"), "")
		return
	case !ok:
		fail(errf(400, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", call.Action)), "")
		return
	case form.Get("Version") != apiVersion:
		fail(errf(400, "InvalidParameterValue", fmt.Sprintf("Unsupported API version %q; this emulator speaks %s", form.Get("Version"), apiVersion)), "")
		return
	case !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 "):
		fail(errf(401, "AuthFailure", "AWS was not able to validate the provided access credentials"), "")
		return
	}

	if e, ok := s.takeInjected(call.Action); ok {
		fail(errf(e.status, e.code, "Injected by the test"), "injected")
		return
	}
	faults := s.faults.Get()
	if s.faults.Draw(faults.ThrottleRate) {
		fail(errf(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."), "throttle")
		return
	}
	if s.faults.Draw(faults.ErrorRate) {
		if s.faults.Draw(0.5) {
			fail(errf(http.StatusInternalServerError, "InternalError", "An internal error has occurred."), "error")
		} else {
			fail(errf(http.StatusServiceUnavailable, "Unavailable", "The server is overloaded and can't handle the request."), "error")
		}
		return
	}

	reply, ids, apiErr := handler(r, requestID)
	call.InstanceIDs = ids
	if apiErr != nil {
		fault := ""
		if apiErr.Code == "InsufficientInstanceCapacity" {
			fault = "capacity"
		}
		fail(apiErr, fault)
		return
	}
	if mutating[call.Action] && s.faults.Draw(faults.LostReplyRate) {
		// The action happened; the caller must not learn so.
		if hj, ok := w.(http.Hijacker); ok && s.faults.Draw(0.5) {
			if conn, _, err := hj.Hijack(); err == nil {
				// Record first: the caller may look at the log as soon as it sees the drop.
				call.Fault = "dropped-connection"
				s.record(call)
				_ = conn.Close()
				return
			}
		}
		fail(errf(http.StatusInternalServerError, "InternalError", "An internal error has occurred."), "lost-reply")
		return
	}
	call.Status = http.StatusOK
	s.record(call)
	writeXML(w, reply)
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	klog.Background().V(4).Info("EC2 emulator call", "action", c.Action, "attempt", c.Attempt, "status", c.Status, "code", c.Code, "fault", c.Fault, "instances", c.InstanceIDs)
}

func (s *Server) takeInjected(action string) (injected, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.failNext[action]
	if len(q) == 0 {
		return injected{}, false
	}
	s.failNext[action] = q[1:]
	return q[0], true
}

// attemptOf parses the SDK's "attempt=2; max=5" header.
func attemptOf(h string) int {
	for part := range strings.SplitSeq(h, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "attempt="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
