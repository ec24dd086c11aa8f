package controller

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// Index names.
const (
	// podNodeIndex indexes IPP Pods by the node they need: with a legacy pin (admission
	// placement), the dedicated node name of their class; else the node the controller placed
	// them on, or that they are bound to.
	podNodeIndex = "ipp.io/dedicated-node"
	// podPlacingIndex indexes the IPP Pods that carry the placement gate by their class key.
	podPlacingIndex = "ipp.io/placing"
	// classIndex indexes Nodes by the value of their class label.
	classIndex = "ipp.io/class"
	// bindingIndex indexes Nodes by the value of their binding label.
	bindingIndex = "ipp.io/binding"
	// providerIDIndex indexes Nodes by spec.providerID.
	providerIDIndex = "ipp.io/provider-id"
)

// podNodeNames is the Pod indexer podNodeIndex.
func (c *Controller) podNodeNames(obj any) ([]string, error) {
	pod := c.asCachedPod(obj)
	if pod == nil || pod.class == "" {
		return nil, nil
	}
	if name := pod.node(c.cfg); name != "" {
		return []string{name}, nil
	}
	return nil, nil
}

// node returns the node the Pod needs: with a legacy pin (the BindingLabel nodeSelector that
// admission placement gives), its class's dedicated node name; else the node it is bound to or
// placed on; "" for a Pod not placed yet.
func (p *cachedPod) node(cfg isolation.Config) string {
	switch {
	case p.pin != "":
		return cfg.NodeName(p.Namespace, p.class)
	case p.nodeName != "":
		return p.nodeName
	}
	return p.placedOn
}

// podPlacingKeys is the Pod indexer podPlacingIndex.
func (c *Controller) podPlacingKeys(obj any) ([]string, error) {
	pod := c.asCachedPod(obj)
	if pod == nil || !pod.placing || pod.key() == "" {
		return nil, nil
	}
	return []string{pod.key()}, nil
}

func nodeClassIndexFunc(obj any) ([]string, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, nil
	}
	if v := node.Labels[isolation.ClassLabel]; v != "" {
		return []string{v}, nil
	}
	return nil, nil
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
	sortOldestFirst(pods)
	return pods, nil
}

// sortOldestFirst orders Pods by creation, then UID.
func sortOldestFirst(pods []*cachedPod) {
	sort.Slice(pods, func(i, j int) bool {
		a, b := pods[i].CreationTimestamp, pods[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return pods[i].UID < pods[j].UID
	})
}

// isDemand reports whether pod needs the node name: pinned to it at admission (a legacy pin),
// or placed on it by the controller, or bound to it.
func (c *Controller) isDemand(pod *cachedPod, name string) bool {
	if !pod.live(c.cfg) {
		return false
	}
	if pod.pin != "" {
		return c.cfg.NodeName(pod.Namespace, pod.class) == name && pod.pin == name
	}
	return pod.node(c.cfg) == name
}
