package admission

import (
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

func TestValidate(t *testing.T) {
	nodeCluster := "ipp-class0-38d61b2b6db5" // golden: cluster scope
	zoneA := exprTerm(req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a"))
	pinned := func(opts ...podOpt) *corev1.Pod {
		return newPod("class0", append([]podOpt{dedicatedPin(nodeClass0)}, opts...)...)
	}
	// A Pod whose own tolerations cover the taint but with nothing else of the pin.
	strip := func(p *corev1.Pod) { p.Spec.Tolerations = nil }

	tests := []struct {
		name      string
		cfg       func(*isolation.Config)
		op        admissionv1.Operation
		namespace string
		pod, old  *corev1.Pod
		// nodes is the node set Validate gets; nil means ippNodes, the synced set of poolNode.
		nodes      Nodes
		noNodes    bool // Validate gets no node set (--watch-ipp-nodes=false)
		wantDenied []string
		wantCode   int32
	}{
		// dedicated mode, IPP Pods
		{name: "admission: mutated IPP Pod is allowed", pod: pinned()},
		{name: "admission: the user's broad toleration counts", pod: newPod("class0", withTolerations(tolAll), withNodeSelector(binding, nodeClass0), withRequired(fieldsTerm(nodeClass0)))},
		{name: "admission: user terms each carrying the name are allowed", pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withNodeSelector(binding, nodeClass0),
			withRequired(corev1.NodeSelectorTerm{MatchExpressions: zoneA.MatchExpressions, MatchFields: []corev1.NodeSelectorRequirement{nameIn(nodeClass0)}}, fieldsTerm(nodeClass0)))},
		{name: "admission: unmutated IPP Pod is denied", pod: newPod("class0"),
			wantDenied: []string{"lacks a toleration of the IPP taint ipp=true:NoSchedule", "ipp=true:NoExecute", "spec.nodeSelector node-restriction.kubernetes.io/ipp-node=" + nodeClass0, "a required node-affinity term with matchFields metadata.name In [" + nodeClass0 + "]", "check that it runs"}},
		{name: "admission: missing NoExecute toleration is denied", pod: newPod("class0", withTolerations(tolNoSchedule), withNodeSelector(binding, nodeClass0), withRequired(fieldsTerm(nodeClass0))),
			wantDenied: []string{"lacks a toleration of the IPP taint ipp=true:NoExecute"}},
		{name: "admission: missing pin label is denied", pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withRequired(fieldsTerm(nodeClass0))),
			wantDenied: []string{"lacks spec.nodeSelector node-restriction.kubernetes.io/ipp-node=" + nodeClass0}},
		{name: "admission: a required term without the name is denied", pod: pinned(withRequired(zoneA)),
			wantDenied: []string{"matchFields metadata.name In [" + nodeClass0 + "] in " + requiredPath + "[1]"}},
		{name: "admission: --pin-node-name=false needs no matchFields", cfg: noNodeName, pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withNodeSelector(binding, nodeClass0), withRequired(zoneA))},
		{name: "admission: --pin-node-name=false still needs the label", cfg: noNodeName, pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute)),
			wantDenied: []string{"lacks spec.nodeSelector"}},
		{name: "admission: the pin of another namespace is denied", namespace: "team-a", pod: pinned(),
			wantDenied: []string{"spec.nodeSelector sets node-restriction.kubernetes.io/ipp-node=\"" + nodeClass0 + "\""}},
		{name: "admission: cluster scope pin is allowed in any namespace", cfg: clusterScope, namespace: "team-a",
			pod: newPod("class0", dedicatedPin(nodeCluster))},
		{name: "admission: preset spec.nodeName is denied", pod: pinned(withNodeName(nodeClass0)), wantDenied: []string{"remove spec.nodeName"}},
		{name: "admission: a second node-name term is denied", pod: pinned(withRequired(fieldsTerm("node-1"))), wantDenied: []string{"matchFields[0] selects metadata.name In [node-1]"}},
		{name: "admission: exempt namespace is skipped", namespace: "kube-system", pod: newPod("class0")},

		// dedicated mode, --placement=controller
		{name: "controller: mutated IPP Pod is allowed", cfg: controller, pod: newPod("class0", controllerPin(keyClass0))},
		{name: "controller: the gate is not required (isolation does not depend on it)", cfg: controller, pod: newPod("class0", keyPin(keyClass0))},
		{name: "controller: the user's broad toleration counts", cfg: controller, pod: newPod("class0", withTolerations(tolAll), withNodeSelector(classLbl, keyClass0))},
		{name: "controller: node-name affinity is allowed", cfg: controller, pod: newPod("class0", controllerPin(keyClass0), withRequired(fieldsTerm("node-1"), corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{req("metadata.name", corev1.NodeSelectorOpNotIn, "node-2")}}))},
		{name: "controller: a class-label requirement naming the key is allowed", cfg: controller, pod: newPod("class0", controllerPin(keyClass0), withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpIn, keyClass0))))},
		{name: "controller: unmutated IPP Pod is denied", cfg: controller, pod: newPod("class0"),
			wantDenied: []string{`IPP Pod of class "class0" runs only on nodes of its class (node-restriction.kubernetes.io/ipp-class=` + keyClass0 + "), but it lacks a toleration of the IPP taint ipp=true:NoSchedule", "ipp=true:NoExecute", "spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0, "check that it runs"}},
		{name: "controller: missing class-key selector is denied", cfg: controller, pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withGate(placement.Gate)),
			wantDenied: []string{"lacks spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0}},
		{name: "controller: missing NoExecute toleration is denied", cfg: controller, pod: newPod("class0", withTolerations(tolNoSchedule), withNodeSelector(classLbl, keyClass0)),
			wantDenied: []string{"lacks a toleration of the IPP taint ipp=true:NoExecute"}},
		{name: "controller: another class's key in the nodeSelector is denied", cfg: controller, pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withNodeSelector(classLbl, "class1-0123")),
			wantDenied: []string{`spec.nodeSelector sets node-restriction.kubernetes.io/ipp-class="class1-0123": remove it (the webhook sets it to "` + keyClass0 + `")`}},
		{name: "controller: the key of the same class in another namespace is denied", cfg: controller, namespace: "team-a", pod: newPod("class0", controllerPin(keyClass0)),
			wantDenied: []string{`spec.nodeSelector sets node-restriction.kubernetes.io/ipp-class="` + keyClass0 + `"`}},
		{name: "controller: a required class-label requirement naming another key is denied", cfg: controller,
			pod:        newPod("class0", controllerPin(keyClass0), withRequired(zoneA, exprTerm(req(classLbl, corev1.NodeSelectorOpIn, "class1-0123")))),
			wantDenied: []string{"nodeSelectorTerms[1].matchExpressions[0] selects node-restriction.kubernetes.io/ipp-class In [class1-0123]: remove it (the class key of the Pod is " + keyClass0 + ")"}},
		{name: "controller: a required class-label requirement other than In [key] is denied", cfg: controller,
			pod:        newPod("class0", controllerPin(keyClass0), withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpNotIn, "class1-0123")))),
			wantDenied: []string{"selects node-restriction.kubernetes.io/ipp-class NotIn [class1-0123]: remove it"}},
		{name: "controller: a new Pod cannot choose the pin of --placement=admission", cfg: controller, pod: pinned(),
			wantDenied: []string{"lacks spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0}},
		{name: "controller: preset spec.nodeName is denied", cfg: controller, pod: newPod("class0", keyPin(keyClass0), withNodeName("ipp-class0-0123456789abcdef")), wantDenied: []string{"remove spec.nodeName"}},
		{name: "controller: cluster scope key is allowed in any namespace", cfg: func(c *isolation.Config) { controller(c); clusterScope(c) }, namespace: "team-a",
			pod: newPod("class0", controllerPin("class0-3798a9d775ecd317ad13a057bb189ced"))},
		{name: "controller: update: the tenant may lift the gate", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", keyPin(keyClass0)), old: newPod("class0", controllerPin(keyClass0))},
		{name: "controller: update: the controller's placement is allowed", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", keyPin(keyClass0), withRequired(fieldsTerm("ipp-class0-0123456789abcdef"))), old: newPod("class0", controllerPin(keyClass0))},
		{name: "controller: update: an unbound Pod must keep the whole pin", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withGate(placement.Gate)), old: newPod("class0", controllerPin(keyClass0)),
			wantDenied: []string{"lacks spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0}},
		{name: "controller: update: another class key is denied", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", controllerPin(keyClass0), withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpIn, "class1-0123")))), old: newPod("class0", controllerPin(keyClass0)),
			wantDenied: []string{"selects node-restriction.kubernetes.io/ipp-class In [class1-0123]"}},
		{name: "controller: update: a bound Pod is allowed", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", keyPin(keyClass0), withNodeName("n"), withLabel("v", "2")), old: newPod("class0", keyPin(keyClass0), withNodeName("n"))},
		{name: "controller: update: removing the toleration from a bound Pod is denied", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", withTolerations(tolNoSchedule), withNodeSelector(classLbl, keyClass0), withNodeName("n")), old: newPod("class0", keyPin(keyClass0), withNodeName("n")),
			wantDenied: []string{"the update removes a toleration of the IPP taint ipp=true:NoExecute: keep them"}},
		{name: "controller: update: an unbound Pod pinned under --placement=admission stays updatable", cfg: controller, op: admissionv1.Update,
			pod: pinned(withLabel("v", "2")), old: pinned()},
		{name: "controller: update: a gated Pod pinned under --placement=admission stays updatable", cfg: controller, op: admissionv1.Update,
			pod: pinned(withGate("wait"), withLabel("v", "2")), old: pinned(withGate("wait"))},
		{name: "controller: update: a bound Pod pinned under --placement=admission stays updatable", cfg: controller, op: admissionv1.Update,
			pod: pinned(withNodeName(nodeClass0), withLabel("v", "2")), old: pinned(withNodeName(nodeClass0))},
		{name: "controller: update: a Pod pinned under --placement=admission may also gain the class key", cfg: controller, op: admissionv1.Update,
			pod: pinned(withGate("wait"), withNodeSelector(classLbl, keyClass0)), old: pinned(withGate("wait"))},
		{name: "controller: update: either pin is accepted, whichever the old Pod had", cfg: controller, op: admissionv1.Update,
			pod: pinned(withGate("wait")), old: newPod("class0", withGate("wait"))},
		{name: "controller: update: the pin of --placement=admission is checked as it was", cfg: controller, op: admissionv1.Update,
			pod: pinned(withGate("wait"), withRequired(zoneA)), old: pinned(withGate("wait")),
			wantDenied: []string{"runs only on its dedicated node " + nodeClass0, "matchFields metadata.name In [" + nodeClass0 + "] in " + requiredPath + "[1]"}},
		{name: "controller: update: the pin of --placement=admission of another class is denied", cfg: controller, op: admissionv1.Update,
			pod: newPod("class0", withGate("wait"), dedicatedPin("ipp-class1-0123")), old: newPod("class0", withGate("wait"), dedicatedPin("ipp-class1-0123")),
			wantDenied: []string{"lacks", "spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0}},
		{name: "controller: no class: nodeSelector on the class label is denied", cfg: controller, pod: newPod("", withNodeSelector(classLbl, keyClass0)),
			wantDenied: []string{"spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0 + " selects IPP nodes"}},
		{name: "controller: no class: required affinity on the class label is denied", cfg: controller, pod: newPod("", withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpExists)))),
			wantDenied: []string{"required node-affinity requirement node-restriction.kubernetes.io/ipp-class Exists selects IPP nodes"}},
		{name: "controller: no class: preferred affinity on the class label is denied", cfg: controller, pod: newPod("", withPreferred(1, exprTerm(req(classLbl, corev1.NodeSelectorOpIn, keyClass0)))),
			wantDenied: []string{"preferred node-affinity requirement node-restriction.kubernetes.io/ipp-class In [" + keyClass0 + "]"}},
		{name: "controller: no class: steering away from the class label is allowed", cfg: controller, pod: newPod("", withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpDoesNotExist))))},
		{name: "controller: no class: update adding a class-label selector to a gated Pod is denied", cfg: controller, op: admissionv1.Update,
			pod: newPod("", withGate("g"), withNodeSelector(classLbl, keyClass0)), old: newPod("", withGate("g")), wantDenied: []string{"ipp-class=" + keyClass0 + " selects IPP nodes"}},
		{name: "no class: nodeSelector on the class label is denied under --placement=admission too", pod: newPod("", withNodeSelector(classLbl, keyClass0)),
			wantDenied: []string{"spec.nodeSelector node-restriction.kubernetes.io/ipp-class=" + keyClass0 + " selects IPP nodes"}},

		// autoscaler mode, IPP Pods
		{name: "autoscaler: seed-mutated Pod is allowed", cfg: autoscaler, pod: newPod("class0", seedPin("class0"))},
		{name: "autoscaler: missing anti-affinity is denied", cfg: autoscaler, pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withRequired(exprTerm(ippIn))),
			wantDenied: []string{"lacks the required pod anti-affinity term ipp-class NotIn [class0] with topologyKey kubernetes.io/hostname"}},
		{name: "autoscaler: anti-affinity of another class is denied", cfg: autoscaler, pod: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withRequired(exprTerm(ippIn)), withAnti(antiTerm("class1"))),
			wantDenied: []string{"lacks the required pod anti-affinity term ipp-class NotIn [class0]"}},
		{name: "autoscaler: a term without ipp In [true] is denied", cfg: autoscaler, pod: newPod("class0", seedPin("class0"), withRequired(zoneA)),
			wantDenied: []string{"matchExpressions ipp In [true] in " + requiredPath + "[1]"}},
		{name: "autoscaler: missing toleration is denied", cfg: autoscaler, pod: newPod("class0", withRequired(exprTerm(ippIn)), withAnti(antiTerm("class0"))),
			wantDenied: []string{"lacks a toleration of the IPP taint ipp=true:NoSchedule"}},
		{name: "autoscaler: missing NoExecute toleration is denied", cfg: autoscaler, pod: newPod("class0", withTolerations(tolNoSchedule), withRequired(exprTerm(ippIn)), withAnti(antiTerm("class0"))),
			wantDenied: []string{"lacks a toleration of the IPP taint ipp=true:NoExecute"}},
		{name: "autoscaler: preset spec.nodeName is denied", cfg: autoscaler, pod: newPod("class0", seedPin("class0"), withNodeName("n")), wantDenied: []string{"remove spec.nodeName"}},
		{name: "autoscaler: preset spec.nodeName of a pool node is denied", cfg: autoscaler, pod: newPod("class0", seedPin("class0"), withNodeName(poolNode)), wantDenied: []string{`spec.nodeName is preset to "` + poolNode + `"`, "remove spec.nodeName"}},
		{name: "autoscaler: preset spec.nodeName is denied before the node set syncs", cfg: autoscaler, nodes: unsynced, pod: newPod("class0", seedPin("class0"), withNodeName(poolNode)), wantDenied: []string{"remove spec.nodeName"}},

		// Pods without a class, in both modes
		{name: "no class: plain Pod is allowed", pod: newPod("")},
		{name: "no class: other tolerations and selectors are allowed", pod: newPod("", withTolerations(tolOther), withNodeSelector("disk", "ssd"), withRequired(zoneA))},
		{name: "no class: steering away from IPP nodes is allowed", pod: newPod("", withRequired(exprTerm(req("ipp", corev1.NodeSelectorOpDoesNotExist), req(binding, corev1.NodeSelectorOpNotIn, "x"))))},
		{name: "no class: IPP toleration is denied", pod: newPod("", withTolerations(tolNoSchedule)),
			wantDenied: []string{`toleration {key: "ipp", operator: "Equal", value: "true", effect: "NoSchedule"} tolerates the IPP taint ipp=true:NoSchedule`, "Remove them, or give the Pod the label ipp-class=<class>"}},
		{name: "no class: Exists with no key is denied", pod: newPod("", withTolerations(tolAll)),
			wantDenied: []string{`toleration {key: "", operator: "Exists", value: "", effect: ""}`}},
		{name: "no class: Exists on the IPP key is denied", pod: newPod("", withTolerations(corev1.Toleration{Key: "ipp", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})),
			wantDenied: []string{"tolerates the IPP taint ipp=true:NoExecute"}},
		{name: "no class: Exists with no key is denied in autoscaler mode too", cfg: autoscaler, pod: newPod("", withTolerations(tolAll)), wantDenied: []string{"tolerates the IPP taint"}},
		{name: "no class: empty class label counts as none", pod: newPod("", withLabel("ipp-class", ""), withTolerations(tolAll)), wantDenied: []string{"tolerates the IPP taint"}},
		{name: "no class: a DaemonSet owner exempts nothing", pod: newPod("", withOwner("DaemonSet", "agent"), withTolerations(tolAll)), wantDenied: []string{"tolerates the IPP taint"}},
		{name: "no class: exempt namespace may tolerate everything", namespace: "kube-system", pod: newPod("", withOwner("DaemonSet", "agent"), withTolerations(tolAll))},
		{name: "no class: nodeSelector on the IPP label is denied", pod: newPod("", withNodeSelector("ipp", "true")), wantDenied: []string{"spec.nodeSelector ipp=true selects IPP nodes"}},
		{name: "no class: nodeSelector on the binding label is denied", pod: newPod("", withNodeSelector(binding, nodeClass0)), wantDenied: []string{"spec.nodeSelector node-restriction.kubernetes.io/ipp-node=" + nodeClass0}},
		{name: "no class: required affinity on the IPP label is denied", pod: newPod("", withRequired(zoneA, exprTerm(ippIn))), wantDenied: []string{"required node-affinity requirement ipp In [true] selects IPP nodes"}},
		{name: "no class: Exists on the binding label is denied", pod: newPod("", withRequired(exprTerm(req(binding, corev1.NodeSelectorOpExists)))), wantDenied: []string{"requirement node-restriction.kubernetes.io/ipp-node Exists selects IPP nodes"}},
		{name: "no class: preferred affinity on the IPP label is denied", pod: newPod("", withPreferred(1, exprTerm(ippIn))), wantDenied: []string{"preferred node-affinity requirement ipp In [true]"}},

		// Pods without a class that name a node
		{name: "no class: spec.nodeName of an IPP node is denied", pod: newPod("", withNodeName(poolNode)),
			wantDenied: []string{`spec.nodeName "` + poolNode + `" names an IPP node (labelled ipp=true), which would run the Pod there without the scheduler`, "or name one in spec.nodeName", "Remove them, or give the Pod the label ipp-class=<class>"}},
		{name: "no class: spec.nodeName of a pool node is denied in autoscaler mode", cfg: autoscaler, pod: newPod("", withNodeName(poolNode)),
			wantDenied: []string{`spec.nodeName "` + poolNode + `" names an IPP node`}},
		{name: "no class: spec.nodeName of an IPP node and a toleration are both named", pod: newPod("", withNodeName(poolNode), withTolerations(tolNoSchedule)),
			wantDenied: []string{"tolerates the IPP taint ipp=true:NoSchedule; spec.nodeName"}},
		{name: "no class: spec.nodeName of another node is allowed", pod: newPod("", withNodeName("worker-0"))},
		{name: "no class: spec.nodeName of another node is allowed in autoscaler mode", cfg: autoscaler, pod: newPod("", withNodeName("worker-0"))},
		{name: "no class: an empty class label does not make spec.nodeName of an IPP node pass", pod: newPod("", withLabel("ipp-class", ""), withNodeName(poolNode)), wantDenied: []string{"names an IPP node"}},
		{name: "no class: spec.nodeName is denied until the node set syncs", nodes: unsynced, pod: newPod("", withNodeName("worker-0")), wantCode: http.StatusServiceUnavailable,
			wantDenied: []string{`the IPP webhook has not yet loaded the list of IPP nodes (labelled ipp=true), so it cannot tell whether spec.nodeName "worker-0" of this Pod without the ipp-class label names one: retry in a few seconds`}},
		{name: "no class: before the node set syncs, a lasting reason comes first", nodes: unsynced, pod: newPod("", withNodeName("worker-0"), withTolerations(tolAll)),
			wantDenied: []string{"tolerates the IPP taint"}},
		{name: "no class: a Pod without spec.nodeName needs no synced node set", nodes: unsynced, pod: newPod("")},
		{name: "no class: no node set, no spec.nodeName check", noNodes: true, pod: newPod("", withNodeName(poolNode))},
		{name: "no class: an exempt namespace may name an IPP node", namespace: "kube-system", pod: newPod("", withNodeName(poolNode))},

		// UPDATE
		{name: "update: unchanged bound IPP Pod is allowed", op: admissionv1.Update,
			pod: pinned(withNodeName(nodeClass0), withLabel("v", "2")), old: pinned(withNodeName(nodeClass0))},
		{name: "update: adding the class label is denied", op: admissionv1.Update,
			pod: newPod("class0"), old: newPod(""), wantDenied: []string{"the ipp-class label of an existing Pod cannot be added, removed or changed (it was absent, the update makes it \"class0\")", "delete the Pod and create it again"}},
		{name: "update: removing the class label is denied", op: admissionv1.Update,
			pod: pinned(withoutLabel("ipp-class"), withNodeName(nodeClass0)), old: pinned(withNodeName(nodeClass0)), wantDenied: []string{"(it was \"class0\", the update makes it absent)"}},
		{name: "update: changing the class label is denied", op: admissionv1.Update,
			pod: pinned(withLabel("ipp-class", "class1")), old: pinned(), wantDenied: []string{"cannot be added, removed or changed"}},
		{name: "update: changing the class label is denied in autoscaler mode", cfg: autoscaler, op: admissionv1.Update,
			pod: newPod("class1", seedPin("class1")), old: newPod("class0", seedPin("class0")), wantDenied: []string{"cannot be added, removed or changed"}},
		{name: "update: emptying an absent class label changes nothing", op: admissionv1.Update,
			pod: newPod("", withLabel("ipp-class", "")), old: newPod("")},
		{name: "update: adding an IPP toleration to a Pod without a class is denied", op: admissionv1.Update,
			pod: newPod("", withNodeName("n"), withTolerations(tolOther, tolNoExecute)), old: newPod("", withNodeName("n"), withTolerations(tolOther)),
			wantDenied: []string{"tolerates the IPP taint ipp=true:NoExecute"}},
		{name: "update: adding an IPP selector to a gated Pod without a class is denied", op: admissionv1.Update,
			pod: newPod("", withGate("g"), withNodeSelector("ipp", "true")), old: newPod("", withGate("g")), wantDenied: []string{"spec.nodeSelector ipp=true"}},
		{name: "update: a Pod admitted before IPP with a broad toleration stays updatable", op: admissionv1.Update,
			pod: newPod("", withNodeName("n"), withTolerations(tolAll), withLabel("v", "2")), old: newPod("", withNodeName("n"), withTolerations(tolAll))},
		{name: "update: removing the toleration from a bound IPP Pod is denied", op: admissionv1.Update,
			pod: pinned(withNodeName(nodeClass0), func(p *corev1.Pod) { p.Spec.Tolerations = p.Spec.Tolerations[:1] }), old: pinned(withNodeName(nodeClass0)),
			wantDenied: []string{"the update removes a toleration of the IPP taint ipp=true:NoExecute: keep them"}},
		{name: "update: a bound IPP Pod admitted before IPP stays updatable", op: admissionv1.Update,
			pod: newPod("class0", withNodeName("node-1"), withLabel("v", "2")), old: newPod("class0", withNodeName("node-1"))},
		{name: "update: an unbound IPP Pod must carry the whole pin", op: admissionv1.Update,
			pod: pinned(withGate("g"), strip), old: pinned(withGate("g"), strip), wantDenied: []string{"lacks a toleration"}},
		{name: "update: an unbound IPP Pod with a conflicting affinity is denied", op: admissionv1.Update,
			pod: pinned(withGate("g"), withRequired(fieldsTerm("other"))), old: pinned(withGate("g")), wantDenied: []string{"selects metadata.name In [other]"}},
		{name: "update: setting spec.nodeName is denied", op: admissionv1.Update,
			pod: pinned(withNodeName("n")), old: pinned(), wantDenied: []string{"remove spec.nodeName"}},
		{name: "update: exempt namespace may change the label", op: admissionv1.Update, namespace: "ipp-system",
			pod: newPod("class0"), old: newPod("")},
		{name: "update: a Pod without a class on an IPP node since before IPP stays updatable", op: admissionv1.Update,
			pod: newPod("", withNodeName(poolNode), withLabel("v", "2")), old: newPod("", withNodeName(poolNode))},
		{name: "update: a bound Pod without a class needs no synced node set", op: admissionv1.Update, nodes: unsynced,
			pod: newPod("", withNodeName("worker-0"), withLabel("v", "2")), old: newPod("", withNodeName("worker-0"))},
		{name: "update: naming an IPP node in spec.nodeName is denied", op: admissionv1.Update,
			pod: newPod("", withNodeName(poolNode)), old: newPod(""), wantDenied: []string{"names an IPP node"}},
	}
	for _, tt := range tests {
		for _, dryRun := range []bool{false, true} {
			name := tt.name
			if dryRun {
				name += " (dry-run)"
			}
			t.Run(name, func(t *testing.T) {
				cfg := isolation.DefaultConfig()
				// The "admission:" cases are --placement=admission's own pin (one dedicated node per
				// class); the "controller:" cases set the default placement back.
				cfg.Placement = isolation.PlacementAdmission
				if tt.cfg != nil {
					tt.cfg(&cfg)
				}
				op, ns := tt.op, tt.namespace
				if op == "" {
					op = admissionv1.Create
				}
				if ns == "" {
					ns = "default"
				}
				nodes := tt.nodes
				switch {
				case tt.noNodes:
					nodes = nil
				case nodes == nil:
					nodes = ippNodes
				}
				resp := validateRequest(cfg, nodes, request(t, op, ns, tt.pod, tt.old, dryRun))
				checkResponse(t, resp, tt.wantDenied, tt.wantCode)
				if resp.Patch != nil {
					t.Errorf("Validate() returned a patch %s", resp.Patch)
				}
			})
		}
	}
}
