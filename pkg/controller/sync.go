package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// Event reasons. They are constant so that people and tests can select on them.
const (
	// ReasonProvisioning (Pod, Normal): an instance was requested for the Pod's dedicated node.
	ReasonProvisioning = "Provisioning"
	// ReasonWaitingForNode (Pod, Normal): the instance exists; its Node has not registered or
	// been bound yet.
	ReasonWaitingForNode = "WaitingForNode"
	// ReasonProvisioningFailed (Pod, Warning): creating the instance failed; the message names
	// the provider error's kind (Capacity, RateLimited, Quota, ...). It is retried with back-off.
	ReasonProvisioningFailed = "ProvisioningFailed"
	// ReasonRegistrationTimeout (Pod and Node, Warning): the instance's Node did not register
	// within the registration timeout; the instance is deleted and created again.
	ReasonRegistrationTimeout = "RegistrationTimeout"
	// ReasonBound (Node, Normal): the Node's providerID matched the instance created for its
	// dedicated node, and the controller wrote the binding label.
	ReasonBound = "Bound"
	// ReasonUntrustedNode (Node, Warning): the Node claims a dedicated node name (by its name or
	// the binding label) but its providerID matches no instance the controller created for that
	// name. It is never bound, and a binding label on it is removed.
	ReasonUntrustedNode = "UntrustedNode"
	// ReasonReaped (Node, Normal): the Node had no demand for the idle TTL; it was cordoned, and
	// its instance and Node object are deleted.
	ReasonReaped = "Reaped"
	// ReasonCreationRateLimited (Pod, Warning): the Pod's namespace has used up its creation rate
	// limit (--namespace-create-qps, --namespace-create-burst); the message names the namespace,
	// the limit and when the instance may be created. The Pod waits until then.
	ReasonCreationRateLimited = "CreationRateLimited"
)

// creationTimestampSlack covers the whole-second precision of creation timestamps and a little
// clock skew between the API server and the controller, when comparing a Node's creation with
// the start of a List. Join tokens' mint times in the journal are to the second too.
const creationTimestampSlack = 2 * time.Second

// errNotListed is returned while the provider's instances have not been listed yet.
var errNotListed = errors.New("the provider's instances have not been listed yet")

// sync reconciles one dedicated node name. It returns how long until it must look again even
// without events (a timer such as the idle TTL), or an error to retry with back-off.
func (c *Controller) sync(ctx context.Context, name string) (time.Duration, error) {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "node", name)
	ctx = klog.NewContext(ctx, logger)
	if ok, _ := c.instances.hasSynced(); !ok {
		return 0, errNotListed
	}
	demand, err := c.demand(name)
	if err != nil {
		return 0, fmt.Errorf("listing the Pods of node %s: %w", name, err)
	}
	insts := c.instances.get(name)
	st := c.nodeStateOf(name)
	plan := c.planOf(name, st, insts)
	nodes, err := c.nodesFor(name, insts, plan != nil)
	if err != nil {
		return 0, fmt.Errorf("listing the Nodes of node %s: %w", name, err)
	}
	if plan != nil && plan.warm {
		// A warm node claimed by a class: the class labels on its Node, which only the
		// controller writes, are the record of the claim.
		for _, n := range nodes {
			if n.Labels[isolation.BindingLabel] == name && n.Labels[isolation.ClassLabel] != "" {
				plan = &classPlan{key: n.Labels[isolation.ClassLabel], namespace: n.Labels[isolation.NamespaceLabel],
					class: n.Labels[isolation.ClassNameLabel], nodeClass: plan.nodeClass, launched: true}
				c.mu.Lock()
				st.plan = plan
				c.mu.Unlock()
				break
			}
		}
	}
	if plan != nil && !plan.warm {
		c.trackPlan(name, plan, boundTo(nodes, name, plan.key))
		// Pods are placed on the name the Node registered with, which need not be the
		// instance's (EKS names Nodes after their private DNS name).
		for _, n := range nodes {
			if n.Name == name || n.Labels[isolation.BindingLabel] != name {
				continue
			}
			more, err := c.demand(n.Name)
			if err != nil {
				return 0, fmt.Errorf("listing the Pods of node %s: %w", n.Name, err)
			}
			demand = append(demand, more...)
		}
	}
	if plan != nil && !plan.warm && !boundTo(nodes, name, plan.key) {
		// A node of controller placement whose Node is not bound yet is wanted by the Pods of
		// its class and NodeClass that wait for room.
		waiting, err := c.pending(plan.key, plan.nodeClass)
		if err != nil {
			return 0, fmt.Errorf("listing the waiting Pods of node %s: %w", name, err)
		}
		demand = append(demand, waiting...)
	}
	if len(demand) == 0 && len(insts) == 0 && len(nodes) == 0 && (plan == nil || !plan.warm || plan.launched) {
		// (A warm node to create has no demand: its pool wants it.)
		c.forgetState(name, c.clock.Now())
		return 0, nil
	}
	r := &round{c: c, name: name, now: c.clock.Now(), demand: demand, insts: insts, nodes: nodes, st: st,
		idleTTL: c.idleTTL, regTimeout: c.regTimeout, plan: plan}
	r.prune()
	return r.reconcile(ctx)
}

// round is one reconcile of one dedicated node: its three inputs and what it remembers.
type round struct {
	c      *Controller
	name   string
	now    time.Time
	demand []*cachedPod
	insts  []cloudprovider.Instance // live and going, oldest first
	nodes  []*corev1.Node           // every Node that is or claims to be this dedicated node
	st     *nodeState

	// idleTTL and regTimeout are those of the node's NodeClass: its instance's once it has one,
	// else the NodeClass of the waiting Pod that decides the creation; the flags by default.
	idleTTL    time.Duration
	regTimeout time.Duration
	// skip holds the waiting Pods told why they create nothing (a NodeClass that does not
	// exist, does not admit their namespace, or is not the node's); other Events pass them by.
	skip map[types.UID]bool
	// ncName and namespace are the NodeClass and namespace of the creation in progress, for the
	// join token journal.
	ncName, namespace, class string
	// plan is the class of a node placed by the controller (nil for a dedicated node of
	// admission placement): which Pods may wait for it, and which class its Node is bound to.
	plan *classPlan
}

func (r *round) reconcile(ctx context.Context) (time.Duration, error) {
	if len(r.demand) == 0 {
		r.giveBackCharge()
		if r.c.ledger.abandon(r.name, r.now) {
			r.c.wakeWaiting("", true)
		}
	}
	var liveInsts []cloudprovider.Instance
	for _, inst := range r.insts {
		if live(inst) {
			liveInsts = append(liveInsts, inst)
		}
	}
	keep, trusted := r.pick(liveInsts)
	if keep != nil {
		// The creation was made (its reply may have been lost): its charge is spent, and a
		// replacement will be charged anew. Its limit slot is the instance now.
		r.st.charge = nil
		r.c.ledger.created(r.name)
		// The instance's NodeClass decides its timeouts; one deleted since falls back to the
		// flags. Waiting Pods of another NodeClass are told that they do not get it.
		nc, err := r.c.nodeClass(nodeClassOf(*keep))
		if err != nil {
			nc = nil
		}
		r.idleTTL, r.regTimeout = r.c.idleTTLOf(nc), r.c.regTimeoutOf(nc)
		r.screen(nodeClassOf(*keep))
	}
	if len(liveInsts) > 1 {
		if after, err := r.deleteDuplicates(ctx, keep, liveInsts); err != nil || after > 0 {
			return after, err
		}
		r.insts = r.c.instances.get(r.name)
	}
	after, err := r.distrust(ctx, keep, trusted)
	if err != nil {
		return 0, err
	}
	var next time.Duration
	switch {
	case r.plan != nil && r.plan.warm:
		next, err = r.warmRound(ctx, keep, trusted)
	case trusted != nil:
		next, err = r.registered(ctx, trusted, *keep)
	case keep != nil:
		next, err = r.unregistered(ctx, *keep)
	case len(r.demand) > 0 && r.plan != nil && r.plan.launched:
		// Its instance is gone before its Node was bound: the name is not used again, and
		// placement plans another node for the Pods.
		klog.FromContext(ctx).Info("Instance gone before its Node was bound; dropping the node", "waitingPods", len(r.demand))
		r.c.forgetState(r.name, r.now)
		r.c.enqueueClass(r.plan.key)
	case len(r.demand) > 0:
		next, err = r.launch(ctx)
	}
	return earliest(after, next), err
}

// pick chooses the instance that serves the dedicated node: the one whose Node has registered
// (returned as trusted: its providerID is the instance's and its name fits), else the oldest, with
// no trusted Node. Any other live instance is a duplicate.
//
// When two Nodes claim one instance (the same providerID, possible where Node names are not
// pinned), the one bound first keeps the binding: a Node that already carries this node's binding
// label wins, then the one that registered first. Names do not decide, so a second Node cannot
// take the binding by choosing a name that sorts first.
func (r *round) pick(liveInsts []cloudprovider.Instance) (keep *cloudprovider.Instance, trusted *corev1.Node) {
	for _, node := range r.nodes {
		for i := range liveInsts {
			if node.Spec.ProviderID == "" || node.Spec.ProviderID != liveInsts[i].ProviderID || !r.nameFits(node) {
				continue
			}
			if trusted == nil || boundFirst(node, trusted, r.name) {
				keep, trusted = &liveInsts[i], node
			}
		}
	}
	if trusted != nil || len(liveInsts) == 0 {
		return keep, trusted
	}
	return &liveInsts[0], nil
}

// boundFirst reports whether Node a has a better claim than Node b to the dedicated node name: it
// carries the binding label and b does not, or neither or both do and a registered first (by
// creation time, then UID).
func boundFirst(a, b *corev1.Node, name string) bool {
	ab, bb := a.Labels[isolation.BindingLabel] == name, b.Labels[isolation.BindingLabel] == name
	if ab != bb {
		return ab
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.UID < b.UID
}

// nameFits reports whether node's name may serve the dedicated node: with the node-name pin,
// Pods can only run on a Node of exactly that name.
func (r *round) nameFits(node *corev1.Node) bool {
	return node.Name == r.name || !r.c.cfg.PinNodeName || r.plan != nil
}

// boundTo reports whether one of nodes is bound as node name of class key.
func boundTo(nodes []*corev1.Node, name, key string) bool {
	for _, n := range nodes {
		if n.Labels[isolation.BindingLabel] == name && n.Labels[isolation.ClassLabel] == key {
			return true
		}
	}
	return false
}

// deleteDuplicates deletes every live instance but keep. Duplicates should not happen; they can
// when an EC2 creation's reply is lost and its retry uses another idempotency key.
func (r *round) deleteDuplicates(ctx context.Context, keep *cloudprovider.Instance, liveInsts []cloudprovider.Instance) (time.Duration, error) {
	if after, held := r.onHold(); held {
		return after, nil
	}
	logger := klog.FromContext(ctx)
	for _, inst := range liveInsts {
		if inst.ID == keep.ID {
			continue
		}
		logger.Info("Deleting duplicate instance", "instance", inst.ID, "providerID", inst.ProviderID, "kept", keep.ID)
		if err := r.deleteInstance(ctx, inst); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// distrust deals with every Node of this name that is not the trusted one: the Node of an
// instance being deleted is deleted with it; any other is never bound, loses a binding label it
// carries, and gets a Warning Event.
func (r *round) distrust(ctx context.Context, keep *cloudprovider.Instance, trusted *corev1.Node) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	var after time.Duration
	for _, node := range r.nodes {
		if node == trusted {
			continue
		}
		pid := node.Spec.ProviderID
		if r.stale(node) {
			logger.Info("Deleting the Node of a deleted instance", "nodeObject", klog.KObj(node), "providerID", pid)
			if err := r.c.deleteNode(ctx, node); err != nil {
				return 0, err
			}
			continue
		}
		if node.Labels[isolation.BindingLabel] == r.name {
			logger.Info("Removing the binding label from an untrusted Node", "nodeObject", klog.KObj(node), "providerID", pid)
			// With the class labels (controller placement), which bind it to a class.
			unbind := map[string]any{isolation.BindingLabel: nil}
			for _, k := range []string{isolation.ClassLabel, isolation.NamespaceLabel, isolation.ClassNameLabel, isolation.WarmLabel} {
				if _, ok := node.Labels[k]; ok {
					unbind[k] = nil
				}
			}
			if err := r.c.mergePatchNode(ctx, node.Name, labelsPatch(unbind)); err != nil {
				return 0, err
			}
			r.warnUntrusted(node, keep, trusted, true)
			continue
		}
		if pid == "" && keep != nil {
			// Its kubelet (or cloud controller manager) has not set the providerID yet.
			continue
		}
		if _, listedAt := r.c.instances.hasSynced(); !listedAt.After(node.CreationTimestamp.Add(creationTimestampSlack)) {
			// Its instance may be too new for the last List: decide after the next one.
			after = earliest(after, r.c.providerResync)
			continue
		}
		r.warnUntrusted(node, keep, trusted, false)
	}
	return after, nil
}

// stale reports whether node belongs to an instance of ours that is being deleted, or is a Node
// we were reaping whose instance is gone.
func (r *round) stale(node *corev1.Node) bool {
	pid := node.Spec.ProviderID
	matchesLive, matchesGoing := false, false
	for _, inst := range r.insts {
		if pid == "" || inst.ProviderID != pid {
			continue
		}
		switch {
		case live(inst):
			matchesLive = true
		case !r.mayBeRecreated(inst):
			matchesGoing = true
		}
	}
	reaped := r.nameFits(node) && node.Labels[isolation.ReapingLabel] != ""
	return !matchesLive && (matchesGoing || reaped)
}

// mayBeRecreated reports whether inst, which the controller deleted, may exist again: a creation
// for this dedicated node has been tried since (its key is still unconfirmed) and the provider
// names instances after their dedicated node, as GCE does, so a new instance has the deleted one's
// ID and providerID. If the creation's reply was lost, a Node with that providerID may be the new
// instance's, and must not be deleted as the old one's; the creation's retry, with the same
// idempotency key, returns the new instance and settles which it is.
func (r *round) mayBeRecreated(inst cloudprovider.Instance) bool {
	return inst.ID == r.name && r.st.createKey != "" && r.c.instances.deletedByController(inst.ID)
}

func (r *round) warnUntrusted(node *corev1.Node, keep *cloudprovider.Instance, trusted *corev1.Node, removed bool) {
	key := string(node.UID) + "/" + node.Spec.ProviderID
	if r.st.warned[key] && !removed {
		return
	}
	r.st.warned[key] = true
	want := "none"
	if keep != nil {
		want = fmt.Sprintf("%q", keep.ProviderID)
	}
	msg := fmt.Sprintf("Node %s claims dedicated node %s but its providerID %q is not that of the instance IPP created for it (%s); it is not bound", node.Name, r.name, node.Spec.ProviderID, want)
	if keep != nil && node.Spec.ProviderID == keep.ProviderID && trusted != nil {
		msg = fmt.Sprintf("Node %s claims instance %s of dedicated node %s (providerID %q), which Node %s registered for and holds; a second Node of one instance is never bound", node.Name, keep.ID, r.name, keep.ProviderID, trusted.Name)
	}
	if removed {
		msg += "; its binding label was removed"
	}
	r.c.recorder.Event(node, corev1.EventTypeWarning, ReasonUntrustedNode, msg)
}

// onHold reports whether provider calls for this node are held back after an error.
func (r *round) onHold() (time.Duration, bool) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.now.Before(r.st.holdUntil) {
		return r.st.holdUntil.Sub(r.now), true
	}
	return 0, false
}

// deleteInstance deletes inst through the provider; NotFound counts as done.
func (r *round) deleteInstance(ctx context.Context, inst cloudprovider.Instance) error {
	if err := DeleteInstance(ctx, r.c.provider, inst); err != nil {
		return err
	}
	r.c.instances.remove(inst, r.now)
	r.st.createKey = ""
	// Its slot is free: the dedicated nodes its limits keep waiting try again.
	r.c.wakeWaiting(nodeClassOf(inst), false)
	r.c.enqueueStatus(nodeClassOf(inst))
	return r.forgetJoinToken(ctx, inst)
}

// notify emits an Event on each waiting Pod, once per Pod and state. detail distinguishes
// states of one reason, such as the kinds of ProvisioningFailed.
func (r *round) notify(eventType, reason, detail, msg string) {
	tag := reason + "/" + detail
	for _, pod := range r.demand {
		if r.skip[pod.UID] {
			continue
		}
		last := r.st.reasons[pod.UID]
		if last == tag || (reason == ReasonWaitingForNode && last == ReasonProvisioning+"/") {
			continue
		}
		r.st.reasons[pod.UID] = tag
		r.c.recorder.Event(pod.ref(), eventType, reason, msg)
	}
}

// prune forgets Pods that no longer wait.
func (r *round) prune() {
	keep := make(map[types.UID]bool, len(r.demand))
	for _, pod := range r.demand {
		keep[pod.UID] = true
	}
	for uid := range r.st.reasons {
		if !keep[uid] {
			delete(r.st.reasons, uid)
		}
	}
}

// nodesFor returns every Node that is or claims to be the dedicated node name, sorted by name:
// with the node-name pin, the Node of that name; Nodes whose binding label names it; and, without
// the pin or for a node of controller placement (byProviderID), whose Pods are pinned to whatever
// name its Node registered with, Nodes whose providerID is one of its instances'.
func (c *Controller) nodesFor(name string, insts []cloudprovider.Instance, byProviderID bool) ([]*corev1.Node, error) {
	seen := map[string]*corev1.Node{}
	// Without the node-name pin a Node's name claims nothing: Pods are not pinned by it, and a
	// Node registered under any name is found by its binding label or its instance's providerID.
	if c.cfg.PinNodeName {
		node, err := c.nodes.Get(name)
		switch {
		case err == nil:
			seen[node.Name] = node
		case !apierrors.IsNotFound(err):
			return nil, err
		}
	}
	add := func(index, value string) error {
		objs, err := c.nodeIndexer.ByIndex(index, value)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if n, ok := obj.(*corev1.Node); ok {
				seen[n.Name] = n
			}
		}
		return nil
	}
	if err := add(bindingIndex, name); err != nil {
		return nil, err
	}
	if !c.cfg.PinNodeName || byProviderID {
		for _, inst := range insts {
			if inst.ProviderID != "" {
				if err := add(providerIDIndex, inst.ProviderID); err != nil {
					return nil, err
				}
			}
		}
	}
	out := make([]*corev1.Node, 0, len(seen))
	for _, n := range seen {
		out = append(out, n)
	}
	sortNodes(out, name)
	return out, nil
}

// earliest returns the smaller positive duration, or 0 if neither is positive.
func earliest(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	case a < b:
		return a
	}
	return b
}
