package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// DeleteNode deletes the Node object, only if it is still the one the caller looked at (a UID
// precondition), so that a Node re-created under the same name in between is never deleted. A
// Node that is gone needs nothing. The controller and `ipp cleanup` both delete Nodes with it.
func DeleteNode(ctx context.Context, kube kubernetes.Interface, node *corev1.Node) error {
	opts := metav1.DeleteOptions{}
	if node.UID != "" {
		uid := node.UID
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	if err := kube.CoreV1().Nodes().Delete(ctx, node.Name, opts); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Node %s: %w", node.Name, err)
	}
	return nil
}

// DeleteInstance deletes inst through provider; an instance that is already gone counts as
// deleted. The controller and `ipp cleanup` both delete instances with it.
func DeleteInstance(ctx context.Context, provider cloudprovider.Provider, inst cloudprovider.Instance) error {
	if err := provider.Delete(ctx, inst); err != nil && !cloudprovider.IsNotFound(err) {
		return fmt.Errorf("deleting instance %s of node %s: %w", inst.ID, inst.NodeName, err)
	}
	return nil
}

// IsLivePinned reports whether pod still needs a dedicated node: an IPP Pod outside the exempt
// namespaces, pinned by the webhook (the binding label in its nodeSelector) or, under controller
// placement, gated for placement or placed by the controller, not being deleted and not finished. While the controller runs, such a Pod makes it create its node
// again, which is why `ipp cleanup` warns about them.
func IsLivePinned(cfg isolation.Config, pod *corev1.Pod) bool {
	p := newCachedPod(cfg, pod)
	// Pinned at admission to its dedicated node, or (controller placement) waiting for
	// placement or placed on a node by the controller.
	return p.live(cfg) && (p.pin != "" || p.placing || p.placedOn != "")
}

// live reports whether the Pod is an IPP Pod that may still run: it has a class, is outside the
// exempt namespaces, and is neither being deleted nor finished.
func (p *cachedPod) live(cfg isolation.Config) bool {
	return p.class != "" && p.DeletionTimestamp == nil && !p.terminal() && !cfg.Exempt(p.Namespace)
}
