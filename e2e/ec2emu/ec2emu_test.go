package ec2emu_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ec2sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/ec2emu"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/providers/ec2"
)

const (
	region      = "eu-west-1"
	subnetA     = "subnet-0aaaaaaaaaaaaaaaa"
	subnetB     = "subnet-0bbbbbbbbbbbbbbbb"
	zoneA       = "eu-west-1a"
	zoneB       = "eu-west-1b"
	maxAttempts = 3
)

var staticCreds = credentials.NewStaticCredentialsProvider("AKIDEMULATOR", "emulator-secret", "")

// recorder is a cloudemu.Booter that records what it is asked.
type recorder struct {
	mu       sync.Mutex
	boots    []cloudemu.BootRequest
	shutdown []string
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
	r.shutdown = append(r.shutdown, id)
}

func (r *recorder) booted(id string) (cloudemu.BootRequest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.boots {
		if b.InstanceID == id {
			return b, true
		}
	}
	return cloudemu.BootRequest{}, false
}

func (r *recorder) wasShutDown(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.shutdown, id)
}

func (r *recorder) bootCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.boots)
}

// env is one emulator with a real ec2 provider pointed at it.
type env struct {
	srv    *ec2emu.Server
	boot   *recorder
	p      *ec2.Provider
	config ec2.Config
}

func newServer(t *testing.T, opts ec2emu.Options) (*ec2emu.Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	if opts.Region == "" {
		opts.Region = region
	}
	if opts.Subnets == nil {
		opts.Subnets = map[string]string{subnetA: zoneA, subnetB: zoneB}
	}
	if opts.Booter == nil {
		opts.Booter = rec
	}
	srv := ec2emu.New(opts)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, rec
}

func providerConfig(srv *ec2emu.Server, cluster string) ec2.Config {
	return ec2.Config{
		ClusterName:      cluster,
		Region:           srv.Region(),
		ImageID:          "ami-0123456789abcdef0",
		SubnetIDs:        srv.SubnetIDs(),
		SecurityGroupIDs: []string{"sg-0123456789abcdef0"},
		Endpoint:         srv.URL(),
		Credentials:      staticCreds,
		Join:             bootstrap.Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: "sha256:" + strings.Repeat("0f", 32)},
		MaxAttempts:      maxAttempts,
		MaxBackoff:       5 * time.Millisecond,
	}
}

func newProvider(t *testing.T, cfg ec2.Config) *ec2.Provider {
	t.Helper()
	p, err := ec2.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newEnv(t *testing.T, opts ec2emu.Options, mutate func(*ec2.Config)) *env {
	t.Helper()
	srv, rec := newServer(t, opts)
	cfg := providerConfig(srv, "test")
	if mutate != nil {
		mutate(&cfg)
	}
	return &env{srv: srv, boot: rec, p: newProvider(t, cfg), config: cfg}
}

// rawClient is a plain SDK client without retries, for requests the provider never makes.
func rawClient(srv *ec2emu.Server) *ec2sdk.Client {
	return ec2sdk.New(ec2sdk.Options{
		Region:       srv.Region(),
		BaseEndpoint: aws.String(srv.URL()),
		Credentials:  staticCreds,
		Retryer:      aws.NopRetryer{},
	})
}

func spec(class string) cloudprovider.InstanceSpec { return specIn("test", class) }

// specIn is the spec a controller of cluster would pass for class in namespace team-a.
func specIn(cluster, class string) cloudprovider.InstanceSpec {
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = cluster
	name := cfg.NodeName("team-a", class)
	return cloudprovider.InstanceSpec{
		NodeName:       name,
		Class:          class,
		Namespace:      "team-a",
		NodeLabels:     cfg.NodeLabels(),
		NodeTaints:     cfg.Taints(),
		IdempotencyKey: name + "/1",
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 10*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func callsOf(srv *ec2emu.Server, action string) []ec2emu.Call {
	var out []ec2emu.Call
	for _, c := range srv.Calls() {
		if c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

func TestCreate(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()
	s := spec("class0")

	got, err := e.p.Create(ctx, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	inst, ok := e.srv.Instance(got.ID)
	if !ok {
		t.Fatalf("Create returned %s, which the emulator does not have", got.ID)
	}
	want := &cloudprovider.Instance{
		NodeName:   s.NodeName,
		ID:         inst.ID,
		ProviderID: "aws:///" + zoneA + "/" + inst.ID,
		Class:      "class0",
		Namespace:  "team-a",
		State:      cloudprovider.StatePending,
		CreatedAt:  got.CreatedAt,

		Zone:         zoneA,
		InstanceType: "i3.metal",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Create (-want +got):\n%s", diff)
	}
	if d := time.Since(got.CreatedAt); got.CreatedAt.IsZero() || d < 0 || d > time.Minute {
		t.Errorf("CreatedAt = %v, want the launch time", got.CreatedAt)
	}

	wantTags := map[string]string{
		"Name":                     s.NodeName,
		cloudprovider.TagCluster:   "test",
		cloudprovider.TagNode:      s.NodeName,
		cloudprovider.TagClass:     "class0",
		cloudprovider.TagNamespace: "team-a",
	}
	if diff := cmp.Diff(wantTags, inst.Tags); diff != "" {
		t.Errorf("instance tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantTags, inst.VolumeTags); diff != "" {
		t.Errorf("volume tags (-want +got):\n%s", diff)
	}
	if inst.InstanceType != "i3.metal" || inst.ImageID != "ami-0123456789abcdef0" || inst.SubnetID != subnetA ||
		!slices.Equal(inst.SecurityGroupIDs, []string{"sg-0123456789abcdef0"}) || inst.MetadataHTTPTokens != "required" || inst.MetadataHopLimit != 1 {
		t.Errorf("instance launched as %+v", inst)
	}
	for _, want := range []string{
		"KUBELET_EXTRA_ARGS='--hostname-override=" + s.NodeName + " --node-labels=ipp=true --register-with-taints=ipp=true:NoSchedule,ipp=true:NoExecute'",
		"--provider-id=$(",
		"kubeadm join '10.0.0.1:6443'",
	} {
		if !strings.Contains(inst.UserData, want) {
			t.Errorf("user data lacks %q:\n%s", want, inst.UserData)
		}
	}

	// The instance boots: the Booter gets its providerID and the user data as sent.
	poll(t, "the boot callback", func() bool { _, ok := e.boot.booted(got.ID); return ok })
	req, _ := e.boot.booted(got.ID)
	wantReq := cloudemu.BootRequest{InstanceID: got.ID, ProviderID: got.ProviderID, Zone: zoneA, Bootstrap: inst.UserData}
	if diff := cmp.Diff(wantReq, req); diff != "" {
		t.Errorf("boot request (-want +got):\n%s", diff)
	}
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State != cloudprovider.StateRunning {
		t.Errorf("List after boot = %+v, want the one instance Running", list)
	}
}

func TestCreateExistingReturnsIt(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()
	s := spec("class0")
	first, err := e.p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	// Even with another idempotency key, a live instance for the node is returned.
	s.IdempotencyKey = "another"
	second, err := e.p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Errorf("second Create returned %s, want %s", second.ID, first.ID)
	}
	if n := e.srv.Created(s.NodeName); n != 1 {
		t.Errorf("%d instances created for %s, want 1", n, s.NodeName)
	}
	if n := len(callsOf(e.srv, "RunInstances")); n != 1 {
		t.Errorf("%d RunInstances calls, want 1", n)
	}
}

// TestLostReply loses every RunInstances reply after the instance was created. The SDK retries
// with the same ClientToken, EC2 (the emulator) returns the same reservation each time, and the
// next Create finds the instance: one instance in all.
func TestLostReply(t *testing.T) {
	e := newEnv(t, ec2emu.Options{Seed: 7}, nil)
	ctx := context.Background()
	s := spec("class0")

	e.srv.SetFaults(cloudemu.Faults{LostReplyRate: 1})
	_, err := e.p.Create(ctx, s)
	if err == nil || !cloudprovider.IsRetryable(err) {
		t.Fatalf("Create with every reply lost: err = %v, want a retryable error", err)
	}
	runs := callsOf(e.srv, "RunInstances")
	if len(runs) != maxAttempts {
		t.Fatalf("%d RunInstances requests, want %d (the SDK's attempts): %+v", len(runs), maxAttempts, runs)
	}
	for i, c := range runs {
		if c.ClientToken != runs[0].ClientToken || c.InvocationID != runs[0].InvocationID || c.Attempt != i+1 ||
			(c.Fault != "lost-reply" && c.Fault != "dropped-connection") || len(c.InstanceIDs) != 1 || c.InstanceIDs[0] != runs[0].InstanceIDs[0] {
			t.Errorf("RunInstances request %d = %+v, want a retry of the first with the same token and instance", i, c)
		}
	}
	if n := e.srv.Created(s.NodeName); n != 1 {
		t.Fatalf("%d instances created, want 1", n)
	}

	e.srv.SetFaults(cloudemu.Faults{})
	got, err := e.p.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != runs[0].InstanceIDs[0] || e.srv.Created(s.NodeName) != 1 {
		t.Errorf("Create after the lost replies returned %s with %d created, want %s and 1", got.ID, e.srv.Created(s.NodeName), runs[0].InstanceIDs[0])
	}
}

// TestClientTokenSemantics checks the emulator's idempotency against EC2's documented behaviour
// with the plain SDK.
func TestClientTokenSemantics(t *testing.T) {
	srv, _ := newServer(t, ec2emu.Options{})
	c := rawClient(srv)
	ctx := context.Background()
	in := func(instanceType string) *ec2sdk.RunInstancesInput {
		return &ec2sdk.RunInstancesInput{
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), ImageId: aws.String("ami-1"),
			InstanceType: types.InstanceType(instanceType), ClientToken: aws.String("token-1"),
		}
	}
	first, err := c.RunInstances(ctx, in("m5.large"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.RunInstances(ctx, in("m5.large"))
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(first.ReservationId) != aws.ToString(again.ReservationId) ||
		aws.ToString(first.Instances[0].InstanceId) != aws.ToString(again.Instances[0].InstanceId) {
		t.Errorf("same token gave reservations %s and %s", aws.ToString(first.ReservationId), aws.ToString(again.ReservationId))
	}
	_, err = c.RunInstances(ctx, in("m5.xlarge"))
	if code := apiCode(err); code != "IdempotentParameterMismatch" {
		t.Errorf("same token, other parameters: error %v, want IdempotentParameterMismatch", err)
	}
	if n := len(srv.Instances()); n != 1 {
		t.Errorf("%d instances, want 1", n)
	}
}

func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func TestDelete(t *testing.T) {
	e := newEnv(t, ec2emu.Options{ShutdownDelay: time.Hour}, nil)
	ctx := context.Background()
	got, err := e.p.Create(ctx, spec("class0"))
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "the boot", func() bool { _, ok := e.boot.booted(got.ID); return ok })

	if err := e.p.Delete(ctx, *got); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if inst, _ := e.srv.Instance(got.ID); inst.State != "shutting-down" {
		t.Errorf("state after Delete = %s, want shutting-down", inst.State)
	}
	poll(t, "the shutdown callback", func() bool { return e.boot.wasShutDown(got.ID) })
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State != cloudprovider.StateStopping {
		t.Errorf("List while shutting down = %+v, want the instance Stopping", list)
	}
	// Create for the node waits for the old instance instead of starting a second one.
	s := spec("class0")
	s.IdempotencyKey = "second creation"
	again, err := e.p.Create(ctx, s)
	if err != nil || again.ID != got.ID || again.State != cloudprovider.StateStopping {
		t.Errorf("Create while shutting down = %+v, %v; want the old instance, Stopping", again, err)
	}
	if err := e.p.Delete(ctx, *got); err != nil {
		t.Errorf("Delete again: %v", err)
	}
	if err := e.p.Delete(ctx, cloudprovider.Instance{NodeName: "x", ID: "i-00000000000000dead"}); err != nil {
		t.Errorf("Delete of an unknown instance: %v", err)
	}
	if err := e.p.Delete(ctx, cloudprovider.Instance{NodeName: "x"}); cloudprovider.KindOf(err) != cloudprovider.KindInvalid {
		t.Errorf("Delete without an id: %v, want Invalid", err)
	}
}

func TestTerminatedInstances(t *testing.T) {
	// Terminated at once, visible for an hour: List skips it, Delete still succeeds.
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()
	got, err := e.p.Create(ctx, spec("class0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, *got); err != nil {
		t.Fatal(err)
	}
	if inst, _ := e.srv.Instance(got.ID); inst.State != "terminated" {
		t.Errorf("state = %s, want terminated", inst.State)
	}
	if list, err := e.p.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v; want nothing", list, err)
	}
	if err := e.p.Delete(ctx, *got); err != nil {
		t.Errorf("Delete of a terminated instance: %v", err)
	}
	// A new creation (new key) after termination gets a new instance.
	s := spec("class0")
	s.IdempotencyKey = "second creation"
	again, err := e.p.Create(ctx, s)
	if err != nil || again.ID == got.ID {
		t.Errorf("Create after termination = %+v, %v; want a new instance", again, err)
	}

	// Gone from sight at once: EC2 then says InvalidInstanceID.NotFound, which is success.
	e2 := newEnv(t, ec2emu.Options{TerminatedRetention: time.Nanosecond}, nil)
	got, err = e2.p.Create(ctx, spec("class0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.p.Delete(ctx, *got); err != nil {
		t.Fatal(err)
	}
	poll(t, "the instance to vanish", func() bool { _, ok := e2.srv.Instance(got.ID); return !ok })
	if err := e2.p.Delete(ctx, *got); err != nil {
		t.Errorf("Delete of a vanished instance: %v", err)
	}
	if code := lastCode(e2.srv, "TerminateInstances"); code != "InvalidInstanceID.NotFound" {
		t.Errorf("last TerminateInstances answered %q, want InvalidInstanceID.NotFound", code)
	}
}

func lastCode(srv *ec2emu.Server, action string) string {
	calls := callsOf(srv, action)
	if len(calls) == 0 {
		return "<no call>"
	}
	return calls[len(calls)-1].Code
}

func TestListPagingAndFiltering(t *testing.T) {
	srv, _ := newServer(t, ec2emu.Options{MaxPageSize: 2})
	ctx := context.Background()
	mine := newProvider(t, providerConfig(srv, "test"))
	other := newProvider(t, providerConfig(srv, "other"))

	var want []cloudprovider.Instance
	for i := range 5 {
		inst, err := mine.Create(ctx, spec(fmt.Sprintf("class%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, *inst)
	}
	for i := range 2 {
		if _, err := other.Create(ctx, specIn("other", fmt.Sprintf("class%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// An instance with the cluster tag but no node tag is not a dedicated node.
	if _, err := rawClient(srv).RunInstances(ctx, &ec2sdk.RunInstancesInput{
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), ImageId: aws.String("ami-1"),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance,
			Tags: []types.Tag{{Key: aws.String(cloudprovider.TagCluster), Value: aws.String("test")}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := mine.Delete(ctx, want[2]); err != nil {
		t.Fatal(err)
	}
	want = slices.Delete(want, 2, 3)

	before := len(callsOf(srv, "DescribeInstances"))
	got, err := mine.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pages := len(callsOf(srv, "DescribeInstances")) - before
	// States move on as instances boot; compare identities.
	ignoreState := cmp.Transformer("noState", func(i cloudprovider.Instance) cloudprovider.Instance { i.State = ""; return i })
	if diff := cmp.Diff(want, got, ignoreState); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if pages != 2 {
		t.Errorf("List read %d pages of at most 2, want 2 for 4 instances", pages)
	}
	if got, err := other.List(ctx); err != nil || len(got) != 2 {
		t.Errorf("other cluster's List = %d instances, %v; want 2", len(got), err)
	}
}

func TestCapacityMovesToTheNextSubnet(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()
	e.srv.SetZoneCapacity(zoneA, false)

	got, err := e.p.Create(ctx, spec("class0"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	inst, _ := e.srv.Instance(got.ID)
	if inst.SubnetID != subnetB || got.ProviderID != "aws:///"+zoneB+"/"+got.ID {
		t.Errorf("instance in %s (%s), want %s", inst.SubnetID, got.ProviderID, subnetB)
	}
	runs := callsOf(e.srv, "RunInstances")
	if len(runs) != 2 || runs[0].Code != "InsufficientInstanceCapacity" || runs[1].Code != "" || runs[0].ClientToken == runs[1].ClientToken {
		t.Errorf("RunInstances calls = %+v, want one capacity error in %s (not retried) and one success with another token", runs, zoneA)
	}

	e.srv.SetZoneCapacity(zoneB, false)
	_, err = e.p.Create(ctx, spec("class1"))
	if !cloudprovider.IsCapacity(err) || !cloudprovider.IsRetryable(err) {
		t.Errorf("Create with every zone full: %v, want a Capacity error", err)
	}
	if !strings.Contains(fmt.Sprint(err), subnetA) || !strings.Contains(fmt.Sprint(err), subnetB) {
		t.Errorf("capacity error %q does not name the subnets tried", err)
	}
}

func TestUnsupportedEverywhereIsInvalid(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	for range 2 {
		e.srv.FailNext("RunInstances", 400, "Unsupported")
	}
	_, err := e.p.Create(context.Background(), spec("class0"))
	if cloudprovider.KindOf(err) != cloudprovider.KindInvalid {
		t.Errorf("Create where no zone offers the type: %v, want Invalid", err)
	}
}

func TestThrottling(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, nil)
	ctx := context.Background()

	// Throttled twice, then through: the SDK's retryer backs off and retries the same call.
	e.srv.FailNext("DescribeInstances", 503, "RequestLimitExceeded")
	e.srv.FailNext("DescribeInstances", 503, "RequestLimitExceeded")
	if _, err := e.p.List(ctx); err != nil {
		t.Fatalf("List throttled twice: %v", err)
	}
	calls := callsOf(e.srv, "DescribeInstances")
	var attempts []int
	for _, c := range calls {
		if c.InvocationID != calls[0].InvocationID {
			t.Errorf("throttled List made a second SDK call %+v; the retries belong to the first", c)
		}
		attempts = append(attempts, c.Attempt)
	}
	if diff := cmp.Diff([]int{1, 2, 3}, attempts); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}

	// Throttled for good: RateLimited after the SDK's attempts.
	e.srv.SetFaults(cloudemu.Faults{ThrottleRate: 1})
	before := len(e.srv.Calls())
	_, err := e.p.Create(ctx, spec("class0"))
	if !cloudprovider.IsRateLimited(err) {
		t.Errorf("Create always throttled: %v, want RateLimited", err)
	}
	if n := len(e.srv.Calls()) - before; n != maxAttempts {
		t.Errorf("%d requests, want %d (the SDK's attempts)", n, maxAttempts)
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name   string
		action string
		status int
		code   string
		times  int
		op     func(p *ec2.Provider) error
		want   cloudprovider.ErrorKind
	}{
		{name: "instance limit", action: "RunInstances", status: 400, code: "InstanceLimitExceeded", want: cloudprovider.KindQuota},
		{name: "vcpu limit", action: "RunInstances", status: 400, code: "VcpuLimitExceeded", want: cloudprovider.KindQuota},
		{name: "unauthorized", action: "RunInstances", status: 403, code: "UnauthorizedOperation", want: cloudprovider.KindInvalid},
		{name: "bad parameter", action: "RunInstances", status: 400, code: "InvalidParameterValue", want: cloudprovider.KindInvalid},
		{name: "server errors", action: "RunInstances", status: 500, code: "InternalError", times: maxAttempts, want: cloudprovider.KindTransient},
		{name: "unavailable", action: "DescribeInstances", status: 503, code: "Unavailable", times: maxAttempts, want: cloudprovider.KindTransient},
		{name: "auth on list", action: "DescribeInstances", status: 401, code: "AuthFailure", want: cloudprovider.KindInvalid,
			op: func(p *ec2.Provider) error { _, err := p.List(context.Background()); return err }},
		{name: "throttled delete", action: "TerminateInstances", status: 503, code: "RequestLimitExceeded", times: maxAttempts, want: cloudprovider.KindRateLimited,
			op: func(p *ec2.Provider) error {
				return p.Delete(context.Background(), cloudprovider.Instance{ID: "i-0000000000000000a"})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, ec2emu.Options{}, nil)
			for range max(tt.times, 1) {
				e.srv.FailNext(tt.action, tt.status, tt.code)
			}
			op := tt.op
			if op == nil {
				op = func(p *ec2.Provider) error { _, err := p.Create(context.Background(), spec("class0")); return err }
			}
			err := op(e.p)
			var perr *cloudprovider.Error
			if !errors.As(err, &perr) || perr.Kind != tt.want || perr.Code != tt.code {
				t.Fatalf("error = %v, want kind %s with code %s", err, tt.want, tt.code)
			}
			if retryable := tt.want != cloudprovider.KindInvalid; cloudprovider.IsRetryable(err) != retryable {
				t.Errorf("IsRetryable = %v, want %v", !retryable, retryable)
			}
		})
	}

	t.Run("account instance limit", func(t *testing.T) {
		e := newEnv(t, ec2emu.Options{InstanceLimit: 1}, nil)
		if _, err := e.p.Create(context.Background(), spec("class0")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.p.Create(context.Background(), spec("class1")); !cloudprovider.IsQuota(err) {
			t.Errorf("Create over the limit: %v, want Quota", err)
		}
	})
	t.Run("bad image", func(t *testing.T) {
		e := newEnv(t, ec2emu.Options{}, func(c *ec2.Config) { c.ImageID = "bogus" })
		_, err := e.p.Create(context.Background(), spec("class0"))
		var perr *cloudprovider.Error
		if !errors.As(err, &perr) || perr.Kind != cloudprovider.KindInvalid || perr.Code != "InvalidAMIID.Malformed" {
			t.Errorf("Create with a bad image: %v, want Invalid InvalidAMIID.Malformed", err)
		}
	})
	t.Run("unknown subnet", func(t *testing.T) {
		e := newEnv(t, ec2emu.Options{}, func(c *ec2.Config) { c.SubnetIDs = []string{"subnet-0000000000000nope"} })
		_, err := e.p.Create(context.Background(), spec("class0"))
		var perr *cloudprovider.Error
		if !errors.As(err, &perr) || perr.Kind != cloudprovider.KindInvalid || perr.Code != "InvalidSubnetID.NotFound" {
			t.Errorf("Create in an unknown subnet: %v, want Invalid InvalidSubnetID.NotFound", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		e := newEnv(t, ec2emu.Options{}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.p.List(ctx)
		if !errors.Is(err, context.Canceled) || cloudprovider.KindOf(err) != "" {
			t.Errorf("List with a canceled context: %v, want context.Canceled", err)
		}
	})
}

func TestLaunchTemplate(t *testing.T) {
	e := newEnv(t, ec2emu.Options{}, func(c *ec2.Config) {
		c.ImageID = ""
		c.LaunchTemplate = "ipp-nodes:$Latest"
		c.InstanceType = "m5.large"
		c.SubnetIDs, c.SecurityGroupIDs = nil, nil
	})
	got, err := e.p.Create(context.Background(), spec("class0"))
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := e.srv.Instance(got.ID)
	if inst.LaunchTemplate != "ipp-nodes:$Latest" || inst.InstanceType != "m5.large" || inst.SubnetID != subnetA || inst.MetadataHTTPTokens != "" {
		t.Errorf("launched %+v, want the template, m5.large, the default subnet and the template's metadata options", inst)
	}
	if e.p.RegistrationTimeout() != ec2.DefaultRegistrationTimeout {
		t.Errorf("RegistrationTimeout = %v, want %v for a virtual type", e.p.RegistrationTimeout(), ec2.DefaultRegistrationTimeout)
	}
}

func TestBootDelayAndNeverBoot(t *testing.T) {
	e := newEnv(t, ec2emu.Options{BootDelay: 50 * time.Millisecond}, nil)
	ctx := context.Background()
	never := spec("never")
	e.srv.SetFaults(cloudemu.Faults{NeverBoot: func(name string) bool { return name == never.NodeName }})

	slow, err := e.p.Create(ctx, spec("class0"))
	if err != nil {
		t.Fatal(err)
	}
	stuck, err := e.p.Create(ctx, never)
	if err != nil {
		t.Fatal(err)
	}
	if slow.State != cloudprovider.StatePending {
		t.Errorf("state right after Create = %s, want Pending", slow.State)
	}
	poll(t, "the boot", func() bool { _, ok := e.boot.booted(slow.ID); return ok })
	poll(t, "the never-booting instance to run", func() bool { i, _ := e.srv.Instance(stuck.ID); return i.State == "running" })
	e.srv.Close() // waits for every boot goroutine
	if n := e.boot.bootCount(); n != 1 {
		t.Errorf("%d boots, want 1", n)
	}
	if i, _ := e.srv.Instance(stuck.ID); i.Booted {
		t.Errorf("never-booting instance booted")
	}
}

// TestFaultyCloud creates one instance for each of 20 nodes while 30% of calls fail with 5xx and
// 30% of replies are lost, retrying each Create as a controller would. Every node gets exactly
// one instance.
func TestFaultyCloud(t *testing.T) {
	e := newEnv(t, ec2emu.Options{Seed: 42}, nil)
	e.srv.SetFaults(cloudemu.Faults{ErrorRate: 0.3, LostReplyRate: 0.3, ThrottleRate: 0.1})
	ctx := context.Background()
	for i := range 20 {
		s := spec(fmt.Sprintf("class%d", i))
		var err error
		for try := 0; try < 50; try++ {
			if _, err = e.p.Create(ctx, s); err == nil || !cloudprovider.IsRetryable(err) {
				break
			}
		}
		if err != nil {
			t.Fatalf("Create %s: %v", s.NodeName, err)
		}
	}
	e.srv.SetFaults(cloudemu.Faults{})
	for name, n := range e.srv.CreatedCounts() {
		if n != 1 {
			t.Errorf("%s: %d instances created, want 1", name, n)
		}
	}
	list, err := e.p.List(ctx)
	if err != nil || len(list) != 20 {
		t.Errorf("List = %d instances, %v; want 20", len(list), err)
	}
	faults := map[string]int{}
	for _, c := range e.srv.Calls() {
		faults[c.Fault]++
	}
	t.Logf("calls by injected fault: %v", faults)
}

// TestWireErrors checks replies the SDK never provokes, over plain HTTP.
func TestWireErrors(t *testing.T) {
	srv, _ := newServer(t, ec2emu.Options{})
	tests := []struct {
		name       string
		form       url.Values
		auth       bool
		wantStatus int
		wantCode   string
	}{
		{name: "unknown action", form: url.Values{"Action": {"RebootInstances"}, "Version": {"2016-11-15"}}, auth: true, wantStatus: 400, wantCode: "InvalidAction"},
		{name: "no action", form: url.Values{"Version": {"2016-11-15"}}, auth: true, wantStatus: 400, wantCode: "MissingAction"},
		{name: "unsigned", form: url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}}, wantStatus: 401, wantCode: "AuthFailure"},
		{name: "bad filter", form: url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}, "Filter.1.Name": {"flavour"}, "Filter.1.Value.1": {"x"}}, auth: true, wantStatus: 400, wantCode: "InvalidParameterValue"},
		{name: "unknown instance", form: url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}, "InstanceId.1": {"i-0000000000000dead"}}, auth: true, wantStatus: 400, wantCode: "InvalidInstanceID.NotFound"},
		{name: "malformed instance", form: url.Values{"Action": {"TerminateInstances"}, "Version": {"2016-11-15"}, "InstanceId.1": {"vm-1"}}, auth: true, wantStatus: 400, wantCode: "InvalidInstanceID.Malformed"},
		{name: "page too small", form: url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}, "MaxResults": {"2"}}, auth: true, wantStatus: 400, wantCode: "InvalidParameterValue"},
		{name: "bad user data", form: url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "MinCount": {"1"}, "MaxCount": {"1"}, "ImageId": {"ami-1"}, "UserData": {"not base64!"}}, auth: true, wantStatus: 400, wantCode: "InvalidUserData.Malformed"},
		{name: "user data too big", form: url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "MinCount": {"1"}, "MaxCount": {"1"}, "ImageId": {"ami-1"}, "UserData": {base64.StdEncoding.EncodeToString(make([]byte, 16*1024+1))}}, auth: true, wantStatus: 400, wantCode: "InvalidParameterValue"},
		{name: "reserved tag", form: url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "MinCount": {"1"}, "MaxCount": {"1"}, "ImageId": {"ami-1"}, "TagSpecification.1.ResourceType": {"instance"}, "TagSpecification.1.Tag.1.Key": {"aws:x"}}, auth: true, wantStatus: 400, wantCode: "InvalidParameterValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL(), strings.NewReader(tt.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.auth {
				req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/ec2/aws4_request")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), "<Code>"+tt.wantCode+"</Code>") ||
				!strings.Contains(string(body), "<Response><Errors><Error>") || !strings.Contains(string(body), "<RequestID>") {
				t.Errorf("status %d body %s; want %d with code %s", resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

// TestDefaultCredentialChain runs the provider as ipp does, with credentials from the SDK's
// default chain, fed by ec2emu.Env.
func TestDefaultCredentialChain(t *testing.T) {
	for _, kv := range ec2emu.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	srv, _ := newServer(t, ec2emu.Options{})
	cfg := providerConfig(srv, "test")
	cfg.Credentials = nil
	p := newProvider(t, cfg)
	if _, err := p.Create(context.Background(), spec("class0")); err != nil {
		t.Fatalf("Create with credentials from the environment: %v", err)
	}
	flags := strings.Join(srv.IPPFlags(), " ")
	for _, want := range []string{"--provider=ec2", "--ec2-endpoint=" + srv.URL(), "--ec2-subnet-ids=" + subnetA + "," + subnetB, "--ec2-region=" + region} {
		if !strings.Contains(flags, want) {
			t.Errorf("IPPFlags() = %s, lacks %s", flags, want)
		}
	}
}
