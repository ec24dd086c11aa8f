// Package approver is IPP's approver of kubelet client CSRs made with the join tokens it mints.
//
// It watches CertificateSigningRequests for the signer kubernetes.io/kube-apiserver-client-kubelet.
// A CSR whose requester is system:bootstrap:<id> in the group jointoken.ClusterGroup(cluster) of
// its own cluster is approved only if the token id belongs to a live instance the cluster owns
// (Instances), the request is exactly the kubelet client CSR of that instance's node name
// (jointoken.Check), and no CSR of that token was approved before; then the token's Secret is
// deleted, so the token works once. Any other CSR of its cluster's tokens is denied with a reason
// naming the mismatch and a Warning Event. CSRs of other requesters, such as a kubelet renewing
// its certificate as system:node:<name>, are left to Kubernetes' own approver; CSRs of another IPP
// installation's tokens on the same API server (another cluster group, or jointoken.Group alone)
// are left to that installation's approver.
//
// # Fresh instance lists
//
// The approver decides from the controller's view of the instances, which is as old as the last
// provider List. An instance deleted a moment before its CSR arrives still shows in an older
// List, so the approver decides a CSR only from a List that started after the CSR was created
// (Instances.NodeOfJoinToken with notBefore). Until there is one, the CSR is neither approved
// nor denied: the approver asks for a List now (Instances.RequestList) and looks again shortly.
package approver

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	certinformers "k8s.io/client-go/informers/certificates/v1"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/jointoken"
)

// Event reasons and condition reasons.
const (
	// ReasonApproved (CSR, Normal; condition Approved): the CSR is the kubelet client CSR of the
	// instance its token was minted for.
	ReasonApproved = "IPPJoinTokenApproved"
	// ReasonDenied (CSR, Warning; condition Denied): the CSR was made with an IPP token but is not
	// what that token's instance may ask for; the message names the mismatch.
	ReasonDenied = "IPPJoinTokenDenied"
)

// FieldManager is the field manager of the approver's writes.
const FieldManager = "ipp-approver"

// Instances is the approver's view of the instances IPP created. *controller.Controller
// implements it.
type Instances interface {
	// NodeOfJoinToken returns the dedicated node name of the live instance that this cluster
	// owns and whose join token id is id, as the last successful provider List shows it (with the
	// controller's own creations and deletions since). fresh is false unless that List started
	// at or after notBefore; then nodeName and ok mean nothing, and the caller must not decide
	// from them. ok is false when no live instance carries the token. It never blocks on a List.
	NodeOfJoinToken(id string, notBefore time.Time) (nodeName string, ok, fresh bool)
	// RequestList asks for a provider List to start as soon as possible: now, or right after
	// the List in progress. It does not block; requests made before a List starts are all
	// served by that List.
	RequestList()
}

// freshListWait is how soon a CSR waiting for a provider List newer than itself is looked at
// again.
const freshListWait = 250 * time.Millisecond

// Approver approves and denies the CSRs of IPP's join tokens.
type Approver struct {
	kube      kubernetes.Interface
	group     string // jointoken.ClusterGroup of this approver's cluster
	instances Instances
	recorder  record.EventRecorder
	csrs      certlisters.CertificateSigningRequestLister
	synced    cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex
	// approved holds the token ids this process approved a CSR for, in case the informer has not
	// shown the approval yet when a second CSR of the token arrives.
	approved map[string]bool
	// seen is when this process first looked at each undecided CSR. The CSR existed then, so a
	// List that started later started after the CSR was created; both times come from this
	// process's clock, with no rounding (a creationTimestamp has whole seconds, from the
	// apiserver's clock).
	seen map[string]time.Time
	now  func() time.Time
}

// NewInformerFactory returns the informer factory whose CSR informer New expects: CSRs of the
// kubelet client signer only.
func NewInformerFactory(client kubernetes.Interface) informers.SharedInformerFactory {
	sel := fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeAPIServerClientKubeletSignerName).String()
	return informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = sel }))
}

// New returns an approver of the CSRs that csrs delivers made with the join tokens of the IPP of
// cluster (isolation.Config.ClusterName). Call it before starting the informer.
func New(kube kubernetes.Interface, csrs certinformers.CertificateSigningRequestInformer, instances Instances, recorder record.EventRecorder, cluster string) (*Approver, error) {
	if kube == nil || csrs == nil || instances == nil || recorder == nil {
		return nil, fmt.Errorf("approver: kube client, informer, instances and recorder are required")
	}
	if err := jointoken.ValidateCluster(cluster); err != nil {
		return nil, fmt.Errorf("approver: %w", err)
	}
	a := &Approver{
		kube:      kube,
		group:     jointoken.ClusterGroup(cluster),
		instances: instances,
		recorder:  recorder,
		csrs:      csrs.Lister(),
		synced:    csrs.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ipp-approver"}),
		approved: map[string]bool{},
		seen:     map[string]time.Time{},
		now:      time.Now,
	}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			a.queue.Add(key)
		}
	}
	if _, err := csrs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur any) { enqueue(cur) },
	}); err != nil {
		return nil, fmt.Errorf("adding CSR event handler: %w", err)
	}
	return a, nil
}

// Run waits for the CSR cache and reviews CSRs until ctx is cancelled. It uses one worker, so
// that two CSRs of one token are never approved side by side.
func (a *Approver) Run(ctx context.Context) error {
	defer utilruntime.HandleCrashWithContext(ctx)
	defer a.queue.ShutDown()
	logger := klog.FromContext(ctx)
	logger.Info("Starting IPP CSR approver", "signer", certificatesv1.KubeAPIServerClientKubeletSignerName)
	if !cache.WaitForNamedCacheSyncWithContext(ctx, a.synced) {
		return fmt.Errorf("waiting for the CSR cache: %w", context.Cause(ctx))
	}
	go func() {
		for a.next(ctx) {
		}
	}()
	<-ctx.Done()
	return nil
}

func (a *Approver) next(ctx context.Context) bool {
	name, shutdown := a.queue.Get()
	if shutdown {
		return false
	}
	defer a.queue.Done(name)
	after, err := a.sync(ctx, name)
	switch {
	case err != nil:
		a.queue.AddRateLimited(name)
		utilruntime.HandleErrorWithContext(ctx, err, "Reviewing CSR failed", "csr", name)
	case after > 0:
		a.queue.Forget(name)
		a.queue.AddAfter(name, after)
	default:
		a.queue.Forget(name)
	}
	return true
}

// IssuedFor reports whether a kubelet client CSR made with the join token id for nodeName has
// been approved: the Node of that name holds credentials issued for the instance of the token.
func (a *Approver) IssuedFor(id, nodeName string) bool {
	csrs, err := a.csrs.List(everything)
	if err != nil {
		return false
	}
	for _, csr := range csrs {
		if tid, ok := jointoken.Requester(csr); ok && tid == id && isApproved(csr) && jointoken.Check(csr, nodeName) == nil {
			return true
		}
	}
	return false
}

// sync reviews one CSR.
func (a *Approver) sync(ctx context.Context, name string) (time.Duration, error) {
	csr, err := a.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		a.forget(name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	id, ok := jointoken.Requester(csr)
	if !ok || csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName {
		return 0, nil // not made with a bootstrap token: Kubernetes' approver decides
	}
	if !slices.Contains(csr.Spec.Groups, a.group) {
		// Not a token of this cluster's IPP: another IPP on this API server (or nobody) decides.
		// Denying it would break that installation's nodes.
		return 0, nil
	}
	if isApproved(csr) || isDenied(csr) {
		if isApproved(csr) {
			// The token is used: make sure its Secret is gone (a crash after approving).
			return 0, a.deleteToken(ctx, id)
		}
		return 0, nil
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "csr", csr.Name, "tokenID", id)
	nodeName, found, fresh := a.instances.NodeOfJoinToken(id, a.firstSeen(csr.Name))
	if !fresh {
		// A List older than the CSR may still show an instance deleted just before it: wait
		// for one that started after the CSR was created, neither approving nor denying.
		a.instances.RequestList()
		logger.V(4).Info("Waiting for a provider List that started after the CSR", "created", csr.CreationTimestamp)
		return freshListWait, nil
	}
	a.forget(csr.Name)
	var reason string
	switch {
	case !found:
		reason = fmt.Sprintf("join token %s belongs to no live instance this cluster owns", id)
	case a.usedBefore(id, csr.Name):
		reason = fmt.Sprintf("join token %s was used for an approved CSR before; a token works once", id)
	default:
		if err := jointoken.Check(csr, nodeName); err != nil {
			reason = fmt.Sprintf("not the kubelet client CSR of node %s, the instance of join token %s: %v", nodeName, id, err)
		}
	}
	if reason != "" {
		return 0, a.deny(ctx, csr, reason)
	}
	a.mu.Lock()
	a.approved[id] = true
	a.mu.Unlock()
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateApproved,
		Status:         corev1.ConditionTrue,
		Reason:         ReasonApproved,
		Message:        fmt.Sprintf("IPP approved the kubelet client certificate of node %s for its instance's join token %s", nodeName, id),
		LastUpdateTime: metav1.Now(),
	})
	if _, err := a.kube.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		a.mu.Lock()
		delete(a.approved, id)
		a.mu.Unlock()
		return 0, fmt.Errorf("approving CSR %s: %w", csr.Name, err)
	}
	logger.Info("Approved kubelet client CSR", "nodeName", nodeName)
	a.recorder.Eventf(csr, corev1.EventTypeNormal, ReasonApproved, "Approved the kubelet client certificate of node %s (join token %s); the token is deleted", nodeName, id)
	return 0, a.deleteToken(ctx, id)
}

// firstSeen returns when this process first looked at the CSR name, recording now the first time.
func (a *Approver) firstSeen(name string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.seen[name]
	if !ok {
		t = a.now()
		a.seen[name] = t
	}
	return t
}

func (a *Approver) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.seen, name)
}

// usedBefore reports whether another CSR of token id was approved.
func (a *Approver) usedBefore(id, name string) bool {
	a.mu.Lock()
	done := a.approved[id]
	a.mu.Unlock()
	if done {
		return true
	}
	csrs, err := a.csrs.List(everything)
	if err != nil {
		return true
	}
	for _, c := range csrs {
		if tid, ok := jointoken.Requester(c); ok && tid == id && c.Name != name && isApproved(c) {
			return true
		}
	}
	return false
}

func (a *Approver) deny(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, reason string) error {
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateDenied,
		Status:         corev1.ConditionTrue,
		Reason:         ReasonDenied,
		Message:        reason,
		LastUpdateTime: metav1.Now(),
	})
	if _, err := a.kube.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("denying CSR %s: %w", csr.Name, err)
	}
	klog.FromContext(ctx).Info("Denied kubelet client CSR", "csr", csr.Name, "requester", csr.Spec.Username, "reason", reason)
	a.recorder.Eventf(csr, corev1.EventTypeWarning, ReasonDenied, "Denied CSR of %s: %s", csr.Spec.Username, reason)
	return nil
}

// deleteToken deletes the Secret of token id; gone is done.
func (a *Approver) deleteToken(ctx context.Context, id string) error {
	err := a.kube.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, jointoken.SecretName(id), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting used join token %s: %w", id, err)
	}
	return nil
}

func isApproved(csr *certificatesv1.CertificateSigningRequest) bool {
	return hasCondition(csr, certificatesv1.CertificateApproved)
}

func isDenied(csr *certificatesv1.CertificateSigningRequest) bool {
	return hasCondition(csr, certificatesv1.CertificateDenied)
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

var everything = labels.Everything()
