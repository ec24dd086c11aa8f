package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-controller-manager/names"

	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// Cluster is a control plane for one benchmark part with the clients the benchmark uses.
type Cluster struct {
	*framework.ControlPlane
	// Fast is an admin client without client-side rate limiting, speaking protobuf as
	// kube-scheduler does, for creating objects as fast
	// as the apiserver takes them.
	Fast kubernetes.Interface
	// Kubeconfig is an admin kubeconfig file for components started later.
	Kubeconfig string
}

// StartCluster starts a control plane without the node lifecycle controller, so that Nodes the
// benchmark creates directly (with no kubelet renewing a lease) stay Ready, and with only the
// controllers that Pods need (the ServiceAccount controller). withScheduler says whether the
// framework's own kube-scheduler runs; P1 starts its own instead.
func StartCluster(ctx context.Context, logFile string, withScheduler bool) (*Cluster, error) {
	// The node lifecycle, garbage collector and workload controllers would watch every Pod and
	// Node and compete with what is measured for the two CPUs.
	framework.Controllers = []string{names.ServiceAccountController}
	opts := framework.Options{EtcdLogFile: logFile, NoScheduler: !withScheduler}
	if withScheduler {
		opts.SchedulerFlags = []string{
			fmt.Sprintf("--kube-api-qps=%d", SchedulerQPS),
			fmt.Sprintf("--kube-api-burst=%d", SchedulerQPS),
		}
	}
	cp, err := framework.Start(quiet(ctx), opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{ControlPlane: cp, Kubeconfig: filepath.Join(cp.Dir(), "bench-admin.kubeconfig")}
	if err := cp.WriteKubeconfig(c.Kubeconfig); err != nil {
		cp.Stop()
		return nil, err
	}
	c.Fast, err = kubernetes.NewForConfig(controller.ProtobufConfig(UnlimitedConfig(cp.AdminConfig)))
	if err != nil {
		cp.Stop()
		return nil, fmt.Errorf("making the benchmark client: %w", err)
	}
	return c, nil
}

// quiet returns ctx with the process-wide klog logger, which writes to the control plane's log
// file, for the components the benchmark starts; the benchmark's own progress stays on ctx's logger.
func quiet(ctx context.Context) context.Context { return klog.NewContext(ctx, klog.Background()) }

// ServiceAccountConfig returns credentials of deploy.ServiceAccountUser, the ipp ServiceAccount
// that deploy/ runs the controller as (a client certificate for that user and its groups), bound
// to cluster-admin: the benchmark measures what the webhooks and ipp-pods policy do with its
// requests, not what rbac.yaml grants, which deploy/ and the e2e tests check.
func (c *Cluster) ServiceAccountConfig(ctx context.Context) (*rest.Config, error) {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-ipp"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: deploy.ServiceAccountUser}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("binding %s: %w", deploy.ServiceAccountUser, err)
	}
	return c.UserConfig(deploy.ServiceAccountUser, "system:serviceaccounts", "system:serviceaccounts:ipp-system", "system:authenticated")
}

// UnlimitedConfig returns a copy of cfg without client-side rate limiting.
func UnlimitedConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = -1
	cfg.Burst = 0
	return cfg
}

// SwitchHandler is an http.Handler whose target can be changed between measurements, so that one
// webhook registration serves every variant.
type SwitchHandler struct {
	h atomic.Pointer[http.Handler]
}

// Set makes h the handler of the following requests.
func (s *SwitchHandler) Set(h http.Handler) { s.h.Store(&h) }

// ServeHTTP serves r with the current handler.
func (s *SwitchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// RegisterWebhook registers an in-process webhook whose handler starts as the IPP handler of cfg
// and can be switched, with deploy's policy ipp-pods. Pods in exempt namespaces skip it, and so
// do the Pod UPDATEs of deploy.ServiceAccountUser, as in deploy/base/webhooks.yaml.
func (c *Cluster) RegisterWebhook(ctx context.Context, cfg isolation.Config, exempt ...string) (*SwitchHandler, *framework.Webhook, error) {
	sw := &SwitchHandler{}
	sw.Set(webhook.NewHandler(cfg))
	// As deploy/ installs them: the ipp ServiceAccount's Pod UPDATEs (the controller's placements)
	// skip the webhooks, and the policy ipp-pods restricts them instead.
	if _, err := c.ControlPlane.InstallPolicy(ctx, deploy.PodPolicy); err != nil {
		return nil, nil, err
	}
	w, err := c.ControlPlane.RegisterWebhook(quiet(ctx), sw, framework.WebhookOptions{
		ExemptNamespaces: append(append([]string(nil), framework.DefaultExemptNamespaces...), exempt...),
		SkipUpdatesBy:    deploy.ServiceAccountUser,
	})
	if err != nil {
		return nil, nil, err
	}
	return sw, w, nil
}

// Parallel runs f(0) ... f(n-1) on workers goroutines and returns the first error.
func Parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { return f(ctx, i) })
	}
	return g.Wait()
}

// NodeResources are the capacity and allocatable of every benchmark Node: room for the
// kubelet's default 110 Pods of BenchPodRequests.
var NodeResources = corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("32"),
	corev1.ResourceMemory: resource.MustParse("128Gi"),
	corev1.ResourcePods:   resource.MustParse("110"),
}

// BenchPodRequests are the requests of every benchmark Pod's one container.
var BenchPodRequests = corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("10m"),
	corev1.ResourceMemory: resource.MustParse("16Mi"),
}

// ReadyNode returns a Node as a kubelet would have registered it and reported it Ready, with the
// hostname label that the anti-affinity's topology key reads.
func ReadyNode(name string, labels map[string]string, taints []corev1.Taint, providerID string) *corev1.Node {
	l := map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	}
	for k, v := range labels {
		l[k] = v
	}
	now := metav1.Now()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       corev1.NodeSpec{Taints: taints, ProviderID: providerID},
		Status: corev1.NodeStatus{
			Capacity:    NodeResources,
			Allocatable: NodeResources,
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}},
		},
	}
}

// CreateReadyNode creates node and then takes off the node.kubernetes.io/not-ready taint that
// the TaintNodesByCondition admission plugin puts on every new Node (the node lifecycle
// controller, which does not run here, would take it off once it sees the Node Ready). The taints
// are replaced by a merge patch, which needs no resourceVersion: the IPP controller may label the
// Node in between.
func CreateReadyNode(ctx context.Context, c kubernetes.Interface, node *corev1.Node) (*corev1.Node, error) {
	want := node.Spec.Taints
	got, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating node %s: %w", node.Name, err)
	}
	if len(got.Spec.Taints) == len(want) {
		return got, nil
	}
	if want == nil {
		want = []corev1.Taint{}
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"taints": want}})
	if err != nil {
		return nil, fmt.Errorf("encoding the taints of node %s: %w", node.Name, err)
	}
	if got, err = c.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return nil, fmt.Errorf("untainting node %s: %w", node.Name, err)
	}
	return got, nil
}

// BenchPod returns a Pod with one pause container requesting BenchPodRequests.
func BenchPod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: framework.PauseImage,
				Resources: corev1.ResourceRequirements{Requests: BenchPodRequests},
			}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
}

// CreatePod creates p in namespace, retrying what a controller would retry: the apiserver's
// internal errors (a webhook call that timed out on an overloaded machine, say), timeouts and
// throttling. Each retry adds one to retries, if not nil, so that results can report them. A
// retry that finds the Pod already created counts as success.
func CreatePod(ctx context.Context, c kubernetes.Interface, namespace string, p *corev1.Pod, retries *atomic.Int64) (*corev1.Pod, error) {
	var created *corev1.Pod
	attempt := 0
	retriable := func(err error) bool {
		return apierrors.IsInternalError(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) ||
			apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err)
	}
	err := retry.OnError(wait.Backoff{Steps: 6, Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1}, retriable, func() error {
		var err error
		if attempt++; attempt > 1 && retries != nil {
			retries.Add(1)
		}
		created, err = c.CoreV1().Pods(namespace).Create(ctx, p, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && attempt > 1 {
			created, err = c.CoreV1().Pods(namespace).Get(ctx, p.Name, metav1.GetOptions{})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", namespace, p.Name, err)
	}
	return created, nil
}

// DeletePods deletes the Pods of namespace that match selector at once (grace period 0) and waits
// until they are gone.
func DeletePods(ctx context.Context, c kubernetes.Interface, namespace, selector string, timeout time.Duration) error {
	err := c.CoreV1().Pods(namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)},
		metav1.ListOptions{LabelSelector: selector})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting pods %s in %s: %w", selector, namespace, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
		if err != nil {
			return false, err
		}
		return len(l.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for pods %s in %s to be gone: %w", selector, namespace, err)
	}
	return nil
}
