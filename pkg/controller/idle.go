package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// idle handles a bound Node with no demand. The time it went idle is kept on the Node, so that a
// restart of the controller does not restart the idle TTL. Once the TTL has passed the Node is
// reaped.
func (r *round) idle(ctx context.Context, node *corev1.Node, inst cloudprovider.Instance) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	since, err := time.Parse(time.RFC3339, node.Annotations[AnnotationIdleSince])
	if err != nil || since.After(r.now) {
		// Absent, or not a time the controller wrote (a kubelet may edit its Node's
		// annotations): start the TTL now, which can only delay the reaping.
		logger.Info("Node is idle", "nodeObject", klog.KObj(node), "idleTTL", r.c.idleTTL)
		if err := r.c.mergePatchNode(ctx, node.Name, annotationsPatch(map[string]any{AnnotationIdleSince: r.now.UTC().Format(time.RFC3339)})); err != nil {
			return 0, err
		}
		return r.c.idleTTL, nil
	}
	if left := since.Add(r.c.idleTTL).Sub(r.now); left > 0 {
		return left, nil
	}
	return r.reap(ctx, node, inst, since)
}

// reap removes an idle dedicated node: cordon it, check with the API server that no Pod of its
// class has just been bound to it, delete its instance, then its Node object.
//
// The instance goes before the Node so that every step is retried from what can be observed: until
// the instance is gone the Node is still there, cordoned and marked as reaping, and the next
// reconcile carries on. Once the instance is going, its Node is stale and deleted (see stale).
// A Pod that arrives meanwhile stays Pending (the Node is cordoned) and gets a new instance.
func (r *round) reap(ctx context.Context, node *corev1.Node, inst cloudprovider.Instance, since time.Time) (time.Duration, error) {
	if after, held := r.onHold(); held {
		return after, nil
	}
	logger := klog.FromContext(ctx)
	cordoned := node.Annotations[AnnotationCordoned] == "true"
	if node.Annotations[AnnotationReaping] == "" {
		logger.Info("Reaping idle node", "nodeObject", klog.KObj(node), "idleSince", since, "instance", inst.ID)
		annotations := map[string]any{AnnotationReaping: r.now.UTC().Format(time.RFC3339)}
		patch := map[string]any{}
		if !node.Spec.Unschedulable {
			cordoned = true
			annotations[AnnotationCordoned] = "true"
			patch["spec"] = map[string]any{"unschedulable": true}
		}
		patch["metadata"] = map[string]any{"annotations": annotations}
		if err := r.c.mergePatchNode(ctx, node.Name, patch); err != nil {
			return 0, err
		}
	}
	// The informers may lag: ask the API server whether the scheduler bound a Pod of this class
	// to the Node before the cordon reached it.
	pod, err := r.c.boundPod(ctx, node.Name, r.name)
	if err != nil {
		return 0, err
	}
	if pod != nil {
		logger.Info("Node got a Pod while being reaped; keeping it", "nodeObject", klog.KObj(node), "pod", klog.KObj(pod))
		return 0, r.c.mergePatchNode(ctx, node.Name, cancelReapPatch(cordoned))
	}
	r.c.recorder.Event(node, corev1.EventTypeNormal, ReasonReaped,
		fmt.Sprintf("No Pod of its class for %v; deleting instance %s and Node %s", r.c.idleTTL, inst.ID, node.Name))
	if err := r.deleteInstance(ctx, inst); err != nil {
		return 0, err
	}
	if err := r.c.deleteNode(ctx, node); err != nil {
		return 0, err
	}
	logger.Info("Reaped node", "nodeObject", klog.KObj(node), "instance", inst.ID)
	return 0, nil
}

// cancelReapPatch removes the idle and reaping marks, and uncordons the Node if the controller
// cordoned it.
func cancelReapPatch(cordoned bool) map[string]any {
	patch := annotationsPatch(map[string]any{AnnotationIdleSince: nil, AnnotationReaping: nil, AnnotationCordoned: nil})
	if cordoned {
		patch["spec"] = map[string]any{"unschedulable": false}
	}
	return patch
}

// activePatch undoes idle and reaping marks on a Node that has demand again, or returns nil if
// there are none. It uncordons the Node only if the controller cordoned it.
func activePatch(node *corev1.Node) map[string]any {
	annotations := map[string]any{}
	for _, k := range []string{AnnotationIdleSince, AnnotationReaping, AnnotationCordoned} {
		if _, ok := node.Annotations[k]; ok {
			annotations[k] = nil
		}
	}
	if len(annotations) == 0 {
		return nil
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": annotations}}
	if node.Annotations[AnnotationCordoned] == "true" {
		patch["spec"] = map[string]any{"unschedulable": false}
	}
	return patch
}
