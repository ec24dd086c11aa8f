package ec2emu

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/cloudemu"
)

const (
	statePending      = "pending"
	stateRunning      = "running"
	stateShuttingDown = "shutting-down"
	stateTerminated   = "terminated"

	ownerID        = "123456789012"
	maxUserData    = 16 * 1024
	maxClientToken = 64
)

// instance is one emulated instance. Its fields are guarded by Server.mu, except the channels.
type instance struct {
	seq                uint64
	id                 string
	reservationID      string
	imageID            string
	instanceType       string
	launchTemplate     string
	subnetID           string
	az                 string
	privateIP          string
	securityGroups     []string
	instanceProfile    string
	clientToken        string
	tags               []xmlTag
	volumeTags         []xmlTag
	userData           string
	metadataHTTPTokens string
	metadataHopLimit   int
	launchTime         time.Time
	launchIndex        int

	state       string    // pending or running; termination is derived from terminateAt
	terminateAt time.Time // when TerminateInstances was called; zero if never
	booted      bool

	stopBoot chan struct{} // closed on termination, to cancel a pending boot
	bootDone chan struct{} // closed when the boot goroutine has finished
}

func (i *instance) tag(key string) string {
	for _, t := range i.tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

func (i *instance) providerID() string { return "aws:///" + i.az + "/" + i.id }

func tagMap(tags []xmlTag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m
}

func (i *instance) snapshot(state string) Instance {
	return Instance{
		ID:                 i.id,
		ReservationID:      i.reservationID,
		Name:               i.tag("Name"),
		State:              state,
		AvailabilityZone:   i.az,
		SubnetID:           i.subnetID,
		InstanceType:       i.instanceType,
		ImageID:            i.imageID,
		LaunchTemplate:     i.launchTemplate,
		SecurityGroupIDs:   slices.Clone(i.securityGroups),
		InstanceProfile:    i.instanceProfile,
		ClientToken:        i.clientToken,
		Tags:               tagMap(i.tags),
		VolumeTags:         tagMap(i.volumeTags),
		UserData:           i.userData,
		MetadataHTTPTokens: i.metadataHTTPTokens,
		MetadataHopLimit:   i.metadataHopLimit,
		ProviderID:         i.providerID(),
		LaunchTime:         i.launchTime,
		Booted:             i.booted,
	}
}

// stateOf derives the instance's state at now: termination moves it to shutting-down, then
// terminated after ShutdownDelay, then out of sight (gone) after TerminatedRetention.
func (s *Server) stateOf(i *instance, now time.Time) (state string, gone bool) {
	if i.terminateAt.IsZero() {
		return i.state, false
	}
	terminated := i.terminateAt.Add(s.opts.ShutdownDelay)
	switch {
	case now.Before(terminated):
		return stateShuttingDown, false
	case now.Before(terminated.Add(s.opts.TerminatedRetention)):
		return stateTerminated, false
	default:
		return stateTerminated, true
	}
}

func (s *Server) sortedInstances() []*instance {
	out := slices.Collect(maps.Values(s.instances))
	sort.Slice(out, func(a, b int) bool { return out[a].seq < out[b].seq })
	return out
}

func (s *Server) toXML(i *instance, state string) xmlInstance {
	x := xmlInstance{
		InstanceID:         i.id,
		ImageID:            i.imageID,
		State:              xmlStateOf(state),
		PrivateDNSName:     s.privateDNS(i.privateIP),
		AmiLaunchIndex:     i.launchIndex,
		InstanceType:       i.instanceType,
		LaunchTime:         formatTime(i.launchTime),
		Placement:          xmlPlacement{AvailabilityZone: i.az, Tenancy: "default"},
		SubnetID:           i.subnetID,
		VpcID:              "vpc-0000000000000000a",
		PrivateIPAddress:   i.privateIP,
		Architecture:       "x86_64",
		RootDeviceType:     "ebs",
		RootDeviceName:     "/dev/xvda",
		VirtualizationType: "hvm",
		Hypervisor:         "xen",
		ClientToken:        i.clientToken,
		Tags:               i.tags,
		MetadataOptions:    xmlMetadataOptions{State: "applied", HTTPTokens: i.metadataHTTPTokens, HTTPEndpoint: "enabled", HopLimit: i.metadataHopLimit},
	}
	if x.MetadataOptions.HTTPTokens == "" {
		x.MetadataOptions.HTTPTokens = "optional"
	}
	for _, g := range i.securityGroups {
		x.Groups = append(x.Groups, xmlGroup{GroupID: g, GroupName: g})
	}
	if p := i.instanceProfile; p != "" {
		arn := p
		if !strings.HasPrefix(p, "arn:") {
			arn = "arn:aws:iam::" + ownerID + ":instance-profile/" + p
		}
		sum := sha256.Sum256([]byte(arn))
		x.IamInstanceProfile = &xmlIamInstanceProfile{Arn: arn, ID: "AIPA" + strings.ToUpper(hex.EncodeToString(sum[:8]))}
	}
	if state == stateShuttingDown || state == stateTerminated {
		x.PrivateDNSName, x.PrivateIPAddress = "", ""
		x.Reason = "User initiated (" + i.terminateAt.UTC().Format("2006-01-02 15:04:05 MST") + ")"
		x.StateReason = &xmlStateReason{Code: "Client.UserInitiatedShutdown", Message: "Client.UserInitiatedShutdown: User initiated shutdown"}
	}
	return x
}

func (s *Server) privateDNS(ip string) string {
	host := "ip-" + strings.ReplaceAll(ip, ".", "-")
	if s.opts.Region == "us-east-1" {
		return host + ".ec2.internal"
	}
	return host + "." + s.opts.Region + ".compute.internal"
}

// tokenRecord is what EC2 remembers of a ClientToken: the reservation it made and a digest of
// the request's parameters.
type tokenRecord struct {
	params        string
	reservationID string
	instanceIDs   []string
	groups        []string
}

// paramsDigest digests every parameter of a RunInstances request except the token itself, so
// that a repeat with other parameters can be told apart.
func paramsDigest(form url.Values) string {
	keys := slices.Sorted(maps.Keys(form))
	h := sha256.New()
	for _, k := range keys {
		switch k {
		case "Action", "Version", "ClientToken", "DryRun":
			continue
		}
		for _, v := range form[k] {
			fmt.Fprintf(h, "%s=%s\n", k, v)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runRequest is a parsed RunInstances request.
type runRequest struct {
	count          int
	imageID        string
	instanceType   string
	launchTemplate string
	subnetID       string
	az             string
	groups         []string
	profile        string
	userData       string
	tags           []xmlTag
	volumeTags     []xmlTag
	httpTokens     string
	hopLimit       int
}

func (s *Server) parseRun(form url.Values) (*runRequest, *apiError) {
	minCount, okMin, e := intParam(form, "MinCount")
	if e != nil {
		return nil, e
	}
	maxCount, okMax, e := intParam(form, "MaxCount")
	if e != nil {
		return nil, e
	}
	if !okMin || !okMax {
		return nil, errf(400, "MissingParameter", "The request must contain the parameters MinCount and MaxCount")
	}
	if minCount < 1 || maxCount < minCount || maxCount > 100 {
		return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("Invalid MinCount %d / MaxCount %d", minCount, maxCount))
	}
	req := &runRequest{count: maxCount}

	if ref := form.Get("LaunchTemplate.LaunchTemplateId") + form.Get("LaunchTemplate.LaunchTemplateName"); ref != "" {
		req.launchTemplate = ref
		if v := form.Get("LaunchTemplate.Version"); v != "" {
			req.launchTemplate += ":" + v
		}
	}
	req.imageID = form.Get("ImageId")
	switch {
	case req.imageID == "" && req.launchTemplate == "":
		return nil, errf(400, "MissingParameter", "The request must contain the parameter ImageId")
	case req.imageID == "":
		req.imageID = "ami-0000000000000000a" // the launch template's image
	case !strings.HasPrefix(req.imageID, "ami-"):
		return nil, errf(400, "InvalidAMIID.Malformed", fmt.Sprintf("Invalid id: \"%s\" (expecting \"ami-...\")", req.imageID))
	}
	req.instanceType = form.Get("InstanceType")
	if req.instanceType == "" {
		req.instanceType = "m1.small"
	}

	req.subnetID = form.Get("SubnetId")
	if req.subnetID == "" {
		req.subnetID = s.subnets[0]
	}
	az, ok := s.opts.Subnets[req.subnetID]
	if !ok {
		return nil, errf(400, "InvalidSubnetID.NotFound", fmt.Sprintf("The subnet ID '%s' does not exist", req.subnetID))
	}
	req.az = az
	for _, g := range strList(form, "SecurityGroupId") {
		if !strings.HasPrefix(g, "sg-") {
			return nil, errf(400, "InvalidGroupId.Malformed", fmt.Sprintf("Invalid id: \"%s\" (expecting \"sg-...\")", g))
		}
		req.groups = append(req.groups, g)
	}
	if len(req.groups) == 0 {
		req.groups = []string{"sg-0000000000000000a"}
	}
	name, arn := form.Get("IamInstanceProfile.Name"), form.Get("IamInstanceProfile.Arn")
	switch {
	case name != "" && arn != "":
		return nil, errf(400, "InvalidParameterCombination", "The parameter 'iamInstanceProfile.name' may not be used in combination with 'iamInstanceProfile.arn'")
	case arn != "" && !strings.HasPrefix(arn, "arn:aws:iam::"):
		return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN", arn))
	}
	req.profile = name + arn

	if ud := form.Get("UserData"); ud != "" {
		raw, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, errf(400, "InvalidUserData.Malformed", "Invalid BASE64 encoding of user data.")
		}
		if len(raw) > maxUserData {
			return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("User data is limited to %d bytes", maxUserData))
		}
		req.userData = string(raw)
	}

	for i := 1; i <= listLen(form, "TagSpecification"); i++ {
		p := fmt.Sprintf("TagSpecification.%d", i)
		var tags []xmlTag
		for j := 1; j <= listLen(form, p+".Tag"); j++ {
			tp := fmt.Sprintf("%s.Tag.%d", p, j)
			t := xmlTag{Key: form.Get(tp + ".Key"), Value: form.Get(tp + ".Value")}
			switch {
			case t.Key == "" || len(t.Key) > 128:
				return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("Tag key %q must be 1 to 128 characters", t.Key))
			case strings.HasPrefix(strings.ToLower(t.Key), "aws:"):
				return nil, errf(400, "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
			case len(t.Value) > 256:
				return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("Tag value of %q is longer than 256 characters", t.Key))
			}
			tags = append(tags, t)
		}
		if len(tags) > 50 {
			return nil, errf(400, "TagLimitExceeded", "The maximum number of tags per resource is 50")
		}
		switch rt := form.Get(p + ".ResourceType"); rt {
		case "instance":
			req.tags = append(req.tags, tags...)
		case "volume":
			req.volumeTags = append(req.volumeTags, tags...)
		case "network-interface", "spot-instances-request", "elastic-gpu":
		default:
			return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("'%s' is not a valid taggable resource type for this operation.", rt))
		}
	}
	req.httpTokens = form.Get("MetadataOptions.HttpTokens")
	if v := form.Get("MetadataOptions.HttpPutResponseHopLimit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return nil, errf(400, "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter HttpPutResponseHopLimit is invalid. Valid values are 1 to 64.", v))
		}
		req.hopLimit = n
	}
	return req, nil
}

// runInstances implements RunInstances.
func (s *Server) runInstances(r *http.Request, requestID string) (any, []string, *apiError) {
	form := r.Form
	token := form.Get("ClientToken")
	if len(token) > maxClientToken {
		return nil, nil, errf(400, "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter clientToken is invalid. Length exceeds %d characters", token, maxClientToken))
	}
	req, apiErr := s.parseRun(form)
	if apiErr != nil {
		return nil, nil, apiErr
	}
	if form.Get("DryRun") == "true" {
		return nil, nil, errf(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, nil, errf(http.StatusServiceUnavailable, "Unavailable", "The emulator is shutting down.")
	}
	digest := paramsDigest(form)
	if rec, ok := s.tokens[token]; ok && token != "" {
		if rec.params != digest {
			return nil, nil, errf(400, "IdempotentParameterMismatch", fmt.Sprintf("Arguments on this idempotent request are inconsistent with arguments used in previous request(s) with client token %s.", token))
		}
		return s.reservationReply(requestID, rec.reservationID, rec.groups, rec.instanceIDs), rec.instanceIDs, nil
	}
	if !s.hasCapacity(req.az, req.instanceType) || s.faults.Draw(s.faults.Get().CapacityRate) {
		return nil, nil, errf(http.StatusInternalServerError, "InsufficientInstanceCapacity",
			fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity. You can currently get %s capacity by not specifying an Availability Zone in your request or choosing a different one.", req.instanceType, req.az, req.instanceType))
	}
	if lim := s.opts.InstanceLimit; lim > 0 && s.liveCount()+req.count > lim {
		return nil, nil, errf(400, "InstanceLimitExceeded", fmt.Sprintf("You have requested more instances (%d) than your current instance limit of %d allows for the specified instance type.", s.liveCount()+req.count, lim))
	}

	s.seq++
	reservationID := fmt.Sprintf("r-%017x", s.opts.Seed<<24|s.seq)
	subnetIndex := slices.Index(s.subnets, req.subnetID)
	now := time.Now()
	var ids []string
	for n := range req.count {
		if n > 0 {
			s.seq++
		}
		inst := &instance{
			seq:                s.seq,
			id:                 fmt.Sprintf("i-%017x", s.opts.Seed<<24|s.seq),
			reservationID:      reservationID,
			imageID:            req.imageID,
			instanceType:       req.instanceType,
			launchTemplate:     req.launchTemplate,
			subnetID:           req.subnetID,
			az:                 req.az,
			privateIP:          fmt.Sprintf("10.0.%d.%d", subnetIndex%256, 4+s.seq%250),
			securityGroups:     req.groups,
			instanceProfile:    req.profile,
			clientToken:        token,
			tags:               req.tags,
			volumeTags:         req.volumeTags,
			userData:           req.userData,
			metadataHTTPTokens: req.httpTokens,
			metadataHopLimit:   req.hopLimit,
			launchTime:         now,
			launchIndex:        n,
			state:              statePending,
			stopBoot:           make(chan struct{}),
			bootDone:           make(chan struct{}),
		}
		s.instances[inst.id] = inst
		s.created[inst.tag("Name")]++
		ids = append(ids, inst.id)
		s.bootWG.Add(1)
		go s.boot(inst)
	}
	if token != "" {
		s.tokens[token] = &tokenRecord{params: digest, reservationID: reservationID, instanceIDs: ids, groups: req.groups}
	}
	return s.reservationReply(requestID, reservationID, req.groups, ids), ids, nil
}

// liveCount counts instances that are not shutting down or terminated. Callers hold s.mu.
func (s *Server) liveCount() int {
	n := 0
	for _, i := range s.instances {
		if i.terminateAt.IsZero() {
			n++
		}
	}
	return n
}

// reservationReply is RunInstances' reply for a reservation, with its instances' current states.
// Callers hold s.mu.
func (s *Server) reservationReply(requestID, reservationID string, groups, ids []string) *runInstancesResponse {
	resp := &runInstancesResponse{xmlReservation: xmlReservation{RequestID: requestID, ReservationID: reservationID, OwnerID: ownerID}}
	for _, g := range groups {
		resp.Groups = append(resp.Groups, xmlGroup{GroupID: g, GroupName: g})
	}
	now := time.Now()
	for _, id := range ids {
		inst := s.instances[id]
		state, _ := s.stateOf(inst, now)
		resp.Instances = append(resp.Instances, s.toXML(inst, state))
	}
	return resp
}

// boot waits out the boot delay, then marks the instance running and boots it through the
// Booter, unless it was terminated first or NeverBoot says it never boots.
func (s *Server) boot(inst *instance) {
	defer s.bootWG.Done()
	defer close(inst.bootDone)
	if d := s.opts.BootDelay; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-inst.stopBoot:
			return
		case <-s.ctx.Done():
			return
		}
	}
	s.mu.Lock()
	if !inst.terminateAt.IsZero() || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	inst.state = stateRunning
	name := inst.tag("Name")
	if name == "" {
		name = inst.id
	}
	req := cloudemu.BootRequest{InstanceID: inst.id, ProviderID: inst.providerID(), Zone: inst.az, Bootstrap: inst.userData}
	never := s.faults.Get().NeverBoot
	s.mu.Unlock()

	logger := klog.Background().WithValues("instance", inst.id, "node", name)
	if never != nil && never(name) {
		logger.V(2).Info("EC2 emulator: instance will never boot")
		return
	}
	if s.opts.Booter == nil {
		return
	}
	s.mu.Lock()
	inst.booted = true
	s.mu.Unlock()
	if err := s.opts.Booter.Boot(s.ctx, req); err != nil {
		logger.Error(err, "EC2 emulator: booting instance failed")
	}
}

// terminateInstances implements TerminateInstances.
func (s *Server) terminateInstances(r *http.Request, requestID string) (any, []string, *apiError) {
	ids := strList(r.Form, "InstanceId")
	if len(ids) == 0 {
		return nil, nil, errf(400, "MissingParameter", "The request must contain the parameter InstanceId")
	}
	if apiErr := checkIDs(ids); apiErr != nil {
		return nil, ids, apiErr
	}
	if r.Form.Get("DryRun") == "true" {
		return nil, ids, errf(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, nil, errf(http.StatusServiceUnavailable, "Unavailable", "The emulator is shutting down.")
	}
	now := time.Now()
	var missing []string
	for _, id := range ids {
		if inst, ok := s.instances[id]; !ok {
			missing = append(missing, id)
		} else if _, gone := s.stateOf(inst, now); gone {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, ids, notFound(missing)
	}
	resp := &terminateInstancesResponse{RequestID: requestID}
	for _, id := range ids {
		inst := s.instances[id]
		previous, _ := s.stateOf(inst, now)
		if inst.terminateAt.IsZero() {
			inst.terminateAt = now
			close(inst.stopBoot)
			s.bootWG.Add(1)
			go s.shutdown(inst)
		}
		current, _ := s.stateOf(inst, now)
		if current == stateTerminated && previous != stateTerminated {
			// EC2 reports shutting-down in the reply even when it gets there fast.
			current = stateShuttingDown
		}
		resp.Instances = append(resp.Instances, xmlStateChange{InstanceID: id, CurrentState: xmlStateOf(current), PreviousState: xmlStateOf(previous)})
	}
	return resp, ids, nil
}

// shutdown stops a terminated instance's kubelet, once its boot (if any) has finished.
func (s *Server) shutdown(inst *instance) {
	defer s.bootWG.Done()
	<-inst.bootDone
	s.mu.Lock()
	booted := inst.booted
	s.mu.Unlock()
	if booted && s.opts.Booter != nil {
		s.opts.Booter.Shutdown(s.ctx, inst.id)
	}
}

// describeInstances implements DescribeInstances.
func (s *Server) describeInstances(r *http.Request, requestID string) (any, []string, *apiError) {
	form := r.Form
	ids := strList(form, "InstanceId")
	if apiErr := checkIDs(ids); apiErr != nil {
		return nil, ids, apiErr
	}
	maxResults, hasMax, apiErr := intParam(form, "MaxResults")
	if apiErr != nil {
		return nil, ids, apiErr
	}
	if hasMax {
		if len(ids) > 0 {
			return nil, ids, errf(400, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
		}
		if maxResults < 5 || maxResults > 1000 {
			return nil, ids, errf(400, "InvalidParameterValue", fmt.Sprintf("Value ( %d ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.", maxResults))
		}
	}
	var after uint64
	if tok := form.Get("NextToken"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		n, perr := strconv.ParseUint(strings.TrimPrefix(string(raw), "after:"), 10, 64)
		if err != nil || perr != nil || !strings.HasPrefix(string(raw), "after:") {
			return nil, ids, errf(400, "InvalidParameterValue", fmt.Sprintf("Invalid value '%s' for nextToken", tok))
		}
		after = n
	}
	fs := filters(form)
	for _, f := range fs {
		if !knownFilter(f.Name) {
			return nil, ids, errf(400, "InvalidParameterValue", fmt.Sprintf("The filter '%s' is invalid", f.Name))
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(ids) > 0 {
		var missing []string
		for _, id := range ids {
			if inst, ok := s.instances[id]; !ok {
				missing = append(missing, id)
			} else if _, gone := s.stateOf(inst, now); gone {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return nil, ids, notFound(missing)
		}
	}
	pageSize := 0
	if hasMax {
		pageSize = maxResults
	}
	if c := s.opts.MaxPageSize; c > 0 && (pageSize == 0 || c < pageSize) {
		pageSize = c
	}

	resp := &describeInstancesResponse{RequestID: requestID}
	byReservation := map[string]int{}
	var shown []string
	for _, inst := range s.sortedInstances() {
		if inst.seq <= after {
			continue
		}
		state, gone := s.stateOf(inst, now)
		if gone || (len(ids) > 0 && !slices.Contains(ids, inst.id)) || !matches(inst, state, fs) {
			continue
		}
		if pageSize > 0 && len(shown) == pageSize {
			last := s.instances[shown[len(shown)-1]]
			resp.NextToken = base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatUint(last.seq, 10)))
			break
		}
		idx, ok := byReservation[inst.reservationID]
		if !ok {
			idx = len(resp.Reservations)
			byReservation[inst.reservationID] = idx
			res := xmlReservation{ReservationID: inst.reservationID, OwnerID: ownerID}
			for _, g := range inst.securityGroups {
				res.Groups = append(res.Groups, xmlGroup{GroupID: g, GroupName: g})
			}
			resp.Reservations = append(resp.Reservations, res)
		}
		resp.Reservations[idx].Instances = append(resp.Reservations[idx].Instances, s.toXML(inst, state))
		shown = append(shown, inst.id)
	}
	return resp, shown, nil
}

func checkIDs(ids []string) *apiError {
	for _, id := range ids {
		if !strings.HasPrefix(id, "i-") || len(id) < 3 {
			return errf(400, "InvalidInstanceID.Malformed", fmt.Sprintf("Invalid id: \"%s\"", id))
		}
	}
	return nil
}

func notFound(ids []string) *apiError {
	if len(ids) == 1 {
		return errf(400, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", ids[0]))
	}
	return errf(400, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance IDs '%s' do not exist", strings.Join(ids, ", ")))
}

func knownFilter(name string) bool {
	switch name {
	case "tag-key", "instance-state-name", "instance-state-code", "instance-id", "availability-zone",
		"subnet-id", "instance-type", "client-token", "image-id", "reservation-id":
		return true
	}
	return strings.HasPrefix(name, "tag:") && len(name) > len("tag:")
}

// matches reports whether an instance passes every filter (filters are ANDed, a filter's values
// ORed).
func matches(i *instance, state string, fs []filter) bool {
	for _, f := range fs {
		ok := false
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			key := strings.TrimPrefix(f.Name, "tag:")
			for _, t := range i.tags {
				if t.Key == key && anyMatch(f.Values, t.Value) {
					ok = true
				}
			}
		case f.Name == "tag-key":
			for _, t := range i.tags {
				if anyMatch(f.Values, t.Key) {
					ok = true
				}
			}
		case f.Name == "instance-state-name":
			ok = anyMatch(f.Values, state)
		case f.Name == "instance-state-code":
			ok = anyMatch(f.Values, strconv.Itoa(stateCodes[state]))
		case f.Name == "instance-id":
			ok = anyMatch(f.Values, i.id)
		case f.Name == "availability-zone":
			ok = anyMatch(f.Values, i.az)
		case f.Name == "subnet-id":
			ok = anyMatch(f.Values, i.subnetID)
		case f.Name == "instance-type":
			ok = anyMatch(f.Values, i.instanceType)
		case f.Name == "client-token":
			ok = anyMatch(f.Values, i.clientToken)
		case f.Name == "image-id":
			ok = anyMatch(f.Values, i.imageID)
		case f.Name == "reservation-id":
			ok = anyMatch(f.Values, i.reservationID)
		}
		if !ok {
			return false
		}
	}
	return true
}
