package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// FieldManager is the field manager of the controller's writes that name one.
const FieldManager = "ipp-controller"

// joinToken returns the bootstrap token for the creation in progress, minting its Secret the first
// time. The token is reused by the retries of the creation while at least half of its life is
// left; an older one is deleted and replaced, so that an instance never boots with a token about
// to expire.
//
// A crash between minting and Create leaves a Secret no instance carries: it expires after the
// registration timeout, and kube-controller-manager's tokencleaner deletes it.
func (r *round) joinToken(ctx context.Context) (jointoken.Token, error) {
	if r.st.token != nil && r.now.Sub(r.st.tokenMinted) < r.c.regTimeout/2 {
		return *r.st.token, nil
	}
	if r.st.token != nil {
		if err := r.c.deleteJoinToken(ctx, r.st.token.ID); err != nil {
			return jointoken.Token{}, err
		}
		r.st.token = nil
	}
	tok, err := jointoken.New()
	if err != nil {
		return jointoken.Token{}, err
	}
	secret, err := jointoken.Secret(tok, r.c.cfg.ClusterName, r.name, r.now.Add(r.c.regTimeout))
	if err != nil {
		return jointoken.Token{}, err
	}
	if _, err := r.c.kube.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, secret, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		return jointoken.Token{}, fmt.Errorf("minting join token for node %s: %w", r.name, err)
	}
	klog.FromContext(ctx).Info("Minted join token", "tokenID", tok.ID, "secret", klog.KObj(secret), "expires", r.now.Add(r.c.regTimeout))
	r.st.token, r.st.tokenMinted = &tok, r.now
	return tok, nil
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
	if r.st.token != nil && r.st.token.ID == inst.JoinTokenID {
		r.st.token = nil
	}
	return r.c.deleteJoinToken(ctx, inst.JoinTokenID)
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
// id; synced is false until the provider's instances have been listed. It is the CSR approver's
// view of the instances (approver.Instances).
func (c *Controller) NodeOfJoinToken(id string) (nodeName string, ok, synced bool) {
	if s, _ := c.instances.hasSynced(); !s {
		return "", false, false
	}
	inst, ok := c.instances.ofJoinToken(id)
	return inst.NodeName, ok, true
}
