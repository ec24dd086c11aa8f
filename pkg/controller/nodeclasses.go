package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
)

// statusBatch is how long a NodeClass's status waits after a change, so that one write carries
// the changes of a burst; it is also the first retry delay of a failed write.
const statusBatch = time.Second

// Event reasons of NodeClasses.
const (
	// ReasonLimitReached (Pod, Warning): a limit (--max-instances, or the NodeClass's
	// limits.instances, limits.instancesPerNamespace or maxNodesPerClass) keeps the Pod's
	// instance from being created; the message names the limit, its value and the NodeClass.
	// The Pod waits until an instance goes or the limit is raised.
	ReasonLimitReached = "LimitReached"
	// ReasonSchedulingGated (Pod, Normal): the Pod is held by a scheduling gate, so it creates no
	// instance until its gates are removed; the message names the gate.
	ReasonSchedulingGated = "SchedulingGated"
	// ReasonNodeClassNotFound (Pod, Warning): the Pod asks for a NodeClass that does not exist
	// (it was admitted while the webhook was off, or the NodeClass was deleted). It creates
	// nothing until the NodeClass exists.
	ReasonNodeClassNotFound = "NodeClassNotFound"
	// ReasonNodeClassNotAdmitted (Pod, Warning): the NodeClass's namespaceSelector does not
	// select the Pod's namespace. The Pod creates nothing.
	ReasonNodeClassNotAdmitted = "NodeClassNotAdmitted"
	// ReasonNodeClassMismatch (Pod, Warning): the Pod asks for another NodeClass than the one of
	// its class's instance (or of the class's older waiting Pod, which decides it). The Pod
	// creates nothing; it runs on the class's node, of the other NodeClass, if at all.
	ReasonNodeClassMismatch = "NodeClassMismatch"
)

// Condition reasons of the NodeClass status.
const (
	conditionReasonServing     = "Serving"
	conditionReasonRejected    = "CreationRejected"
	conditionReasonLimit       = "LimitReached"
	conditionReasonWithinLimit = "WithinLimits"
)

// watchNodeClasses wires the NodeClass and Namespace informers, which may be nil.
func (c *Controller) watchNodeClasses(ncs ippinformers.NodeClassInformer, nss coreinformers.NamespaceInformer) error {
	if ncs != nil {
		c.nodeClasses = ncs.Lister()
		c.ncSynced = ncs.Informer().HasSynced
		if _, err := ncs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: c.nodeClassChanged,
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*ippv1alpha1.NodeClass)
				n, ok2 := cur.(*ippv1alpha1.NodeClass)
				if ok1 && ok2 && o.Generation == n.Generation && o.UID == n.UID {
					return // a status update: nothing the controller decides from changed
				}
				c.nodeClassChanged(cur)
			},
			DeleteFunc: c.nodeClassChanged,
		}); err != nil {
			return fmt.Errorf("adding NodeClass event handler: %w", err)
		}
	}
	if nss != nil {
		c.namespaces = nss.Lister()
		c.nsSynced = nss.Informer().HasSynced
		if _, err := nss.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*corev1.Namespace)
				n, ok2 := cur.(*corev1.Namespace)
				if ok1 && ok2 && !labels.Equals(o.Labels, n.Labels) {
					c.enqueueNamespace(n.Name)
				}
			},
		}); err != nil {
			return fmt.Errorf("adding Namespace event handler: %w", err)
		}
	}
	return nil
}

// nodeClassChanged enqueues the dedicated nodes of the Pods that ask for the NodeClass, and its
// status.
func (c *Controller) nodeClassChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	nc, ok := obj.(*ippv1alpha1.NodeClass)
	if !ok {
		return
	}
	// A scan, not an index: NodeClasses change rarely, and an index of every IPP Pod by its
	// NodeClass would hold an entry per Pod (3-4 MB at 50,000 Pods) for it.
	for _, o := range c.podIndexer.List() {
		if pod := c.asCachedPod(o); pod != nil && pod.class != "" && pod.nodeClass == nc.Name {
			c.enqueuePod(o)
		}
	}
	c.wakeWaiting(nc.Name, false)
	c.enqueueStatus(nc.Name)
	c.enqueueWarm(nc.Name)
}

// enqueueNamespace enqueues the dedicated nodes of the IPP Pods of a namespace whose labels
// changed: a namespaceSelector may select it now, or no longer.
func (c *Controller) enqueueNamespace(ns string) {
	objs, _ := c.podIndexer.ByIndex(cache.NamespaceIndex, ns)
	for _, o := range objs {
		c.enqueuePod(o)
	}
}

// wakeWaiting enqueues the dedicated nodes a limit keeps waiting: those of nodeClass and those
// waiting for --max-instances, or all.
func (c *Controller) wakeWaiting(nodeClass string, all bool) {
	for _, name := range c.ledger.waitingNodes(nodeClass, all) {
		c.queue.Add(name)
	}
}

// nodeClass returns the NodeClass name: the object, the built-in default, or NotFound.
func (c *Controller) nodeClass(name string) (*ippv1alpha1.NodeClass, error) {
	if c.nodeClasses == nil {
		if name == isolation.DefaultNodeClass {
			return nodeclass.Builtin(), nil
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: ippv1alpha1.SchemeGroupVersion.Group, Resource: "nodeclasses"}, name)
	}
	return nodeclass.Get(c.nodeClasses, name)
}

// admits reports whether nc admits the Pods of namespace ns, and if not, why.
func (c *Controller) admits(nc *ippv1alpha1.NodeClass, ns string) (bool, string) {
	if nc.Spec.NamespaceSelector == nil || c.namespaces == nil {
		return true, ""
	}
	obj, err := c.namespaces.Get(ns)
	if err != nil {
		return false, fmt.Sprintf("namespace %s is not known to the controller yet (%v)", ns, err)
	}
	ok, err := nodeclass.Admits(nc, obj)
	if err != nil {
		return false, err.Error()
	}
	if !ok {
		return false, fmt.Sprintf("NodeClass %s's namespaceSelector does not select namespace %s", nc.Name, ns)
	}
	return true, ""
}

// idleTTLOf and regTimeoutOf return nc's durations, or the controller's flags.
func (c *Controller) idleTTLOf(nc *ippv1alpha1.NodeClass) time.Duration {
	if nc != nil && nc.Spec.IdleTTL != nil && nc.Spec.IdleTTL.Duration > 0 {
		return nc.Spec.IdleTTL.Duration
	}
	return c.idleTTL
}

func (c *Controller) regTimeoutOf(nc *ippv1alpha1.NodeClass) time.Duration {
	if nc != nil && nc.Spec.RegistrationTimeout != nil && nc.Spec.RegistrationTimeout.Duration > 0 {
		return nc.Spec.RegistrationTimeout.Duration
	}
	return c.regTimeout
}

// enqueueStatus asks for the status of NodeClass name to be written, batched.
func (c *Controller) enqueueStatus(name string) {
	if name == "" || c.nodeClasses == nil || c.ipp == nil {
		return
	}
	c.statusQueue.AddAfter(name, statusBatch)
}

// enqueueAllStatus enqueues the status of every NodeClass.
func (c *Controller) enqueueAllStatus() {
	if c.nodeClasses == nil || c.ipp == nil {
		return
	}
	all, err := c.nodeClasses.List(labels.Everything())
	if err != nil {
		return
	}
	for _, nc := range all {
		c.enqueueStatus(nc.Name)
	}
}

func (c *Controller) runStatusWorker(ctx context.Context) {
	c.enqueueAllStatus()
	for {
		name, shutdown := c.statusQueue.Get()
		if shutdown {
			return
		}
		if err := c.syncStatus(ctx, name); err != nil {
			c.statusQueue.AddRateLimited(name)
			utilruntime.HandleErrorWithContext(ctx, err, "Writing NodeClass status failed", "nodeClass", name)
		} else {
			c.statusQueue.Forget(name)
		}
		c.statusQueue.Done(name)
	}
}

// nodeClassStatus computes the status of nc from the instance index, the Pods and the ledger.
func (c *Controller) nodeClassStatus(nc *ippv1alpha1.NodeClass) ippv1alpha1.NodeClassStatus {
	st := *nc.Status.DeepCopy()
	nodes, classes, pods, seen := 0, map[string]bool{}, 0, map[string]bool{}
	for _, inst := range c.instances.liveInstances() {
		if nodeClassOf(inst) != nc.Name {
			continue
		}
		nodes++
		// A class may have several nodes (controller placement): count it once.
		switch ns, class, claimed := c.claimOf(inst.NodeName); {
		case !isWarmInstance(inst):
			classes[classID(inst.Namespace, inst.Class, inst.NodeName)] = true
		case claimed:
			classes[classID(ns, class, inst.NodeName)] = true
		}
		if seen[inst.NodeName] {
			continue // a duplicate instance of one node: its Pods are counted
		}
		seen[inst.NodeName] = true
		objs, _ := c.podIndexer.ByIndex(podNodeIndex, inst.NodeName)
		for _, o := range objs {
			if p := c.asCachedPod(o); p != nil && p.nodeName != "" && !p.terminal() && p.DeletionTimestamp == nil {
				pods++
			}
		}
	}
	st.Nodes, st.Classes, st.Pods = int32(nodes), int32(len(classes)), int32(pods)
	st.WarmReady = int32(c.warmReady(nc.Name))

	now := metav1.NewTime(c.clock.Now())
	ready := metav1.Condition{
		Type: ippv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: conditionReasonServing,
		Message:            fmt.Sprintf("The controller creates instances of this NodeClass on %s%s", c.provider.Name(), c.shapeNote(nc)),
		ObservedGeneration: nc.Generation, LastTransitionTime: now,
	}
	if err := c.rejectedErr(nc.Name); err != nil {
		ready.Status, ready.Reason = metav1.ConditionFalse, conditionReasonRejected
		ready.Message = fmt.Sprintf("%s refused the last creation of an instance of this NodeClass as invalid, which retrying cannot fix: %v. Fix the NodeClass's shape (or the --%s-* flags it falls back to); Ready turns True with the next instance created", c.provider.Name(), err, c.provider.Name())
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	limit := metav1.Condition{
		Type: ippv1alpha1.ConditionLimitReached, Status: metav1.ConditionFalse, Reason: conditionReasonWithinLimit,
		Message:            "No limit keeps a Pod of this NodeClass waiting",
		ObservedGeneration: nc.Generation, LastTransitionTime: now,
	}
	if hits := c.ledger.waitingFor(nc.Name); len(hits) > 0 {
		limit.Status, limit.Reason = metav1.ConditionTrue, conditionReasonLimit
		limit.Message = fmt.Sprintf("%d dedicated node(s) wait: %s", len(hits), hits[0])
	}
	meta.SetStatusCondition(&st.Conditions, limit)
	return st
}

// shapeNote says where the instance shape comes from when the NodeClass gives none for the
// controller's provider.
func (c *Controller) shapeNote(nc *ippv1alpha1.NodeClass) string {
	switch {
	case c.provider.Name() == "gce" && nc.Spec.GCE == nil, c.provider.Name() == "ec2" && nc.Spec.EC2 == nil:
		return fmt.Sprintf(", shaped by the --%s-* flags", c.provider.Name())
	}
	return ""
}

// syncStatus writes the status of NodeClass name through the status subresource, if it changed.
func (c *Controller) syncStatus(ctx context.Context, name string) error {
	nc, err := c.nodeClasses.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st := c.nodeClassStatus(nc)
	if equality.Semantic.DeepEqual(st, nc.Status) {
		return nil
	}
	out := nc.DeepCopy()
	out.Status = st
	_, err = c.ipp.IppV1alpha1().NodeClasses().UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: FieldManager})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("updating the status of NodeClass %s: %w", name, err)
	}
	klog.FromContext(ctx).V(4).Info("Updated NodeClass status", "nodeClass", name, "nodes", st.Nodes, "classes", st.Classes, "pods", st.Pods)
	return nil
}

// setRejected records err, an invalid-request error of the cloud, as the last creation of
// NodeClass name; nil clears it. A change enqueues the NodeClass's status.
func (c *Controller) setRejected(name string, err error) {
	c.mu.Lock()
	_, had := c.rejected[name]
	if err == nil {
		delete(c.rejected, name)
	} else {
		c.rejected[name] = err
	}
	c.mu.Unlock()
	if had || err != nil {
		c.enqueueStatus(name)
	}
}

// rejectedErr returns the cloud's refusal of the last creation of NodeClass name, or nil.
func (c *Controller) rejectedErr(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejected[name]
}
