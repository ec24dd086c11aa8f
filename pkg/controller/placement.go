package controller

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/placement"
)

// Event reasons of placement.
const (
	// ReasonWaitingForRoom (Pod, Normal): no node of the Pod's class and NodeClass has room for
	// it; the message says how many new instances are being created for the class.
	ReasonWaitingForRoom = "WaitingForRoom"
	// ReasonTooLarge (Pod, Warning): the Pod requests more than one node of its NodeClass
	// offers; it waits, gated, and creates nothing.
	ReasonTooLarge = "TooLarge"
	// ReasonUnsatisfiable (Pod, Warning): the Pod's own node selector or required node affinity
	// asks for a node label that no node of its class and NodeClass has or will have; it waits,
	// gated, and creates no instance.
	ReasonUnsatisfiable = "Unsatisfiable"
	// ReasonNodeGone (Pod, Warning): the controller placed the Pod on a node that is gone; a
	// placed Pod's node affinity cannot change, so it must be deleted (its controller makes a
	// new one, which is placed anew).
	ReasonNodeGone = "NodeGone"
)

// DefaultPlacementWorkers is how many classes are placed at once.
const DefaultPlacementWorkers = 4

// pinParallelism is how many placement PATCHes one class's round sends at once.
const pinParallelism = 16

// classPlan is the class of a node that the controller places Pods on: which gated Pods may wait
// for it (those of the class key and NodeClass), and what its Node is bound to.
type classPlan struct {
	key, namespace, class, nodeClass string
	// warm is set for a node of NodeClass nodeClass's warm pool, which no class has claimed:
	// key, namespace and class are empty.
	warm bool
	// launched is set once the node's instance has been created: a node whose instance is
	// deleted before its Node is bound is not created again under the same name; placement
	// plans a new one.
	launched bool
}

// planOfInstance returns the plan of an instance that the controller created for controller
// placement, or nil for a dedicated node of admission placement (named after its class) or an
// instance without a class.
func (c *Controller) planOfInstance(inst cloudprovider.Instance) *classPlan {
	if isWarmInstance(inst) {
		return &classPlan{nodeClass: inst.NodeClass, warm: true, launched: true}
	}
	if inst.Class == "" || inst.NodeName == c.cfg.NodeName(inst.Namespace, inst.Class) {
		return nil
	}
	return &classPlan{
		key:       c.cfg.ClassKey(inst.Namespace, inst.Class),
		namespace: c.cfg.ScopedNamespace(inst.Namespace),
		class:     inst.Class,
		nodeClass: nodeClassOf(inst),
		launched:  true,
	}
}

// planOf returns the plan of the node name: remembered from placement, or read back from its
// instances after a restart (and remembered from then on); nil for a dedicated node of admission
// placement.
func (c *Controller) planOf(name string, st *nodeState, insts []cloudprovider.Instance) *classPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, inst := range insts {
		if p := c.planOfInstance(inst); p != nil {
			if st.plan == nil || !st.plan.launched {
				st.plan = p
			}
			break
		}
	}
	return st.plan
}

// addPlan records a new node name planned for a class; inflight counts it until its Node is
// bound or the plan is dropped.
func (c *Controller) addPlan(name string, p *classPlan) {
	st := c.nodeStateOf(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	st.plan = p
	c.addPlanLocked(name, p)
}

func (c *Controller) addPlanLocked(name string, p *classPlan) {
	if c.plans[p.key] == nil {
		c.plans[p.key] = map[string]string{}
	}
	c.plans[p.key][name] = p.nodeClass
}

// trackPlan counts node name as coming for its class until its Node is bound: after a restart,
// the instances read back are counted again.
func (c *Controller) trackPlan(name string, p *classPlan, bound bool) {
	if bound {
		c.mu.Lock()
		_, coming := c.plans[p.key][name]
		c.mu.Unlock()
		if coming {
			c.dropPlan(name, p.key)
			c.enqueueClass(p.key)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addPlanLocked(name, p)
}

// dropPlan stops counting name as a node coming for its class.
func (c *Controller) dropPlan(name, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.plans[key]; m != nil {
		delete(m, name)
		if len(m) == 0 {
			delete(c.plans, key)
		}
	}
}

// inflight returns how many nodes of NodeClass nodeClass are coming for the class key: planned or
// created, with no bound Node yet, leaving out those that are among the class's nodes already
// (bound, their plan not dropped yet).
func (c *Controller) inflight(key, nodeClass string, bound map[string]*corev1.Node) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for name, nc := range c.plans[key] {
		if _, ok := bound[name]; nc == nodeClass && !ok {
			n++
		}
	}
	return n
}

// newNodeName returns a fresh instance and node name for class: random, so never reused.
func (c *Controller) newNodeName(class string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("choosing a node name: %w", err)
	}
	return isolation.InstanceName(class, b[:]), nil
}

// setShape remembers the allocatable of a node of NodeClass nodeClass, the size of the next one.
func (c *Controller) setShape(nodeClass string, alloc corev1.ResourceList) {
	if len(alloc) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shapes[nodeClass] = alloc
}

func (c *Controller) shapeOf(nodeClass string) corev1.ResourceList {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shapes[nodeClass]
}

// pending returns the live Pods of class key that wait for placement, oldest first, and of them
// those of NodeClass nodeClass when it is not "".
func (c *Controller) pending(key, nodeClass string) ([]*cachedPod, error) {
	objs, err := c.podIndexer.ByIndex(podPlacingIndex, key)
	if err != nil {
		return nil, err
	}
	var out []*cachedPod
	for _, obj := range objs {
		pod := c.asCachedPod(obj)
		if pod == nil || !pod.placing || pod.nodeName != "" || pod.pin != "" || !pod.live(c.cfg) {
			continue
		}
		if _, ok := c.assumedOf(pod.UID); ok {
			continue // placed; the informer has not shown it yet
		}
		if nodeClass != "" && pod.nodeClass != nodeClass {
			continue
		}
		out = append(out, pod)
	}
	sortOldestFirst(out)
	return out, nil
}

// runPlacementWorker places the Pods of one class key at a time.
func (c *Controller) runPlacementWorker(ctx context.Context) {
	for {
		key, shutdown := c.placeQueue.Get()
		if shutdown {
			return
		}
		start := c.clock.Now()
		err := c.place(ctx, key)
		if errors.Is(err, errStale) {
			c.placeQueue.AddAfter(key, staleRetry)
			err = nil
		}
		metrics.ObserveReconcile(reconcileResult(0, err), c.clock.Now().Sub(start))
		if err != nil {
			c.placeQueue.AddRateLimited(key)
			utilruntime.HandleErrorWithContext(ctx, err, "Placing the Pods of a class failed", "classKey", key, "retries", c.placeQueue.NumRequeues(key))
		} else {
			c.placeQueue.Forget(key)
		}
		c.placeQueue.Done(key)
	}
}

// placed is one placement decision: the Pod and its node.
type placed struct {
	pod  *cachedPod
	node string
}

// place places the gated Pods of class key on the class's bound, Ready, schedulable nodes with
// room (placement.Index.Choose, most allocated first), one PATCH per Pod (placement.PinPatch),
// and plans new nodes for those that fit on none (placement.NodesNeeded), counting the nodes
// already coming. The per-node reconcile creates each planned node's instance under the limits.
func (c *Controller) place(ctx context.Context, key string) error {
	if ok, _ := c.instances.hasSynced(); !ok {
		return errNotListed
	}
	pending, err := c.pending(key, "")
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		c.enqueueUnwantedPlans(key, nil)
		return nil
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "classKey", key)
	ctx = klog.NewContext(ctx, logger)
	namespace, class := c.cfg.ScopedNamespace(pending[0].Namespace), pending[0].class

	objs, err := c.nodeIndexer.ByIndex(classIndex, key)
	if err != nil {
		return err
	}
	var nodes []placement.Node
	byName := map[string]*corev1.Node{}
	// booting counts, by NodeClass, the class's bound nodes that take no Pod yet but will: not
	// Ready, or still tainted node.kubernetes.io/not-ready. They are nodes coming, as planned ones.
	booting := map[string]int{}
	for _, obj := range objs {
		node, ok := obj.(*corev1.Node)
		if !ok {
			continue
		}
		// The key decides nothing alone: a node serves only the namespace and class it was
		// bound to.
		if node.Labels[isolation.NamespaceLabel] != namespace || node.Labels[isolation.ClassNameLabel] != class {
			logger.Info("Node has the class key but another class; not placing Pods on it", "nodeObject", klog.KObj(node),
				"namespace", node.Labels[isolation.NamespaceLabel], "class", node.Labels[isolation.ClassNameLabel])
			continue
		}
		nc := node.Labels[isolation.NodeClassNodeLabel]
		if nc == "" {
			nc = isolation.DefaultNodeClass
		}
		c.setShape(nc, node.Status.Allocatable)
		byName[node.Name] = node
		if going := node.Spec.Unschedulable || node.Labels[isolation.ReapingLabel] != "" || node.DeletionTimestamp != nil; !going && (!nodeReady(node) || c.foreignTaint(node)) {
			booting[nc]++
		}
		nodes = append(nodes, placement.Node{
			Name:        node.Name,
			NodeClass:   nc,
			Allocatable: node.Status.Allocatable,
			Ready:       nodeReady(node),
			Schedulable: !node.Spec.Unschedulable && node.Labels[isolation.ReapingLabel] == "" && node.DeletionTimestamp == nil && !c.foreignTaint(node),
		})
	}
	index, err := placement.NewIndex(nodes)
	if err != nil {
		return err
	}
	occupied := map[string]bool{}
	for _, n := range nodes {
		objs, err := c.podIndexer.ByIndex(podNodeIndex, n.Name)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if pod := c.asCachedPod(obj); pod != nil && pod.pin == "" && pod.live(c.cfg) {
				index.Place(n.Name, pod.requests)
				occupied[n.Name] = true
			}
		}
	}
	// Pods this controller placed that the informer still shows gated: their room is taken.
	for node, reqs := range c.assumedOn(key) {
		for _, r := range reqs {
			if index.Place(node, r) {
				occupied[node] = true
			}
		}
	}
	ncs := map[string]*ippv1alpha1.NodeClass{}
	for _, n := range nodes {
		if occupied[n.Name] && c.isolationOf(ncs, n.NodeClass) == ippv1alpha1.IsolationPod {
			index.Close(n.Name)
		}
	}

	var decisions []placed
	waiting := map[string][]*cachedPod{}
	for _, pod := range pending {
		if pod.gate != "" {
			c.tellPod(pod, corev1.EventTypeNormal, ReasonSchedulingGated, pod.gate,
				fmt.Sprintf("The Pod is held by scheduling gate %s as well; it is placed, and creates an instance, once that gate is removed", pod.gate))
			continue
		}
		nc, err := c.nodeClass(pod.nodeClass)
		if err != nil {
			c.tellPod(pod, corev1.EventTypeWarning, ReasonNodeClassNotFound, pod.nodeClass,
				fmt.Sprintf("NodeClass %s does not exist (%v); the Pod is not placed until it does", pod.nodeClass, err))
			continue
		}
		ncs[nc.Name] = nc
		if ok, why := c.admits(nc, pod.Namespace); !ok {
			c.tellPod(pod, corev1.EventTypeWarning, ReasonNodeClassNotAdmitted, nc.Name, why+"; the Pod is not placed")
			continue
		}
		node, outcome := index.ChooseWhere(nc.Name, pod.requests, func(name string) bool {
			return pod.affinity == nil || matches(pod.affinity.match, byName[name])
		})
		if outcome != placement.Placed {
			if pod.affinity != nil && !matches(pod.affinity.template, c.templateNode(namespace, class, key, nc.Name)) {
				c.tellPod(pod, corev1.EventTypeWarning, ReasonUnsatisfiable, nc.Name,
					fmt.Sprintf("The Pod's node selector or required node affinity asks for a node label that no node of its class with NodeClass %s has (IPP nodes carry %s, the class labels, and the zone, machine type and hostname they boot with); it is not placed and creates no instance", nc.Name, c.cfg.NodeLabel+"="+isolation.LabelValue))
				continue
			}
			if other, o := index.Choose(nc.Name, pod.requests); pod.affinity != nil && o == placement.Placed {
				// A node of its class and NodeClass has room, but the Pod's own constraints
				// (a zone, say) refuse it: a new node of the same NodeClass would most
				// likely be refused too, so none is created for it.
				c.tellPod(pod, corev1.EventTypeWarning, ReasonUnsatisfiable, nc.Name+"/"+other,
					fmt.Sprintf("Node %s of the Pod's class has room for it, but the Pod's node selector or required node affinity does not match the node's labels; new nodes of NodeClass %s come up the same way (zone, machine type), so it is not placed and creates no instance. Put the zone or machine type in the NodeClass instead", other, nc.Name))
				continue
			}
			waiting[nc.Name] = append(waiting[nc.Name], pod)
			continue
		}
		index.Place(node, pod.requests)
		if nc.Spec.Isolation == ippv1alpha1.IsolationPod {
			index.Close(node)
		}
		decisions = append(decisions, placed{pod: pod, node: node})
	}
	err = c.pinAll(ctx, decisions)
	for ncName, pods := range waiting {
		if perr := c.planNodes(ctx, key, namespace, class, ncs[ncName], pods, byName, booting[ncName]); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	c.enqueueUnwantedPlans(key, waiting)
	return err
}

// foreignTaint reports whether the Node has a NoSchedule or NoExecute taint other than IPP's,
// which IPP Pods do not tolerate: node.kubernetes.io/not-ready, which the node lifecycle
// controller removes a moment after the Node turns Ready, or one an admin set. A Pod placed there
// would wait out the scheduler's back-off; the Node's update event places it once the taint goes.
func (c *Controller) foreignTaint(node *corev1.Node) bool {
	notReady := isolation.NotReadyToleration()
	for _, t := range node.Spec.Taints {
		if notReady.ToleratesTaint(klog.Background(), &t, false) {
			continue // IPP Pods tolerate it: the node is Ready, the taint about to go
		}
		if t.Key != c.cfg.NodeTaint && (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) {
			return true
		}
	}
	return false
}

// matches reports whether the node's labels and name meet the requirement; a nil node never does.
func matches(req nodeaffinity.RequiredNodeAffinity, node *corev1.Node) bool {
	if node == nil {
		return false
	}
	ok, err := req.Match(node)
	return err == nil && ok
}

// templateNode is what every new node of the class and NodeClass will carry before it boots:
// the IPP node label, the class labels and the OS.
func (c *Controller) templateNode(namespace, class, key, nodeClass string) *corev1.Node {
	l := c.cfg.NodeLabels()
	l[isolation.ClassLabel] = key
	l[isolation.NamespaceLabel] = namespace
	l[isolation.ClassNameLabel] = class
	l[isolation.NodeClassNodeLabel] = nodeClass
	l[corev1.LabelOSStable] = "linux"
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: l}}
}

// enqueueUnwantedPlans enqueues the nodes planned for class key, whose Nodes are not bound yet,
// of the NodeClasses for which no Pod of the class waits for room any more (its Pods were placed
// on a node with room, or went). Nothing else enqueues such a node when its waiting Pods change:
// they are not placed on it. Its reconcile finds no demand and drops the plan, and with it the
// limit it waits for (a plan that a limit keeps from being created would otherwise keep the
// NodeClass's LimitReached condition, and ipp_limit_waiting, until an instance went).
func (c *Controller) enqueueUnwantedPlans(key string, waiting map[string][]*cachedPod) {
	c.mu.Lock()
	var names []string
	for name, nc := range c.plans[key] {
		if len(waiting[nc]) == 0 {
			names = append(names, name)
		}
	}
	c.mu.Unlock()
	for _, name := range names {
		c.queue.Add(name)
	}
}

// isolationOf returns the isolation of NodeClass name, looked up once per round.
func (c *Controller) isolationOf(ncs map[string]*ippv1alpha1.NodeClass, name string) ippv1alpha1.Isolation {
	nc, ok := ncs[name]
	if !ok {
		nc, _ = c.nodeClass(name)
		ncs[name] = nc
	}
	if nc == nil {
		return ippv1alpha1.IsolationClass
	}
	return nc.Spec.Isolation
}

// pinAll sends the placement PATCHes, pinParallelism at a time. A Pod that changed or went
// meanwhile (the patch's tests fail, or it is gone) is left to the next round, which its
// informer event starts.
func (c *Controller) pinAll(ctx context.Context, decisions []placed) error {
	if len(decisions) == 0 {
		return nil
	}
	logger := klog.FromContext(ctx)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		stale bool
		sem   = make(chan struct{}, pinParallelism)
	)
	for _, d := range decisions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := c.pin(ctx, d)
			switch {
			case err == nil:
				c.assume(d)
				metrics.IncPlaced()
				logger.V(4).Info("Placed Pod", "pod", klog.KRef(d.pod.Namespace, d.pod.Name), "node", d.node)
			case errors.Is(err, placement.ErrNotGated), apierrors.IsNotFound(err), apierrors.IsInvalid(err), apierrors.IsConflict(err), apierrors.IsBadRequest(err):
				// A test of the patch failed: the Pod is not as the informer showed it. Its
				// update event places it again; the class is looked at again soon anyway.
				logger.V(2).Info("Pod changed before it could be placed; placing it again", "pod", klog.KRef(d.pod.Namespace, d.pod.Name), "err", err)
				mu.Lock()
				stale = true
				mu.Unlock()
			default:
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if stale && len(errs) == 0 {
		return errStale
	}
	return errors.Join(errs...)
}

// errStale says that some placements were refused because the Pods changed: the class is looked
// at again after staleRetry, without counting as a failure.
var errStale = errors.New("some Pods changed before they could be placed")

const staleRetry = time.Second

// pin applies the PATCH that places one Pod.
func (c *Controller) pin(ctx context.Context, d placed) error {
	patch, err := placement.PinPatch(d.pod.pod(), d.node)
	if err != nil {
		return err
	}
	data, err := patch.Marshal()
	if err != nil {
		return err
	}
	// The patch is built from typed values, so the API server's strict field check could only
	// find a bug here: skipped.
	_, err = c.kube.CoreV1().Pods(d.pod.Namespace).Patch(ctx, d.pod.Name, types.JSONPatchType, data,
		metav1.PatchOptions{FieldManager: FieldManager, FieldValidation: metav1.FieldValidationIgnore})
	if err != nil {
		return fmt.Errorf("placing Pod %s/%s on node %s: %w", d.pod.Namespace, d.pod.Name, d.node, err)
	}
	return nil
}

// planNodes plans the new nodes that the Pods of NodeClass nc waiting in class key need, beyond
// those already coming, and tells the Pods.
func (c *Controller) planNodes(ctx context.Context, key, namespace, class string, nc *ippv1alpha1.NodeClass, pods []*cachedPod, bound map[string]*corev1.Node, booting int) error {
	lists := make([]corev1.ResourceList, len(pods))
	for i, p := range pods {
		lists[i] = resourceList(p.requests)
	}
	need, tooLarge := placement.NodesNeeded(lists, c.shapeOf(nc.Name), nc.Spec.Isolation)
	large := map[int]bool{}
	for _, i := range tooLarge {
		large[i] = true
		c.tellPod(pods[i], corev1.EventTypeWarning, ReasonTooLarge, nc.Name,
			fmt.Sprintf("The Pod requests more than a node of NodeClass %s offers (%s); it is not placed and creates no instance", nc.Name, resourceString(c.shapeOf(nc.Name))))
	}
	coming := c.inflight(key, nc.Name, bound) + booting
	claimed := 0
	if need > coming {
		claimed = c.claimWarm(ctx, key, namespace, class, nc, need-coming)
		coming += claimed
	}
	if need > coming && nc.Spec.Warm != nil && nc.Spec.Warm.Size > 0 {
		metrics.AddWarmClaimMisses(need - coming)
	}
	for i := coming; i < need; i++ {
		name, err := c.newNodeName(class)
		if err != nil {
			return err
		}
		c.addPlan(name, &classPlan{key: key, namespace: namespace, class: class, nodeClass: nc.Name})
		klog.FromContext(ctx).Info("Planned a new node for the class", "node", name, "class", class, "namespace", namespace, "nodeClass", nc.Name, "waitingPods", len(pods))
		c.queue.Add(name)
	}
	coldBoots := max(coming, need) - claimed
	for i, p := range pods {
		if large[i] || coldBoots == 0 {
			// (Placed on the warm nodes just claimed, once the informer shows them.)
			continue
		}
		c.tellPod(p, corev1.EventTypeNormal, ReasonWaitingForRoom, nc.Name,
			fmt.Sprintf("No node of the Pod's class with NodeClass %s has room for it; %d new node(s) of the class are booting", nc.Name, coldBoots))
	}
	return nil
}

// assumed is a placement whose PATCH succeeded, kept until the Pod informer shows it, so that a
// round that runs on the older view neither places the Pod again nor gives its room away (as
// the scheduler's assume cache does for bindings).
type assumed struct {
	key, node string
	requests  placement.Requests
}

func (c *Controller) assume(d placed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.assumed[d.pod.UID] = assumed{key: d.pod.key(), node: d.node, requests: d.pod.requests}
}

func (c *Controller) assumedOf(uid types.UID) (assumed, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.assumed[uid]
	return a, ok
}

// assumedOn returns the requests of the assumed placements of class key, by node.
func (c *Controller) assumedOn(key string) map[string][]placement.Requests {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]placement.Requests{}
	for _, a := range c.assumed {
		if a.key == key {
			out[a.node] = append(out[a.node], a.requests)
		}
	}
	return out
}

// observePlaced forgets the assumed placement of a Pod that the informer shows placed, bound or
// gone.
func (c *Controller) observePlaced(pod *cachedPod, gone bool) {
	if !gone && pod.placing && pod.placedOn == "" && pod.nodeName == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.assumed, pod.UID)
}

// tellPod emits an Event on a waiting Pod, once per reason and detail.
func (c *Controller) tellPod(pod *cachedPod, eventType, reason, detail, msg string) {
	tag := reason + "/" + detail
	c.mu.Lock()
	if c.podReasons[pod.UID] == tag {
		c.mu.Unlock()
		return
	}
	c.podReasons[pod.UID] = tag
	c.mu.Unlock()
	c.recorder.Event(pod.ref(), eventType, reason, msg)
}

// forgetPod forgets the Events told to a Pod that is gone.
func (c *Controller) forgetPod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.podReasons, uid)
}

// resourceList turns Requests back into a ResourceList.
func resourceList(r placement.Requests) corev1.ResourceList {
	out := make(corev1.ResourceList, len(r))
	for _, a := range r {
		if a.Name == corev1.ResourceCPU {
			out[a.Name] = *resource.NewMilliQuantity(a.Value, resource.DecimalSI)
		} else {
			out[a.Name] = *resource.NewQuantity(a.Value, resource.BinarySI)
		}
	}
	return out
}

func resourceString(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "unknown until one registers"
	}
	cpu, mem := l[corev1.ResourceCPU], l[corev1.ResourceMemory]
	return fmt.Sprintf("cpu %s, memory %s", cpu.String(), mem.String())
}

// enqueueClass asks for the gated Pods of class key to be placed.
func (c *Controller) enqueueClass(key string) {
	if key != "" {
		c.placeQueue.Add(key)
	}
}

// reapGrace is how long a node marked for reaping waits before the controller checks with the
// API server that no Pod was placed on it meanwhile: a placement decided just before the mark
// reached the placement workers' informer lands within it.
const reapGrace = 2 * time.Second
