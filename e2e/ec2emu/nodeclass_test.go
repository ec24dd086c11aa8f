package ec2emu_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipp-project/ipp/e2e/ec2emu"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// metalSpec is the spec of an instance of NodeClass "metal", which prefers i3.metal to m5.metal
// and subnet A to subnet B, with an AMI, security groups and instance profile of its own.
func metalSpec(class string) cloudprovider.InstanceSpec {
	s := spec(class)
	s.NodeClass = "metal"
	s.EC2 = &ippv1alpha1.EC2NodeClass{
		InstanceTypes:   []string{"i3.metal", "m5.metal"},
		Subnets:         []string{subnetA, subnetB},
		AMI:             "ami-0fedcba9876543210",
		SecurityGroups:  []string{"sg-0aaaaaaaaaaaaaaaa", "sg-0bbbbbbbbbbbbbbbb"},
		InstanceProfile: "ipp-nodes",
	}
	return s
}

// attempts returns the instance type and subnet of each RunInstances call, and its token.
func attempts(srv *ec2emu.Server) (tried, tokens []string) {
	for _, c := range callsOf(srv, "RunInstances") {
		tried = append(tried, c.InstanceType+" in "+c.SubnetID)
		tokens = append(tokens, c.ClientToken)
	}
	return tried, tokens
}

// The first instance type out of capacity everywhere: the second type is launched, in the first
// subnet, with the NodeClass's AMI, security groups and instance profile, and the NodeClass tag,
// which List returns.
func TestNodeClassTypeFallback(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()
	e.srv.SetCapacity("", "i3.metal", false)

	s := metalSpec("class0")
	got, err := e.p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := e.srv.Instance(got.ID)
	if inst.InstanceType != "m5.metal" || inst.SubnetID != subnetA || inst.ImageID != "ami-0fedcba9876543210" ||
		!slices.Equal(inst.SecurityGroupIDs, s.EC2.SecurityGroups) || inst.InstanceProfile != "ipp-nodes" ||
		inst.Tags[cloudprovider.TagNodeClass] != "metal" || inst.VolumeTags[cloudprovider.TagNodeClass] != "metal" {
		t.Errorf("instance launched as %+v", inst)
	}
	if got.InstanceType != "m5.metal" || got.Zone != zoneA || got.NodeClass != "metal" {
		t.Errorf("Create = %+v", got)
	}
	tried, tokens := attempts(e.srv)
	if want := []string{"i3.metal in " + subnetA, "i3.metal in " + subnetB, "m5.metal in " + subnetA}; !slices.Equal(tried, want) {
		t.Errorf("RunInstances tried %v, want %v", tried, want)
	}
	if len(tokens) != 3 || tokens[0] == tokens[1] || tokens[1] == tokens[2] || tokens[0] == tokens[2] {
		t.Errorf("ClientTokens %v, want one per attempt", tokens)
	}
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].NodeClass != "metal" || list[0].InstanceType != "m5.metal" {
		t.Errorf("List = %+v", list)
	}
	// Terminating an instance needs nothing of its NodeClass.
	if err := e.p.Delete(ctx, list[0]); err != nil {
		t.Fatal(err)
	}

	// An instance profile given by ARN is passed as one.
	s = metalSpec("class1")
	s.EC2.InstanceProfile = "arn:aws:iam::123456789012:instance-profile/ipp-nodes"
	got, err = e.p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if inst, _ := e.srv.Instance(got.ID); inst.InstanceProfile != s.EC2.InstanceProfile {
		t.Errorf("instance profile %q, want %q", inst.InstanceProfile, s.EC2.InstanceProfile)
	}
}

// Every type in every subnet is tried, type by type; with none left the error is Capacity and
// names each attempt. The tokens are the same at the next try, and the attempt that succeeds at
// last keeps its own.
func TestNodeClassTypeBySubnetOrderAndTokens(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()
	e.srv.SetCapacity(zoneA, "", false)
	e.srv.SetCapacity("", "i3.metal", false)
	e.srv.SetCapacity(zoneB, "m5.metal", false)

	_, err := e.p.Create(ctx, metalSpec("class0"))
	if !cloudprovider.IsCapacity(err) {
		t.Fatalf("Create: err = %v, want Capacity", err)
	}
	want := []string{"i3.metal in " + subnetA, "i3.metal in " + subnetB, "m5.metal in " + subnetA, "m5.metal in " + subnetB}
	tried, first := attempts(e.srv)
	if !slices.Equal(tried, want) {
		t.Errorf("RunInstances tried %v, want %v", tried, want)
	}
	for _, a := range want {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error %q does not name %q", err, a)
		}
	}
	if len(e.srv.Instances()) != 0 {
		t.Errorf("instances after no capacity anywhere: %v", e.srv.Instances())
	}

	// A restarted controller retries the same creation with another provider: same tokens.
	e.srv.SetCapacity(zoneB, "m5.metal", true)
	p2 := newProvider(t, e.config)
	got, err := p2.Create(ctx, metalSpec("class0"))
	if err != nil {
		t.Fatal(err)
	}
	_, all := attempts(e.srv)
	if again := all[len(first):]; !slices.Equal(again, first) {
		t.Errorf("tokens of the retry %v, want %v", again, first)
	}
	if inst, _ := e.srv.Instance(got.ID); inst.InstanceType != "m5.metal" || inst.SubnetID != subnetB {
		t.Errorf("instance launched as %s in %s, want m5.metal in %s", inst.InstanceType, inst.SubnetID, subnetB)
	}
}

// loseRuns is a proxy in front of the emulator that performs the RunInstances calls of one
// instance type and then loses their replies.
type loseRuns struct {
	emu          http.Handler
	instanceType string

	mu   sync.Mutex
	lose bool
}

func (l *loseRuns) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	l.mu.Lock()
	lose := l.lose
	l.mu.Unlock()
	if lose && form.Get("Action") == "RunInstances" && form.Get("InstanceType") == l.instanceType {
		l.emu.ServeHTTP(httptest.NewRecorder(), r)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>Unavailable</Code><Message>lost</Message></Error></Errors><RequestID>x</RequestID></Response>`)
		return
	}
	l.emu.ServeHTTP(w, r)
}

// The replies of the second type's launch are lost, after the first type had no capacity; the
// SDK's retries reuse that attempt's token, and the controller's retry finds the instance.
// Nothing is launched twice.
func TestNodeClassLostReplyOnFallback(t *testing.T) {
	srv, _ := newServer(t, ec2emu.Options{})
	proxy := &loseRuns{emu: srv, instanceType: "m5.metal", lose: true}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	cfg := providerConfig(srv, "test")
	cfg.Endpoint = front.URL
	p := newProvider(t, cfg)
	ctx := context.Background()
	srv.SetCapacity("", "i3.metal", false)

	s := metalSpec("class0")
	if _, err := p.Create(ctx, s); cloudprovider.KindOf(err) != cloudprovider.KindTransient {
		t.Fatalf("Create with the replies lost: err = %v, want Transient", err)
	}
	var m5 []string
	for _, c := range callsOf(srv, "RunInstances") {
		if c.InstanceType == "m5.metal" {
			m5 = append(m5, c.ClientToken)
		}
	}
	if len(m5) < 2 || len(slices.Compact(slices.Clone(m5))) != 1 {
		t.Errorf("m5.metal attempts had tokens %v, want several tries of one token", m5)
	}
	proxy.mu.Lock()
	proxy.lose = false
	proxy.mu.Unlock()
	srv.SetCapacity("", "i3.metal", true)

	got, err := p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.InstanceType != "m5.metal" {
		t.Errorf("retry returned a %s instance, want the m5.metal one", got.InstanceType)
	}
	if diff := cmp.Diff(map[string]int{s.NodeName: 1}, srv.CreatedCounts()); diff != "" {
		t.Errorf("instances created (-want +got):\n%s", diff)
	}
}
