// Package cloudprovider defines the contract between the IPP controller and a cloud: create,
// delete and list the instances that back dedicated nodes. Every method is idempotent, so the
// controller can call it again after any failure, including a reply lost after the action happened.
package cloudprovider

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/bootstrap"
)

// Ownership keys. Every instance a provider creates carries them, as GCE labels or EC2 tags, so
// that List finds exactly what this cluster owns. Providers may have to encode the values to fit a
// cloud's character set; List decodes them.
const (
	// TagCluster holds the cluster name.
	TagCluster = "ipp-cluster"
	// TagNode holds the dedicated node name.
	TagNode = "ipp-node"
	// TagClass holds the class.
	TagClass = "ipp-class"
	// TagNamespace holds the namespace in namespace scope, and is empty in cluster scope.
	TagNamespace = "ipp-namespace"
	// TagNodeClass holds the name of the NodeClass the instance was created for.
	TagNodeClass = "ipp-node-class"
	// TagJoinToken holds the id (never the secret) of the bootstrap token minted for the
	// instance; empty when the instance joins with a shared token or by other means.
	TagJoinToken = "ipp-join-token"
)

// InstanceSpec says what instance to create for a dedicated node.
type InstanceSpec struct {
	// NodeName is the dedicated node name. It is the instance's name and the name the node's
	// kubelet must register under.
	NodeName string
	// Class and Namespace are recorded on the instance for people and for List.
	Class     string
	Namespace string
	// NodeLabels and NodeTaints are what the kubelet registers the Node with; the provider renders
	// them into the instance's bootstrap. They never include the binding label.
	NodeLabels map[string]string
	NodeTaints []corev1.Taint
	// IdempotencyKey is stable across retries of one creation and differs between two creations
	// for the same node name (after the first instance was deleted). Providers derive their
	// request tokens (GCE requestId, EC2 ClientToken) from it.
	IdempotencyKey string
	// JoinToken, when set, is the bootstrap token ("<id>.<secret>") minted for this instance
	// alone; the provider renders it into this instance's bootstrap instead of a shared token,
	// and records JoinTokenID on the instance.
	JoinToken   string
	JoinTokenID string
	// NodeClass is the name of the NodeClass the instance is created for; the provider records it
	// on the instance (TagNodeClass) and List returns it.
	NodeClass string
	// GCE and EC2 are the NodeClass's instance shape. A provider reads only its own; nil, or a
	// field left empty, falls back to the provider's own Config (its flags). Lists are in order of
	// preference: a zone, subnet or instance type out of capacity is skipped for the next.
	GCE *ippv1alpha1.GCENodeClass
	EC2 *ippv1alpha1.EC2NodeClass
}

// Join returns how the instance of spec joins: shared with the instance's own token, if it has one.
func (spec InstanceSpec) Join(shared bootstrap.Join) bootstrap.Join {
	if spec.JoinToken != "" {
		shared.Token = spec.JoinToken
	}
	return shared
}

// InstanceState is the life-cycle state of an instance, mapped from the cloud's own states.
type InstanceState string

const (
	// StatePending means the instance is being created or is booting.
	StatePending InstanceState = "Pending"
	// StateRunning means the instance is running.
	StateRunning InstanceState = "Running"
	// StateStopping means the instance is stopping or being deleted.
	StateStopping InstanceState = "Stopping"
	// StateStopped means the instance exists but is not running.
	StateStopped InstanceState = "Stopped"
	// StateTerminated means the instance is gone or going. List never returns such instances.
	StateTerminated InstanceState = "Terminated"
)

// Instance is one instance this cluster owns.
type Instance struct {
	// NodeName is the dedicated node name the instance was created for.
	NodeName string
	// ID is the cloud's own identifier (the GCE instance name, the EC2 instance id).
	ID string
	// ProviderID is what the Node's spec.providerID must equal for the node to be this instance:
	// gce://<project>/<zone>/<name> or aws:///<availability-zone>/<instance-id>.
	ProviderID string
	Class      string
	Namespace  string
	State      InstanceState
	// CreatedAt is when the cloud created the instance.
	CreatedAt time.Time
	// JoinTokenID is the id of the bootstrap token minted for the instance (TagJoinToken), or
	// empty.
	JoinTokenID string
	// NodeClass is the NodeClass the instance was created for (TagNodeClass); empty for instances
	// created before NodeClasses existed, which count as the default NodeClass's.
	NodeClass string
	// Zone is the zone (GCE) or availability zone (EC2) the instance is in, and InstanceType its
	// machine type or instance type, as the cloud reports them; for logs and Events. Either may
	// be empty when the cloud did not say.
	Zone         string
	InstanceType string
}

// Provider creates, deletes and lists the instances that back dedicated nodes.
//
// Errors returned by a Provider are *Error values (test them with IsRetryable, IsNotFound and the
// other helpers) or context errors.
type Provider interface {
	// Name is the provider's flag value, such as "gce" or "ec2".
	Name() string

	// Create creates the instance for spec.NodeName and returns it. If an instance for that node
	// already exists and is not terminated, Create returns it and creates nothing. A retry with the
	// same IdempotencyKey after a lost reply never creates a second instance.
	Create(ctx context.Context, spec InstanceSpec) (*Instance, error)

	// Delete deletes the instance. Deleting an instance that is already gone succeeds. Delete
	// returns once the cloud has accepted the deletion; List may show the instance as Stopping
	// until it is gone.
	Delete(ctx context.Context, instance Instance) error

	// List returns every instance that this cluster owns and that is not terminated, found by the
	// ownership labels or tags. It reads every page.
	List(ctx context.Context) ([]Instance, error)

	// RegistrationTimeout is how long an instance of this provider's configured type may take
	// from creation to its Node registering, before the controller replaces it. Bare-metal types
	// boot for minutes.
	RegistrationTimeout() time.Duration
}

// ErrorKind classifies a provider error by what the caller should do about it.
type ErrorKind string

const (
	// KindNotFound means the instance does not exist.
	KindNotFound ErrorKind = "NotFound"
	// KindRateLimited means the cloud throttled the call; retry with back-off.
	KindRateLimited ErrorKind = "RateLimited"
	// KindCapacity means the zone has no capacity for the machine type (GCE
	// ZONE_RESOURCE_POOL_EXHAUSTED, EC2 InsufficientInstanceCapacity); retry later or elsewhere.
	KindCapacity ErrorKind = "Capacity"
	// KindQuota means a quota is exhausted; retrying helps only once quota frees up.
	KindQuota ErrorKind = "Quota"
	// KindTransient is a server-side failure (5xx, a timeout) that a retry may clear.
	KindTransient ErrorKind = "Transient"
	// KindInvalid means the request itself is wrong (bad machine type, missing permission);
	// retrying the same request will not help.
	KindInvalid ErrorKind = "Invalid"
)

// Error is a provider error with its kind. Op is the operation ("create", "delete", "list"),
// Code the cloud's own error code where it gave one.
type Error struct {
	Kind ErrorKind
	Op   string
	Code string
	Err  error
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: %s (%s): %v", e.Op, e.Kind, e.Code, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Op, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NewError returns an *Error of kind for op.
func NewError(kind ErrorKind, op, code string, err error) *Error {
	return &Error{Kind: kind, Op: op, Code: code, Err: err}
}

// ConfigError says that a provider's Config lacks a setting it requires or has an invalid one.
// Fields are the Go names of the Config fields concerned (one of them is required when there are
// several), so that a command can say which of its flags to set.
type ConfigError struct {
	Fields []string
	// Missing is true when the setting is absent, false when it is invalid.
	Missing bool
	Err     error
}

func (e *ConfigError) Error() string { return e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// KindOf returns the kind of err, or "" if err is not an *Error.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// IsNotFound reports whether err says the instance does not exist.
func IsNotFound(err error) bool { return KindOf(err) == KindNotFound }

// IsRateLimited reports whether err is throttling.
func IsRateLimited(err error) bool { return KindOf(err) == KindRateLimited }

// IsCapacity reports whether err is a lack of capacity for the instance type.
func IsCapacity(err error) bool { return KindOf(err) == KindCapacity }

// IsQuota reports whether err is an exhausted quota.
func IsQuota(err error) bool { return KindOf(err) == KindQuota }

// IsRetryable reports whether calling again later may succeed. Invalid requests are not
// retryable; errors that are not *Error (a context error, say) are treated as retryable.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	return KindOf(err) != KindInvalid
}

// SortInstances orders instances oldest first, then by ID, keeping the order of equal ones.
func SortInstances(insts []Instance) {
	sort.SliceStable(insts, func(i, j int) bool {
		if !insts[i].CreatedAt.Equal(insts[j].CreatedAt) {
			return insts[i].CreatedAt.Before(insts[j].CreatedAt)
		}
		return insts[i].ID < insts[j].ID
	})
}
