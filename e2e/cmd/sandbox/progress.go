package main

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/ipp-project/ipp/e2e/gceemu"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jointoken"
	"github.com/ipp-project/ipp/pkg/placement"
	gceprovider "github.com/ipp-project/ipp/providers/gce"
)

// progress prints what a user wants to see happen: Nodes registering, being bound, cordoned and
// deleted; Pods waiting, running (with the time from creation) and failing; Warning Events; the
// join tokens ipp mints and the kubelet CSRs it approves or denies.
type progress struct {
	s      *sandbox
	ctx    context.Context
	cancel context.CancelFunc
	pods   informers.SharedInformerFactory
	tokens informers.SharedInformerFactory
	ncs    ippinformers.SharedInformerFactory
	// instancesDone is closed when watchInstances's loop ends.
	instancesDone chan struct{}

	mu       sync.Mutex
	seen     map[string]time.Time     // pod key -> when it was first seen (or created)
	running  map[string]time.Duration // pod key -> creation to Running
	reported map[string]string        // object key -> last state printed
	// warmReady says when each node was first seen Ready in a warm pool, by name; claims says
	// when each NodeClass's warm node was last seen claimed, by NodeClass.
	warmReady map[string]time.Time
	claims    map[string]time.Time
}

func newProgress(s *sandbox) *progress {
	return &progress{s: s, seen: map[string]time.Time{}, running: map[string]time.Duration{}, reported: map[string]string{},
		warmReady: map[string]time.Time{}, claims: map[string]time.Time{}}
}

func (p *progress) start(ctx context.Context, c kubernetes.Interface, ipp ippclient.Interface) error {
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.ctx = ctx
	p.pods = informers.NewSharedInformerFactory(c, 0)
	p.ncs = ippinformers.NewSharedInformerFactory(ipp, 0)
	p.tokens = informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(metav1.NamespaceSystem),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = jointoken.LabelManagedBy + "=true" }))
	handlers := []struct {
		informer cache.SharedIndexInformer
		h        cache.ResourceEventHandlerFuncs
	}{
		{p.pods.Core().V1().Nodes().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { p.node(obj.(*corev1.Node), false) },
			UpdateFunc: func(_, obj any) { p.node(obj.(*corev1.Node), false) },
			DeleteFunc: func(obj any) {
				if n, ok := tombstone(obj).(*corev1.Node); ok {
					p.node(n, true)
				}
			},
		}},
		{p.pods.Core().V1().Pods().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { p.pod(obj.(*corev1.Pod), false) },
			UpdateFunc: func(_, obj any) { p.pod(obj.(*corev1.Pod), false) },
			DeleteFunc: func(obj any) {
				if pod, ok := tombstone(obj).(*corev1.Pod); ok {
					p.pod(pod, true)
				}
			},
		}},
		{p.pods.Core().V1().Events().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { p.event(obj.(*corev1.Event)) },
		}},
		{p.tokens.Core().V1().Secrets().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { p.token(obj.(*corev1.Secret), false) },
			DeleteFunc: func(obj any) {
				if s, ok := tombstone(obj).(*corev1.Secret); ok {
					p.token(s, true)
				}
			},
		}},
		{p.ncs.Ipp().V1alpha1().NodeClasses().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { p.nodeClass(obj.(*ippv1alpha1.NodeClass)) },
			UpdateFunc: func(_, obj any) { p.nodeClass(obj.(*ippv1alpha1.NodeClass)) },
		}},
		{p.pods.Certificates().V1().CertificateSigningRequests().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { p.csr(obj.(*certificatesv1.CertificateSigningRequest)) },
			UpdateFunc: func(_, obj any) { p.csr(obj.(*certificatesv1.CertificateSigningRequest)) },
		}},
	}
	for _, h := range handlers {
		if _, err := h.informer.AddEventHandler(h.h); err != nil {
			return fmt.Errorf("watching the cluster: %w", err)
		}
	}
	p.pods.Start(ctx.Done())
	p.tokens.Start(ctx.Done())
	p.ncs.Start(ctx.Done())
	p.pods.WaitForCacheSync(ctx.Done())
	p.tokens.WaitForCacheSync(ctx.Done())
	p.ncs.WaitForCacheSync(ctx.Done())
	return nil
}

func (p *progress) stop() {
	if p.cancel != nil {
		p.cancel()
		p.pods.Shutdown()
		p.tokens.Shutdown()
		p.ncs.Shutdown()
		if p.instancesDone != nil {
			<-p.instancesDone
		}
	}
}

// watchInstances reports, until stop, each instance the Compute emulator holds as it appears and
// goes away: its zone, the NodeClass ipp recorded on it and the machine type the emulator received.
// The emulator has no watch, so it is read every 100ms.
func (p *progress) watchInstances(gce *gceemu.Server) {
	p.instancesDone = make(chan struct{})
	go func() {
		defer close(p.instancesDone)
		seen := map[string]bool{}
		wait.UntilWithContext(p.ctx, func(context.Context) {
			now := map[string]bool{}
			for _, inst := range gce.Instances() {
				now[inst.Name] = true
				nc := inst.Metadata[gceprovider.MetadataNodeClass]
				if nc == "" {
					nc = "(none recorded)"
				}
				mt := path.Base(inst.MachineType)
				if inst.MachineType == "" {
					mt = "(from instance template " + inst.SourceInstanceTemplate + ")"
				}
				p.report("instance/"+inst.Name, "created", "Instance %s created in zone %s for NodeClass %s: machine type %s (as the Compute emulator received it)", inst.Name, inst.Zone, nc, mt)
			}
			for name := range seen {
				if !now[name] {
					p.report("instance/"+name, "deleted", "Instance %s deleted from the Compute emulator", name)
				}
			}
			seen = now
		}, 100*time.Millisecond)
	}()
}

// nodeClass reports a NodeClass's status as it changes: the counts and conditions of
// `kubectl get nodeclasses`, and the Ready warm nodes of its warm pool if it has one.
func (p *progress) nodeClass(nc *ippv1alpha1.NodeClass) {
	state := fmt.Sprintf("nodes %d, classes %d, pods %d, Ready %s, LimitReached %s", nc.Status.Nodes, nc.Status.Classes, nc.Status.Pods,
		orNone(conditionStatus(nc, ippv1alpha1.ConditionReady)), orNone(conditionStatus(nc, ippv1alpha1.ConditionLimitReached)))
	if nc.Spec.Warm != nil {
		state += fmt.Sprintf(", warm %d of warm.size %d", nc.Status.WarmReady, nc.Spec.Warm.Size)
	}
	p.report("nodeclass/"+nc.Name, state, "NodeClass %s status: %s", nc.Name, state)
}

func orNone(s string) string {
	if s == "" {
		return "(not yet)"
	}
	return s
}

func tombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// report prints line for key unless the state printed last for key is already state, and says
// whether it printed.
func (p *progress) report(key, state, format string, args ...any) bool {
	p.mu.Lock()
	if p.reported[key] == state {
		p.mu.Unlock()
		return false
	}
	p.reported[key] = state
	p.mu.Unlock()
	p.s.printf(format, args...)
	return true
}

// nodeReady reports whether the Node's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// warmLabels formats the labels that bind a warm node to its NodeClass's pool.
func warmLabels(n *corev1.Node) string {
	return isolation.WarmLabel + "=" + n.Labels[isolation.WarmLabel] + ", " + isolation.NodeClassNodeLabel + "=" + n.Labels[isolation.NodeClassNodeLabel]
}

// warmNodes returns the Nodes of NodeClass nc's warm pool that a class may claim: Ready, bound to
// no class, not being replaced; by name.
func (p *progress) warmNodes(nc string) []*corev1.Node {
	nodes, err := p.pods.Core().V1().Nodes().Lister().List(labels.SelectorFromSet(labels.Set{isolation.WarmLabel: isolation.LabelValue, isolation.NodeClassNodeLabel: nc}))
	if err != nil {
		return nil
	}
	var warm []*corev1.Node
	for _, n := range nodes {
		if n.Labels[isolation.ClassLabel] == "" && n.Labels[isolation.ReapingLabel] == "" && !n.Spec.Unschedulable && n.DeletionTimestamp == nil && nodeReady(n) {
			warm = append(warm, n)
		}
	}
	sort.Slice(warm, func(i, j int) bool { return warm[i].Name < warm[j].Name })
	return warm
}

// warmReadyAt returns when the node was first seen Ready in a warm pool.
func (p *progress) warmReadyAt(name string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.warmReady[name]
	return at, ok
}

// lastClaim returns when a warm node of NodeClass nc was last seen claimed.
func (p *progress) lastClaim(nc string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.claims[nc]
	return at, ok
}

// runningTime returns how long the Pod took from its creation to Running (0 if it does not run).
func (p *progress) runningTime(pod *corev1.Pod) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running[pod.Namespace+"/"+pod.Name]
}

func (p *progress) node(n *corev1.Node, deleted bool) {
	key := "node/" + n.Name
	kind := "worker node"
	if n.Labels[isolation.DefaultNodeLabel] == isolation.LabelValue {
		kind = "IPP node"
	}
	switch {
	case deleted:
		p.report(key, "deleted", "Node %s deleted", n.Name)
	case n.Spec.Unschedulable:
		p.report(key, "cordoned", "Node %s cordoned", n.Name)
	case n.Labels[isolation.WarmLabel] == isolation.LabelValue && n.Labels[isolation.ClassLabel] == "":
		nc := n.Labels[isolation.NodeClassNodeLabel]
		if !nodeReady(n) {
			p.report(key, "warm", "Node %s joined the warm pool of NodeClass %s, not Ready yet (%s)", n.Name, nc, warmLabels(n))
			return
		}
		p.mu.Lock()
		if _, ok := p.warmReady[n.Name]; !ok {
			p.warmReady[n.Name] = time.Now()
		}
		p.mu.Unlock()
		p.report(key, "warm-ready", "Node %s Ready in the warm pool of NodeClass %s, bound to no class (%s): no Pod of any class may run there until a class claims it",
			n.Name, nc, warmLabels(n))
	case n.Labels[isolation.ClassLabel] != "":
		p.mu.Lock()
		_, wasWarm := p.warmReady[n.Name]
		p.mu.Unlock()
		if wasWarm {
			if p.report(key, "bound", "Node %s claimed from the warm pool by class %s (NodeClass %s), no boot: warm label removed and class labels written in one patch: %s",
				n.Name, classOfNode(n), n.Labels[isolation.NodeClassNodeLabel], classLabels(n)) {
				p.mu.Lock()
				p.claims[n.Labels[isolation.NodeClassNodeLabel]] = time.Now()
				p.mu.Unlock()
			}
			return
		}
		p.report(key, "bound", "Node %s bound to class %s (NodeClass %s): %s", n.Name, classOfNode(n), n.Labels[isolation.NodeClassNodeLabel], classLabels(n))
	case n.Labels[isolation.BindingLabel] != "":
		p.report(key, "bound", "Node %s bound to its class (%s=%s)", n.Name, isolation.BindingLabel, n.Labels[isolation.BindingLabel])
	default:
		p.report(key, "registered", "%s %s registered (providerID %q)", capitalize(kind), n.Name, n.Spec.ProviderID)
	}
}

// classLabelKeys are the labels with which ipp binds a node to a class under controller
// placement, in the order they are printed.
var classLabelKeys = []string{isolation.ClassLabel, isolation.NamespaceLabel, isolation.ClassNameLabel, isolation.NodeClassNodeLabel}

// classLabels formats the class-binding labels that node carries, key=value, comma-separated.
func classLabels(n *corev1.Node) string {
	var parts []string
	for _, k := range classLabelKeys {
		if v, ok := n.Labels[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

// classOfNode is the class a node is bound to, as <namespace>/<class> (just <class> in cluster
// scope), from its labels.
func classOfNode(n *corev1.Node) string {
	if ns := n.Labels[isolation.NamespaceLabel]; ns != "" {
		return ns + "/" + n.Labels[isolation.ClassNameLabel]
	}
	return n.Labels[isolation.ClassNameLabel]
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

func (p *progress) pod(pod *corev1.Pod, deleted bool) {
	if pod.Namespace == "kube-system" {
		return
	}
	key := pod.Namespace + "/" + pod.Name
	p.mu.Lock()
	first, ok := p.seen[key]
	if !ok {
		first = time.Now()
		if created := pod.CreationTimestamp.Time; time.Since(created) > 2*time.Second {
			first = created // it existed before the sandbox looked
		}
		p.seen[key] = first
	}
	p.mu.Unlock()
	class := pod.Labels[isolation.DefaultPodLabel]
	what := "Pod " + key
	if class != "" {
		what += " (class " + class + ")"
	}
	switch {
	case deleted:
		p.mu.Lock()
		delete(p.seen, key)
		delete(p.running, key)
		p.mu.Unlock()
		p.report("pod/"+key, "deleted", "%s deleted", what)
	case pod.Status.Phase == corev1.PodFailed:
		p.report("pod/"+key, "failed", "%s failed: %s %s", what, pod.Status.Reason, pod.Status.Message)
	case pod.Status.Phase == corev1.PodRunning && ready(pod):
		took := time.Since(first)
		p.mu.Lock()
		if _, done := p.running[key]; !done {
			p.running[key] = took
		} else {
			took = p.running[key]
		}
		p.mu.Unlock()
		p.report("pod/"+key, "running", "%s running on %s, %.1fs after its creation", what, pod.Spec.NodeName, took.Seconds())
	case pod.Spec.NodeName == "" && class != "" && gated(pod):
		p.report("pod/"+key, "gated", "%s gated (%s), pinned to its class key (%s=%s): waiting for ipp to place it", what,
			placement.Gate, isolation.ClassLabel, pod.Spec.NodeSelector[isolation.ClassLabel])
	case pod.Spec.NodeName == "" && class != "" && pinnedNode(pod) != "" && pod.Spec.NodeSelector[isolation.ClassLabel] != "":
		node := pinnedNode(pod)
		p.report("pod/"+key, "placed", "%s placed by ipp on node %s (gate lifted, node affinity %s In [%s] added)", what, node, isolation.NodeNameField, node)
	case pod.Spec.NodeName == "" && class != "" && pod.Spec.NodeSelector[isolation.BindingLabel] != "":
		p.report("pod/"+key, "pending", "%s pending for node %s", what, pod.Spec.NodeSelector[isolation.BindingLabel])
	}
}

// gated reports whether the Pod still carries ipp's placement gate.
func gated(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == placement.Gate })
}

// pinnedNode returns the node that the Pod's required node affinity names (matchFields
// metadata.name In [<node>], as the controller's placement or the admission pin adds it), or "".
func pinnedNode(pod *corev1.Pod) string {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, r := range t.MatchFields {
			if r.Key == isolation.NodeNameField && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
				return r.Values[0]
			}
		}
	}
	return ""
}

func ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// token reports a join token ipp minted or deleted.
func (p *progress) token(s *corev1.Secret, deleted bool) {
	id, ok := jointoken.IDOfSecret(s)
	if !ok {
		return
	}
	if deleted {
		p.report("token/"+id, "deleted", "Join token %s deleted (used once, or its instance is gone)", id)
		return
	}
	p.report("token/"+id, "minted", "Join token %s minted: %s, groups %s, expires %s", id,
		s.Data[bootstrapapi.BootstrapTokenDescriptionKey], s.Data[bootstrapapi.BootstrapTokenExtraGroupsKey], s.Data[bootstrapapi.BootstrapTokenExpirationKey])
}

// csr reports the decision on a kubelet client CSR.
func (p *progress) csr(c *certificatesv1.CertificateSigningRequest) {
	for _, cond := range c.Status.Conditions {
		if cond.Status != corev1.ConditionTrue || (cond.Type != certificatesv1.CertificateApproved && cond.Type != certificatesv1.CertificateDenied) {
			continue
		}
		p.report("csr/"+c.Name, string(cond.Type), "CSR %s of %s %s (%s): %s", c.Name, c.Spec.Username, strings.ToLower(string(cond.Type)), cond.Reason, cond.Message)
	}
}

// event prints Warning Events, which say why something waits or was refused, except the
// scheduler's (a Pod waiting for its node is reported as gated or pending already), and ipp's
// WaitingForRoom, which says that a class grows, Claimed, which says that a class took a warm
// node, and WarmReplaced, which says that a warm node was deleted unclaimed.
func (p *progress) event(e *corev1.Event) {
	normal := e.Reason == controller.ReasonWaitingForRoom || e.Reason == controller.ReasonClaimed || e.Reason == controller.ReasonWarmReplaced
	if (e.Type != corev1.EventTypeWarning && !normal) || e.Reason == "FailedScheduling" ||
		!e.LastTimestamp.IsZero() && time.Since(e.LastTimestamp.Time) > time.Minute {
		return
	}
	if e.InvolvedObject.Namespace == "kube-system" {
		return
	}
	p.s.printf("%s %s on %s %s: %s", e.Type, e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
}

// runningTimes returns, once want Pods labelled app=<one of apps> run and no other such Pod
// waits, how long each took from its creation to Running.
func (p *progress) runningTimes(apps []string, want int) ([]time.Duration, bool) {
	pods, err := p.pods.Core().V1().Pods().Lister().List(labels.Everything())
	if err != nil {
		return nil, false
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	p.mu.Lock()
	defer p.mu.Unlock()
	var took []time.Duration
	for _, pod := range pods {
		if !slices.Contains(apps, pod.Labels["app"]) || pod.DeletionTimestamp != nil {
			continue
		}
		d, ok := p.running[pod.Namespace+"/"+pod.Name]
		if !ok {
			return nil, false
		}
		took = append(took, d)
	}
	return took, len(took) == want
}

// printClassNodes prints which nodes the running Pods of example Deployment d run on, with the
// Pods on each and the labels that bind each node to the class, and whether those labels bind it
// to d's class (the class key, namespace and class under controller placement; the dedicated
// node's name under admission placement).
func (s *sandbox) printClassNodes(d *appsv1.Deployment) {
	cfg := isolation.DefaultConfig()
	class := d.Spec.Template.Labels[cfg.PodLabel]
	pods, err := s.progress.pods.Core().V1().Pods().Lister().Pods(d.Namespace).List(labels.SelectorFromSet(d.Spec.Selector.MatchLabels))
	if err != nil {
		s.printf("Listing the Pods of class %s/%s: %v", d.Namespace, class, err)
		return
	}
	byNode := map[string][]string{}
	for _, pod := range pods {
		if pod.DeletionTimestamp == nil && pod.Spec.NodeName != "" {
			byNode[pod.Spec.NodeName] = append(byNode[pod.Spec.NodeName], pod.Name)
		}
	}
	nodes := slices.Sorted(maps.Keys(byNode))
	var lines []string
	bound := 0
	for _, name := range nodes {
		sort.Strings(byNode[name])
		n, err := s.progress.pods.Core().V1().Nodes().Lister().Get(name)
		if err != nil {
			lines = append(lines, fmt.Sprintf("%s: Pods %s; node not found: %v", name, strings.Join(byNode[name], ", "), err))
			continue
		}
		var labelsOf string
		ok := false
		if s.placement == isolation.PlacementController {
			labelsOf = classLabels(n)
			ok = n.Labels[isolation.ClassLabel] == cfg.ClassKey(d.Namespace, class) &&
				n.Labels[isolation.NamespaceLabel] == cfg.ScopedNamespace(d.Namespace) && n.Labels[isolation.ClassNameLabel] == class
		} else {
			labelsOf = isolation.BindingLabel + "=" + n.Labels[isolation.BindingLabel]
			ok = n.Labels[isolation.BindingLabel] == cfg.NodeName(d.Namespace, class)
		}
		verdict := "bound to the class"
		if ok {
			bound++
		} else {
			verdict = "NOT bound to the class"
		}
		lines = append(lines, fmt.Sprintf("%s: Pods %s; %s: %s", name, strings.Join(byNode[name], ", "), verdict, labelsOf))
	}
	s.printf("Class %s/%s runs on %d node(s), %d of them bound to it by ipp:", d.Namespace, class, len(nodes), bound)
	s.outMu.Lock()
	defer s.outMu.Unlock()
	for _, l := range lines {
		fmt.Fprintf(s.out, "          %s\n", l)
	}
}
