package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

// bindNode writes the binding label onto node with a JSON patch that first tests the Node's UID
// and providerID (patchNode), so the label can only land on the Node object whose providerID the
// controller checked, never on one re-created under the same name in between.
func (c *Controller) bindNode(ctx context.Context, node *corev1.Node, name string, class map[string]string) error {
	if len(node.Labels) == 0 {
		// The informer only sees Nodes with the IPP node label, so this does not happen.
		return fmt.Errorf("binding Node %s: it has no labels, so it is not an IPP node", node.Name)
	}
	if node.Spec.ProviderID == "" {
		return fmt.Errorf("binding Node %s: it has no providerID", node.Name)
	}
	ops := []jsonpatch.Operation{addLabelOp(isolation.BindingLabel, name)}
	for _, k := range slices.Sorted(maps.Keys(class)) {
		ops = append(ops, addLabelOp(k, class[k]))
	}
	if _, err := c.patchNode(ctx, node, ops...); err != nil {
		return fmt.Errorf("binding Node %s: %w", node.Name, err)
	}
	return nil
}

// patchNode applies the JSON patch ops to node after test operations on its UID and providerID,
// so that a write decided on one Node object never lands on another re-created under the same
// name. It returns the patched Node, or nil if ops is empty or the Node is gone (which needs
// nothing).
func (c *Controller) patchNode(ctx context.Context, node *corev1.Node, ops ...jsonpatch.Operation) (*corev1.Node, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	var guarded []jsonpatch.Operation
	if node.UID != "" {
		guarded = append(guarded, jsonpatch.Test("/metadata/uid", string(node.UID)))
	}
	if node.Spec.ProviderID != "" {
		guarded = append(guarded, jsonpatch.Test("/spec/providerID", node.Spec.ProviderID))
	}
	patch, err := jsonpatch.Patch(append(guarded, ops...)).Marshal()
	if err != nil {
		return nil, fmt.Errorf("patching Node %s: %w", node.Name, err)
	}
	got, err := c.kube.CoreV1().Nodes().Patch(ctx, node.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("patching Node %s: %w", node.Name, err)
	}
	return got, nil
}

// addLabelOp sets the label key to value (an RFC 6902 add replaces a member that exists).
func addLabelOp(key, value string) jsonpatch.Operation {
	return jsonpatch.Add(jsonpatch.LabelPath(key), value)
}

// mergePatchNode applies a JSON merge patch to the Node. A Node that is gone needs nothing.
func (c *Controller) mergePatchNode(ctx context.Context, name string, patch map[string]any) error {
	if patch == nil {
		return nil
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("patching Node %s: %w", name, err)
	}
	_, err = c.kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patching Node %s: %w", name, err)
	}
	return nil
}

func labelsPatch(labels map[string]any) map[string]any {
	return map[string]any{"metadata": map[string]any{"labels": labels}}
}

// deleteNode deletes the Node object, only if it is still the one the controller looked at.
func (c *Controller) deleteNode(ctx context.Context, node *corev1.Node) error {
	return DeleteNode(ctx, c.kube, node)
}

// boundPod asks the API server (not the cache) for a live Pod that needs the dedicated node name
// and is bound to the Node nodeName, and returns one if there is any.
func (c *Controller) boundPod(ctx context.Context, nodeName, name string) (*corev1.Pod, error) {
	list, err := c.kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: c.cfg.PodLabel,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", nodeName).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing the Pods bound to Node %s: %w", nodeName, err)
	}
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.Spec.NodeName == nodeName && c.isDemand(newCachedPod(c.cfg, pod), name) {
			return pod, nil
		}
	}
	return nil, nil
}

// placedPod asks the API server (not the cache) for a live Pod of the plan's class that the
// controller placed on, or the scheduler bound to, the Node nodeName, and returns one if there is
// any.
func (c *Controller) placedPod(ctx context.Context, nodeName string, plan *classPlan) (*corev1.Pod, error) {
	ns := plan.namespace // "" in cluster scope: every namespace
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{c.cfg.PodLabel: plan.class}).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing the Pods of class %s: %w", plan.class, err)
	}
	for i := range list.Items {
		pod := &list.Items[i]
		if c.isDemand(newCachedPod(c.cfg, pod), nodeName) {
			return pod, nil
		}
	}
	return nil, nil
}

// sortNodes orders Nodes with the one named name first, then by name.
func sortNodes(nodes []*corev1.Node, name string) {
	sort.Slice(nodes, func(i, j int) bool {
		if (nodes[i].Name == name) != (nodes[j].Name == name) {
			return nodes[i].Name == name
		}
		return nodes[i].Name < nodes[j].Name
	})
}
