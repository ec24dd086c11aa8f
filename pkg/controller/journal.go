package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// JournalName is the name of the ConfigMap, in Options.JournalNamespace, that records the join
// tokens the controller minted. RBAC grants get and patch on this name only.
const JournalName = "ipp-join-tokens"

// journal is the durable record of the join tokens minted by the controllers of every cluster
// that shares its namespace: ConfigMap JournalName, with one data key "<cluster>.<token id>" per
// token, whose value (journalValue, in JSON) names the token's node and when it was minted.
//
// An entry is written before the token's Secret is created and removed only once the Secret is
// known to be gone, so every token Secret a controller minted has an entry, even across a crash.
// That is how orphan tokens are found without reading Secrets in kube-system, which RBAC cannot
// grant for some Secrets only. Every write is a JSON merge patch of one key: controllers of
// different clusters never conflict.
type journal struct {
	kube      kubernetes.Interface
	namespace string
	cluster   string
}

// journalValue is the value of a journal key.
type journalValue struct {
	// NodeName is the dedicated node the token was minted for.
	NodeName string `json:"node"`
	// Minted is when the token was minted, by the controller's clock (RFC3339).
	Minted string `json:"minted"`
	// NodeClass and Namespace are what the creation counts against (the limits): until an
	// instance carries the token, its entry is a creation that may be in flight.
	NodeClass string `json:"nodeClass,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Class is the class the instance is for (maxNodesPerClass counts by it).
	Class string `json:"class,omitempty"`
}

// key returns the data key of token id of the journal's cluster. A cluster name is a DNS-1123
// label (jointoken.ValidateCluster) and so has no dot: the first dot ends it.
func (j journal) key(id string) string { return j.cluster + "." + id }

// record adds the entry of token id, minted at minted for v's node, NodeClass and namespace,
// creating the ConfigMap if there is none.
func (j journal) record(ctx context.Context, id string, v journalValue, minted time.Time) error {
	v.Minted = minted.UTC().Format(time.RFC3339)
	value, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("recording join token %s: %w", id, err)
	}
	data := map[string]*string{j.key(id): new(string(value))}
	// A race with another controller creating the ConfigMap ends in AlreadyExists, and the
	// patch after it succeeds; one more round is enough unless someone deletes the ConfigMap
	// over and over.
	for range 2 {
		err = j.patch(ctx, data)
		if !apierrors.IsNotFound(err) {
			break
		}
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: j.namespace, Name: JournalName},
			Data:       map[string]string{j.key(id): string(value)},
		}
		_, err = j.kube.CoreV1().ConfigMaps(j.namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
		if !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("recording join token %s in ConfigMap %s/%s: %w", id, j.namespace, JournalName, err)
	}
	return nil
}

// forget removes the entry of token id. An entry or a ConfigMap already gone is done.
func (j journal) forget(ctx context.Context, id string) error {
	err := j.patch(ctx, map[string]*string{j.key(id): nil})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing join token %s from ConfigMap %s/%s: %w", id, j.namespace, JournalName, err)
	}
	return nil
}

// patch sets (or, with nil, removes) the data keys of the journal with a JSON merge patch.
func (j journal) patch(ctx context.Context, data map[string]*string) error {
	patch, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		return err
	}
	_, err = j.kube.CoreV1().ConfigMaps(j.namespace).Patch(ctx, JournalName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	return err
}

// tokens returns the entries of the journal's cluster by token id. A ConfigMap not yet created
// has none. A value that does not parse (only a person can have written it) has the zero Minted
// time, as if minted long ago: its key alone names a token of this cluster, and the collection
// deletes it only if nothing uses it.
func (j journal) tokens(ctx context.Context) (map[string]journalEntry, error) {
	cm, err := j.kube.CoreV1().ConfigMaps(j.namespace).Get(ctx, JournalName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", j.namespace, JournalName, err)
	}
	out := map[string]journalEntry{}
	for k, v := range cm.Data {
		id, ok := strings.CutPrefix(k, j.cluster+".")
		if !ok || !bootstraputil.IsValidBootstrapTokenID(id) {
			continue // another cluster's, or not a token's
		}
		var e journalEntry
		var val journalValue
		if json.Unmarshal([]byte(v), &val) == nil {
			e.NodeName, e.NodeClass, e.Namespace, e.Class = val.NodeName, val.NodeClass, val.Namespace, val.Class
			e.Minted, _ = time.Parse(time.RFC3339, val.Minted)
		}
		out[id] = e
	}
	return out, nil
}

// journalEntry is a journal entry of the journal's cluster, parsed.
type journalEntry struct {
	NodeName  string
	Minted    time.Time
	NodeClass string
	Namespace string
	Class     string
}
