package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// registered handles a dedicated node whose instance's Node has registered with the instance's
// providerID: bind it, then keep it while there is demand or reap it once idle.
func (r *round) registered(ctx context.Context, node *corev1.Node, inst cloudprovider.Instance) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	if want := r.classLabels(inst); want != nil {
		if got, ok := node.Labels[isolation.ClassLabel]; ok && got != want[isolation.ClassLabel] {
			// Only the controller writes the label, from the instance's tags: a Node bound to
			// another class is never bound again (I6).
			r.warnOnce(ctx, node, fmt.Sprintf("Node %s is bound to class key %s, but its instance %s is of class key %s; not binding it again", node.Name, got, inst.ID, want[isolation.ClassLabel]))
			return 0, nil
		}
	}
	if node.Labels[isolation.BindingLabel] != r.name || (r.plan != nil && !r.classBound(node, inst)) {
		if inst.JoinTokenID != "" && r.c.mintTokens && !r.c.issued(inst.JoinTokenID, node.Name) {
			// The providerID matches, but a providerID can be predicted: bind only a Node whose
			// kubelet holds the certificate issued for this instance's token.
			r.warnOnce(ctx, node, fmt.Sprintf("Node %s has the providerID of instance %s, but no kubelet certificate for %s was issued with that instance's join token %s; not binding it", node.Name, inst.ID, node.Name, inst.JoinTokenID))
			if left := r.untilRegistrationTimeout(inst); left > 0 {
				return min(left, credentialsRecheck), nil
			}
			// The instance's own kubelet never got its Node: replace both.
			return r.unregistered(ctx, inst)
		}
		if err := r.c.bindNode(ctx, node, r.name, r.classLabels(inst)); err != nil {
			return 0, err
		}
		if r.plan != nil && r.plan.warm {
			r.c.enqueueWarm(r.plan.nodeClass)
			r.c.enqueueStatus(r.plan.nodeClass)
		} else if r.plan != nil {
			// Its Pods are placed once the Node informer shows the class label; until then
			// placement still counts the node as coming (trackPlan drops it then), so that
			// a round between the two plans no other node for the same Pods.
			r.c.enqueueClass(r.plan.key)
		}
		// The informer may not have delivered the label yet when the next reconcile runs; the
		// patch is idempotent, but log and tell once.
		if key := string(node.UID) + "/" + node.Spec.ProviderID; r.st.bound != key {
			r.st.bound = key
			logger.Info("Bound node to its class", "nodeObject", klog.KObj(node), "instance", inst.ID, "providerID", inst.ProviderID)
			r.c.recorder.Event(node, corev1.EventTypeNormal, ReasonBound,
				fmt.Sprintf("Node %s has the providerID of instance %s, which IPP created for it; bound with %s=%s", node.Name, inst.ID, isolation.BindingLabel, r.name))
		}
	}
	if r.plan != nil && r.plan.warm {
		return r.warmHold(ctx, node, inst)
	}
	if len(r.demand) == 0 {
		return r.idle(ctx, node, inst)
	}
	// In use: the creation is done, and any idle or reaping marks go.
	r.st.createKey = ""
	r.c.setMintedToken(r.st, nil, time.Time{})
	if ops := activeOps(node); ops != nil {
		logger.Info("Node has demand again; keeping it", "nodeObject", klog.KObj(node), "waitingPods", len(r.demand))
		if _, err := r.c.patchNode(ctx, node, ops...); err != nil {
			if apierrors.IsInvalid(err) {
				// The informer's Node is behind: a mark it shows is gone already (a
				// "remove" of a missing label fails the patch). Look again once it caught up.
				logger.V(2).Info("Node changed since the informer saw it; looking again", "nodeObject", klog.KObj(node), "err", err)
				return staleNodeRetry, nil
			}
			return 0, err
		}
	}
	return 0, nil
}

// staleNodeRetry is how soon a node whose patch met a newer Node than the informer's is looked at
// again; the informer's update event usually comes first.
const staleNodeRetry = time.Second

// classLabels returns the labels that bind a node of controller placement to the class of its
// instance (as the instance's tags record it, not as anything the node says), or nil for a
// dedicated node of admission placement.
func (r *round) classLabels(inst cloudprovider.Instance) map[string]string {
	if r.plan != nil && r.plan.warm {
		return map[string]string{isolation.WarmLabel: isolation.LabelValue, isolation.NodeClassNodeLabel: nodeClassOf(inst)}
	}
	if r.plan == nil || inst.Class == "" {
		return nil
	}
	return map[string]string{
		isolation.ClassLabel:         r.c.cfg.ClassKey(inst.Namespace, inst.Class),
		isolation.NamespaceLabel:     r.c.cfg.ScopedNamespace(inst.Namespace),
		isolation.ClassNameLabel:     inst.Class,
		isolation.NodeClassNodeLabel: nodeClassOf(inst),
	}
}

// classBound reports whether node carries every class label of inst.
func (r *round) classBound(node *corev1.Node, inst cloudprovider.Instance) bool {
	for k, v := range r.classLabels(inst) {
		if got, ok := node.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// credentialsRecheck is how soon a Node whose credentials are not known to be its instance's yet
// is looked at again: the approval may not have reached the CSR informer.
const credentialsRecheck = 2 * time.Second

// warnOnce emits an UntrustedNode Warning on node, once per Node object and providerID.
func (r *round) warnOnce(ctx context.Context, node *corev1.Node, msg string) {
	key := "credentials/" + string(node.UID) + "/" + node.Spec.ProviderID
	if r.st.warned[key] {
		return
	}
	r.st.warned[key] = true
	klog.FromContext(ctx).Info("Not binding Node", "nodeObject", klog.KObj(node), "reason", msg)
	r.c.recorder.Event(node, corev1.EventTypeWarning, ReasonUntrustedNode, msg)
}

// unregistered handles an instance whose Node has not registered (or not with its providerID):
// wait for it up to the registration timeout, then delete the instance. With demand left, the
// next reconcile creates it again.
func (r *round) unregistered(ctx context.Context, inst cloudprovider.Instance) (time.Duration, error) {
	if len(r.demand) == 0 && r.plan != nil && !r.plan.warm {
		// Controller placement: the Pods it was created for went away (or were placed on room
		// that freed up) before it registered. It is kept for the idle TTL, as a Node would be,
		// not for the whole registration timeout.
		if left := inst.CreatedAt.Add(r.idleTTL).Sub(r.now); left > 0 && r.untilRegistrationTimeout(inst) > 0 {
			return left, nil
		}
		klog.FromContext(ctx).Info("Deleting unregistered instance whose Pods went away", "instance", inst.ID, "createdAt", inst.CreatedAt, "idleTTL", r.idleTTL)
		return 0, r.deleteInstance(ctx, inst)
	}
	if left := r.untilRegistrationTimeout(inst); left > 0 {
		if len(r.demand) > 0 {
			r.notify(corev1.EventTypeNormal, ReasonWaitingForNode, "",
				fmt.Sprintf("Waiting for instance %s to register as dedicated node %s", inst.ID, r.name))
		}
		return left, nil
	}
	if after, held := r.onHold(); held {
		return after, nil
	}
	logger := klog.FromContext(ctx)
	if len(r.demand) > 0 {
		logger.Info("Instance did not register in time; replacing it", "instance", inst.ID, "providerID", inst.ProviderID, "createdAt", inst.CreatedAt, "registrationTimeout", r.regTimeout)
		r.notify(corev1.EventTypeWarning, ReasonRegistrationTimeout, inst.ID,
			fmt.Sprintf("Instance %s did not register as dedicated node %s within %v; replacing it", inst.ID, r.name, r.regTimeout))
	} else {
		// Nothing needs it and it has no Node: an orphan, from a crash or a class gone quiet
		// before its node came up. It is given the registration timeout to register (and then
		// the idle TTL as a Node) so that a class that comes back soon finds it.
		logger.Info("Deleting instance without demand or Node", "instance", inst.ID, "providerID", inst.ProviderID, "createdAt", inst.CreatedAt)
	}
	if err := r.deleteInstance(ctx, inst); err != nil {
		return 0, err
	}
	// A Node of this name that is not the instance's would block its replacement's kubelet
	// from registering: the name belongs to IPP, so it goes too.
	for _, node := range r.nodes {
		if node.Name != r.name {
			continue
		}
		r.c.recorder.Event(node, corev1.EventTypeWarning, ReasonRegistrationTimeout,
			fmt.Sprintf("Instance %s did not register as %s within %v; deleting this Node, whose providerID %q is not the instance's", inst.ID, r.name, r.regTimeout, node.Spec.ProviderID))
		if err := r.c.deleteNode(ctx, node); err != nil {
			return 0, err
		}
	}
	if len(r.demand) > 0 {
		r.c.queue.Add(r.name)
	}
	return 0, nil
}
