// Package isolation holds the names that every part of IPP agrees on: the Pod label that opts a
// Pod into a class, the label and taint on IPP nodes, the controller-only label that binds a node to
// its class, and the pure function from (cluster, namespace, class) to a class's dedicated node name.
//
// Nothing here talks to an API: the webhook derives a Pod's pin from this package alone, and the
// controller derives the same name from the same inputs, so the two never need to agree at run time.
package isolation

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults for the names in DESIGN.md. Each can be changed by a flag.
const (
	// DefaultPodLabel is the Pod label whose value is the Pod's isolation class.
	DefaultPodLabel = "ipp-class"
	// DefaultNodeLabel is the key of the label (value "true") that every IPP node carries.
	DefaultNodeLabel = "ipp"
	// DefaultNodeTaint is the key of the taint (value "true") that every IPP node carries.
	DefaultNodeTaint = "ipp"
	// NodeClassLabel is the Pod label whose value names the Pod's NodeClass (nodeclasses.ipp.io).
	NodeClassLabel = "ipp.io/node-class"
	// DefaultNodeClass is the NodeClass of a Pod without NodeClassLabel. Without an object of
	// that name, the provider flags describe it.
	DefaultNodeClass = "default"
	// DefaultClusterName is the cluster name used when none is given.
	DefaultClusterName = "ipp"

	// BindingLabel binds a node to the controller's record of it. Its value is the node's name
	// as the controller created it (with --placement=admission, the class's dedicated node name,
	// which Pods select). Only the controller writes it: the NodeRestriction admission plugin
	// refuses kubelets that try to set labels under node-restriction.kubernetes.io/ on their own
	// Node.
	BindingLabel = "node-restriction.kubernetes.io/ipp-node"
	// ClassLabel binds a node to its class: its value is the class key (ClassKey). With
	// --placement=controller every IPP Pod selects it from admission on, so a Pod can run only on
	// a node the controller bound to its class. Only the controller writes it.
	ClassLabel = "node-restriction.kubernetes.io/ipp-class"
	// NamespaceLabel and ClassNameLabel record on a node the namespace (empty in cluster scope)
	// and class it was bound to, so that every Pod placed there is compared with them, not only
	// with the key. Only the controller writes them.
	NamespaceLabel = "node-restriction.kubernetes.io/ipp-namespace"
	ClassNameLabel = "node-restriction.kubernetes.io/ipp-class-name"
	// WarmLabel (value "true") marks a warm node: booted for its NodeClass's warm pool, bound to
	// the controller's record of it, and not to any class, so no IPP Pod selects it. A claim
	// removes it and writes ClassLabel in one update. Only the controller writes it.
	WarmLabel = "node-restriction.kubernetes.io/ipp-warm"
	// NodeClassNodeLabel records on a node the NodeClass its instance was created for. Only the
	// controller writes it.
	NodeClassNodeLabel = "node-restriction.kubernetes.io/ipp-node-class"

	// IdleSinceLabel is the idle clock of a bound node: when the controller first saw it with no
	// Pod of its class, in UTC Unix seconds rounded up (so the clock never ends early). It is
	// removed when demand returns. Like BindingLabel it is under node-restriction.kubernetes.io/,
	// so a kubelet can neither add, change nor remove it: a node cannot keep itself alive by
	// rewriting its clock. Only the controller writes it.
	IdleSinceLabel = "node-restriction.kubernetes.io/ipp-idle-since"
	// ReapingLabel marks a node the controller has started to reap: when, in UTC Unix seconds.
	// Only the controller writes it.
	ReapingLabel = "node-restriction.kubernetes.io/ipp-reaping"
	// CordonedLabel (value "true") says that the controller, not a person, cordoned the node
	// while reaping it, so it may uncordon the node if demand returns before the reaping is
	// done. Only the controller writes it.
	CordonedLabel = "node-restriction.kubernetes.io/ipp-cordoned"

	// LabelValue is the value of the IPP node label and of the IPP taint.
	LabelValue = "true"

	// HostnameTopologyKey is the topology key of the autoscaler mode's anti-affinity.
	HostnameTopologyKey = corev1.LabelHostname

	// NodeNameField is the field that a matchFields node-selector requirement may select on.
	NodeNameField = "metadata.name"
)

// Mode says how IPP keeps classes apart.
type Mode string

const (
	// ModeDedicated pins every class to one dedicated node that the IPP controller creates.
	ModeDedicated Mode = "dedicated"
	// ModeAutoscaler keeps classes apart with inter-pod anti-affinity on a node pool that
	// Cluster Autoscaler scales.
	ModeAutoscaler Mode = "autoscaler"
)

// Modes lists the valid modes, in the order help text shows them.
var Modes = []string{string(ModeDedicated), string(ModeAutoscaler)}

// Placement says who chooses the node of an IPP Pod in dedicated mode.
type Placement string

const (
	// PlacementAdmission, the legacy placement: the webhook pins every Pod of a class to the class's one dedicated node
	// name (BindingLabel and matchFields metadata.name); the controller creates that node.
	PlacementAdmission Placement = "admission"
	// PlacementController, the default: the webhook pins every Pod to its class key (ClassLabel) and holds
	// it with the scheduling gate ipp.io/placement; the controller places it on a node of its
	// class with room, creating nodes as needed, and lifts the gate.
	PlacementController Placement = "controller"
)

// Placements lists the valid placements.
var Placements = []string{string(PlacementAdmission), string(PlacementController)}

// Scope says which Pods share a class.
type Scope string

const (
	// ScopeNamespace scopes a class to its namespace: the same class name in two namespaces
	// gives two dedicated nodes.
	ScopeNamespace Scope = "namespace"
	// ScopeCluster shares a class across namespaces.
	ScopeCluster Scope = "cluster"
)

// Scopes lists the valid class scopes.
var Scopes = []string{string(ScopeNamespace), string(ScopeCluster)}

// Config is what the webhook and the controller need to agree on. The zero value is not valid;
// start from DefaultConfig.
type Config struct {
	Mode        Mode
	PodLabel    string
	NodeLabel   string
	NodeTaint   string
	ClassScope  Scope
	ClusterName string
	// Placement says who chooses an IPP Pod's node in dedicated mode.
	Placement Placement
	// PinNodeName adds the matchFields metadata.name term to the pin of PlacementAdmission.
	// Without it that pin is the binding-label nodeSelector alone, which the scheduler cannot
	// narrow to one node. PlacementController ignores it: the controller names the node.
	PinNodeName bool
	// ExemptNamespaces are namespaces whose Pods the webhook neither mutates nor checks.
	ExemptNamespaces sets.Set[string]
}

// DefaultConfig returns the configuration that DESIGN.md describes.
func DefaultConfig() Config {
	return Config{
		Mode:             ModeDedicated,
		PodLabel:         DefaultPodLabel,
		NodeLabel:        DefaultNodeLabel,
		NodeTaint:        DefaultNodeTaint,
		ClassScope:       ScopeNamespace,
		ClusterName:      DefaultClusterName,
		Placement:        PlacementController,
		PinNodeName:      true,
		ExemptNamespaces: sets.New("kube-system", "ipp-system"),
	}
}

// Validate reports the first field that is not valid, naming the flag that sets it.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeDedicated, ModeAutoscaler:
	default:
		return fmt.Errorf("invalid --mode %q: must be one of %s", c.Mode, strings.Join(Modes, ", "))
	}
	switch c.Placement {
	case PlacementAdmission, PlacementController:
	default:
		return fmt.Errorf("invalid --placement %q: must be one of %s", c.Placement, strings.Join(Placements, ", "))
	}
	switch c.ClassScope {
	case ScopeNamespace, ScopeCluster:
	default:
		return fmt.Errorf("invalid --class-scope %q: must be one of %s", c.ClassScope, strings.Join(Scopes, ", "))
	}
	for _, f := range []struct{ flag, value string }{
		{"--pod-label", c.PodLabel},
		{"--node-label", c.NodeLabel},
		{"--node-taint", c.NodeTaint},
	} {
		if errs := validation.IsQualifiedName(f.value); len(errs) > 0 {
			return fmt.Errorf("invalid %s %q: %s", f.flag, f.value, strings.Join(errs, "; "))
		}
	}
	if c.ClusterName == "" {
		return fmt.Errorf("invalid --cluster-name: must not be empty")
	}
	if errs := validation.IsDNS1123Label(c.ClusterName); len(errs) > 0 {
		return fmt.Errorf("invalid --cluster-name %q: %s", c.ClusterName, strings.Join(errs, "; "))
	}
	for ns := range c.ExemptNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("invalid --exempt-namespaces entry %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	return nil
}

// Exempt reports whether Pods in namespace are exempt from IPP's admission checks.
func (c Config) Exempt(namespace string) bool {
	return c.ExemptNamespaces.Has(namespace)
}

// Class returns the Pod's isolation class and whether it has one. A Pod whose label is present but
// empty has no class.
func (c Config) Class(pod *corev1.Pod) (string, bool) {
	class, ok := pod.Labels[c.PodLabel]
	return class, ok && class != ""
}

// NodeName returns the dedicated node name of class in namespace under this configuration.
func (c Config) NodeName(namespace, class string) string {
	return NodeName(c.ClusterName, c.ClassScope, namespace, class)
}

// ClassKey returns the class key of class in namespace under this configuration.
func (c Config) ClassKey(namespace, class string) string {
	return ClassKey(c.ClusterName, c.ClassScope, namespace, class)
}

// ScopedNamespace returns the namespace part of a class's identity: namespace in namespace
// scope, "" in cluster scope.
func (c Config) ScopedNamespace(namespace string) string {
	if c.ClassScope != ScopeNamespace {
		return ""
	}
	return namespace
}

// Tolerations returns the tolerations that an IPP Pod needs: the IPP taint with both effects.
func (c Config) Tolerations() []corev1.Toleration {
	return []corev1.Toleration{
		{Key: c.NodeTaint, Operator: corev1.TolerationOpEqual, Value: LabelValue, Effect: corev1.TaintEffectNoSchedule},
		{Key: c.NodeTaint, Operator: corev1.TolerationOpEqual, Value: LabelValue, Effect: corev1.TaintEffectNoExecute},
	}
}

// NotReadyToleration is the toleration of node.kubernetes.io/not-ready:NoSchedule that IPP Pods
// get under controller placement: the controller places a Pod only on a Ready node, which may
// still carry the taint for a few seconds.
func NotReadyToleration() corev1.Toleration {
	return corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
}

// Taints returns the taints that every IPP node registers with.
func (c Config) Taints() []corev1.Taint {
	return []corev1.Taint{
		{Key: c.NodeTaint, Value: LabelValue, Effect: corev1.TaintEffectNoSchedule},
		{Key: c.NodeTaint, Value: LabelValue, Effect: corev1.TaintEffectNoExecute},
	}
}

// NodeLabels returns the labels that every IPP node registers with. It never includes
// BindingLabel, which only the controller writes.
func (c Config) NodeLabels() map[string]string {
	return map[string]string{c.NodeLabel: LabelValue}
}

const (
	nodeNamePrefix = "ipp-"
	// hashLen hex characters of SHA-256: 48 bits, so that thousands of classes never collide.
	hashLen = 12
	// maxSlugLen keeps prefix + slug + "-" + hash within a DNS-1123 label's 63 characters.
	maxSlugLen = validation.DNS1123LabelMaxLength - len(nodeNamePrefix) - 1 - hashLen
)

// NodeName returns the dedicated node name of a class: "ipp-<slug>-<hash>", where the slug is a
// readable form of the class and the hash covers every input exactly. The result is always a valid
// DNS-1123 label (and a valid GCE instance name) of at most 63 characters. In cluster scope the
// namespace is ignored.
//
// The mapping is part of IPP's contract: changing it would move every class to a new node on
// upgrade. TestNodeNameGolden pins it.
func NodeName(cluster string, scope Scope, namespace, class string) string {
	if scope != ScopeNamespace {
		namespace = ""
	}
	// NUL cannot occur in any of the inputs, so the encoding is unambiguous.
	sum := sha256.Sum256([]byte("ipp/v1\x00" + cluster + "\x00" + namespace + "\x00" + class))
	return nodeNamePrefix + slug(class) + "-" + hex.EncodeToString(sum[:])[:hashLen]
}

const (
	// classKeyHashLen hex characters of SHA-256: 128 bits, so that no one can search for a class
	// name whose key equals another class's.
	classKeyHashLen = 32
	maxKeySlugLen   = validation.LabelValueMaxLength - 1 - classKeyHashLen
	// instanceSuffixLen random hex characters make an instance name unique: 64 bits.
	instanceSuffixLen = 16
	maxInstSlugLen    = validation.DNS1123LabelMaxLength - len(nodeNamePrefix) - 1 - instanceSuffixLen
)

// ClassKey returns the key of a class, the value of ClassLabel on its nodes and of the nodeSelector
// its Pods get: "<slug>-<32 hex>", where the slug is a readable form of the class and the hex is
// 128 bits of SHA-256 of (cluster, namespace, class), so a search for a colliding class name costs
// about 2^64 hashes even for a partial (birthday) match. It is always a valid label value. In
// cluster scope the namespace is ignored. TestClassKeyGolden pins the mapping.
func ClassKey(cluster string, scope Scope, namespace, class string) string {
	if scope != ScopeNamespace {
		namespace = ""
	}
	sum := sha256.Sum256([]byte("ipp-class/v2\x00" + cluster + "\x00" + namespace + "\x00" + class))
	sl := slug(class)
	if len(sl) > maxKeySlugLen {
		sl = strings.TrimRight(sl[:maxKeySlugLen], "-")
	}
	return sl + "-" + hex.EncodeToString(sum[:])[:classKeyHashLen]
}

// InstanceName returns the name of a new instance of class, and of its Node: "ipp-<slug>-<16 hex>"
// with 64 random bits, so that names are unique per instance and never come back. random must
// hold at least 8 bytes (from crypto/rand).
func InstanceName(class string, random []byte) string {
	sl := slug(class)
	if len(sl) > maxInstSlugLen {
		sl = strings.TrimRight(sl[:maxInstSlugLen], "-")
	}
	return nodeNamePrefix + sl + "-" + hex.EncodeToString(random[:instanceSuffixLen/2])
}

// slug lower-cases s, turns every run of characters outside [a-z0-9] into one '-', trims '-' from
// both ends and cuts the result to maxSlugLen. An empty slug becomes "class".
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	out := b.String()
	if len(out) > maxSlugLen {
		out = strings.TrimRight(out[:maxSlugLen], "-")
	}
	if out == "" {
		return "class"
	}
	return out
}
