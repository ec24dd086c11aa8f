package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	cpfake "github.com/ipp-project/ipp/pkg/cloudprovider/fake"
	"github.com/ipp-project/ipp/pkg/isolation"
)

func testCleanupOptions(yes bool) *cleanupOptions {
	cfg := isolation.DefaultConfig()
	return &cleanupOptions{
		clusterName:  cfg.ClusterName,
		nodeLabel:    cfg.NodeLabel,
		podLabel:     cfg.PodLabel,
		yes:          yes,
		timeout:      5 * time.Second,
		pollInterval: 5 * time.Millisecond,
	}
}

func node(name, providerID string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{ProviderID: providerID}}
}

// cluster returns nodes for two owned instances (one bound, one registered without the IPP
// label), a stale bound Node whose instance is gone, an autoscaler-pool node and a plain node.
func cluster(p *cpfake.Provider) []runtime.Object {
	p.Add(cloudprovider.Instance{NodeName: "ipp-a-1", ID: "i-a", Class: "a", Namespace: "team1", State: cloudprovider.StateRunning})
	p.Add(cloudprovider.Instance{NodeName: "ipp-b-2", ID: "i-b", Class: "b", Namespace: "team1", State: cloudprovider.StateRunning})
	p.Add(cloudprovider.Instance{NodeName: "ipp-c-3", ID: "i-c", Class: "c", Namespace: "team2", State: cloudprovider.StatePending})
	ipp := map[string]string{"ipp": "true"}
	return []runtime.Object{
		node("ipp-a-1", "fake:///i-a", map[string]string{"ipp": "true", isolation.BindingLabel: "ipp-a-1"}),
		node("ipp-b-2", "fake:///i-b", nil), // wrong bootstrap: no IPP label, still the instance's
		node("ipp-gone-9", "fake:///i-gone", map[string]string{"ipp": "true", isolation.BindingLabel: "ipp-gone-9"}),
		node("pool-node-1", "gce://p/z/pool-node-1", ipp), // autoscaler-mode pool: not ours
		node("worker-1", "gce://p/z/worker-1", nil),
	}
}

func nodeNames(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	list, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	return names
}

func instanceNodes(t *testing.T, p cloudprovider.Provider) []string {
	t.Helper()
	list, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.NodeName)
	}
	return names
}

func TestCleanupRefusesWithoutYes(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	p := cpfake.New(clocktesting.NewFakeClock(time.Now()))
	client := fake.NewClientset(cluster(p)...)
	var out bytes.Buffer
	err := testCleanupOptions(false).cleanup(ctx, &out, client, p)
	if !errors.Is(err, errNeedYes) || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("cleanup without --yes: err = %v, want errNeedYes", err)
	}
	for _, want := range []string{"3 Node(s) and 3 instance(s) to delete", "ipp-a-1", "ipp-b-2", "ipp-gone-9", "i-c", "team2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "pool-node-1") || strings.Contains(out.String(), "worker-1") {
		t.Errorf("output lists a node IPP does not own:\n%s", out.String())
	}
	if n := p.CallCount("delete"); n != 0 {
		t.Errorf("%d instance deletions without --yes", n)
	}
	for _, a := range client.Actions() {
		if v := a.GetVerb(); v != "list" && v != "get" {
			t.Errorf("cleanup without --yes did %s %s", v, a.GetResource().Resource)
		}
	}
}

func TestCleanupDeletesAndIsIdempotent(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	p := cpfake.New(clocktesting.NewFakeClock(time.Now()))
	client := fake.NewClientset(cluster(p)...)
	var out bytes.Buffer
	if err := testCleanupOptions(true).cleanup(ctx, &out, client, p); err != nil {
		t.Fatalf("cleanup --yes: %v\n%s", err, out.String())
	}
	if diff := cmp.Diff([]string{"pool-node-1", "worker-1"}, nodeNames(t, client)); diff != "" {
		t.Errorf("Nodes left (-want +got):\n%s", diff)
	}
	if got := instanceNodes(t, p); len(got) != 0 {
		t.Errorf("instances left: %v", got)
	}
	// Each Node was cordoned before it was deleted.
	var order []string
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "nodes" && (a.GetVerb() == "patch" || a.GetVerb() == "delete") {
			order = append(order, a.GetVerb())
		}
	}
	if diff := cmp.Diff([]string{"patch", "delete", "patch", "delete", "patch", "delete"}, order); diff != "" {
		t.Errorf("node actions (-want +got):\n%s", diff)
	}

	out.Reset()
	if err := testCleanupOptions(true).cleanup(ctx, &out, client, p); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	if !strings.Contains(out.String(), "nothing to delete") {
		t.Errorf("second cleanup output:\n%s", out.String())
	}
}

// slowCloud deletes asynchronously: a deleted instance is Stopping for a few Lists, and the
// kubelet of a stopping instance registers its Node again once.
type slowCloud struct {
	*cpfake.Provider
	client *fake.Clientset

	mu        sync.Mutex
	stopping  map[string]int // instance node name -> Lists left before it is gone
	reregistd bool
	deletes   int
	// recreate simulates a running controller: every deleted instance is created again.
	recreate bool
}

func (c *slowCloud) Delete(ctx context.Context, inst cloudprovider.Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deletes++
	if c.recreate {
		if err := c.Provider.Delete(ctx, inst); err != nil {
			return err
		}
		_, err := c.Provider.Create(ctx, cloudprovider.InstanceSpec{NodeName: inst.NodeName, IdempotencyKey: time.Now().String()})
		return err
	}
	c.Provider.SetState(inst.NodeName, cloudprovider.StateStopping)
	c.stopping[inst.NodeName] = 3
	return nil
}

func (c *slowCloud) List(ctx context.Context) ([]cloudprovider.Instance, error) {
	c.mu.Lock()
	for name, left := range c.stopping {
		if left == 0 {
			_ = c.Provider.Delete(ctx, cloudprovider.Instance{NodeName: name, ID: "i-" + strings.Split(name, "-")[1]})
			delete(c.stopping, name)
			continue
		}
		c.stopping[name] = left - 1
		if !c.reregistd {
			c.reregistd = true
			_ = c.client.Tracker().Add(node(name, "fake:///i-"+strings.Split(name, "-")[1], map[string]string{"ipp": "true"}))
		}
	}
	c.mu.Unlock()
	return c.Provider.List(ctx)
}

func TestCleanupWaitsForSlowDeletes(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	p := cpfake.New(clocktesting.NewFakeClock(time.Now()))
	client := fake.NewClientset(cluster(p)...)
	cloud := &slowCloud{Provider: p, client: client, stopping: map[string]int{}}
	var out bytes.Buffer
	if err := testCleanupOptions(true).cleanup(ctx, &out, client, cloud); err != nil {
		t.Fatalf("cleanup --yes: %v\n%s", err, out.String())
	}
	if got := instanceNodes(t, p); len(got) != 0 {
		t.Errorf("instances left: %v", got)
	}
	if diff := cmp.Diff([]string{"pool-node-1", "worker-1"}, nodeNames(t, client)); diff != "" {
		t.Errorf("Nodes left (-want +got):\n%s", diff)
	}
	if !cloud.reregistd {
		t.Fatalf("test did not re-register a Node")
	}
	// Stopping instances are not deleted again; the re-registered Node is.
	if cloud.deletes != 3 {
		t.Errorf("%d instance deletions, want 3 (a Stopping instance is not deleted again)", cloud.deletes)
	}
	if n := strings.Count(out.String(), "Deleted Node ipp-"); n != 4 {
		t.Errorf("%d Node deletions, want 4 (3 + 1 re-registered):\n%s", n, out.String())
	}
}

func TestCleanupTimesOutNamingPinnedPods(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	p := cpfake.New(clocktesting.NewFakeClock(time.Now()))
	objs := cluster(p)
	objs = append(objs, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team1", Name: "web-0", Labels: map[string]string{"ipp-class": "a"}},
		Spec:       corev1.PodSpec{NodeSelector: map[string]string{isolation.BindingLabel: "ipp-a-1"}},
	})
	client := fake.NewClientset(objs...)
	cloud := &slowCloud{Provider: p, client: client, stopping: map[string]int{}, recreate: true}
	o := testCleanupOptions(true)
	o.timeout = 100 * time.Millisecond
	var out bytes.Buffer
	err := o.cleanup(ctx, &out, client, cloud)
	if err == nil || !strings.Contains(err.Error(), "1 Pod(s) with ipp-class are still pinned") || !strings.Contains(err.Error(), "3 instance(s)") {
		t.Fatalf("cleanup error = %v, want a timeout naming the pinned Pods", err)
	}
	if !strings.Contains(out.String(), "team1/web-0") {
		t.Errorf("output does not list the pinned Pod:\n%s", out.String())
	}
}

func TestCleanupErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*cleanupOptions, *cpfake.Provider)
		wantErr string
	}{
		{
			name: "list fails",
			edit: func(_ *cleanupOptions, p *cpfake.Provider) {
				p.FailNext("list", cloudprovider.NewError(cloudprovider.KindRateLimited, "list", "429", errors.New("slow down")))
			},
			wantErr: `listing the instances of cluster "ipp" on fake`,
		},
		{
			name: "delete is refused for good",
			edit: func(_ *cleanupOptions, p *cpfake.Provider) {
				p.FailNext("delete", cloudprovider.NewError(cloudprovider.KindInvalid, "delete", "403", errors.New("missing permission compute.instances.delete")))
			},
			wantErr: "deleting instance i-a of node ipp-a-1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			p := cpfake.New(clocktesting.NewFakeClock(time.Now()))
			client := fake.NewClientset(cluster(p)...)
			o := testCleanupOptions(true)
			tc.edit(o, p)
			err := o.cleanup(ctx, &bytes.Buffer{}, client, p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("cleanup error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	// A transient delete failure is retried while waiting.
	_, ctx := ktesting.NewTestContext(t)
	p := cpfake.New(clocktesting.NewFakeClock(time.Now()))
	client := fake.NewClientset(cluster(p)...)
	p.FailNext("delete", cloudprovider.NewError(cloudprovider.KindTransient, "delete", "503", errors.New("backend error")))
	if err := testCleanupOptions(true).cleanup(ctx, &bytes.Buffer{}, client, p); err != nil {
		t.Errorf("cleanup with one transient delete failure: %v", err)
	}
	if got := instanceNodes(t, p); len(got) != 0 {
		t.Errorf("instances left: %v", got)
	}
}

func TestCleanupFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"cleanup", "--cluster-name=Bad_Name"}, "invalid --cluster-name"},
		{[]string{"cleanup", "--node-label=bad label"}, "invalid --node-label"},
		{[]string{"cleanup", "--timeout=0s"}, "invalid --timeout"},
		{[]string{"cleanup", "--poll-interval=-1s"}, "invalid --poll-interval"},
		{[]string{"cleanup", "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := NewRootCommand()
			root.SetArgs(tc.args)
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ipp %v: err = %v, want one containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}

// TestOperationsDocListsEveryFlag keeps docs/operations.md's flag reference complete: every flag
// of every subcommand must appear there as `--name`.
func TestOperationsDocListsEveryFlag(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatalf("reading docs/operations.md: %v", err)
	}
	root := NewRootCommand()
	for _, cmd := range root.Commands() {
		if cmd.Hidden || cmd.Name() == "help" || cmd.Name() == "completion" {
			continue
		}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			if !strings.Contains(string(doc), "`--"+f.Name+"`") {
				t.Errorf("docs/operations.md does not document `--%s` of ipp %s (%s)", f.Name, cmd.Name(), f.Usage)
			}
		})
	}
}
