package scenario

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// PollInterval is how often the waits here look.
const PollInterval = 100 * time.Millisecond

// Tenant is a slice of the shared control plane that one test owns: a namespace, an IPP
// configuration of its own and the IPP webhook for that namespace.
//
// Every controller watches every Pod with its Pod label and every Node with its node label, in
// any namespace. So that tests can run side by side on one control plane without their
// controllers acting on each other's Pods and Nodes, each Tenant has its own Pod label
// (ipp-class-<id>), node label and taint (ipp-<id>) and cluster name (<id>); the webhook it
// registers serves only its namespace. Apart from those names it is IPP's default configuration.
type Tenant struct {
	// ID names the namespace, the cluster and the labels.
	ID string
	// Config is the IPP configuration of the webhook and of every controller of this tenant.
	Config isolation.Config
	// Namespace holds the tenant's Pods.
	Namespace string
	// Client is a cluster admin.
	Client kubernetes.Interface

	cp *framework.ControlPlane
}

// NewTenant makes a tenant whose ID starts with prefix, creates its namespace and registers its
// webhook. Its placement is --placement=admission, not the default: the crash and fault scenarios
// check the legacy placement's one dedicated node per class (NodeName). configure, if given,
// changes the configuration after the tenant's names are set (to choose controller placement,
// say). When the test ends, its Pods are force-deleted, its Nodes
// deleted, then the webhook and namespace; if the test failed, its Pods, Nodes and Events are
// logged first.
func NewTenant(t testing.TB, cp *framework.ControlPlane, prefix string, configure ...func(*isolation.Config)) *Tenant {
	t.Helper()
	ctx := t.Context()
	id := prefix + "-" + rand.String(5)
	cfg := isolation.DefaultConfig()
	cfg.PodLabel = "ipp-class-" + id
	cfg.NodeLabel = "ipp-" + id
	cfg.NodeTaint = "ipp-" + id
	cfg.ClusterName = id
	cfg.Placement = isolation.PlacementAdmission
	for _, f := range configure {
		f(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Tenant configuration: %v", err)
	}
	tn := &Tenant{ID: id, Config: cfg, Namespace: id, Client: cp.Client, cp: cp}
	if _, err := cp.CreateNamespace(ctx, id); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.cleanup)
	wh, err := cp.RegisterWebhook(ctx, webhook.NewHandler(cfg), framework.WebhookOptions{
		Name: "ipp-" + id,
		NamespaceRequirements: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{id},
		}},
		ProbeNamespace: id,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.Unregister(context.Background()) })
	t.Cleanup(func() {
		if t.Failed() {
			tn.Dump(t)
		}
	})
	return tn
}

// cleanup removes what the tenant left in the cluster, so that the control plane stays light for
// the tests after it.
func (tn *Tenant) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = tn.Client.CoreV1().Pods(tn.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
	_ = tn.Client.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: tn.nodeSelector()})
	_ = tn.Client.CoreV1().Namespaces().Delete(ctx, tn.Namespace, metav1.DeleteOptions{})
}

func (tn *Tenant) nodeSelector() string {
	return labels.SelectorFromSet(tn.Config.NodeLabels()).String()
}

// Flags are the ipp isolation flags of the tenant's configuration.
func (tn *Tenant) Flags() []string {
	return []string{
		"--pod-label=" + tn.Config.PodLabel,
		"--node-label=" + tn.Config.NodeLabel,
		"--node-taint=" + tn.Config.NodeTaint,
		"--cluster-name=" + tn.Config.ClusterName,
		"--placement=" + string(tn.Config.Placement),
	}
}

// NodeName is the dedicated node name of a class of the tenant.
func (tn *Tenant) NodeName(class string) string { return tn.Config.NodeName(tn.Namespace, class) }

// Classes returns n class names, prefix-0 to prefix-<n-1>.
func Classes(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// Pod returns a Pod of class named name, with one pause container.
func (tn *Tenant) Pod(name, class string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tn.Namespace, Labels: map[string]string{tn.Config.PodLabel: class}},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "app", Image: framework.PauseImage}},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
}

// CreatePods creates perClass Pods of each class, named <class>-<i>, through the webhook.
func (tn *Tenant) CreatePods(t testing.TB, classes []string, perClass int) {
	t.Helper()
	for _, class := range classes {
		for i := range perClass {
			tn.CreatePod(t, fmt.Sprintf("%s-%d", class, i), class)
		}
	}
}

// CreatePod creates one Pod of class, through the webhook.
func (tn *Tenant) CreatePod(t testing.TB, name, class string) {
	t.Helper()
	if err := tn.CreatePodErr(t.Context(), name, class); err != nil {
		t.Fatal(err)
	}
}

// CreatePodErr creates one Pod of class and returns the error, for callers off the test goroutine.
func (tn *Tenant) CreatePodErr(ctx context.Context, name, class string) error {
	p, err := tn.Client.CoreV1().Pods(tn.Namespace).Create(ctx, tn.Pod(name, class), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", tn.Namespace, name, err)
	}
	pin := isolation.BindingLabel
	if tn.Config.Placement == isolation.PlacementController {
		pin = isolation.ClassLabel
	}
	if _, pinned := p.Spec.NodeSelector[pin]; !pinned {
		return fmt.Errorf("pod %s/%s was not pinned by the webhook: nodeSelector %v", tn.Namespace, name, p.Spec.NodeSelector)
	}
	return nil
}

// Pods lists the tenant's Pods.
func (tn *Tenant) Pods(ctx context.Context) ([]corev1.Pod, error) {
	l, err := tn.Client.CoreV1().Pods(tn.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods of %s: %w", tn.Namespace, err)
	}
	return l.Items, nil
}

// Nodes lists the tenant's IPP Nodes.
func (tn *Tenant) Nodes(ctx context.Context) ([]corev1.Node, error) {
	l, err := tn.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: tn.nodeSelector()})
	if err != nil {
		return nil, fmt.Errorf("listing nodes of %s: %w", tn.Namespace, err)
	}
	return l.Items, nil
}

// placement says why a Pod is not yet where it must be, or "" once it runs, Ready, on its
// class's dedicated node (under controller placement, on a Node bound to its class key).
func (tn *Tenant) placement(ctx context.Context, p *corev1.Pod) string {
	class, _ := tn.Config.Class(p)
	switch {
	case p.Spec.NodeName == "":
		return "unscheduled"
	case tn.Config.Placement == isolation.PlacementController:
		if why := tn.onClassNode(ctx, p.Spec.NodeName, class); why != "" {
			return why
		}
	case p.Spec.NodeName != tn.NodeName(class):
		return fmt.Sprintf("on node %s, not its class's %s", p.Spec.NodeName, tn.NodeName(class))
	}
	if !framework.PodRunningAndReady(p) {
		return fmt.Sprintf("%s on its node", p.Status.Phase)
	}
	return ""
}

// onClassNode says why node is not a Node of class under controller placement, or "" if it
// carries the class's key.
func (tn *Tenant) onClassNode(ctx context.Context, node, class string) string {
	n, err := tn.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("on node %s: %v", node, err)
	}
	if got, want := n.Labels[isolation.ClassLabel], tn.Config.ClassKey(tn.Namespace, class); got != want {
		return fmt.Sprintf("on node %s of class key %q, not its class's %q", node, got, want)
	}
	return ""
}

// RunsOnClassNode reports whether the Pod named name runs, Ready, on its class's
// dedicated node (under controller placement, on a Node bound to its class key).
func (tn *Tenant) RunsOnClassNode(ctx context.Context, name string) bool {
	p, err := tn.Client.CoreV1().Pods(tn.Namespace).Get(ctx, name, metav1.GetOptions{})
	return err == nil && tn.placement(ctx, p) == ""
}

// WaitAllRunning waits up to timeout until there are want Pods and every one runs, Ready, on its
// class's dedicated node; then it checks the isolation invariants over the tenant's Pods and
// Nodes. It returns how long the wait took.
func (tn *Tenant) WaitAllRunning(t testing.TB, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var waiting []string
	err := wait.PollUntilContextTimeout(t.Context(), PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := tn.Pods(ctx)
		if err != nil {
			return false, nil //nolint:nilerr // the apiserver may be busy; look again
		}
		waiting = waiting[:0]
		for i := range pods {
			if why := tn.placement(ctx, &pods[i]); why != "" {
				waiting = append(waiting, pods[i].Name+": "+why)
			}
		}
		if len(pods) != want {
			waiting = append(waiting, fmt.Sprintf("%d pods, want %d", len(pods), want))
		}
		return len(waiting) == 0, nil
	})
	if err != nil {
		sort.Strings(waiting)
		if len(waiting) > 20 {
			waiting = append(waiting[:20], fmt.Sprintf("... and %d more", len(waiting)-20))
		}
		t.Fatalf("Waiting %v for every pod to run on its class's node: %v; not yet:\n  %s", timeout, err, strings.Join(waiting, "\n  "))
	}
	tn.CheckIsolation(t)
	return time.Since(start)
}

// NodeUIDs returns the UID of each of the tenant's Nodes, by name.
func (tn *Tenant) NodeUIDs(t testing.TB) map[string]types.UID {
	t.Helper()
	nodes, err := tn.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]types.UID, len(nodes))
	for _, n := range nodes {
		out[n.Name] = n.UID
	}
	return out
}

// CheckSettled waits for two more Lists of the cloud's instances, each followed by a reconcile
// of every dedicated node, and then checks that the want Pods still run on their class's node, on
// the same Node objects: the controller leaves working dedicated nodes alone. Call it after
// WaitAllRunning.
func CheckSettled(t testing.TB, tn *Tenant, c *Cloud, want int) {
	t.Helper()
	nodes := tn.NodeUIDs(t)
	ran := time.Now()
	WaitFor(t, "two more Lists", time.Minute, func(context.Context) (bool, error) {
		return c.ListsSince(ran) >= 2, nil
	})
	tn.checkSettled(t, want, nodes)
}

// checkSettled fails the test unless there are still want Pods, each running on its class's
// node, and the tenant's Nodes are still the Node objects of nodes (none deleted or replaced).
func (tn *Tenant) checkSettled(t testing.TB, want int, nodes map[string]types.UID) {
	t.Helper()
	if got := tn.NodeUIDs(t); !maps.Equal(got, nodes) {
		t.Errorf("Nodes changed after every pod ran: had %v, now %v", nodes, got)
	}
	pods, err := tn.Pods(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != want {
		t.Errorf("%d pods, want %d: some were deleted after they ran", len(pods), want)
	}
	for i := range pods {
		if why := tn.placement(t.Context(), &pods[i]); why != "" {
			t.Errorf("Pod %s no longer runs on its class's node: %s", pods[i].Name, why)
		}
	}
}

// CheckIsolation fails the test on any violation of the placement invariants I1-I3 among the
// tenant's Pods and Nodes.
func (tn *Tenant) CheckIsolation(t testing.TB) {
	t.Helper()
	ctx := t.Context()
	pods, err := tn.Pods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := tn.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := framework.IsolationViolations(tn.Config, pods, nodes); len(v) > 0 {
		t.Errorf("Isolation violations:\n  %s", strings.Join(v, "\n  "))
	}
}

// Events returns the tenant's Events with the given reason.
func (tn *Tenant) Events(ctx context.Context, reason string) ([]corev1.Event, error) {
	l, err := tn.Client.CoreV1().Events(tn.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("reason", reason).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing events of %s: %w", tn.Namespace, err)
	}
	return l.Items, nil
}

// WaitForPodEvent waits up to timeout for an Event with reason on Pod podName whose message
// contains every one of parts, and returns it.
func (tn *Tenant) WaitForPodEvent(t testing.TB, podName, reason string, timeout time.Duration, parts ...string) corev1.Event {
	t.Helper()
	var found corev1.Event
	var seen []string
	err := wait.PollUntilContextTimeout(t.Context(), PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		events, err := tn.Events(ctx, reason)
		if err != nil {
			return false, nil //nolint:nilerr // look again
		}
		seen = seen[:0]
		for _, e := range events {
			if e.InvolvedObject.Kind != "Pod" || e.InvolvedObject.Name != podName {
				continue
			}
			seen = append(seen, e.Message)
			if containsAll(e.Message, parts) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Waiting for a %s Event on pod %s saying %q: %v; its %s Events: %q", reason, podName, parts, err, reason, seen)
	}
	return found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// Dump logs the tenant's Pods (with where they are and why they wait), Nodes and recent Events.
func (tn *Tenant) Dump(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "Tenant %s:\n", tn.ID)
	if nodes, err := tn.Nodes(ctx); err != nil {
		fmt.Fprintf(&b, "  %v\n", err)
	} else {
		for _, n := range nodes {
			fmt.Fprintf(&b, "  node %s providerID=%s bound=%q ready=%t unschedulable=%t taints=%d created=%s\n",
				n.Name, n.Spec.ProviderID, n.Labels[isolation.BindingLabel], framework.NodeReady(&n), n.Spec.Unschedulable,
				len(n.Spec.Taints), n.CreationTimestamp.Format(time.RFC3339))
		}
	}
	if pods, err := tn.Pods(ctx); err != nil {
		fmt.Fprintf(&b, "  %v\n", err)
	} else {
		placed := 0
		for i := range pods {
			why := tn.placement(ctx, &pods[i])
			if why == "" {
				placed++
				continue
			}
			fmt.Fprintf(&b, "  pod %s: %s\n", pods[i].Name, why)
		}
		fmt.Fprintf(&b, "  %d of %d pods run on their class's node\n", placed, len(pods))
	}
	if l, err := tn.Client.CoreV1().Events(tn.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
		events := l.Items
		sort.SliceStable(events, func(i, j int) bool { return eventTime(events[i]).Before(eventTime(events[j])) })
		if len(events) > 60 {
			fmt.Fprintf(&b, "  ... %d earlier events\n", len(events)-60)
			events = events[len(events)-60:]
		}
		for _, e := range events {
			fmt.Fprintf(&b, "  event %s %s %s/%s x%d: %s\n", eventTime(e).Format("15:04:05.000"), e.Reason,
				e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Count, e.Message)
		}
	}
	t.Log(b.String())
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	return e.EventTime.Time
}

// WaitFor polls cond until it holds or timeout passes, and fails the test naming what it
// waited for.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), PollInterval, timeout, true, cond); err != nil {
		t.Fatalf("Waiting %v for %s: %v", timeout, what, err)
	}
}

// IgnoreNotFound returns nil for a NotFound error.
func IgnoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// CheckCreatedOnce fails the test unless the cloud created exactly one instance for each of
// names and none for any other name, and exactly one of each is live.
func CheckCreatedOnce(t testing.TB, c *Cloud, names []string) {
	t.Helper()
	counts := c.CreatedCounts()
	live := c.LiveInstances()
	for _, name := range names {
		if n := counts[name]; n != 1 {
			t.Errorf("Instances created for %s: %d, want 1", name, n)
		}
		if n := len(live[name]); n != 1 {
			t.Errorf("Live instances of %s: %d (%v), want 1", name, n, live[name])
		}
	}
	for name, n := range counts {
		if !slices.Contains(names, name) {
			t.Errorf("Instances created for %s, which no class needs: %d (leaked)", name, n)
		}
	}
}
