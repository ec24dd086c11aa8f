package controller

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

// idle handles a bound Node with no demand. The idle clock is kept on the Node, in the label
// isolation.IdleSinceLabel, so that a restart of the controller does not restart the idle TTL;
// once the TTL has passed the Node is reaped.
//
// The clock is a node-restriction.kubernetes.io/ label because NodeRestriction forbids a kubelet
// to add, change or remove those on its own Node: the Node's annotations, its other labels and
// spec.unschedulable are all the kubelet's to write, so none of them decides when it is reaped.
func (r *round) idle(ctx context.Context, node *corev1.Node, inst cloudprovider.Instance) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	since, ok := idleSince(node, r.now)
	if !ok {
		// Absent, unreadable or in the future (another replica's clock ahead of ours): start
		// the clock now, which can only delay the reaping.
		start := ceilUnix(r.now)
		logger.Info("Node is idle", "nodeObject", klog.KObj(node), "idleTTL", r.idleTTL)
		if _, err := r.c.patchNode(ctx, node, addLabelOp(isolation.IdleSinceLabel, strconv.FormatInt(start, 10))); err != nil {
			return 0, err
		}
		return time.Unix(start, 0).Add(r.idleTTL).Sub(r.now), nil
	}
	if left := since.Add(r.idleTTL).Sub(r.now); left > 0 {
		return left, nil
	}
	return r.reap(ctx, node, inst, since)
}

// idleSince reads node's idle clock. It reports false if the clock must be started now: no
// label, a value that is not a positive number of seconds, or a time after now (now is rounded
// up, as the clock is when written).
func idleSince(node *corev1.Node, now time.Time) (time.Time, bool) {
	v, ok := node.Labels[isolation.IdleSinceLabel]
	if !ok {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs <= 0 || secs > ceilUnix(now) {
		return time.Time{}, false
	}
	return time.Unix(secs, 0).UTC(), true
}

// ceilUnix returns t in Unix seconds, rounded up, so that a clock started at t never ends early.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// reap removes an idle dedicated node: cordon it, check with the API server that no Pod of its
// class has just been bound to it, delete its instance, then its Node object.
//
// The instance goes before the Node so that every step is retried from what can be observed: until
// the instance is gone the Node is still there, cordoned and labelled as reaping, and the next
// reconcile carries on. Once the instance is going, its Node is stale and deleted (see stale).
// A Pod that arrives meanwhile stays Pending (the Node is cordoned) and gets a new instance.
func (r *round) reap(ctx context.Context, node *corev1.Node, inst cloudprovider.Instance, since time.Time) (time.Duration, error) {
	if after, held := r.onHold(); held {
		return after, nil
	}
	logger := klog.FromContext(ctx)
	marked := node
	if node.Labels[isolation.ReapingLabel] == "" {
		logger.Info("Reaping idle node", "nodeObject", klog.KObj(node), "idleSince", since, "instance", inst.ID)
		ops := []jsonpatch.Operation{addLabelOp(isolation.ReapingLabel, strconv.FormatInt(ceilUnix(r.now), 10))}
		if !node.Spec.Unschedulable {
			ops = append(ops, addLabelOp(isolation.CordonedLabel, isolation.LabelValue),
				jsonpatch.Add("/spec/unschedulable", true))
		}
		patched, err := r.c.patchNode(ctx, node, ops...)
		if err != nil {
			return 0, err
		}
		if patched != nil {
			marked = patched
		}
		if r.plan != nil {
			// Controller placement: a placement decided before the mark reached the placement
			// workers may still land; look again once it would have.
			return reapGrace, nil
		}
	}
	// The informers may lag: ask the API server whether the scheduler bound a Pod of this class
	// to the Node before the cordon reached it.
	pod, err := r.c.boundPod(ctx, node.Name, r.name)
	if err != nil {
		return 0, err
	}
	if pod == nil && r.plan != nil {
		if pod, err = r.c.placedPod(ctx, node.Name, r.plan); err != nil {
			return 0, err
		}
	}
	if pod != nil {
		logger.Info("Node got a Pod while being reaped; keeping it", "nodeObject", klog.KObj(node), "pod", klog.KObj(pod))
		_, err := r.c.patchNode(ctx, marked, activeOps(marked)...)
		return 0, err
	}
	r.c.recorder.Event(node, corev1.EventTypeNormal, ReasonReaped,
		fmt.Sprintf("No Pod of its class for %v; deleting instance %s and Node %s", r.idleTTL, inst.ID, node.Name))
	if err := r.deleteInstance(ctx, inst); err != nil {
		return 0, err
	}
	if err := r.c.deleteNode(ctx, node); err != nil {
		return 0, err
	}
	logger.Info("Reaped node", "nodeObject", klog.KObj(node), "instance", inst.ID)
	return 0, nil
}

// activeOps undoes the idle and reaping marks on a Node that has demand again, or returns nil if
// there are none. It uncordons the Node only if the controller cordoned it.
func activeOps(node *corev1.Node) []jsonpatch.Operation {
	var ops []jsonpatch.Operation
	for _, k := range []string{isolation.IdleSinceLabel, isolation.ReapingLabel, isolation.CordonedLabel} {
		if _, ok := node.Labels[k]; ok {
			ops = append(ops, jsonpatch.Remove(jsonpatch.LabelPath(k)))
		}
	}
	if node.Labels[isolation.CordonedLabel] == isolation.LabelValue {
		ops = append(ops, jsonpatch.Add("/spec/unschedulable", false))
	}
	return ops
}
