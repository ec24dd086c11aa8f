package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
	"github.com/ipp-project/ipp/pkg/metrics"
)

// Event reasons of the warm pool.
const (
	// ReasonClaimed (Node, Normal): a warm node was bound to a class whose Pods needed a node.
	ReasonClaimed = "Claimed"
	// ReasonWarmReplaced (Node, Normal): a warm node older than its NodeClass's warm.maxAge, or
	// beyond warm.size, was deleted unclaimed.
	ReasonWarmReplaced = "WarmReplaced"
)

// warmIndex indexes the Nodes labelled isolation.WarmLabel by their NodeClass.
const warmIndex = "ipp.io/warm"

func nodeWarmIndexFunc(obj any) ([]string, error) {
	node, ok := obj.(*corev1.Node)
	if !ok || node.Labels[isolation.WarmLabel] != isolation.LabelValue {
		return nil, nil
	}
	nc := node.Labels[isolation.NodeClassNodeLabel]
	if nc == "" {
		nc = isolation.DefaultNodeClass
	}
	return []string{nc}, nil
}

// isWarmInstance reports whether the controller created inst for a warm pool: it has a NodeClass
// and no class.
func isWarmInstance(inst cloudprovider.Instance) bool {
	return inst.Class == "" && inst.NodeClass != ""
}

// warmSize returns the warm pool size that NodeClass name asks for, 0 when it does not exist.
func (c *Controller) warmSize(name string) (int, *ippv1alpha1.NodeClass) {
	nc, err := c.nodeClass(name)
	if err != nil || nc.Spec.Warm == nil {
		return 0, nc
	}
	return int(nc.Spec.Warm.Size), nc
}

// enqueueWarm asks for the warm pool of NodeClass name to be brought to its size.
func (c *Controller) enqueueWarm(name string) {
	if name != "" {
		c.warmQueue.Add(name)
	}
}

// enqueueAllWarm enqueues the pool of every NodeClass that has one or has warm instances.
func (c *Controller) enqueueAllWarm() {
	seen := map[string]bool{}
	for _, inst := range c.instances.liveInstances() {
		if isWarmInstance(inst) && !seen[inst.NodeClass] {
			seen[inst.NodeClass] = true
			c.enqueueWarm(inst.NodeClass)
		}
	}
	if c.nodeClasses == nil {
		return
	}
	ncs, err := c.nodeClasses.List(everything)
	if err != nil {
		return
	}
	for _, nc := range ncs {
		if nc.Spec.Warm != nil && nc.Spec.Warm.Size > 0 && !seen[nc.Name] {
			c.enqueueWarm(nc.Name)
		}
	}
}

func (c *Controller) runWarmWorker(ctx context.Context) {
	for {
		name, shutdown := c.warmQueue.Get()
		if shutdown {
			return
		}
		if err := c.syncWarm(ctx, name); err != nil {
			c.warmQueue.AddRateLimited(name)
			utilruntime.HandleErrorWithContext(ctx, err, "Keeping the warm pool failed", "nodeClass", name)
		} else {
			c.warmQueue.Forget(name)
		}
		c.warmQueue.Done(name)
	}
}

// warmMember is one node of a warm pool: planned, booting or ready, not claimed.
type warmMember struct {
	name    string
	created time.Time
}

// syncWarm brings the warm pool of NodeClass name to its size: it plans new warm nodes for the
// missing ones, and marks the newest beyond the size for deletion. The members are the live warm
// instances whose Node is not claimed, read back from the cloud after a restart, and the warm
// nodes planned and not created yet.
func (c *Controller) syncWarm(ctx context.Context, name string) error {
	if ok, _ := c.instances.hasSynced(); !ok {
		return errNotListed
	}
	size, _ := c.warmSize(name)
	var members []warmMember
	seen := map[string]bool{}
	for _, inst := range c.instances.liveInstances() {
		if !isWarmInstance(inst) || inst.NodeClass != name || seen[inst.NodeName] || c.claimed(inst.NodeName) {
			continue
		}
		seen[inst.NodeName] = true
		members = append(members, warmMember{name: inst.NodeName, created: inst.CreatedAt})
	}
	c.mu.Lock()
	for n, st := range c.state {
		if st.plan != nil && st.plan.warm && st.plan.nodeClass == name && !seen[n] && !st.plan.launched {
			seen[n] = true
			members = append(members, warmMember{name: n, created: c.clock.Now()})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(members, func(a, b warmMember) int {
		if d := a.created.Compare(b.created); d != 0 {
			return d
		}
		return strings.Compare(a.name, b.name)
	})
	c.mu.Lock()
	for i, m := range members {
		c.warmKeep[m.name] = i < size
	}
	c.mu.Unlock()
	for _, m := range members[min(size, len(members)):] {
		c.queue.Add(m.name) // surplus: deleted by its own reconcile
	}
	logger := klog.FromContext(ctx)
	for i := len(members); i < size; i++ {
		n, err := c.newNodeName("warm")
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.warmKeep[n] = true
		c.mu.Unlock()
		st := c.nodeStateOf(n)
		c.mu.Lock()
		st.plan = &classPlan{nodeClass: name, warm: true}
		c.mu.Unlock()
		logger.Info("Planned a warm node", "node", n, "nodeClass", name, "size", size)
		c.queue.Add(n)
	}
	setWarmGauges(c, name, members)
	c.enqueueStatus(name)
	return nil
}

// claimed reports whether the Node of the name is bound to a class.
func (c *Controller) claimed(name string) bool {
	n, err := c.nodes.Get(name)
	return err == nil && n.Labels[isolation.ClassLabel] != ""
}

// keepWarm reports whether the warm node name is still wanted by its pool.
func (c *Controller) keepWarm(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep, ok := c.warmKeep[name]
	return !ok || keep // not decided yet (a restart): keep until the pool's sync says
}

// warmRound reconciles a warm node: create it while its pool wants it, bind its Node as warm
// (no class), keep it until it is claimed, and delete it when the pool no longer wants it or it
// is older than the NodeClass's warm.maxAge.
func (r *round) warmRound(ctx context.Context, keep *cloudprovider.Instance, trusted *corev1.Node) (time.Duration, error) {
	wanted := r.c.keepWarm(r.name)
	_, nc := r.c.warmSize(r.plan.nodeClass)
	r.idleTTL, r.regTimeout = r.c.idleTTLOf(nc), r.c.regTimeoutOf(nc)
	switch {
	case trusted != nil:
		return r.registered(ctx, trusted, *keep)
	case keep != nil:
		if !wanted {
			klog.FromContext(ctx).Info("Deleting a warm instance its pool no longer wants", "instance", keep.ID, "nodeClass", r.plan.nodeClass)
			return 0, r.deleteInstance(ctx, *keep)
		}
		return r.unregistered(ctx, *keep)
	case wanted && !r.plan.launched && nc != nil:
		if after, held := r.onHold(); held {
			return after, nil
		}
		after, err := r.create(ctx, nc, "", "", "")
		r.c.enqueueWarm(r.plan.nodeClass)
		return after, err
	}
	r.c.forgetState(r.name, r.now)
	r.c.enqueueWarm(r.plan.nodeClass)
	return 0, nil
}

// warmHold handles a bound warm Node: keep it while its pool wants it and it is younger than
// warm.maxAge, else delete it; once marked for deletion, it goes whatever the pool wants since. The reaping mark is written with a test that the Node has no class
// label, and a claim tests that it has no reaping mark, so of a claim and a replacement racing,
// exactly one wins.
func (r *round) warmHold(ctx context.Context, node *corev1.Node, inst cloudprovider.Instance) (time.Duration, error) {
	_, nc := r.c.warmSize(r.plan.nodeClass)
	age := r.now.Sub(inst.CreatedAt)
	var maxAge time.Duration
	if nc != nil && nc.Spec.Warm != nil && nc.Spec.Warm.MaxAge != nil {
		maxAge = nc.Spec.Warm.MaxAge.Duration
	}
	why := ""
	switch {
	case node.Labels[isolation.ReapingLabel] != "":
		// Marked earlier (its deletion failed, or the controller stopped before it), perhaps for
		// a reason that no longer holds, such as a surplus the pool has since grown back into.
		// A claim tests that the mark is absent, so the node can never serve a class: keeping
		// it would leave the pool a node short for good.
		why = "it was marked for replacement"
	case !r.c.keepWarm(r.name):
		why = "its NodeClass's warm pool no longer wants it"
	case maxAge > 0 && age >= maxAge:
		why = fmt.Sprintf("it is %v old, warm.maxAge is %v", age.Round(time.Second), maxAge)
	case !nodeReady(node) && age >= r.regTimeout:
		// A warm node that never became Ready cannot be claimed; the pool would stay short.
		why = fmt.Sprintf("it is not Ready %v after its instance was created (the registration timeout)", age.Round(time.Second))
	default:
		next := time.Duration(0)
		if maxAge > 0 {
			next = maxAge - age
		}
		if !nodeReady(node) {
			next = earliest(next, r.regTimeout-age)
		}
		return next, nil
	}
	if after, held := r.onHold(); held {
		return after, nil
	}
	if node.Labels[isolation.ReapingLabel] == "" {
		_, err := r.c.patchNode(ctx, node,
			jsonpatch.TestAbsent(jsonpatch.LabelPath(isolation.ClassLabel)),
			addLabelOp(isolation.ReapingLabel, strconv.FormatInt(ceilUnix(r.now), 10)),
			jsonpatch.Add("/spec/unschedulable", true))
		if err != nil {
			// Claimed meanwhile (the test failed): the next reconcile sees the class.
			return 0, err
		}
	}
	klog.FromContext(ctx).Info("Replacing warm node", "nodeObject", klog.KObj(node), "instance", inst.ID, "reason", why)
	r.c.recorder.Event(node, corev1.EventTypeNormal, ReasonWarmReplaced, fmt.Sprintf("Deleting warm node %s unclaimed: %s", node.Name, why))
	if err := r.deleteInstance(ctx, inst); err != nil {
		return 0, err
	}
	if err := r.c.deleteNode(ctx, node); err != nil {
		return 0, err
	}
	r.c.enqueueWarm(r.plan.nodeClass)
	return 0, nil
}

// claimWarm binds up to n Ready warm nodes of NodeClass nodeClass to the class key, oldest
// first, and returns how many it bound. Each claim is one JSON patch that tests that the Node is
// still warm, unclaimed and not being replaced, so two claims (or a claim and a replacement) can
// never both succeed.
func (c *Controller) claimWarm(ctx context.Context, key, namespace, class string, nc *ippv1alpha1.NodeClass, n int) int {
	nodeClass := nc.Name
	objs, err := c.nodeIndexer.ByIndex(warmIndex, nodeClass)
	if err != nil || len(objs) == 0 {
		return 0
	}
	var ready []*corev1.Node
	for _, o := range objs {
		node, ok := o.(*corev1.Node)
		if !ok || node.Labels[isolation.ClassLabel] != "" || node.Labels[isolation.ReapingLabel] != "" ||
			node.Labels[isolation.BindingLabel] == "" || node.Spec.Unschedulable || node.DeletionTimestamp != nil || !nodeReady(node) {
			// (A Ready node still tainted node.kubernetes.io/not-ready is claimed: the taint
			// goes in a moment, long before a cold boot.)
			continue
		}
		ready = append(ready, node)
	}
	slices.SortFunc(ready, func(a, b *corev1.Node) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	logger := klog.FromContext(ctx)
	got := 0
	for _, node := range ready {
		if got == n {
			break
		}
		name := node.Labels[isolation.BindingLabel]
		// The claimed node counts against the class's namespace and class from now on: a
		// claim may not take either past its limit.
		if hit := c.ledger.claim(c.instances, name, nc, namespace, class); hit != nil {
			logger.Info("Limit reached; not claiming a warm node", "limit", hit.Limit, "value", hit.Value, "count", hit.Count, "nodeClass", nodeClass, "class", class, "namespace", namespace)
			break
		}
		_, err := c.patchNode(ctx, node,
			jsonpatch.Test(jsonpatch.LabelPath(isolation.WarmLabel), isolation.LabelValue),
			jsonpatch.TestAbsent(jsonpatch.LabelPath(isolation.ClassLabel)),
			jsonpatch.TestAbsent(jsonpatch.LabelPath(isolation.ReapingLabel)),
			jsonpatch.Remove(jsonpatch.LabelPath(isolation.WarmLabel)),
			addLabelOp(isolation.ClassLabel, key),
			addLabelOp(isolation.NamespaceLabel, namespace),
			addLabelOp(isolation.ClassNameLabel, class))
		if err != nil {
			c.ledger.unclaim(name)
			logger.V(2).Info("Warm node not claimed", "nodeObject", klog.KObj(node), "err", err)
			continue
		}
		got++
		metrics.IncWarmClaims()
		c.addPlan(name, &classPlan{key: key, namespace: namespace, class: class, nodeClass: nodeClass, launched: true})
		logger.Info("Claimed warm node", "nodeObject", klog.KObj(node), "class", class, "namespace", namespace, "nodeClass", nodeClass)
		c.recorder.Event(node, corev1.EventTypeNormal, ReasonClaimed,
			fmt.Sprintf("Warm node %s of NodeClass %s bound to class %q of namespace %q; a replacement is started", node.Name, nodeClass, class, namespace))
		c.queue.Add(name)
	}
	if got > 0 {
		c.enqueueWarm(nodeClass)
	}
	return got
}

// warmStatus counts the Ready, unclaimed warm nodes of NodeClass name.
func (c *Controller) warmReady(name string) int {
	objs, _ := c.nodeIndexer.ByIndex(warmIndex, name)
	n := 0
	for _, o := range objs {
		if node, ok := o.(*corev1.Node); ok && node.Labels[isolation.ClassLabel] == "" && node.Labels[isolation.ReapingLabel] == "" && nodeReady(node) {
			n++
		}
	}
	return n
}

// setWarmGauges records the warm nodes of NodeClass name by state, and the age of the oldest.
func setWarmGauges(c *Controller, name string, members []warmMember) {
	oldest := time.Duration(0)
	for _, m := range members {
		oldest = max(oldest, c.clock.Since(m.created))
	}
	metrics.SetWarmOldestAge(name, oldest)
	ready := c.warmReady(name)
	total := 0
	for _, inst := range c.instances.liveInstances() {
		if isWarmInstance(inst) && inst.NodeClass == name && !c.claimed(inst.NodeName) {
			total++
		}
	}
	metrics.SetWarmNodes(name, ready, max(total-ready, 0))
}

// claimOf returns the namespace and class that the Node of a warm instance was claimed for,
// from its class labels, which only the controller writes.
func (c *Controller) claimOf(name string) (namespace, class string, ok bool) {
	n, err := c.nodes.Get(name)
	if err != nil || n.Labels[isolation.ClassLabel] == "" {
		return "", "", false
	}
	return n.Labels[isolation.NamespaceLabel], n.Labels[isolation.ClassNameLabel], true
}

// everything selects every object of a lister.
var everything = labels.Everything()
