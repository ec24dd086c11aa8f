package admission

import (
	"fmt"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// Field paths used in messages.
const (
	requiredPath  = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
	preferredPath = "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
	antiPath      = "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
)

// discard is the logger that toleration matching gets. With comparison operators off it logs
// nothing; the zero logr.Logger discards anyway.
var discard klog.Logger

// pin is what an IPP Pod of one class must carry under one configuration.
type pin struct {
	// podLabel and nodeLabel are the configuration's class label and IPP node label, for messages.
	podLabel, nodeLabel string
	class               string
	// node is the class's dedicated node name (dedicated mode, --placement=admission only).
	node string
	// key is the class key that the Pod selects on ClassLabel (dedicated mode,
	// --placement=controller only).
	key string
	// gate is the scheduling gate that Mutate adds on CREATE (--placement=controller only); the
	// controller lifts it when it places the Pod. Validate does not require it: isolation rests
	// on the selector alone.
	gate string
	// tolerations are added by Mutate; taints must be tolerated for Validate.
	tolerations []corev1.Toleration
	taints      []corev1.Taint
	// selector is the nodeSelector entry of the pin; empty key in autoscaler mode.
	selectorKey, selectorValue string
	// termField names the list of every required node-affinity term that term must be in:
	// "matchFields" or "matchExpressions"; empty when no term is required.
	termField string
	term      corev1.NodeSelectorRequirement
	// anti is the required pod anti-affinity term (autoscaler mode only).
	anti *corev1.PodAffinityTerm
}

// pinFor returns the pin of class in namespace.
func pinFor(cfg isolation.Config, namespace, class string) *pin {
	p := &pin{podLabel: cfg.PodLabel, nodeLabel: cfg.NodeLabel, class: class}
	if cfg.Mode == isolation.ModeAutoscaler {
		// The original mutation (ipp=true:NoSchedule, ipp In [true], and anti-affinity to every
		// Pod whose class differs, per host) with one difference: it tolerates ipp=true:NoExecute
		// too, so that the pool can be tainted with both effects and its kubelets refuse a Pod
		// without a class that names a pool node in spec.nodeName.
		p.tolerations = cfg.Tolerations()
		p.taints = cfg.Taints()
		p.termField = "matchExpressions"
		p.term = corev1.NodeSelectorRequirement{Key: cfg.NodeLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{isolation.LabelValue}}
		p.anti = &corev1.PodAffinityTerm{
			LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: cfg.PodLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{class}},
			}},
			TopologyKey: isolation.HostnameTopologyKey,
		}
		return p
	}
	p.tolerations = cfg.Tolerations()
	p.taints = cfg.Taints()
	if cfg.Placement == isolation.PlacementController {
		// The class key alone: the controller chooses the node and appends its name to every
		// required term (placement.PinPatch) when it lifts the gate.
		p.key = cfg.ClassKey(namespace, class)
		p.selectorKey, p.selectorValue = isolation.ClassLabel, p.key
		p.gate = placement.Gate
		// The controller places a Pod only on a Node that is Ready; the node lifecycle
		// controller removes node.kubernetes.io/not-ready a moment (seconds, for a burst of new
		// Nodes) later. Tolerating it lets the scheduler bind at once instead of backing off.
		// It opens no other node: the class key and the node name still pin the Pod.
		p.tolerations = append(p.tolerations, isolation.NotReadyToleration())
		return p
	}
	p.node = cfg.NodeName(namespace, class)
	p.selectorKey, p.selectorValue = isolation.BindingLabel, p.node
	if cfg.PinNodeName {
		p.termField = "matchFields"
		p.term = corev1.NodeSelectorRequirement{Key: isolation.NodeNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{p.node}}
	}
	return p
}

// pinOf returns the pin that the Pod of req must carry. It is pinFor's, with two differences on an
// UPDATE under --placement=controller: the pin has no gate (the API server lets an update remove
// scheduling gates, never add one), and a Pod that was admitted under --placement=admission (its
// old form selects the class's dedicated node name on BindingLabel, and not the class key) keeps
// the pin it was admitted with, which the API server would not let it trade for the new one once
// it is no longer gated, and which keeps it on a node of its class as well.
func pinOf(cfg isolation.Config, req *admissionv1.AdmissionRequest, in input, class string) *pin {
	p := pinFor(cfg, req.Namespace, class)
	if p.key == "" || req.Operation == admissionv1.Create || in.old == nil {
		return p
	}
	p.gate = ""
	legacy := legacyPin(cfg, req.Namespace, class)
	old := in.old.spec().NodeSelector
	if _, hasKey := old[isolation.ClassLabel]; !hasKey && old[isolation.BindingLabel] == legacy.node {
		return legacy
	}
	return p
}

// legacyPin returns the pin that class has under --placement=admission.
func legacyPin(cfg isolation.Config, namespace, class string) *pin {
	cfg.Placement = isolation.PlacementAdmission
	return pinFor(cfg, namespace, class)
}

// classOf returns the Pod's isolation class and whether it has one.
func classOf(cfg isolation.Config, pod *podObject) (string, bool) {
	if pod == nil {
		return "", false
	}
	return cfg.Class(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: pod.Metadata.Labels}})
}

// describe names the pin's target for messages.
func (p *pin) describe() string {
	if p.key != "" {
		return fmt.Sprintf("IPP Pod of class %q runs only on nodes of its class (%s=%s)", p.class, isolation.ClassLabel, p.key)
	}
	if p.node != "" {
		return fmt.Sprintf("IPP Pod of class %q runs only on its dedicated node %s", p.class, p.node)
	}
	return fmt.Sprintf("IPP Pod of class %q runs only on IPP nodes (%s=%s), apart from other classes", p.class, p.nodeLabel, isolation.LabelValue)
}

// conflicts returns what in spec disagrees with the pin: a nodeSelector or a required node-affinity
// requirement on the binding label or on the node name that names another node, or, under
// --placement=controller, on the class label that names another class key. Only dedicated mode
// has a node or a class key to disagree with.
func (p *pin) conflicts(spec *podSpec) []string {
	if p.key != "" {
		return p.keyConflicts(spec)
	}
	if p.node == "" {
		return nil
	}
	var out []string
	if v, ok := spec.NodeSelector[isolation.BindingLabel]; ok && v != p.node {
		out = append(out, fmt.Sprintf("spec.nodeSelector sets %s=%q: remove it (the webhook sets it to %q)", isolation.BindingLabel, v, p.node))
	}
	for i, t := range spec.requiredTerms() {
		for j, r := range t.MatchFields {
			if r.Key == isolation.NodeNameField && !isRequirement(r, isolation.NodeNameField, corev1.NodeSelectorOpIn, p.node) {
				out = append(out, fmt.Sprintf("%s[%d].matchFields[%d] selects %s %s %v: remove it (the webhook adds %s In [%s])", requiredPath, i, j, r.Key, r.Operator, r.Values, isolation.NodeNameField, p.node))
			}
		}
		for j, r := range t.MatchExpressions {
			if r.Key == isolation.BindingLabel && !isRequirement(r, isolation.BindingLabel, corev1.NodeSelectorOpIn, p.node) {
				out = append(out, fmt.Sprintf("%s[%d].matchExpressions[%d] selects %s %s %v: remove it", requiredPath, i, j, r.Key, r.Operator, r.Values))
			}
		}
	}
	return out
}

// keyConflicts is conflicts under --placement=controller: a nodeSelector on the class label with
// another value, and a required node-affinity requirement on the class label other than exactly
// In [key]. A requirement on metadata.name is allowed: the controller appends one to every term,
// and the class label holds the Pod to its class's nodes whatever the name says.
func (p *pin) keyConflicts(spec *podSpec) []string {
	var out []string
	if v, ok := spec.NodeSelector[isolation.ClassLabel]; ok && v != p.key {
		out = append(out, fmt.Sprintf("spec.nodeSelector sets %s=%q: remove it (the webhook sets it to %q)", isolation.ClassLabel, v, p.key))
	}
	for i, t := range spec.requiredTerms() {
		for j, r := range t.MatchExpressions {
			if r.Key == isolation.ClassLabel && !isRequirement(r, isolation.ClassLabel, corev1.NodeSelectorOpIn, p.key) {
				out = append(out, fmt.Sprintf("%s[%d].matchExpressions[%d] selects %s: remove it (the class key of the Pod is %s)", requiredPath, i, j, requirementString(r), p.key))
			}
		}
	}
	return out
}

// emptyTerms returns a message for each required node-affinity term that is empty, when the pin
// must add to every term (under --placement=controller, the controller adds the node's name to
// every term when it lifts the gate). An empty term matches no node; adding the pin to it would
// let the Pod onto its node without the user's other constraints, so the user must remove it.
func (p *pin) emptyTerms(spec *podSpec) []string {
	if p.termField == "" && p.key == "" {
		return nil
	}
	var out []string
	for i, t := range spec.requiredTerms() {
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			out = append(out, fmt.Sprintf("%s[%d] is empty and matches no node: remove it", requiredPath, i))
		}
	}
	return out
}

// missing returns each part of the pin that spec lacks.
func (p *pin) missing(spec *podSpec) []string {
	var out []string
	for i := range p.taints {
		if !tolerates(spec.Tolerations, &p.taints[i]) {
			out = append(out, fmt.Sprintf("a toleration of the IPP taint %s", taintString(&p.taints[i])))
		}
	}
	if p.selectorKey != "" && spec.NodeSelector[p.selectorKey] != p.selectorValue {
		out = append(out, fmt.Sprintf("spec.nodeSelector %s=%s", p.selectorKey, p.selectorValue))
	}
	if p.termField != "" {
		terms := spec.requiredTerms()
		if len(terms) == 0 {
			out = append(out, fmt.Sprintf("a required node-affinity term with %s %s", p.termField, requirementString(p.term)))
		}
		for i := range terms {
			if !p.termHas(&terms[i]) {
				out = append(out, fmt.Sprintf("%s %s in %s[%d]", p.termField, requirementString(p.term), requiredPath, i))
			}
		}
	}
	if p.anti != nil && !slices.ContainsFunc(spec.requiredAntiAffinity(), p.isAnti) {
		out = append(out, fmt.Sprintf("the required pod anti-affinity term %s NotIn [%s] with topologyKey %s", p.podLabel, p.class, isolation.HostnameTopologyKey))
	}
	return out
}

// termHas reports whether a required term carries the pin's requirement.
func (p *pin) termHas(t *corev1.NodeSelectorTerm) bool {
	reqs := t.MatchExpressions
	if p.termField == "matchFields" {
		reqs = t.MatchFields
	}
	for _, r := range reqs {
		if isRequirement(r, p.term.Key, p.term.Operator, p.term.Values...) {
			return true
		}
	}
	return false
}

// isAnti reports whether t is exactly the pin's anti-affinity term.
func (p *pin) isAnti(t corev1.PodAffinityTerm) bool {
	want := p.anti
	if t.TopologyKey != want.TopologyKey || len(t.Namespaces) > 0 || t.NamespaceSelector != nil ||
		len(t.MatchLabelKeys) > 0 || len(t.MismatchLabelKeys) > 0 || t.LabelSelector == nil ||
		len(t.LabelSelector.MatchLabels) > 0 || len(t.LabelSelector.MatchExpressions) != 1 {
		return false
	}
	got, w := t.LabelSelector.MatchExpressions[0], want.LabelSelector.MatchExpressions[0]
	return got.Key == w.Key && got.Operator == w.Operator && slices.Equal(got.Values, w.Values)
}

// hasToleration reports whether tolerations already hold t (TolerationSeconds aside).
func hasToleration(tolerations []corev1.Toleration, t *corev1.Toleration) bool {
	for i := range tolerations {
		have := tolerations[i]
		if have.Operator == "" {
			have.Operator = corev1.TolerationOpEqual
		}
		if have.MatchToleration(t) {
			return true
		}
	}
	return false
}

// tolerates reports whether any of tolerations tolerates taint, as the scheduler and the kubelet
// decide it.
func tolerates(tolerations []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tolerations {
		// The taint's value is never numeric, so Lt and Gt never match it.
		if tolerations[i].ToleratesTaint(discard, taint, false) {
			return true
		}
	}
	return false
}

// offenses returns what lets a Pod without a class onto IPP nodes or aims it at them: tolerations
// of the IPP taint, and nodeSelector entries or node-affinity requirements on the IPP node label,
// the binding label or the class label. Each is described by its content, not its position, so
// that an UPDATE can be checked for what it adds.
func offenses(cfg isolation.Config, spec *podSpec) []string {
	var out []string
	taints := cfg.Taints()
	for i := range spec.Tolerations {
		t := &spec.Tolerations[i]
		for j := range taints {
			if t.ToleratesTaint(discard, &taints[j], false) {
				out = append(out, fmt.Sprintf("toleration {key: %q, operator: %q, value: %q, effect: %q} tolerates the IPP taint %s", t.Key, t.Operator, t.Value, t.Effect, taintString(&taints[j])))
				break
			}
		}
	}
	for _, k := range []string{cfg.NodeLabel, isolation.BindingLabel, isolation.ClassLabel} {
		if v, ok := spec.NodeSelector[k]; ok {
			out = append(out, fmt.Sprintf("spec.nodeSelector %s=%s selects IPP nodes", k, v))
		}
	}
	check := func(where string, reqs []corev1.NodeSelectorRequirement) {
		for _, r := range reqs {
			if (r.Key == cfg.NodeLabel || r.Key == isolation.BindingLabel || r.Key == isolation.ClassLabel) &&
				r.Operator != corev1.NodeSelectorOpNotIn && r.Operator != corev1.NodeSelectorOpDoesNotExist {
				out = append(out, fmt.Sprintf("%s requirement %s selects IPP nodes", where, requirementString(r)))
			}
		}
	}
	for _, t := range spec.requiredTerms() {
		check("required node-affinity", t.MatchExpressions)
	}
	for _, t := range spec.preferredTerms() {
		check("preferred node-affinity", t.Preference.MatchExpressions)
	}
	return out
}

// isRequirement reports whether r is exactly key op values.
func isRequirement(r corev1.NodeSelectorRequirement, key string, op corev1.NodeSelectorOperator, values ...string) bool {
	return r.Key == key && r.Operator == op && slices.Equal(r.Values, values)
}

func requirementString(r corev1.NodeSelectorRequirement) string {
	if len(r.Values) == 0 {
		return fmt.Sprintf("%s %s", r.Key, r.Operator)
	}
	return fmt.Sprintf("%s %s [%s]", r.Key, r.Operator, strings.Join(r.Values, ", "))
}

func taintString(t *corev1.Taint) string {
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// subtract returns the entries of a that are not in b.
func subtract(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
