package controller

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// Index names.
const (
	// podNodeIndex indexes IPP Pods by the dedicated node name of their class.
	podNodeIndex = "ipp.io/dedicated-node"
	// bindingIndex indexes Nodes by the value of their binding label.
	bindingIndex = "ipp.io/binding"
	// providerIDIndex indexes Nodes by spec.providerID.
	providerIDIndex = "ipp.io/provider-id"
)

// podNodeNames is the Pod indexer: the dedicated node name of the Pod's class.
func (c *Controller) podNodeNames(obj any) ([]string, error) {
	pod := c.asCachedPod(obj)
	if pod == nil || pod.class == "" {
		return nil, nil
	}
	return []string{c.cfg.NodeName(pod.Namespace, pod.class)}, nil
}

func nodeBindingIndexFunc(obj any) ([]string, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, nil
	}
	if v := node.Labels[isolation.BindingLabel]; v != "" {
		return []string{v}, nil
	}
	return nil, nil
}

func nodeProviderIDIndexFunc(obj any) ([]string, error) {
	node, ok := obj.(*corev1.Node)
	if !ok || node.Spec.ProviderID == "" {
		return nil, nil
	}
	return []string{node.Spec.ProviderID}, nil
}

// demand returns the Pods that need the dedicated node name, oldest first: live IPP Pods outside
// the exempt namespaces whose class maps to name and that the webhook pinned to it. A Pod that is
// not pinned (one admitted while the webhook was off, say) could not use the node anyway, so it
// creates nothing.
func (c *Controller) demand(name string) ([]*cachedPod, error) {
	objs, err := c.podIndexer.ByIndex(podNodeIndex, name)
	if err != nil {
		return nil, err
	}
	var pods []*cachedPod
	for _, obj := range objs {
		if pod := c.asCachedPod(obj); pod != nil && c.isDemand(pod, name) {
			pods = append(pods, pod)
		}
	}
	sort.Slice(pods, func(i, j int) bool {
		a, b := pods[i].CreationTimestamp, pods[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return pods[i].UID < pods[j].UID
	})
	return pods, nil
}

// isDemand reports whether pod needs the dedicated node name.
func (c *Controller) isDemand(pod *cachedPod, name string) bool {
	return pod.live(c.cfg) && c.cfg.NodeName(pod.Namespace, pod.class) == name && pod.pin == name
}
