package gceemu

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"
)

// apiBase is the prefix of GCE's own resource URLs (selfLink, targetLink, zone).
const apiBase = "https://www.googleapis.com/compute/v1/"

// timestampLayout is how GCE writes creationTimestamp and operation times.
const timestampLayout = "2006-01-02T15:04:05.000-07:00"

// maxBody caps request bodies.
const maxBody = 1 << 20

// maxMetadataBytes is GCE's limit on the total size of an instance's metadata.
const maxMetadataBytes = 512 * 1024

var (
	// nameRE is GCE's resource name rule (RFC 1035 label).
	nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// labelKeyRE and labelValueRE are GCE's label rules, without the international characters.
	labelKeyRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
	// metadataKeyRE is GCE's metadata key rule.
	metadataKeyRE = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,128}$`)
)

// apiError is an error reply in googleapi's JSON shape.
type apiError struct {
	Code    int
	Status  string // the canonical status, such as NOT_FOUND
	Reason  string // errors[0].reason, such as notFound
	Message string
}

func (e *apiError) body() []byte {
	type item struct {
		Message string `json:"message"`
		Domain  string `json:"domain"`
		Reason  string `json:"reason"`
	}
	type inner struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Errors  []item `json:"errors"`
		Status  string `json:"status,omitempty"`
	}
	b, _ := json.Marshal(struct {
		Error inner `json:"error"`
	}{inner{Code: e.Code, Message: e.Message, Status: e.Status, Errors: []item{{Message: e.Message, Domain: "global", Reason: e.Reason}}}})
	return b
}

func errNotFound(resource string) *apiError {
	return &apiError{Code: http.StatusNotFound, Status: "NOT_FOUND", Reason: "notFound", Message: fmt.Sprintf("The resource '%s' was not found", resource)}
}

func errInvalid(format string, args ...any) *apiError {
	return &apiError{Code: http.StatusBadRequest, Status: "INVALID_ARGUMENT", Reason: "invalid", Message: fmt.Sprintf(format, args...)}
}

var (
	errBackend  = &apiError{Code: http.StatusInternalServerError, Status: "INTERNAL", Reason: "backendError", Message: "Internal error. Please try again or contact Google Support."}
	errThrottle = &apiError{Code: http.StatusTooManyRequests, Status: "RESOURCE_EXHAUSTED", Reason: "rateLimitExceeded", Message: "Rate Limit Exceeded"}
	errLost     = &apiError{Code: http.StatusServiceUnavailable, Status: "UNAVAILABLE", Reason: "backendError", Message: "The service is currently unavailable."}
)

// handlerFunc answers one API call with a message to send, or an error.
type handlerFunc func(r *http.Request, call *Call) (proto.Message, *apiError)

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	const zone = "/compute/v1/projects/{project}/zones/{zone}"
	s.handle("POST "+zone+"/instances", "instances.insert", true, s.insertInstance)
	s.handle("GET "+zone+"/instances", "instances.list", false, s.listInstances)
	s.handle("GET "+zone+"/instances/{instance}", "instances.get", false, s.getInstance)
	s.handle("DELETE "+zone+"/instances/{instance}", "instances.delete", true, s.deleteInstance)
	s.handle("GET /compute/v1/projects/{project}/aggregated/instances", "instances.aggregatedList", false, s.aggregatedListInstances)
	s.handle("GET "+zone+"/operations/{operation}", "zoneOperations.get", false, s.getOperation)
	s.handle("POST "+zone+"/operations/{operation}/wait", "zoneOperations.wait", false, s.getOperation)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound(strings.TrimPrefix(r.URL.Path, "/compute/v1/")))
	})
}

// ServeHTTP serves the Compute API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handle registers fn for pattern, with the checks, faults and call log every call gets. Each
// call is recorded before its reply is written, so that a client that has seen the reply (or
// the dropped connection) finds the call in Calls.
func (s *Server) handle(pattern, op string, mutating bool, fn handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		call := Call{
			Method:    r.Method,
			Path:      r.URL.Path,
			Op:        op,
			Zone:      r.PathValue("zone"),
			Instance:  r.PathValue("instance"),
			RequestID: r.URL.Query().Get("requestId"),
			Query:     r.URL.RawQuery,
			Time:      s.opts.Clock.Now(),
		}
		fail := func(e *apiError) {
			call.Status = e.Code
			s.record(call)
			writeError(w, e)
		}
		if aerr := s.checkScope(r); aerr != nil {
			fail(aerr)
			return
		}
		f := s.faults.Get()
		if s.faults.Draw(f.ErrorRate) {
			call.Fault = "error"
			fail(errBackend)
			return
		}
		if s.faults.Draw(f.ThrottleRate) {
			call.Fault = "throttle"
			fail(errThrottle)
			return
		}
		msg, aerr := fn(r, &call)
		if mutating && aerr == nil && s.faults.Draw(f.LostReplyRate) {
			call.Fault = "lostReply"
			if s.faults.Draw(0.5) {
				if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
					call.Status = 0
					s.record(call)
					_ = conn.Close()
					return
				}
			}
			fail(errLost)
			return
		}
		if aerr != nil {
			fail(aerr)
			return
		}
		b, err := protojson.Marshal(msg)
		if err != nil {
			fail(&apiError{Code: http.StatusInternalServerError, Status: "INTERNAL", Reason: "backendError", Message: err.Error()})
			return
		}
		call.Status = http.StatusOK
		s.record(call)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	})
}

// record appends call to the call log.
func (s *Server) record(call Call) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
	klog.V(5).InfoS("GCE emulator call", "op", call.Op, "path", call.Path, "status", call.Status, "fault", call.Fault)
}

// checkScope checks the project and zone of the path.
func (s *Server) checkScope(r *http.Request) *apiError {
	if p := r.PathValue("project"); p != s.opts.Project {
		return errNotFound("projects/" + p)
	}
	if z := r.PathValue("zone"); z != "" && !s.knownZone(z) {
		return errInvalid("Invalid value for field 'zone': '%s'. Unknown zone.", z)
	}
	return nil
}

func (s *Server) knownZone(zone string) bool {
	for _, z := range s.opts.Zones {
		if z == zone {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.Code)
	_, _ = w.Write(e.body())
}

func (s *Server) zoneURL(zone string) string {
	return apiBase + "projects/" + s.opts.Project + "/zones/" + zone
}

func (s *Server) now() string { return s.opts.Clock.Now().Format(timestampLayout) }

// newOperationLocked records a DONE operation on target. s.mu must be held.
func (s *Server) newOperationLocked(zone, opType, targetLink string, targetID uint64) *computepb.Operation {
	s.nextID++
	name := fmt.Sprintf("operation-%d-%s", s.opts.Clock.Now().UnixMilli(), uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.FormatUint(s.nextID, 10))).String()[:13])
	now := s.now()
	op := &computepb.Operation{
		Kind:          proto.String("compute#operation"),
		Id:            proto.Uint64(s.nextID),
		Name:          proto.String(name),
		Zone:          proto.String(s.zoneURL(zone)),
		OperationType: proto.String(opType),
		TargetLink:    proto.String(targetLink),
		Status:        computepb.Operation_DONE.Enum(),
		User:          proto.String("ipp@" + s.opts.Project + ".iam.gserviceaccount.com"),
		Progress:      proto.Int32(100),
		InsertTime:    proto.String(now),
		StartTime:     proto.String(now),
		EndTime:       proto.String(now),
		SelfLink:      proto.String(s.zoneURL(zone) + "/operations/" + name),
	}
	if targetID != 0 {
		op.TargetId = proto.Uint64(targetID)
	}
	s.operations[name] = op
	return op
}

// failOperation makes op end with an error of code, as GCE reports capacity and quota failures.
func failOperation(op *computepb.Operation, code string) {
	status, text := http.StatusBadRequest, "BAD REQUEST"
	msg := "The operation failed: " + code
	switch code {
	case "ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS":
		status, text = http.StatusServiceUnavailable, "SERVICE UNAVAILABLE"
		msg = "The zone does not have enough resources available to fulfill the request. Try a different zone, or try again later."
	case "QUOTA_EXCEEDED":
		status, text = http.StatusForbidden, "FORBIDDEN"
		msg = "Quota 'CPUS' exceeded."
	}
	op.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(code), Message: proto.String(msg)}}}
	op.HttpErrorStatusCode = proto.Int32(int32(status))
	op.HttpErrorMessage = proto.String(text)
}

func (s *Server) insertInstance(r *http.Request, call *Call) (proto.Message, *apiError) {
	zone := r.PathValue("zone")
	requestID := r.URL.Query().Get("requestId")
	if requestID != "" {
		if _, err := uuid.Parse(requestID); err != nil {
			return nil, errInvalid("Invalid value for field 'requestId': '%s'. The request id must be a valid UUID.", requestID)
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, errInvalid("Reading the request body: %v", err)
	}
	if len(body) > maxBody {
		return nil, &apiError{Code: http.StatusRequestEntityTooLarge, Status: "INVALID_ARGUMENT", Reason: "invalid", Message: "The request is too large."}
	}
	res := &computepb.Instance{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, res); err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	template := r.URL.Query().Get("sourceInstanceTemplate")
	if aerr := validateInstance(res, template != ""); aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkMachineTypeZone(res.GetMachineType(), zone); aerr != nil {
		return nil, aerr
	}
	name := res.GetName()

	s.mu.Lock()
	defer s.mu.Unlock()
	if requestID != "" {
		if opName, ok := s.requestIDs[zone+"/"+requestID]; ok {
			// The same request again: the original operation, and nothing new.
			return proto.CloneOf(s.operations[opName]), nil
		}
	}
	selfLink := s.zoneURL(zone) + "/instances/" + name
	if _, ok := s.instances[zone+"/"+name]; ok {
		return nil, &apiError{Code: http.StatusConflict, Status: "ALREADY_EXISTS", Reason: "alreadyExists",
			Message: fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' already exists", s.opts.Project, zone, name)}
	}
	failCode := ""
	if len(s.failNext) > 0 {
		failCode, s.failNext = s.failNext[0], s.failNext[1:]
		call.Fault = "injected"
	} else if s.exhausted[zone] || s.faults.Draw(s.faults.Get().CapacityRate) {
		failCode = "ZONE_RESOURCE_POOL_EXHAUSTED"
		call.Fault = "capacity"
	}
	if failCode != "" {
		op := s.newOperationLocked(zone, "insert", selfLink, 0)
		failOperation(op, failCode)
		if requestID != "" {
			s.requestIDs[zone+"/"+requestID] = op.GetName()
		}
		return proto.CloneOf(op), nil
	}

	s.nextID++
	created := s.opts.Clock.Now()
	pb := proto.CloneOf(res)
	pb.Kind = proto.String("compute#instance")
	pb.Id = proto.Uint64(s.nextID)
	pb.Zone = proto.String(s.zoneURL(zone))
	pb.SelfLink = proto.String(selfLink)
	pb.Status = proto.String("PROVISIONING")
	pb.CreationTimestamp = proto.String(created.Format(timestampLayout))
	if mt := pb.GetMachineType(); mt != "" && !strings.HasPrefix(mt, "https://") {
		pb.MachineType = proto.String(apiBase + "projects/" + s.opts.Project + "/" + strings.TrimPrefix(mt, "/"))
	}
	if pb.Metadata == nil {
		pb.Metadata = &computepb.Metadata{}
	}
	pb.Metadata.Kind = proto.String("compute#metadata")
	pb.Metadata.Fingerprint = proto.String(base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(s.nextID, 16))))
	if template != "" {
		pb.Metadata.Items = append(pb.Metadata.Items, &computepb.Items{Key: proto.String("instance-template"), Value: proto.String(template)})
	}
	inst := &instance{name: name, zone: zone, template: template, created: created, pb: pb}
	s.instances[zone+"/"+name] = inst
	s.creations[name]++
	op := s.newOperationLocked(zone, "insert", selfLink, pb.GetId())
	if requestID != "" {
		s.requestIDs[zone+"/"+requestID] = op.GetName()
	}
	s.scheduleBootLocked(inst)
	return proto.CloneOf(op), nil
}

// checkMachineTypeZone refuses a machine type of another zone than the instance's, as GCE does:
// a provider that moves to the next zone must name the machine type there.
func (s *Server) checkMachineTypeZone(machineType, zone string) *apiError {
	if machineType == "" {
		return nil
	}
	_, rest, ok := strings.Cut(machineType, "zones/")
	mtZone, _, _ := strings.Cut(rest, "/")
	if !ok || mtZone != zone {
		return errInvalid("Invalid value for field 'resource.machineType': '%s'. Machine type must be in zone '%s' of the instance.", machineType, zone)
	}
	return nil
}

// validateInstance checks what GCE would refuse with a 400.
func validateInstance(res *computepb.Instance, fromTemplate bool) *apiError {
	if !nameRE.MatchString(res.GetName()) {
		return errInvalid("Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", res.GetName())
	}
	if len(res.GetLabels()) > 64 {
		return errInvalid("Invalid value for field 'resource.labels': more than 64 labels")
	}
	for k, v := range res.GetLabels() {
		if !labelKeyRE.MatchString(k) {
			return errInvalid("Invalid value for field 'resource.labels': '%s'. Label keys must start with a lowercase letter and contain only lowercase letters, digits, '_' and '-'.", k)
		}
		if !labelValueRE.MatchString(v) {
			return errInvalid("Invalid value for field 'resource.labels': '%s'. Label values may contain only lowercase letters, digits, '_' and '-', at most 63.", v)
		}
	}
	size := 0
	seen := map[string]bool{}
	for _, it := range res.GetMetadata().GetItems() {
		if !metadataKeyRE.MatchString(it.GetKey()) {
			return errInvalid("Invalid value for field 'resource.metadata': '%s'. Metadata keys must match [a-zA-Z0-9-_]{1,128}.", it.GetKey())
		}
		if seen[it.GetKey()] {
			return errInvalid("Invalid value for field 'resource.metadata': duplicate key '%s'.", it.GetKey())
		}
		seen[it.GetKey()] = true
		size += len(it.GetKey()) + len(it.GetValue())
	}
	if size > maxMetadataBytes {
		return errInvalid("Invalid value for field 'resource.metadata': the total size exceeds 512 KB.")
	}
	if fromTemplate {
		return nil
	}
	if res.GetMachineType() == "" {
		return errInvalid("Invalid value for field 'resource.machineType': ''. Machine type must be specified.")
	}
	boot := false
	for _, d := range res.GetDisks() {
		if d.GetBoot() && (d.GetInitializeParams().GetSourceImage() != "" || d.GetSource() != "") {
			boot = true
		}
	}
	if !boot {
		return errInvalid("Invalid value for field 'resource.disks': ''. Boot disk must be specified.")
	}
	if len(res.GetNetworkInterfaces()) == 0 {
		return errInvalid("Invalid value for field 'resource.networkInterfaces': ''. At least one network interface is required.")
	}
	return nil
}

func (s *Server) getInstance(r *http.Request, _ *Call) (proto.Message, *apiError) {
	zone, name := r.PathValue("zone"), r.PathValue("instance")
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[zone+"/"+name]
	if !ok {
		return nil, errNotFound(fmt.Sprintf("projects/%s/zones/%s/instances/%s", s.opts.Project, zone, name))
	}
	return proto.CloneOf(inst.pb), nil
}

func (s *Server) deleteInstance(r *http.Request, _ *Call) (proto.Message, *apiError) {
	zone, name := r.PathValue("zone"), r.PathValue("instance")
	requestID := r.URL.Query().Get("requestId")
	if requestID != "" {
		if _, err := uuid.Parse(requestID); err != nil {
			return nil, errInvalid("Invalid value for field 'requestId': '%s'. The request id must be a valid UUID.", requestID)
		}
	}
	s.mu.Lock()
	if requestID != "" {
		if opName, ok := s.requestIDs[zone+"/"+requestID]; ok {
			op := proto.CloneOf(s.operations[opName])
			s.mu.Unlock()
			return op, nil
		}
	}
	inst, ok := s.instances[zone+"/"+name]
	if !ok {
		s.mu.Unlock()
		return nil, errNotFound(fmt.Sprintf("projects/%s/zones/%s/instances/%s", s.opts.Project, zone, name))
	}
	delete(s.instances, zone+"/"+name)
	op := s.newOperationLocked(zone, "delete", inst.pb.GetSelfLink(), inst.pb.GetId())
	if requestID != "" {
		s.requestIDs[zone+"/"+requestID] = op.GetName()
	}
	op = proto.CloneOf(op)
	s.mu.Unlock()
	s.shutdown(inst)
	return op, nil
}

func (s *Server) getOperation(r *http.Request, _ *Call) (proto.Message, *apiError) {
	zone, name := r.PathValue("zone"), r.PathValue("operation")
	s.mu.Lock()
	defer s.mu.Unlock()
	op, ok := s.operations[name]
	if !ok || op.GetZone() != s.zoneURL(zone) {
		return nil, errNotFound(fmt.Sprintf("projects/%s/zones/%s/operations/%s", s.opts.Project, zone, name))
	}
	return proto.CloneOf(op), nil
}

// listParams are the paging and filter parameters of a list call.
type listParams struct {
	filter    filter
	pageSize  int
	pageToken string // the zone/name key after which the page starts
}

func (s *Server) parseListParams(r *http.Request) (listParams, *apiError) {
	q := r.URL.Query()
	p := listParams{pageSize: s.opts.PageSize}
	f, err := parseFilter(q.Get("filter"))
	if err != nil {
		return p, errInvalid("Invalid value for field 'filter': '%s'. %v", q.Get("filter"), err)
	}
	p.filter = f
	if m := q.Get("maxResults"); m != "" {
		n, err := strconv.ParseUint(m, 10, 32)
		if err != nil {
			return p, errInvalid("Invalid value for field 'maxResults': '%s'.", m)
		}
		if n > 0 {
			p.pageSize = min(int(n), maxPageSize)
		}
	}
	if t := q.Get("pageToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return p, errInvalid("Invalid value for field 'pageToken': '%s'.", t)
		}
		p.pageToken = string(b)
	}
	return p, nil
}

// pageLocked returns the instances of zones (all if empty) that match p, one page of them in key
// order, and the next page token. s.mu must be held.
func (s *Server) pageLocked(p listParams, zone string) ([]*instance, string) {
	keys := make([]string, 0, len(s.instances))
	for k, inst := range s.instances {
		if (zone == "" || inst.zone == zone) && k > p.pageToken && p.filter.matches(inst.pb) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	next := ""
	if len(keys) > p.pageSize {
		keys = keys[:p.pageSize]
		next = base64.RawURLEncoding.EncodeToString([]byte(keys[len(keys)-1]))
	}
	out := make([]*instance, len(keys))
	for i, k := range keys {
		out[i] = s.instances[k]
	}
	return out, next
}

func (s *Server) listInstances(r *http.Request, _ *Call) (proto.Message, *apiError) {
	zone := r.PathValue("zone")
	p, aerr := s.parseListParams(r)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	page, next := s.pageLocked(p, zone)
	list := &computepb.InstanceList{
		Kind:     proto.String("compute#instanceList"),
		Id:       proto.String("projects/" + s.opts.Project + "/zones/" + zone + "/instances"),
		SelfLink: proto.String(s.zoneURL(zone) + "/instances"),
		Items:    []*computepb.Instance{},
	}
	for _, inst := range page {
		list.Items = append(list.Items, proto.CloneOf(inst.pb))
	}
	if next != "" {
		list.NextPageToken = proto.String(next)
	}
	return list, nil
}

func (s *Server) aggregatedListInstances(r *http.Request, _ *Call) (proto.Message, *apiError) {
	p, aerr := s.parseListParams(r)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	page, next := s.pageLocked(p, "")
	list := &computepb.InstanceAggregatedList{
		Kind:     proto.String("compute#instanceAggregatedList"),
		Id:       proto.String("projects/" + s.opts.Project + "/aggregated/instances"),
		SelfLink: proto.String(apiBase + "projects/" + s.opts.Project + "/aggregated/instances"),
		Items:    map[string]*computepb.InstancesScopedList{},
	}
	for _, z := range s.opts.Zones {
		list.Items["zones/"+z] = &computepb.InstancesScopedList{}
	}
	for _, inst := range page {
		sl := list.Items["zones/"+inst.zone]
		sl.Instances = append(sl.Instances, proto.CloneOf(inst.pb))
	}
	for _, z := range s.opts.Zones {
		if sl := list.Items["zones/"+z]; len(sl.Instances) == 0 {
			sl.Warning = &computepb.Warning{
				Code:    proto.String("NO_RESULTS_ON_PAGE"),
				Message: proto.String("There are no results for scope 'zones/" + z + "' on this page."),
				Data:    []*computepb.Data{{Key: proto.String("scope"), Value: proto.String("zones/" + z)}},
			}
		}
	}
	if next != "" {
		list.NextPageToken = proto.String(next)
	}
	return list, nil
}
