package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// FieldManager is the field manager of the controller's writes that name one.
const FieldManager = "ipp-controller"

// joinToken returns the bootstrap token for the creation in progress, minting its Secret the first
// time. The token is reused by the retries of the creation while at least half of its life is
// left; an older one is deleted and replaced, so that an instance never boots with a token about
// to expire.
//
// The token is recorded in the node's state, then in the journal, and only then is its Secret
// created. The orphan collection after a List (collectOrphanTokens) reads the journal before the
// state, so it never sees the entry of a creation in progress without its record in the state;
// and a crash at any point after the journal write leaves an entry that no instance carries, whose
// Secret (if it was created) the first List of the restarted controller deletes.
func (r *round) joinToken(ctx context.Context) (jointoken.Token, error) {
	if tok, minted := r.c.mintedToken(r.st); tok != nil && r.now.Sub(minted) < r.regTimeout/2 {
		return *tok, nil
	} else if tok != nil {
		if err := r.c.deleteJoinToken(ctx, tok.ID); err != nil {
			return jointoken.Token{}, err
		}
		r.c.setMintedToken(r.st, nil, time.Time{})
		// The creation's user data changes with its token: it needs a key of its own.
		r.newKey()
	}
	tok, err := jointoken.New()
	if err != nil {
		return jointoken.Token{}, err
	}
	secret, err := jointoken.Secret(tok, r.c.cfg.ClusterName, r.name, r.now.Add(r.regTimeout))
	if err != nil {
		return jointoken.Token{}, err
	}
	r.c.setMintedToken(r.st, &tok, r.now)
	if err := r.c.journal.record(ctx, tok.ID, journalValue{NodeName: r.name, NodeClass: r.ncName, Namespace: r.namespace, Class: r.class}, r.now); err != nil {
		r.c.setMintedToken(r.st, nil, time.Time{})
		return jointoken.Token{}, fmt.Errorf("minting join token for node %s: %w", r.name, err)
	}
	if _, err := r.c.kube.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, secret, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		// If the Secret was created after all, it is an orphan now, collected after a List.
		r.c.setMintedToken(r.st, nil, time.Time{})
		return jointoken.Token{}, fmt.Errorf("minting join token for node %s: %w", r.name, err)
	}
	klog.FromContext(ctx).Info("Minted join token", "tokenID", tok.ID, "secret", klog.KObj(secret), "expires", r.now.Add(r.regTimeout))
	return tok, nil
}

// mintedToken returns the join token of a node's creation in progress, and when it was minted.
// The state's token is guarded by c.mu: the List goroutine reads it too.
func (c *Controller) mintedToken(st *nodeState) (*jointoken.Token, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return st.token, st.tokenMinted
}

// setMintedToken records (or, with nil, forgets) the join token of a node's creation in progress.
func (c *Controller) setMintedToken(st *nodeState, tok *jointoken.Token, minted time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.token, st.tokenMinted = tok, minted
}

// forgetJoinToken deletes the join token of a deleted instance, unless another live instance of
// this node (a duplicate's original) carries it too.
func (r *round) forgetJoinToken(ctx context.Context, inst cloudprovider.Instance) error {
	if inst.JoinTokenID == "" {
		return nil
	}
	for _, other := range r.insts {
		if other.ID != inst.ID && other.JoinTokenID == inst.JoinTokenID && live(other) {
			return nil
		}
	}
	if tok, _ := r.c.mintedToken(r.st); tok != nil && tok.ID == inst.JoinTokenID {
		r.c.setMintedToken(r.st, nil, time.Time{})
	}
	return r.c.deleteJoinToken(ctx, inst.JoinTokenID)
}

// heldJoinTokens returns the ids of the join tokens that creations in progress hold.
func (c *Controller) heldJoinTokens() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := map[string]bool{}
	for _, st := range c.state {
		if st.token != nil {
			held[st.token.ID] = true
		}
	}
	return held
}

// collectOrphanTokens deletes the join token Secrets of this cluster that nothing will use, and
// forgets them in the journal. A token is an orphan when no live instance of the List that
// started at listStart carries its id (nor an instance created while it ran), no creation in
// progress holds it, and it was minted before the List started. Such a token is left by a crash
// between minting and Create, or by an instance deleted behind the controller's back; without
// this only its expiry would remove it. A token minted while the List ran may belong to an
// instance the List could not show yet, so it waits for the next.
//
// The same rule forgets the tokens already gone: those used (the approver deletes a token once its
// CSR is approved) and those deleted with their instance. Their Secret's deletion says NotFound
// once the instance is gone, and the entry goes. So the journal holds the tokens of live instances
// and of creations in progress, and those of the last moments.
//
// The journal is read before the instances and the creations in progress: a creation records its
// token in its state before the journal (joinToken), and an instance carries it before that
// record is dropped, so an entry still in use is always seen in use. No Secret is read: that
// would take reading every Secret in kube-system.
func (c *Controller) collectOrphanTokens(ctx context.Context, listStart time.Time) error {
	logger := klog.FromContext(ctx)
	entries, err := c.journal.tokens(ctx)
	if err != nil {
		return fmt.Errorf("reading the join token journal: %w", err)
	}
	carried := c.instances.joinTokens()
	held := c.heldJoinTokens()
	var errs []error
	// The entries that no live instance carries and that stay are creations that may be in
	// flight: they count against the limits until an instance carries them or they go.
	collected := map[string]bool{}
	defer func() {
		pending := map[string]slot{}
		for id, e := range entries {
			if carried[id] || collected[id] || e.NodeName == "" {
				continue
			}
			nc := e.NodeClass
			if nc == "" {
				nc = isolation.DefaultNodeClass
			}
			pending[e.NodeName] = slot{nodeClass: nc, namespace: e.Namespace, class: e.Class}
		}
		c.ledger.setJournal(pending)
	}()
	for _, id := range slices.Sorted(maps.Keys(entries)) {
		e := entries[id]
		isLive, known := carried[id]
		switch {
		case isLive || held[id]:
			continue
		case !e.Minted.Add(creationTimestampSlack).Before(listStart):
			continue // minted while the List ran, or too close to it to tell
		}
		reason := "no instance carries it and no creation in progress holds it"
		if known {
			reason = "its instance is being deleted"
		}
		name := jointoken.SecretName(id)
		err := c.kube.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// Gone already: used, deleted with its instance, or never created.
			logger.V(4).Info("Forgetting join token", "tokenID", id, "node", e.NodeName)
		case err != nil:
			// The entry stays, so that the next List tries again.
			errs = append(errs, fmt.Errorf("deleting orphan join token %s: %w", id, err))
			continue
		default:
			logger.Info("Deleted orphan join token", "tokenID", id, "node", e.NodeName, "secret", klog.KRef(metav1.NamespaceSystem, name), "reason", reason)
		}
		if err := c.journal.forget(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		collected[id] = true
	}
	return errors.Join(errs...)
}

// deleteJoinToken deletes the Secret of join token id; gone is done.
func (c *Controller) deleteJoinToken(ctx context.Context, id string) error {
	err := c.kube.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, jointoken.SecretName(id), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting join token %s: %w", id, err)
	}
	return nil
}

// NodeOfJoinToken returns the dedicated node name of the live instance whose join token id is
// id, as of the last successful provider List (with the controller's own creations and deletions
// since); fresh is false unless that List started at or after notBefore. It and RequestList are
// the CSR approver's view of the instances (approver.Instances).
func (c *Controller) NodeOfJoinToken(id string, notBefore time.Time) (nodeName string, ok, fresh bool) {
	if synced, listStart := c.instances.hasSynced(); !synced || listStart.Before(notBefore) {
		return "", false, false
	}
	inst, ok := c.instances.ofJoinToken(id)
	return inst.NodeName, ok, true
}

// RequestList asks the provider resync loop for a List now, or right after the one in progress,
// without waiting for the resync period. Requests coalesce: a List serves every request made
// before it started. It does not block, and does not cut short the back-off after a failed List.
func (c *Controller) RequestList() {
	select {
	case c.listNow <- struct{}{}:
	default: // a List is already requested
	}
}
