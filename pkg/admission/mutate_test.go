package admission

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

func autoscaler(c *isolation.Config)   { c.Mode = isolation.ModeAutoscaler }
func clusterScope(c *isolation.Config) { c.ClassScope = isolation.ScopeCluster }
func noNodeName(c *isolation.Config)   { c.PinNodeName = false }
func controller(c *isolation.Config)   { c.Placement = isolation.PlacementController }

func TestMutate(t *testing.T) {
	long := strings.Repeat("a", 63)
	nodeLong := "ipp-" + strings.Repeat("a", 46) + "-fa4d3723f255" // golden
	nodeMixed := "ipp-my-class-a-70020435c168"                     // golden: class My.Class_A
	nodeTeamA := "ipp-class0-1b5442993e86"                         // golden: namespace team-a
	nodeCluster := "ipp-class0-38d61b2b6db5"                       // golden: cluster scope
	zoneA := exprTerm(req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a"))
	zoneB := exprTerm(req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "b"), req("disk", corev1.NodeSelectorOpExists))
	userAnti := corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: "topology.kubernetes.io/zone"}

	tests := []struct {
		name      string
		cfg       func(*isolation.Config)
		op        admissionv1.Operation
		namespace string
		pod, old  *corev1.Pod
		dryRun    bool
		// want is the Pod after the patch; nil means unchanged.
		want *corev1.Pod
		// wantDenied holds substrings of the denial message; empty means allowed.
		wantDenied []string
		wantCode   int32
		// wantNoPatch asserts that no patch came back at all.
		wantNoPatch bool
	}{
		// dedicated mode
		{
			name: "admission: plain IPP Pod gets tolerations and the two-part pin",
			pod:  newPod("class0"),
			want: newPod("class0", dedicatedPin(nodeClass0)),
		},
		{
			name:   "admission: dry-run gets the same patch",
			pod:    newPod("class0"),
			dryRun: true,
			want:   newPod("class0", dedicatedPin(nodeClass0)),
		},
		{
			name: "admission: user's tolerations, selectors and terms stay and every required term gets the name",
			pod: newPod("class0", withTolerations(tolOther), withNodeSelector("disk", "ssd"),
				withRequired(zoneA, zoneB), withPreferred(10, zoneA), withAnti(userAnti), withPodAffinity(userAnti)),
			want: newPod("class0", withTolerations(tolOther, tolNoSchedule, tolNoExecute), withNodeSelector("disk", "ssd", binding, nodeClass0),
				withRequired(
					corev1.NodeSelectorTerm{MatchExpressions: zoneA.MatchExpressions, MatchFields: []corev1.NodeSelectorRequirement{nameIn(nodeClass0)}},
					corev1.NodeSelectorTerm{MatchExpressions: zoneB.MatchExpressions, MatchFields: []corev1.NodeSelectorRequirement{nameIn(nodeClass0)}},
				), withPreferred(10, zoneA), withAnti(userAnti), withPodAffinity(userAnti)),
		},
		{
			name: "admission: a term that already names the node is left alone, the other gets it",
			pod:  newPod("class0", withRequired(fieldsTerm(nodeClass0), zoneA)),
			want: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withNodeSelector(binding, nodeClass0),
				withRequired(fieldsTerm(nodeClass0), corev1.NodeSelectorTerm{MatchExpressions: zoneA.MatchExpressions, MatchFields: []corev1.NodeSelectorRequirement{nameIn(nodeClass0)}})),
		},
		{
			name: "admission: the user's own exact toleration and pin label are not duplicated",
			pod:  newPod("class0", withTolerations(corev1.Toleration{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoSchedule}), withNodeSelector(binding, nodeClass0)),
			want: newPod("class0", withTolerations(corev1.Toleration{Key: "ipp", Value: "true", Effect: corev1.TaintEffectNoSchedule}, tolNoExecute),
				withNodeSelector(binding, nodeClass0), withRequired(fieldsTerm(nodeClass0))),
		},
		{
			name: "admission: a broad toleration of the user stays and the exact ones are added",
			pod:  newPod("class0", withTolerations(tolAll)),
			want: newPod("class0", withTolerations(tolAll), dedicatedPin(nodeClass0)),
		},
		{
			name: "admission: affinity with only pod affinity gets a node affinity",
			pod:  newPod("class0", withPodAffinity(userAnti)),
			want: newPod("class0", withPodAffinity(userAnti), dedicatedPin(nodeClass0)),
		},
		{
			name: "admission: node affinity with only preferred terms gets a required one",
			pod:  newPod("class0", withPreferred(5, zoneA)),
			want: newPod("class0", withPreferred(5, zoneA), dedicatedPin(nodeClass0)),
		},
		{
			name: "admission: re-invocation on a mutated Pod adds nothing",
			pod:  newPod("class0", dedicatedPin(nodeClass0)),
			want: newPod("class0", dedicatedPin(nodeClass0)), wantNoPatch: true,
		},
		{
			name: "admission: class with upper case, dots and underscores",
			pod:  newPod("My.Class_A"),
			want: newPod("My.Class_A", dedicatedPin(nodeMixed)),
		},
		{
			name: "admission: 63-character class",
			pod:  newPod(long),
			want: newPod(long, dedicatedPin(nodeLong)),
		},
		{
			name:      "admission: namespace scope uses the request's namespace (metadata.namespace is empty on CREATE)",
			namespace: "team-a",
			pod:       newPod("class0"),
			want:      newPod("class0", dedicatedPin(nodeTeamA)),
		},
		{
			name:      "admission: cluster scope ignores the namespace",
			cfg:       clusterScope,
			namespace: "team-a",
			pod:       newPod("class0"),
			want:      newPod("class0", dedicatedPin(nodeCluster)),
		},
		{
			name: "admission: --pin-node-name=false leaves out matchFields and the affinity",
			cfg:  noNodeName,
			pod:  newPod("class0"),
			want: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withNodeSelector(binding, nodeClass0)),
		},
		{
			name: "admission: --pin-node-name=false keeps the user's terms as they are",
			cfg:  noNodeName,
			pod:  newPod("class0", withRequired(zoneA)),
			want: newPod("class0", withRequired(zoneA), withTolerations(tolNoSchedule, tolNoExecute), withNodeSelector(binding, nodeClass0)),
		},
		{
			name: "admission: a Pod without a class is not touched",
			pod:  newPod("", withTolerations(tolNoSchedule)), wantNoPatch: true,
		},
		{
			name: "admission: an empty class label is no class",
			pod:  newPod("", withLabel("ipp-class", "")), wantNoPatch: true,
		},
		{
			name: "admission: exempt namespace is skipped entirely", namespace: "kube-system",
			pod: newPod("class0", withNodeName("somewhere")), wantNoPatch: true,
		},
		{
			name: "admission: ownerReferences exempt nothing",
			pod:  newPod("class0", withOwner("DaemonSet", "agent")),
			want: newPod("class0", withOwner("DaemonSet", "agent"), dedicatedPin(nodeClass0)),
		},
		{
			name:       "admission: preset spec.nodeName is denied",
			pod:        newPod("class0", withNodeName("node-1")),
			wantDenied: []string{`spec.nodeName is preset to "node-1"`, "remove spec.nodeName"},
		},
		{
			name:       "admission: preset spec.nodeName is denied even when it is the class's node",
			pod:        newPod("class0", withNodeName(nodeClass0)),
			wantDenied: []string{"remove spec.nodeName"},
		},
		{
			name:       "admission: preset spec.nodeName is denied on dry-run too",
			pod:        newPod("class0", withNodeName("node-1")),
			dryRun:     true,
			wantDenied: []string{"remove spec.nodeName"},
		},
		{
			name:       "admission: own value for the pin label is denied",
			pod:        newPod("class0", withNodeSelector(binding, "ipp-other-123")),
			wantDenied: []string{`spec.nodeSelector sets node-restriction.kubernetes.io/ipp-node="ipp-other-123": remove it`, nodeClass0},
		},
		{
			name:       "admission: node-name affinity naming another node is denied",
			pod:        newPod("class0", withRequired(fieldsTerm("node-1"))),
			wantDenied: []string{"nodeSelectorTerms[0].matchFields[0] selects metadata.name In [node-1]: remove it"},
		},
		{
			name:       "admission: node-name affinity naming the node among others is denied",
			pod:        newPod("class0", withRequired(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{req("metadata.name", corev1.NodeSelectorOpIn, nodeClass0, "node-1")}})),
			wantDenied: []string{"matchFields[0] selects metadata.name In"},
		},
		{
			name:       "admission: node-name affinity with NotIn is denied",
			pod:        newPod("class0", withRequired(zoneA, corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{req("metadata.name", corev1.NodeSelectorOpNotIn, "node-1")}})),
			wantDenied: []string{"nodeSelectorTerms[1].matchFields[0]"},
		},
		{
			name:       "admission: binding-label affinity naming another node is denied",
			pod:        newPod("class0", withRequired(exprTerm(req(binding, corev1.NodeSelectorOpIn, "ipp-x")))),
			wantDenied: []string{"matchExpressions[0] selects node-restriction.kubernetes.io/ipp-node In [ipp-x]"},
		},
		{
			name:       "admission: an empty required term is denied",
			pod:        newPod("class0", withRequired(zoneA, corev1.NodeSelectorTerm{})),
			wantDenied: []string{"nodeSelectorTerms[1] is empty and matches no node: remove it"},
		},
		{
			name: "admission: UPDATE of a scheduling-gated Pod gets the pin",
			op:   admissionv1.Update,
			pod:  newPod("class0", withGate("wait")),
			old:  newPod("class0", withGate("wait"), withLabel("v", "1")),
			want: newPod("class0", withGate("wait"), dedicatedPin(nodeClass0)),
		},
		{
			name: "admission: UPDATE of a bound Pod is left alone",
			op:   admissionv1.Update,
			pod:  newPod("class0", dedicatedPin(nodeClass0), withNodeName(nodeClass0), withLabel("v", "2")),
			old:  newPod("class0", dedicatedPin(nodeClass0), withNodeName(nodeClass0)), wantNoPatch: true,
		},
		{
			name: "admission: UPDATE of a bound Pod admitted before IPP is left alone",
			op:   admissionv1.Update,
			pod:  newPod("class0", withNodeName("node-1"), withLabel("v", "2")),
			old:  newPod("class0", withNodeName("node-1")), wantNoPatch: true,
		},
		{
			name:       "admission: UPDATE that sets spec.nodeName is denied",
			op:         admissionv1.Update,
			pod:        newPod("class0", withNodeName("node-1")),
			old:        newPod("class0"),
			wantDenied: []string{"remove spec.nodeName"},
		},
		{
			name:       "admission: UPDATE with a conflicting pin label is denied",
			op:         admissionv1.Update,
			pod:        newPod("class0", withGate("g"), withNodeSelector(binding, "x")),
			old:        newPod("class0", withGate("g")),
			wantDenied: []string{"spec.nodeSelector sets"},
		},

		// dedicated mode, --placement=controller
		{
			name: "controller: plain IPP Pod gets tolerations, the class-key selector and the gate, no affinity",
			cfg:  controller,
			pod:  newPod("class0"),
			want: newPod("class0", controllerPin(keyClass0)),
		},
		{
			name: "controller: dry-run gets the same patch",
			cfg:  controller, dryRun: true,
			pod:  newPod("class0"),
			want: newPod("class0", controllerPin(keyClass0)),
		},
		{
			name: "controller: user's selectors and terms stay as they are, the gate goes after the user's",
			cfg:  controller,
			pod:  newPod("class0", withGate("wait"), withTolerations(tolOther), withNodeSelector("disk", "ssd"), withRequired(zoneA, zoneB), withPreferred(10, zoneA), withAnti(userAnti)),
			want: newPod("class0", withGate("wait"), withTolerations(tolOther), withNodeSelector("disk", "ssd"), withRequired(zoneA, zoneB), withPreferred(10, zoneA), withAnti(userAnti),
				controllerPin(keyClass0)),
		},
		{
			name: "controller: a Pod that arrives with the gate does not get it twice",
			cfg:  controller,
			pod:  newPod("class0", withGate("wait"), withGate(placement.Gate)),
			want: newPod("class0", withGate("wait"), withGate(placement.Gate), keyPin(keyClass0)),
		},
		{
			name: "controller: re-invocation on a mutated Pod adds nothing",
			cfg:  controller,
			pod:  newPod("class0", controllerPin(keyClass0)),
			want: newPod("class0", controllerPin(keyClass0)), wantNoPatch: true,
		},
		{
			name: "controller: the user's own exact selector is not duplicated",
			cfg:  controller,
			pod:  newPod("class0", withNodeSelector(classLbl, keyClass0), withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpIn, keyClass0)))),
			want: newPod("class0", withNodeSelector(classLbl, keyClass0), withRequired(exprTerm(req(classLbl, corev1.NodeSelectorOpIn, keyClass0))), controllerPin(keyClass0)),
		},
		{
			name: "controller: node-name affinity of the user's is allowed (the controller adds its own)",
			cfg:  controller,
			pod:  newPod("class0", withRequired(fieldsTerm("node-1"))),
			want: newPod("class0", withRequired(fieldsTerm("node-1")), controllerPin(keyClass0)),
		},
		{
			name:      "controller: namespace scope uses the request's namespace",
			cfg:       controller,
			namespace: "team-a",
			pod:       newPod("class0"),
			want:      newPod("class0", controllerPin("class0-e1709d78698e5d450d49ec0f2125682c")), // golden
		},
		{
			name:      "controller: cluster scope ignores the namespace",
			cfg:       func(c *isolation.Config) { controller(c); clusterScope(c) },
			namespace: "team-a",
			pod:       newPod("class0"),
			want:      newPod("class0", controllerPin("class0-3798a9d775ecd317ad13a057bb189ced")), // golden
		},
		{
			name: "controller: --pin-node-name does not matter",
			cfg:  func(c *isolation.Config) { controller(c); noNodeName(c) },
			pod:  newPod("class0"),
			want: newPod("class0", controllerPin(keyClass0)),
		},
		{
			name:       "controller: preset spec.nodeName is denied",
			cfg:        controller,
			pod:        newPod("class0", withNodeName(nodeClass0)),
			wantDenied: []string{"runs only on nodes of its class (node-restriction.kubernetes.io/ipp-class=" + keyClass0 + ")", "remove spec.nodeName"},
		},
		{
			name:       "controller: another class key in the nodeSelector is denied",
			cfg:        controller,
			pod:        newPod("class0", withNodeSelector(classLbl, "class1-0123")),
			wantDenied: []string{`spec.nodeSelector sets node-restriction.kubernetes.io/ipp-class="class1-0123": remove it (the webhook sets it to "` + keyClass0 + `")`},
		},
		{
			name:       "controller: a required class-label requirement naming another key is denied",
			cfg:        controller,
			pod:        newPod("class0", withRequired(zoneA, exprTerm(req(classLbl, corev1.NodeSelectorOpIn, keyClass0, "class1-0123")))),
			wantDenied: []string{"nodeSelectorTerms[1].matchExpressions[0] selects node-restriction.kubernetes.io/ipp-class In [" + keyClass0 + ", class1-0123]: remove it"},
		},
		{
			name:       "controller: an empty required term is denied (the controller adds the node's name to every term)",
			cfg:        controller,
			pod:        newPod("class0", withRequired(zoneA, corev1.NodeSelectorTerm{})),
			wantDenied: []string{"nodeSelectorTerms[1] is empty and matches no node: remove it"},
		},
		{
			name: "controller: UPDATE of a scheduling-gated Pod gets the pin but no placement gate",
			cfg:  controller,
			op:   admissionv1.Update,
			pod:  newPod("class0", withGate("wait")),
			old:  newPod("class0", withGate("wait"), withLabel("v", "1")),
			want: newPod("class0", withGate("wait"), keyPin(keyClass0)),
		},
		{
			name: "controller: UPDATE of a Pod whose gate the controller lifted adds nothing",
			cfg:  controller,
			op:   admissionv1.Update,
			pod:  newPod("class0", keyPin(keyClass0), withRequired(fieldsTerm("ipp-class0-0123456789abcdef"))),
			old:  newPod("class0", controllerPin(keyClass0)), wantNoPatch: true,
		},
		{
			name: "controller: UPDATE of a Pod whose tenant lifted the gate adds nothing",
			cfg:  controller,
			op:   admissionv1.Update,
			pod:  newPod("class0", keyPin(keyClass0)),
			old:  newPod("class0", controllerPin(keyClass0)), wantNoPatch: true,
		},
		{
			name: "controller: UPDATE of an unbound Pod pinned under --placement=admission keeps its pin",
			cfg:  controller,
			op:   admissionv1.Update,
			pod:  newPod("class0", dedicatedPin(nodeClass0), withLabel("v", "2")),
			old:  newPod("class0", dedicatedPin(nodeClass0)), wantNoPatch: true,
		},
		{
			name: "controller: UPDATE of a gated Pod pinned under --placement=admission keeps its pin",
			cfg:  controller,
			op:   admissionv1.Update,
			pod:  newPod("class0", withGate("wait"), dedicatedPin(nodeClass0), withLabel("v", "2")),
			old:  newPod("class0", withGate("wait"), dedicatedPin(nodeClass0)), wantNoPatch: true,
		},
		{
			name: "controller: UPDATE of a bound Pod is left alone",
			cfg:  controller,
			op:   admissionv1.Update,
			pod:  newPod("class0", keyPin(keyClass0), withNodeName("ipp-class0-0123456789abcdef"), withLabel("v", "2")),
			old:  newPod("class0", keyPin(keyClass0), withNodeName("ipp-class0-0123456789abcdef")), wantNoPatch: true,
		},
		{
			name:       "controller: UPDATE with another class key is denied",
			cfg:        controller,
			op:         admissionv1.Update,
			pod:        newPod("class0", withGate("g"), withNodeSelector(classLbl, "x")),
			old:        newPod("class0", withGate("g")),
			wantDenied: []string{"spec.nodeSelector sets node-restriction.kubernetes.io/ipp-class=\"x\""},
		},
		{
			name: "controller: a Pod without a class is not touched",
			cfg:  controller,
			pod:  newPod(""), wantNoPatch: true,
		},
		{
			name: "controller: autoscaler mode ignores the placement",
			cfg:  func(c *isolation.Config) { controller(c); autoscaler(c) },
			pod:  newPod("class0"),
			want: newPod("class0", seedPin("class0")),
		},

		// autoscaler mode
		{
			name: "autoscaler: plain IPP Pod gets the seed's mutation and the NoExecute toleration",
			cfg:  autoscaler,
			pod:  newPod("class0"),
			want: newPod("class0", seedPin("class0")),
		},
		{
			name: "autoscaler: dry-run gets the same patch",
			cfg:  autoscaler, dryRun: true,
			pod:  newPod("class0"),
			want: newPod("class0", seedPin("class0")),
		},
		{
			name: "autoscaler: user's tolerations and terms are merged, not overwritten",
			cfg:  autoscaler,
			pod:  newPod("class0", withTolerations(tolOther), withRequired(zoneA, zoneB), withAnti(userAnti), withNodeSelector("disk", "ssd")),
			want: newPod("class0", withTolerations(tolOther, tolNoSchedule, tolNoExecute), withNodeSelector("disk", "ssd"),
				withRequired(exprTerm(append(zoneA.MatchExpressions, ippIn)...), exprTerm(append(zoneB.MatchExpressions, ippIn)...)),
				withAnti(userAnti, antiTerm("class0"))),
		},
		{
			name: "autoscaler: affinity with an empty anti-affinity list",
			cfg:  autoscaler,
			pod:  newPod("class0", func(p *corev1.Pod) { affinity(p).PodAntiAffinity = &corev1.PodAntiAffinity{} }),
			want: newPod("class0", seedPin("class0")),
		},
		{
			name: "autoscaler: term with matchFields only gets the label requirement",
			cfg:  autoscaler,
			pod:  newPod("class0", withRequired(fieldsTerm("node-1"))),
			want: newPod("class0", withTolerations(tolNoSchedule, tolNoExecute), withRequired(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{ippIn}, MatchFields: []corev1.NodeSelectorRequirement{nameIn("node-1")}}), withAnti(antiTerm("class0"))),
		},
		{
			name: "autoscaler: re-invocation adds nothing",
			cfg:  autoscaler,
			pod:  newPod("class0", seedPin("class0")),
			want: newPod("class0", seedPin("class0")), wantNoPatch: true,
		},
		{
			name: "autoscaler: a Pod with the seed's own mutation gets the NoExecute toleration alone",
			cfg:  autoscaler,
			pod:  newPod("class0", withTolerations(tolNoSchedule), withRequired(exprTerm(ippIn)), withAnti(antiTerm("class0"))),
			want: newPod("class0", seedPin("class0")),
		},
		{
			name: "autoscaler: class with dots and upper case is used verbatim in the selector",
			cfg:  autoscaler,
			pod:  newPod("My.Class_A"),
			want: newPod("My.Class_A", seedPin("My.Class_A")),
		},
		{
			name: "autoscaler: no node-name pin and no binding label",
			cfg:  func(c *isolation.Config) { autoscaler(c); noNodeName(c) },
			pod:  newPod("class0"),
			want: newPod("class0", seedPin("class0")),
		},
		{
			name:       "autoscaler: preset spec.nodeName is denied",
			cfg:        autoscaler,
			pod:        newPod("class0", withNodeName("node-1")),
			wantDenied: []string{"remove spec.nodeName", `IPP Pod of class "class0" runs only on IPP nodes`},
		},
		{
			name:       "autoscaler: an empty required term is denied",
			cfg:        autoscaler,
			pod:        newPod("class0", withRequired(corev1.NodeSelectorTerm{})),
			wantDenied: []string{"nodeSelectorTerms[0] is empty"},
		},
		{
			name: "autoscaler: a Pod without a class is not touched",
			cfg:  autoscaler,
			pod:  newPod(""), wantNoPatch: true,
		},
		{
			name: "autoscaler: custom label, node label and taint names",
			cfg: func(c *isolation.Config) {
				autoscaler(c)
				c.PodLabel, c.NodeLabel, c.NodeTaint = "tenant.example.com/class", "tenant-node", "tenant-taint"
			},
			pod: newPod("", withLabel("tenant.example.com/class", "c")),
			want: newPod("", withLabel("tenant.example.com/class", "c"),
				withTolerations(corev1.Toleration{Key: "tenant-taint", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule},
					corev1.Toleration{Key: "tenant-taint", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoExecute}),
				withRequired(exprTerm(req("tenant-node", corev1.NodeSelectorOpIn, "true"))),
				withAnti(corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tenant.example.com/class", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"c"}}}}, TopologyKey: "kubernetes.io/hostname"})),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
			r := request(t, op, ns, tt.pod, tt.old, tt.dryRun)
			resp := mutateRequest(cfg, r)
			checkResponse(t, resp, tt.wantDenied, tt.wantCode)
			if len(tt.wantDenied) > 0 {
				return
			}
			if tt.wantNoPatch && (resp.Patch != nil || resp.PatchType != nil) {
				t.Errorf("Mutate() returned patch %s, want none", resp.Patch)
			}
			want := tt.want
			if want == nil {
				want = tt.pod
			}
			got := applyPatch(t, r.Object.Raw, resp)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Pod after the patch (-want +got):\n%s\npatch: %s", diff, resp.Patch)
			}
			// Re-invocation: the mutated Pod gets no further patch.
			r2 := request(t, op, ns, got, tt.old, tt.dryRun)
			if again := mutateRequest(cfg, r2); !again.Allowed || len(again.Patch) > 0 {
				t.Errorf("Mutate() of the mutated Pod = allowed %v, patch %s; want allowed and no patch", again.Allowed, again.Patch)
			}
			// What Mutate produced for an IPP Pod passes Validate.
			if _, ipp := cfg.Class(got); !ipp || cfg.Exempt(ns) || (tt.old != nil && classLabel(tt.old) != classLabel(got)) {
				return
			}
			if v := validateRequest(cfg, ippNodes, r2); !v.Allowed {
				t.Errorf("Validate() of the mutated Pod denied: %s", v.Result.Message)
			}
		})
	}
}

func classLabel(p *corev1.Pod) string { return p.Labels[isolation.DefaultPodLabel] }

// checkResponse checks the UID echo and the verdict.
func checkResponse(t *testing.T, resp *admissionv1.AdmissionResponse, wantDenied []string, wantCode int32) {
	t.Helper()
	if resp == nil {
		t.Fatal("response is nil")
	}
	if resp.UID != testUID {
		t.Errorf("response UID = %q, want %q", resp.UID, testUID)
	}
	if len(wantDenied) == 0 {
		if !resp.Allowed {
			t.Fatalf("denied: %+v, want allowed", resp.Result)
		}
		return
	}
	if resp.Allowed {
		t.Fatalf("allowed (patch %s), want denied with %q", resp.Patch, wantDenied)
	}
	if resp.Patch != nil {
		t.Errorf("denial carries a patch %s", resp.Patch)
	}
	if resp.Result == nil {
		t.Fatal("denial without a result")
	}
	if wantCode == 0 {
		wantCode = http.StatusForbidden
	}
	if resp.Result.Code != wantCode {
		t.Errorf("result code = %d, want %d", resp.Result.Code, wantCode)
	}
	for _, s := range wantDenied {
		if !strings.Contains(resp.Result.Message, s) {
			t.Errorf("message %q does not contain %q", resp.Result.Message, s)
		}
	}
}

// TestRequestHandling covers what both decisions do before deciding: kinds, operations,
// subresources, exempt namespaces and undecodable objects.
func TestRequestHandling(t *testing.T) {
	ipp := newPod("class0", withNodeName("node-1")) // denied by both, if looked at
	tests := []struct {
		name       string
		req        func(t *testing.T) *admissionv1.AdmissionRequest
		wantDenied []string
		wantCode   int32
	}{
		{name: "DELETE passes", req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Delete, "default", nil, ipp, false)
			return r
		}},
		{name: "CONNECT passes", req: func(t *testing.T) *admissionv1.AdmissionRequest {
			return request(t, admissionv1.Connect, "default", nil, nil, false)
		}},
		{name: "other kinds pass", req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Create, "default", ipp, nil, false)
			r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			return r
		}},
		{name: "subresources pass", req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Update, "default", ipp, newPod("class0"), false)
			r.SubResource = "status"
			return r
		}},
		{name: "exempt namespace passes undecodable objects too", req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Create, "ipp-system", nil, nil, false)
			r.Object.Raw = []byte("{")
			return r
		}},
		{name: "unknown operation", wantDenied: []string{`unsupported admission operation "PATCH"`}, wantCode: 400, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			return request(t, "PATCH", "default", ipp, nil, false)
		}},
		{name: "missing object", wantDenied: []string{"request.object is missing"}, wantCode: 400, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			return request(t, admissionv1.Create, "default", nil, nil, false)
		}},
		{name: "object is not JSON", wantDenied: []string{"decoding request.object as a Pod"}, wantCode: 400, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Create, "default", nil, nil, false)
			r.Object.Raw = []byte("not json")
			return r
		}},
		{name: "object of the wrong shape", wantDenied: []string{"decoding request.object as a Pod"}, wantCode: 400, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Create, "default", nil, nil, false)
			r.Object.Raw = []byte(`{"spec":{"tolerations":"ipp"}}`)
			return r
		}},
		{name: "duplicate fields", wantDenied: []string{`duplicate object member name "spec"`}, wantCode: 400, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Create, "default", nil, nil, false)
			r.Object.Raw = []byte(`{"metadata":{"labels":{"ipp-class":"a"}},"spec":{"affinity":{}},"spec":{}}`)
			return r
		}},
		{name: "UPDATE without oldObject", wantDenied: []string{"request.oldObject is missing"}, wantCode: 400, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			return request(t, admissionv1.Update, "default", newPod("class0"), nil, false)
		}},
		{name: "Go callers may set Object instead of Raw", wantDenied: []string{"remove spec.nodeName"}, req: func(t *testing.T) *admissionv1.AdmissionRequest {
			r := request(t, admissionv1.Create, "default", nil, nil, false)
			r.Object = runtime.RawExtension{Object: ipp}
			return r
		}},
	}
	for _, tt := range tests {
		for name, decide := range map[string]func(isolation.Config, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse{"Mutate": mutateRequest, "Validate": validateWith(Lookups{Nodes: ippNodes})} {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				resp := decide(isolation.DefaultConfig(), tt.req(t))
				checkResponse(t, resp, tt.wantDenied, tt.wantCode)
				if resp.Allowed && resp.Patch != nil {
					t.Errorf("patch %s, want none", resp.Patch)
				}
			})
		}
	}
	t.Run("nil request", func(t *testing.T) {
		for _, resp := range []*admissionv1.AdmissionResponse{mutateRequest(isolation.DefaultConfig(), nil), validateRequest(isolation.DefaultConfig(), ippNodes, nil)} {
			if resp == nil || resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
				t.Errorf("response to a nil request = %+v, want a 400 denial", resp)
			}
		}
	})
	t.Run("IPP Pod without a spec", func(t *testing.T) {
		r := request(t, admissionv1.Create, "default", nil, nil, false)
		r.Object.Raw = []byte(`{"metadata":{"labels":{"ipp-class":"a"}}}`)
		checkResponse(t, mutateRequest(isolation.DefaultConfig(), r), []string{"has no spec"}, http.StatusBadRequest)
		checkResponse(t, validateRequest(isolation.DefaultConfig(), ippNodes, r), []string{"lacks"}, 0)
	})
}
