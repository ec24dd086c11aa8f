package tests

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// bootIPPNode boots a node the way a cloud emulator does: from a bootstrap rendered by
// pkg/bootstrap for an IPP node named name.
func bootIPPNode(t *testing.T, booter *kubelet.Booter, name string) cloudemu.BootRequest {
	t.Helper()
	cfg := isolation.DefaultConfig()
	r, err := bootstrap.NewRenderer("")
	if err != nil {
		t.Fatal(err)
	}
	script, err := r.Render(bootstrap.Params{Join: cluster.SharedJoin(), NodeName: name, Labels: cfg.NodeLabels(), Taints: cfg.Taints()})
	if err != nil {
		t.Fatal(err)
	}
	req := cloudemu.BootRequest{InstanceID: name, ProviderID: "gce://ipp-e2e/zone-a/" + name, Zone: "zone-a", Bootstrap: script}
	if err := booter.Boot(t.Context(), req); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	t.Cleanup(func() {
		booter.Shutdown(context.Background(), req.InstanceID)
		deleteNode(name)
	})
	return req
}

func newBooter() *kubelet.Booter {
	return kubelet.NewBooter(kubelet.Config{})
}

// TestBootedNodeRunsPods: a node booted from a rendered bootstrap registers under its own
// identity with the bootstrap's labels and taints and the cloud's providerID, goes Ready, keeps a
// Lease, runs a Pod bound to it, and confirms the Pod's deletion.
func TestBootedNodeRunsPods(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	booter := newBooter()
	name := uniqueName("ipp-boot")
	req := bootIPPNode(t, booter, name)
	ns := namespace(t, "boot")

	node := waitSchedulable(t, name)
	if node.Spec.ProviderID != req.ProviderID {
		t.Errorf("Node providerID = %q, want %q", node.Spec.ProviderID, req.ProviderID)
	}
	cfg := isolation.DefaultConfig()
	for k, v := range cfg.NodeLabels() {
		if node.Labels[k] != v {
			t.Errorf("Node label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if node.Labels[corev1.LabelHostname] != name {
		t.Errorf("Node label %s = %q, want %q", corev1.LabelHostname, node.Labels[corev1.LabelHostname], name)
	}
	for _, want := range cfg.Taints() {
		if !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&want) }) {
			t.Errorf("Node taints %v lack %v", node.Spec.Taints, want)
		}
	}
	var lease *coordinationv1.Lease
	err := wait.PollUntilContextTimeout(ctx, framework.PollInterval, nodeTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := cluster.Client.CoordinationV1().Leases(kubelet.NodeLeaseNamespace).Get(ctx, name, metav1.GetOptions{})
		lease = l
		return err == nil, ignoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("Waiting for the node's Lease: %v", err)
	}
	if got := *lease.Spec.HolderIdentity; got != name {
		t.Errorf("Lease holder = %q, want %q", got, name)
	}
	if len(lease.OwnerReferences) != 1 || lease.OwnerReferences[0].UID != node.UID {
		t.Errorf("Lease owners = %v, want the Node %s", lease.OwnerReferences, node.UID)
	}

	p := createPod(t, ns, pod("app", onNode(name), tolerating(cfg.Tolerations()...)))
	running, err := framework.WaitForPodRunning(ctx, cluster.Client, ns, p.Name, podTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if running.Spec.NodeName != name || running.Status.PodIP == "" || running.Status.HostIP == "" {
		t.Errorf("Running pod: node %q, podIP %q, hostIP %q; want node %q and both IPs", running.Spec.NodeName, running.Status.PodIP, running.Status.HostIP, name)
	}

	// A graceful deletion completes only once the kubelet confirms it.
	if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](30)}); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(ctx, ns, p.Name); err != nil {
		t.Fatal(err)
	}

	booter.Shutdown(ctx, req.InstanceID)
	if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("Node after its kubelet stopped: %v; the Node must stay until the controller removes it", err)
	}
}

func waitGone(ctx context.Context, ns, name string) error {
	err := wait.PollUntilContextTimeout(ctx, framework.PollInterval, podTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("waiting for pod %s/%s to be gone: %w", ns, name, err)
	}
	return nil
}

// TestNodeCannotBindItself proves invariant I4 against the real NodeRestriction plugin: a
// node's own credentials can neither register with the binding label nor add, change or remove
// it later, nor touch another node, while ordinary self-labelling still works.
func TestNodeCannotBindItself(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	binding := isolation.BindingLabel

	t.Run("bootstrap with the binding label does not register", func(t *testing.T) {
		t.Parallel()
		name := uniqueName("ipp-rogue")
		booter := newBooter()
		t.Cleanup(booter.Stop)
		script := fmt.Sprintf("KUBELET_EXTRA_ARGS='--hostname-override=%s --node-labels=ipp=true,%s=%s'\n%s", name, binding, name, sharedJoinLine())
		err := booter.Boot(ctx, cloudemu.BootRequest{InstanceID: name, ProviderID: "gce://p/z/" + name, Bootstrap: script})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("Boot error = %v, want Forbidden from NodeRestriction", err)
		}
		if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Get refused node: %v, want NotFound", err)
			deleteNode(name)
		}
		results := booter.Results()
		if len(results) != 1 || results[0].NodeName != name || results[0].Err == nil {
			t.Errorf("Boot results = %+v, want one failed boot of %s", results, name)
		}
	})

	name := uniqueName("ipp-self")
	other := uniqueName("ipp-other")
	startKubelet(t, kubelet.Registration{NodeName: name, Labels: map[string]string{"ipp": "true"}})
	startKubelet(t, kubelet.Registration{NodeName: other, Labels: map[string]string{"ipp": "true"}})
	self := nodeClient(t, name)
	labelPatch := func(key string, value *string) []byte {
		if value == nil {
			return fmt.Appendf(nil, `{"metadata":{"labels":{%q:null}}}`, key)
		}
		return fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, key, *value)
	}
	patch := func(node string, body []byte) error {
		_, err := self.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, body, metav1.PatchOptions{})
		return err
	}
	value := func(s string) *string { return &s }

	t.Run("ordinary label on itself is allowed", func(t *testing.T) {
		if err := patch(name, labelPatch("team", value("a"))); err != nil {
			t.Errorf("Patching own ordinary label: %v", err)
		}
	})
	t.Run("add the binding label to itself", func(t *testing.T) {
		if err := patch(name, labelPatch(binding, value(name))); !apierrors.IsForbidden(err) {
			t.Errorf("Patch error = %v, want Forbidden", err)
		}
	})
	t.Run("update via PUT with the binding label", func(t *testing.T) {
		n, err := self.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Labels[binding] = name
		if _, err := self.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("Update error = %v, want Forbidden", err)
		}
	})
	t.Run("change or remove the binding the controller wrote", func(t *testing.T) {
		if _, err := cluster.Client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, labelPatch(binding, value(name)), metav1.PatchOptions{}); err != nil {
			t.Fatalf("Admin labelling the node: %v", err)
		}
		if err := patch(name, labelPatch(binding, value(other))); !apierrors.IsForbidden(err) {
			t.Errorf("Changing the binding: error = %v, want Forbidden", err)
		}
		if err := patch(name, labelPatch(binding, nil)); !apierrors.IsForbidden(err) {
			t.Errorf("Removing the binding: error = %v, want Forbidden", err)
		}
	})
	t.Run("label another node", func(t *testing.T) {
		if err := patch(other, labelPatch("team", value("a"))); !apierrors.IsForbidden(err) {
			t.Errorf("Patching another node: error = %v, want Forbidden", err)
		}
	})

	for node, want := range map[string]string{name: name, other: ""} {
		n, err := cluster.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Labels[binding]; got != want {
			t.Errorf("Node %s: %s = %q, want %q", node, binding, got, want)
		}
	}
}

// TestKubeletRejectsPodNotToleratingNoExecute: a Pod that bypasses the scheduler with
// spec.nodeName onto an IPP node, without tolerating the NoExecute taint, never runs there; the
// kubelet's admission rejects it. A Pod that tolerates the taints runs.
func TestKubeletRejectsPodNotToleratingNoExecute(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	name := uniqueName("ipp-noexec")
	startKubelet(t, kubelet.Registration{NodeName: name, Labels: cfg.NodeLabels(), Taints: cfg.Taints()})
	// Created after the kubelet, so it is cleaned up before it: the kubelet confirms the deletions.
	ns := namespace(t, "noexec")
	waitSchedulable(t, name)

	waitKubeletRejects(t, ns, "bypass", func() { createPod(t, ns, pod("bypass", func(p *corev1.Pod) { p.Spec.NodeName = name })) })

	tolerant := pod("tolerant", func(p *corev1.Pod) { p.Spec.NodeName = name }, tolerating(cfg.Tolerations()...))
	createPod(t, ns, tolerant)
	if _, err := framework.WaitForPodRunning(ctx, cluster.Client, ns, "tolerant", podTimeout); err != nil {
		t.Fatal(err)
	}
}

// waitKubeletRejects runs create, which creates the Pod ns/name bound to a node by spec.nodeName,
// and waits until the node's kubelet rejects it for a taint it does not tolerate: phase Failed
// with reason TaintToleration. It fails the test if the Pod runs, or goes without a rejection.
func waitKubeletRejects(t *testing.T, ns, name string, create func()) {
	t.Helper()
	// The taint-eviction controller deletes such a Pod too; the watch sees every status the
	// kubelet reports before it goes.
	w, err := cluster.Client.CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	create()
	var rejected *corev1.Pod
	for rejected == nil {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("Watch ended before the pod was rejected")
			}
			p, isPod := ev.Object.(*corev1.Pod)
			switch {
			case !isPod:
				t.Fatalf("Watch: %v", ev.Object)
			case p.Status.Phase == corev1.PodRunning:
				t.Fatalf("The pod %s that does not tolerate NoExecute is Running on %s", name, p.Spec.NodeName)
			case p.Status.Phase == corev1.PodFailed:
				rejected = p
			case ev.Type == watch.Deleted:
				t.Fatalf("The pod %s was deleted without the kubelet rejecting it", name)
			}
		case <-time.After(podTimeout):
			t.Fatalf("The kubelet did not reject the pod %s in time", name)
		}
	}
	if rejected.Status.Reason != "TaintToleration" {
		t.Errorf("Rejected pod %s: reason %q (%s), want TaintToleration", name, rejected.Status.Reason, rejected.Status.Message)
	}
}

// sharedJoinLine is the kubeadm join of a bootstrap that joins with the shared token.
func sharedJoinLine() string {
	j := cluster.SharedJoin()
	return fmt.Sprintf("kubeadm join %s --token %s --discovery-token-ca-cert-hash %s\n", j.APIServerEndpoint, j.Token, j.CACertHash)
}
