package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/metrics"
)

// launch creates the instance of a dedicated node that has demand and no live instance.
func (r *round) launch(ctx context.Context) (time.Duration, error) {
	if after, held := r.onHold(); held {
		return after, nil
	}
	want := ""
	if r.plan != nil {
		want = r.plan.nodeClass
	}
	oldest, nc := r.screen(want)
	if oldest == nil {
		// No waiting Pod may have an instance: each was told why. A NodeClass or namespace
		// that changes enqueues the node again. Until then it holds no slot.
		if r.c.ledger.abandon(r.name, r.now) {
			r.c.wakeWaiting("", true)
		}
		return 0, nil
	}
	r.idleTTL, r.regTimeout = r.c.idleTTLOf(nc), r.c.regTimeoutOf(nc)
	if after, err := r.chargeCreation(ctx, oldest); err != nil || after > 0 {
		return after, err
	}
	namespace := oldest.Namespace
	if r.c.cfg.ClassScope != isolation.ScopeNamespace {
		namespace = ""
	}
	return r.create(ctx, nc, namespace, oldest.class, oldest.UID)
}

// create reserves a limit slot for the node's instance, of NodeClass nc for class in namespace
// (both empty for a warm node), and creates it. keySeed is the UID of the oldest Pod waiting for
// it, or empty; see IdempotencyKey.
func (r *round) create(ctx context.Context, nc *ippv1alpha1.NodeClass, namespace, class string, keySeed types.UID) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	hit, err := r.c.ledger.reserve(r.c.instances, r.name, nc, namespace, class)
	if err != nil {
		// Only while the join token journal has not been read (a failing read at the first
		// List): look again after the next resync.
		logger.Info("Not creating an instance yet", "reason", err)
		return r.c.providerResync, nil
	}
	if hit != nil {
		logger.Info("Limit reached; not creating an instance", "limit", hit.Limit, "value", hit.Value, "count", hit.Count, "nodeClass", nc.Name, "waitingPods", len(r.demand))
		r.notify(corev1.EventTypeWarning, ReasonLimitReached, hit.Limit,
			fmt.Sprintf("No instance for dedicated node %s: %s", r.name, hit))
		r.c.enqueueStatus(nc.Name)
		// Woken when an instance goes or the NodeClass changes.
		return 0, nil
	}
	r.c.enqueueStatus(nc.Name)
	spec := cloudprovider.InstanceSpec{
		NodeName:   r.name,
		Class:      class,
		Namespace:  namespace,
		NodeLabels: r.c.cfg.NodeLabels(),
		NodeTaints: r.c.cfg.Taints(),
		NodeClass:  nc.Name,
		GCE:        nc.Spec.GCE.DeepCopy(), // nc is the informer's
		EC2:        nc.Spec.EC2.DeepCopy(),
	}
	r.ncName, r.namespace, r.class = nc.Name, namespace, class
	// The token first: a new token is new user data, which needs a new key (a key the cloud saw
	// with other user data is refused, as EC2's IdempotentParameterMismatch).
	if r.c.mintTokens {
		tok, err := r.joinToken(ctx)
		if err != nil {
			return 0, err
		}
		spec.JoinToken, spec.JoinTokenID = tok.String(), tok.ID
	}
	if r.st.createKey == "" {
		r.st.createKey = IdempotencyKey(r.name, keySeed, r.epoch(), r.st.salt)
	}
	spec.IdempotencyKey = r.st.createKey
	r.c.ledger.attempt(r.name)
	inst, err := r.c.provider.Create(ctx, spec)
	if err != nil {
		if cloudprovider.IsNotFound(err) {
			// The key's instance is gone: the cloud remembers the key, so use another.
			r.newKey()
		}
		kind := cloudprovider.KindOf(err)
		if kind == cloudprovider.KindInvalid {
			r.c.setRejected(nc.Name, err)
		}
		r.notify(corev1.EventTypeWarning, ReasonProvisioningFailed, string(kind),
			fmt.Sprintf("Creating instance for dedicated node %s failed (%s): %v", r.name, orUnknown(kind), err))
		return 0, fmt.Errorf("creating instance for node %s: %w", r.name, err)
	}
	got := *inst
	got.NodeName = r.name
	if got.CreatedAt.IsZero() {
		got.CreatedAt = r.now
	}
	if got.JoinTokenID == "" {
		got.JoinTokenID = spec.JoinTokenID
	}
	if got.NodeClass == "" {
		got.NodeClass = spec.NodeClass
	}
	r.c.instances.add(got, r.now)
	if !live(got) {
		// Not made yet: the retry keeps the charge.
		// Either the cloud still has the previous instance of this name (GCE names are unique),
		// or the key belonged to an instance that has since been deleted (EC2 remembers
		// ClientTokens). Either way, try again later with a fresh key.
		// It is a transient condition of the cloud, so it backs off like one.
		r.newKey()
		return 0, cloudprovider.NewError(cloudprovider.KindTransient, "create", "InstanceGoing",
			fmt.Errorf("creating instance for node %s: the cloud returned instance %s, which is %s", r.name, got.ID, got.State))
	}
	if r.plan != nil {
		r.c.mu.Lock()
		r.plan.launched = true
		r.c.mu.Unlock()
	}
	r.st.charge = nil          // spent
	r.c.ledger.created(r.name) // counted in the index from now on
	r.c.setRejected(nc.Name, nil)
	logger.Info("Created instance", "instance", got.ID, "providerID", got.ProviderID, "class", class, "namespace", namespace, "nodeClass", nc.Name, "joinTokenID", got.JoinTokenID, "waitingPods", len(r.demand))
	r.notify(corev1.EventTypeNormal, ReasonProvisioning, "",
		fmt.Sprintf("Creating instance %s for dedicated node %s", got.ID, r.name))
	return r.untilRegistrationTimeout(got), nil
}

// screen sorts the waiting Pods by whether they may have an instance of NodeClass want ("": the
// NodeClass of the oldest Pod that may have one). A Pod whose NodeClass does not exist, does not
// admit its namespace, or is not want, gets a Warning Event saying so, once, and is left out of
// the other Events. It returns the oldest Pod that may have the instance and its NodeClass, or
// nil if none may.
func (r *round) screen(want string) (*cachedPod, *ippv1alpha1.NodeClass) {
	var oldest *cachedPod
	var chosen *ippv1alpha1.NodeClass
	for _, pod := range r.demand {
		nc, err := r.c.nodeClass(pod.nodeClass)
		reason, msg, eventType := "", "", corev1.EventTypeWarning
		switch {
		case pod.gate != "":
			eventType = corev1.EventTypeNormal
			// The scheduler would not place it on the node anyway.
			reason = ReasonSchedulingGated
			msg = fmt.Sprintf("The Pod is held by scheduling gate %s; it creates no instance for dedicated node %s until its gates are removed", pod.gate, r.name)
		case err != nil:
			reason = ReasonNodeClassNotFound
			msg = fmt.Sprintf("NodeClass %s does not exist (%v); the Pod creates no instance for dedicated node %s until it does", pod.nodeClass, err, r.name)
		case want != "" && pod.nodeClass != want:
			reason = ReasonNodeClassMismatch
			msg = fmt.Sprintf("The Pod asks for NodeClass %s, but dedicated node %s is of NodeClass %s; it creates no instance", pod.nodeClass, r.name, want)
		default:
			if ok, why := r.c.admits(nc, pod.Namespace); !ok {
				reason = ReasonNodeClassNotAdmitted
				msg = fmt.Sprintf("%s; the Pod creates no instance for dedicated node %s", why, r.name)
				break
			}
			if chosen == nil {
				oldest, chosen, want = pod, nc, nc.Name
			}
			continue
		}
		if r.skip == nil {
			r.skip = map[types.UID]bool{}
		}
		r.skip[pod.UID] = true
		if tag := reason + "/" + pod.nodeClass + "/" + pod.gate; r.st.reasons[pod.UID] != tag {
			r.st.reasons[pod.UID] = tag
			r.c.recorder.Event(pod.ref(), eventType, reason, msg)
		}
	}
	return oldest, chosen
}

// chargeCreation charges the creation about to be made to the namespace of the oldest waiting
// Pod, once per creation: retries reuse the charge. It returns how long the creation must wait
// for the namespace's creation rate limit, telling the waiting Pods with a Warning Event the first
// time; 0 means go ahead.
func (r *round) chargeCreation(ctx context.Context, oldest *cachedPod) (time.Duration, error) {
	lim := r.c.createLimiter
	if lim == nil {
		return 0, nil
	}
	if r.st.charge != nil {
		return r.st.charge.DelayFrom(r.now), nil
	}
	namespace := oldest.Namespace
	res, err := lim.reserve(namespace, r.now)
	if err != nil {
		return 0, fmt.Errorf("creating instance for node %s: %w", r.name, err)
	}
	r.st.charge = res
	delay := res.DelayFrom(r.now)
	if delay <= 0 {
		return 0, nil
	}
	metrics.IncCreationRateLimited()
	at := r.now.Add(delay)
	klog.FromContext(ctx).Info("Creation rate limited", "namespace", namespace, "limit", lim.String(), "createAt", at, "waitingPods", len(r.demand))
	r.notify(corev1.EventTypeWarning, ReasonCreationRateLimited, "",
		fmt.Sprintf("Namespace %s may have IPP create %s; the instance for dedicated node %s may be created at %s (in %v)",
			namespace, lim, r.name, at.UTC().Format(time.RFC3339), delay.Round(time.Second)))
	return delay, nil
}

// giveBackCharge gives the creation rate limit's token back when demand is gone before the
// creation was made. (A token whose time has come cannot be given back; see rate.Reservation.)
func (r *round) giveBackCharge() {
	if r.st.charge != nil {
		r.st.charge.CancelAt(r.now)
		r.st.charge = nil
	}
}

func (r *round) newKey() {
	r.st.salt++
	r.st.createKey = ""
}

// epoch numbers the registration-timeout-long periods of the clock.
func (r *round) epoch() int64 {
	return r.now.UnixNano() / int64(r.regTimeout)
}

func (r *round) untilRegistrationTimeout(inst cloudprovider.Instance) time.Duration {
	return inst.CreatedAt.Add(r.regTimeout).Sub(r.now)
}

// IdempotencyKey returns the idempotency key of a creation of the instance for the dedicated node
// name, for the oldest Pod that waits for it, in a registration-timeout-long epoch of the clock,
// with salt bumped each time a key turned out to be used up. It is 32 hex digits (128 bits), so
// a provider can use it as an EC2 ClientToken or format it as a GCE requestId UUID.
//
// The key must be the same for every retry of one creation, so that a retry after a lost reply
// returns the instance the lost call created, and differ for a later creation of the same name,
// because clouds remember keys for longer than an instance may live:
//   - A creation after reaping serves new Pods (reaping needs the node to have had no demand),
//     so the oldest Pod's UID differs.
//   - A creation after a registration timeout happens at least one timeout after the first
//     creation, so the epoch differs.
//   - Anything else (an instance deleted behind the controller's back) shows up as Create
//     returning a terminated instance or NotFound, which bumps the salt.
//
// The controller remembers the key of a creation in progress and reuses it for the retries, so a
// retry crossing an epoch boundary keeps its key. What it cannot remember across a restart is the
// failure window: a reply lost just before a crash, an epoch boundary or a change of the oldest Pod
// before the restarted controller retries, and a List that does not show the instance yet. On GCE
// no duplicate can follow (the instance name is unique); on EC2 a second instance can, and the
// controller deletes it when List shows two instances for one node.
func IdempotencyKey(nodeName string, oldestPod types.UID, epoch int64, salt int) string {
	sum := sha256.Sum256([]byte("ipp-create/v1\x00" + nodeName + "\x00" + string(oldestPod) + "\x00" +
		strconv.FormatInt(epoch, 10) + "\x00" + strconv.Itoa(salt)))
	return hex.EncodeToString(sum[:16])
}

func orUnknown(k cloudprovider.ErrorKind) cloudprovider.ErrorKind {
	if k == "" {
		return "Unknown"
	}
	return k
}
