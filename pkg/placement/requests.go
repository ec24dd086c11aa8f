// Package placement holds the pure parts of placing a gated Pod on a node of its class: what a
// Pod requests, which node has room for it, how many new instances the Pods that fit nowhere
// need, and the one JSON Patch that pins a Pod to its node and lifts its scheduling gate. Nothing
// here calls the API; the controller feeds it from its informers.
package placement

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// PodRequests returns what the Pod requests as the scheduler's NodeResourcesFit counts it with the
// feature gates of Kubernetes 1.37 at their defaults: the larger of the regular containers plus
// restartable init containers (sidecars) and of each init container's peak, pod-level requests
// when set (PodLevelResources), the resources the kubelet reports as allocated for a resized Pod
// (InPlacePodVerticalScaling), and the Pod's overhead. For a gated Pod, which has no container
// statuses, this is the spec's requests.
func PodRequests(pod *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{
		UseStatusResources: true,
		InPlacePodLevelResourcesVerticalScalingEnabled: true,
	})
}

// amount is a quantity in the unit the scheduler compares: millicores for CPU, whole units
// (bytes, devices) for everything else.
func amount(name corev1.ResourceName, q *resource.Quantity) int64 {
	if name == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// Requests is a Pod's requests in the form Index compares: the non-zero amounts, without the pod
// count, which every Pod adds one to.
type Requests []Amount

// Amount is one resource of Requests.
type Amount struct {
	Name  corev1.ResourceName
	Value int64
}

// NewRequests converts a ResourceList, as PodRequests returns it. Zero amounts are left out, and
// so is "pods" (a Pod always counts as one).
func NewRequests(list corev1.ResourceList) Requests {
	r := make(Requests, 0, len(list))
	for name, q := range list {
		if name == corev1.ResourcePods {
			continue
		}
		if v := amount(name, &q); v != 0 {
			r = append(r, Amount{Name: name, Value: v})
		}
	}
	return r
}
