// Package kubelet emulates the part of a kubelet that the control plane sees: it registers its
// Node with the node's own credentials (system:node:<name>, so the Node authorizer and the
// NodeRestriction admission plugin judge every request), keeps the Node's Lease renewed, admits
// the Pods bound to it with the kubelet's own admission predicates (so a Pod that does not
// tolerate a NoExecute taint, or whose node affinity does not match, is rejected as a real kubelet
// rejects it), and reports admitted Pods Running and Ready. It runs no containers.
//
// Booter turns the instances a cloud emulator boots into kubelets, from the rendered bootstrap
// only; Start runs one kubelet directly, for nodes a test makes up (rogue or plain workers).
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/apimachinery/lease"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	schedulerframework "k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// Defaults of Config.
const (
	// DefaultLeaseDuration is the kubelet's default nodeLeaseDurationSeconds.
	DefaultLeaseDuration = 40 * time.Second
	// DefaultLeaseRenewInterval renews the Lease more often than a kubelet's 10 s, so tests that
	// stop a kubelet see its Lease go stale in about the same time either way.
	DefaultLeaseRenewInterval = 5 * time.Second
	// DefaultStatusInterval is how often the Ready condition's heartbeat is refreshed when nothing
	// changed (the kubelet's nodeStatusReportFrequency).
	DefaultStatusInterval = time.Minute
	// NodeLeaseNamespace holds the nodes' Leases.
	NodeLeaseNamespace = corev1.NamespaceNodeLease
)

// DefaultCapacity is what an emulated node offers: 4 CPUs, 16 GiB, 110 Pods.
func DefaultCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("16Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
}

// Config describes one kubelet.
type Config struct {
	Registration
	// RESTConfig holds the node's own credentials (system:node:<NodeName> in system:nodes).
	RESTConfig *rest.Config
	// Capacity is the Node's capacity and allocatable; nil means DefaultCapacity.
	Capacity corev1.ResourceList
	// LeaseRenewInterval defaults to DefaultLeaseRenewInterval.
	LeaseRenewInterval time.Duration
	// StatusInterval defaults to DefaultStatusInterval.
	StatusInterval time.Duration
	// Clock defaults to the real clock.
	Clock clock.Clock
}

// Kubelet is a running emulated kubelet.
type Kubelet struct {
	cfg    Config
	client kubernetes.Interface
	nodeIP string
	podNet [2]byte

	cancel context.CancelFunc
	done   sync.WaitGroup

	nodeLister corelisters.NodeLister
	podLister  corelisters.PodLister
	queue      workqueue.TypedRateLimitingInterface[string]
	admit      lifecycle.PodAdmitHandler
	recorder   record.EventRecorder
	events     record.EventBroadcaster

	mu       sync.Mutex
	nodeUID  types.UID
	admitted map[types.UID]bool
	podIPs   map[types.UID]string
	nextIP   int
}

// Start registers the Node (or adopts it if it exists, as a restarted kubelet does), then runs
// the Lease heartbeat and the Pod worker until Stop. It returns the apiserver's error if the
// registration is refused, e.g. by the NodeRestriction plugin for a label a kubelet may not set;
// nothing keeps running then.
func Start(ctx context.Context, cfg Config) (*Kubelet, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("starting kubelet: no node name")
	}
	if cfg.RESTConfig == nil {
		return nil, fmt.Errorf("starting kubelet %s: no credentials", cfg.NodeName)
	}
	if cfg.Capacity == nil {
		cfg.Capacity = DefaultCapacity()
	}
	if cfg.LeaseRenewInterval <= 0 {
		cfg.LeaseRenewInterval = DefaultLeaseRenewInterval
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	restConfig := rest.CopyConfig(cfg.RESTConfig)
	if restConfig.UserAgent == "" {
		restConfig.UserAgent = "kubelet/" + cfg.NodeName
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("starting kubelet %s: making client: %w", cfg.NodeName, err)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(cfg.NodeName))
	sum := h.Sum32()
	k := &Kubelet{
		cfg:      cfg,
		client:   client,
		nodeIP:   fmt.Sprintf("172.20.%d.%d", byte(sum>>8), byte(sum)%254+1),
		podNet:   [2]byte{byte(sum >> 16), byte(sum >> 24)},
		admitted: map[types.UID]bool{},
		podIPs:   map[types.UID]string{},
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "node", cfg.NodeName)
	ctx = klog.NewContext(context.WithoutCancel(ctx), logger)

	node, err := k.register(ctx)
	if err != nil {
		return nil, err
	}
	k.nodeUID = node.UID

	ctx, k.cancel = context.WithCancel(ctx)
	k.events = record.NewBroadcaster(record.WithContext(ctx))
	k.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	k.recorder = k.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})

	nodeInformers := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", cfg.NodeName).String()
	}))
	podInformers := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	k.nodeLister = nodeInformers.Core().V1().Nodes().Lister()
	podInformer := podInformers.Core().V1().Pods()
	k.podLister = podInformer.Lister()
	k.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet-" + cfg.NodeName})
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    k.enqueue,
		UpdateFunc: func(_, obj any) { k.enqueue(obj) },
		DeleteFunc: k.forget,
	}); err != nil {
		k.cancel()
		return nil, fmt.Errorf("starting kubelet %s: %w", cfg.NodeName, err)
	}
	k.admit = lifecycle.NewPredicateAdmitHandler(k.getNode, lifecycle.NewAdmissionFailureHandlerStub(),
		func(*schedulerframework.NodeInfo, *lifecycle.PodAdmitAttributes) error { return nil })

	nodeInformers.Start(ctx.Done())
	podInformers.Start(ctx.Done())

	leases := lease.NewController(cfg.Clock, client, cfg.NodeName, int32(DefaultLeaseDuration/time.Second), nil,
		cfg.LeaseRenewInterval, cfg.NodeName, NodeLeaseNamespace, k.setLeaseOwner)
	k.done.Go(func() { leases.Run(ctx) })
	k.done.Go(func() { k.heartbeat(ctx) })
	k.done.Go(func() {
		defer nodeInformers.Shutdown()
		defer podInformers.Shutdown()
		if !cache.WaitForCacheSync(ctx.Done(), nodeInformers.Core().V1().Nodes().Informer().HasSynced, podInformer.Informer().HasSynced) {
			return
		}
		k.runPodWorker(ctx)
	})
	go func() {
		<-ctx.Done()
		k.queue.ShutDown()
	}()
	logger.Info("Kubelet started", "providerID", cfg.ProviderID, "nodeIP", k.nodeIP)
	return k, nil
}

// NodeName is the name of the kubelet's Node.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

// Stop stops the heartbeats and the Pod worker, as when the instance shuts down. The Node object
// stays: removing it is the controller's job.
func (k *Kubelet) Stop() {
	k.cancel()
	k.done.Wait()
	k.events.Shutdown()
}

// register creates the Node with the kubelet's credentials, as the kubelet's
// registerWithAPIServer does, and sets its status Ready.
func (k *Kubelet) register(ctx context.Context) (*corev1.Node, error) {
	logger := klog.FromContext(ctx)
	node := k.initialNode()
	created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	switch {
	case err == nil:
		logger.Info("Registered node")
	case apierrors.IsAlreadyExists(err):
		// A restarted kubelet (or a reused name) finds its Node; the kubelet keeps it.
		created, err = k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("registering node %s: getting the existing Node: %w", k.cfg.NodeName, err)
		}
		logger.Info("Node already registered")
	default:
		return nil, fmt.Errorf("registering node %s: %w", k.cfg.NodeName, err)
	}
	updated, err := k.patchStatus(ctx, created)
	if err != nil {
		return nil, fmt.Errorf("registering node %s: %w", k.cfg.NodeName, err)
	}
	return updated, nil
}

func (k *Kubelet) initialNode() *corev1.Node {
	nodeLabels := map[string]string{
		corev1.LabelHostname:   k.cfg.NodeName,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	}
	for key, v := range k.cfg.Labels {
		nodeLabels[key] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: nodeLabels},
		Spec:       corev1.NodeSpec{ProviderID: k.cfg.ProviderID, Taints: k.cfg.Taints},
	}
	k.setStatus(node)
	return node
}

// setStatus fills in what the kubelet's status setters report: capacity, addresses, node info,
// and the conditions of a healthy node.
func (k *Kubelet) setStatus(node *corev1.Node) {
	now := metav1.NewTime(k.cfg.Clock.Now())
	node.Status.Capacity = k.cfg.Capacity.DeepCopy()
	node.Status.Allocatable = k.cfg.Capacity.DeepCopy()
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: k.nodeIP},
		{Type: corev1.NodeHostName, Address: k.cfg.NodeName},
	}
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID:               k.cfg.NodeName,
		SystemUUID:              k.cfg.NodeName,
		BootID:                  k.cfg.NodeName,
		KernelVersion:           "6.1.0-ipp-e2e",
		OSImage:                 "IPP emulated node",
		ContainerRuntimeVersion: "emulated://1.0.0",
		KubeletVersion:          "v1.37.2",
		OperatingSystem:         "linux",
		Architecture:            "amd64",
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = 10250
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		if _, old := nodeutil.GetNodeCondition(&node.Status, t); old != nil && old.Status == s {
			c.LastTransitionTime = old.LastTransitionTime
		}
		return c
	}
	node.Status.Conditions = []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
	}
}

func (k *Kubelet) patchStatus(ctx context.Context, node *corev1.Node) (*corev1.Node, error) {
	updated := node.DeepCopy()
	k.setStatus(updated)
	patched, _, err := nodeutil.PatchNodeStatus(k.client.CoreV1(), types.NodeName(k.cfg.NodeName), node, updated)
	if err != nil {
		return nil, fmt.Errorf("updating status of node %s: %w", k.cfg.NodeName, err)
	}
	return patched, nil
}

// heartbeat refreshes the Node's status every StatusInterval, as the kubelet reports it even
// when nothing changed.
func (k *Kubelet) heartbeat(ctx context.Context) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		node, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err == nil {
			_, err = k.patchStatus(ctx, node)
		}
		if err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Updating node status")
		}
	}, k.cfg.StatusInterval)
}

// setLeaseOwner makes the Node own its Lease, as the kubelet does, so the Lease goes with the Node.
func (k *Kubelet) setLeaseOwner(l *coordinationv1.Lease) error {
	if len(l.OwnerReferences) == 0 {
		l.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: corev1.SchemeGroupVersion.String(),
			Kind:       "Node",
			Name:       k.cfg.NodeName,
			UID:        k.nodeUID,
		}}
	}
	return nil
}

// getNode serves the admission predicates, from the informer or, when asked, from the apiserver.
func (k *Kubelet) getNode(ctx context.Context, useCache bool) (*corev1.Node, error) {
	if useCache {
		if n, err := k.nodeLister.Get(k.cfg.NodeName); err == nil {
			return n, nil
		}
	}
	return k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
}

func (k *Kubelet) enqueue(obj any) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	k.queue.Add(key)
}

func (k *Kubelet) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.admitted, pod.UID)
	delete(k.podIPs, pod.UID)
}

func (k *Kubelet) runPodWorker(ctx context.Context) {
	for k.processNext(ctx) {
	}
}

func (k *Kubelet) processNext(ctx context.Context) bool {
	key, shutdown := k.queue.Get()
	if shutdown {
		return false
	}
	defer k.queue.Done(key)
	if err := k.syncPod(ctx, key); err != nil {
		if ctx.Err() == nil {
			klog.FromContext(ctx).V(2).Info("Syncing pod failed, will retry", "pod", key, "err", err)
			k.queue.AddRateLimited(key)
		}
		return true
	}
	k.queue.Forget(key)
	return true
}

// syncPod does what the kubelet's pod workers do, minus containers: admit new Pods (or reject
// them, terminally), report admitted Pods Running, and finish the deletion of Pods being deleted.
func (k *Kubelet) syncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := k.podLister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "pod", klog.KObj(pod))
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return k.finishDeletion(ctx, pod)
	}
	// A Pod the kubelet sees for the first time goes through admission even if its deletion was
	// already requested (the kubelet's HandlePodAdditions does the same), so a rejected Pod always
	// reports why.
	if !k.isAdmitted(pod) {
		result := k.admit.Admit(ctx, &lifecycle.PodAdmitAttributes{Pod: pod, OtherPods: k.activePods(pod.UID), Operation: lifecycle.AddOperation})
		if !result.Admit {
			logger.Info("Rejected pod", "reason", result.Reason, "message", result.Message)
			k.recorder.Eventf(pod, corev1.EventTypeWarning, result.Reason, "%s", result.Message)
			return k.updateStatus(ctx, pod, func(s *corev1.PodStatus) {
				*s = corev1.PodStatus{
					QOSClass: s.QOSClass,
					Phase:    corev1.PodFailed,
					Reason:   result.Reason,
					Message:  "Pod was rejected: " + result.Message,
				}
			})
		}
		k.mu.Lock()
		k.admitted[pod.UID] = true
		k.mu.Unlock()
		logger.V(2).Info("Admitted pod")
	}
	if pod.DeletionTimestamp != nil {
		return k.finishDeletion(ctx, pod)
	}
	if runningAndReady(pod) {
		return nil
	}
	if err := k.updateStatus(ctx, pod, k.runningStatus(pod)); err != nil {
		return err
	}
	logger.V(2).Info("Pod is running")
	return nil
}

// finishDeletion confirms a requested deletion, as the kubelet's status manager does once the
// Pod's containers have stopped (here at once).
func (k *Kubelet) finishDeletion(ctx context.Context, pod *corev1.Pod) error {
	if pod.DeletionTimestamp == nil {
		return nil
	}
	err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// isAdmitted reports whether the Pod was admitted by this kubelet, or, for a Pod that was
// already running when the kubelet started, by an earlier run of it.
func (k *Kubelet) isAdmitted(pod *corev1.Pod) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.admitted[pod.UID] && pod.Status.Phase == corev1.PodRunning {
		k.admitted[pod.UID] = true
	}
	return k.admitted[pod.UID]
}

// activePods are the admitted, non-terminal Pods other than the one with uid.
func (k *Kubelet) activePods(uid types.UID) []*corev1.Pod {
	pods, err := k.podLister.List(labels.Everything())
	if err != nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range pods {
		if p.UID != uid && k.admitted[p.UID] && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

func (k *Kubelet) podIP(uid types.UID) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ip, ok := k.podIPs[uid]; ok {
		return ip
	}
	k.nextIP++
	ip := fmt.Sprintf("10.%d.%d.%d", 128+k.podNet[0]%64, k.podNet[1], k.nextIP%250+2)
	k.podIPs[uid] = ip
	return ip
}

// runningStatus returns the status a kubelet reports once every container has started.
func (k *Kubelet) runningStatus(pod *corev1.Pod) func(*corev1.PodStatus) {
	podIP := k.podIP(pod.UID)
	return func(s *corev1.PodStatus) {
		now := metav1.NewTime(k.cfg.Clock.Now())
		s.Phase = corev1.PodRunning
		s.Reason, s.Message = "", ""
		s.HostIP = k.nodeIP
		s.HostIPs = []corev1.HostIP{{IP: k.nodeIP}}
		if pod.Spec.HostNetwork {
			podIP = k.nodeIP
		}
		s.PodIP = podIP
		s.PodIPs = []corev1.PodIP{{IP: podIP}}
		if s.StartTime == nil {
			s.StartTime = &now
		}
		for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			setCondition(s, t, now)
		}
		s.InitContainerStatuses = nil
		for _, c := range pod.Spec.InitContainers {
			st := containerStatus(pod, c)
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				st.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
				st.Ready, st.Started = true, ptr.To(true)
			} else {
				st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}
			}
			s.InitContainerStatuses = append(s.InitContainerStatuses, st)
		}
		s.ContainerStatuses = nil
		for _, c := range pod.Spec.Containers {
			st := containerStatus(pod, c)
			st.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
			st.Ready, st.Started = true, ptr.To(true)
			s.ContainerStatuses = append(s.ContainerStatuses, st)
		}
	}
}

func containerStatus(pod *corev1.Pod, c corev1.Container) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name:        c.Name,
		Image:       c.Image,
		ImageID:     "emulated://" + c.Image,
		ContainerID: fmt.Sprintf("emulated://%s-%s", pod.UID, c.Name),
	}
}

func setCondition(s *corev1.PodStatus, t corev1.PodConditionType, now metav1.Time) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			if s.Conditions[i].Status != corev1.ConditionTrue {
				s.Conditions[i].Status = corev1.ConditionTrue
				s.Conditions[i].LastTransitionTime = now
				s.Conditions[i].Reason, s.Conditions[i].Message = "", ""
			}
			return
		}
	}
	s.Conditions = append(s.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

func runningAndReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || len(pod.Status.ContainerStatuses) != len(pod.Spec.Containers) {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// updateStatus applies mutate to the Pod's latest status and writes it, retrying on conflicts.
func (k *Kubelet) updateStatus(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.PodStatus)) error {
	pods := k.client.CoreV1().Pods(pod.Namespace)
	current := pod.DeepCopy()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mutate(&current.Status)
		_, err := pods.UpdateStatus(ctx, current, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			latest, getErr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if getErr != nil {
				return getErr
			}
			if latest.UID != pod.UID {
				return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
			}
			current = latest
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
