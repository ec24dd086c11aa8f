package tests

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeset"
)

// Timeouts of the waits in these tests: generous, since the machine may be busy; the waits end
// as soon as their condition holds.
const (
	nodeTimeout = time.Minute
	podTimeout  = time.Minute
)

// uniqueName returns prefix plus a random suffix, a valid DNS label.
func uniqueName(prefix string) string { return prefix + "-" + rand.String(6) }

// namespace creates a namespace for the test. When the test ends it is deleted, and the cleanup
// waits until its Pods are gone, so that the tests that follow see none of them.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := cluster.CreateNamespace(t.Context(), prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := cluster.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("Deleting namespace %s: %v", ns.Name, err)
			return
		}
		// A terminating namespace takes no new Pods; deleting the Pods now, rather than when the
		// namespace controller gets to them, saves seconds per test.
		if err := cluster.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Errorf("Deleting the pods of namespace %s: %v", ns.Name, err)
		}
		err := waitFor(ctx, podTimeout, func(ctx context.Context) (bool, error) {
			pods, err := cluster.Client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0, err
		})
		if err != nil {
			t.Errorf("Waiting for the pods of namespace %s to go: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// nodeClient returns a clientset with the credentials of the kubelet on nodeName.
func nodeClient(t *testing.T, nodeName string) kubernetes.Interface {
	t.Helper()
	cfg, err := cluster.NodeConfig(nodeName)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startKubelet runs a kubelet for reg with the node's own credentials until the test ends, then
// stops it and deletes its Node.
func startKubelet(t *testing.T, reg kubelet.Registration) *kubelet.Kubelet {
	t.Helper()
	cfg, err := cluster.NodeConfig(reg.NodeName)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kubelet.Start(t.Context(), kubelet.Config{Registration: reg, RESTConfig: cfg})
	if err != nil {
		t.Fatalf("Starting kubelet: %v", err)
	}
	t.Cleanup(func() {
		k.Stop()
		deleteNode(reg.NodeName)
	})
	return k
}

func deleteNode(name string) {
	err := cluster.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		panic(err)
	}
}

// waitSchedulable waits until the node is Ready without the not-ready taint.
func waitSchedulable(t *testing.T, name string) *corev1.Node {
	t.Helper()
	n, err := framework.WaitForNodeSchedulable(t.Context(), cluster.Client, name, nodeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pod returns a Pod with one pause container, changed by the options.
func pod(name string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: framework.PauseImage}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// onNode selects the node by its hostname label, so the scheduler puts the Pod there and nowhere else.
func onNode(node string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		p.Spec.NodeSelector[corev1.LabelHostname] = node
	}
}

// tolerating adds tolerations.
func tolerating(tols ...corev1.Toleration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, tols...) }
}

func createPod(t *testing.T, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("Creating pod %s/%s: %v", ns, p.Name, err)
	}
	return created
}

// ignoreNotFound returns nil for a NotFound error, for polls that wait for an object to appear.
func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitFor polls cond every framework.PollInterval until it holds, fails, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, framework.PollInterval, timeout, true, cond)
}

// joinAndDelete creates the instance of class0's dedicated node through p, waits until its Node
// registers and is schedulable, checks that it registered as an IPP node (IPP label and both
// taints, no binding label), deletes the instance, and checks that its kubelet stops and that the
// Node object stays (removing it is the controller's job). It returns the instance and the Node as
// it registered.
func joinAndDelete(t *testing.T, p cloudprovider.Provider, booter *kubelet.Booter, cfg isolation.Config) (*cloudprovider.Instance, *corev1.Node) {
	t.Helper()
	ctx := t.Context()
	name := cfg.NodeName("team-a", "class0")
	t.Cleanup(func() { deleteNode(name) })
	inst, err := p.Create(ctx, cloudprovider.InstanceSpec{
		NodeName:       name,
		Class:          "class0",
		Namespace:      "team-a",
		NodeLabels:     cfg.NodeLabels(),
		NodeTaints:     cfg.Taints(),
		IdempotencyKey: name + "/1",
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	node := waitSchedulable(t, name)
	if got := node.Labels[cfg.NodeLabel]; got != isolation.LabelValue {
		t.Errorf("Node label %s = %q, want %q", cfg.NodeLabel, got, isolation.LabelValue)
	}
	if _, ok := node.Labels[isolation.BindingLabel]; ok {
		t.Errorf("Node registered with %s; only the controller may write it", isolation.BindingLabel)
	}
	for _, want := range cfg.Taints() {
		if !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&want) }) {
			t.Errorf("Node taints %v lack %v", node.Spec.Taints, want)
		}
	}

	if err := p.Delete(ctx, *inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	pollUntil(t, "the instance's kubelet to stop", func() bool {
		_, running := booter.Kubelet(inst.ID)
		return !running
	})
	if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("Node after the instance was deleted: %v; removing it is the controller's job", err)
	}
	return inst, node
}

// tenantClient returns a clientset of a tenant: a user who may manage Pods and Deployments in
// namespace ns and nothing anywhere else. It returns once RBAC lets the tenant create Pods there.
func tenantClient(t *testing.T, ns string) kubernetes.Interface {
	t.Helper()
	ctx := t.Context()
	user := "tenant-" + ns
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "get", "list", "watch", "update", "patch", "delete"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"create", "get", "list", "watch", "update", "patch", "delete"}},
		},
	}
	if _, err := cluster.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := cluster.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = waitFor(ctx, podTimeout, func(ctx context.Context) (bool, error) {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods"},
		}}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, err
	})
	if err != nil {
		t.Fatalf("Waiting for tenant %s to be allowed to create Pods in %s: %v", user, ns, err)
	}
	return c
}

// watchIPPNodes runs the webhook's set of IPP nodes (pkg/nodeset, as `ipp run` and `ipp webhook`
// run it with --watch-ipp-nodes) until the test ends, and returns once it has synced.
func watchIPPNodes(t *testing.T, cfg isolation.Config) *nodeset.Set {
	t.Helper()
	set, err := nodeset.New(cluster.Client, cfg.NodeLabel, isolation.LabelValue)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		set.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	pollUntil(t, "the set of IPP nodes to sync", set.HasSynced)
	return set
}

// strayPod is a Pod without a class that names node in spec.nodeName: it skips the scheduler.
func strayPod(name, node string) *corev1.Pod {
	return pod(name, func(p *corev1.Pod) { p.Spec.NodeName = node })
}

// checkNodeNameDenied checks that err is the IPP validating webhook's denial of a Pod without a
// class that names node, an IPP node, in spec.nodeName.
func checkNodeNameDenied(t *testing.T, err error, node string) {
	t.Helper()
	want := []string{`admission webhook "pods.validate.ipp.io" denied the request`, `spec.nodeName "` + node + `" names an IPP node (labelled ipp=true)`}
	if !apierrors.IsForbidden(err) {
		t.Fatalf("Creating a Pod without a class with spec.nodeName=%s: error %v, want Forbidden by the IPP webhook", node, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Error %q does not contain %q", err, w)
		}
	}
}
