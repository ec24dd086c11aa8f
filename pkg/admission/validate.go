package admission

import (
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

func validate(cfg isolation.Config, from Lookups, req *admissionv1.AdmissionRequest, in input) *admissionv1.AdmissionResponse {
	nodes := from.Nodes
	class, ok := classOf(cfg, in.pod)
	if req.Operation == admissionv1.Update {
		oldClass, oldOK := classOf(cfg, in.old)
		if ok != oldOK || class != oldClass {
			return denied(req, fmt.Sprintf("the %s label of an existing Pod cannot be added, removed or changed (it was %s, the update makes it %s): delete the Pod and create it again with the label it needs",
				cfg.PodLabel, labelString(oldClass, oldOK), labelString(class, ok)))
		}
	}
	spec := in.pod.spec()
	if !ok {
		offs := offenses(cfg, spec)
		if req.Operation == admissionv1.Update {
			// Only what the update adds: a Pod admitted before IPP was installed must still be
			// updatable (to remove a finalizer, say).
			offs = subtract(offs, offenses(cfg, in.old.spec()))
		}
		unsure := false
		if node := presetNode(req, in); node != "" && nodes != nil {
			switch {
			case !nodes.HasSynced():
				unsure = true
			case nodes.Has(node):
				offs = append(offs, fmt.Sprintf("spec.nodeName %q names an IPP node (labelled %s=%s), which would run the Pod there without the scheduler and its taint check", node, cfg.NodeLabel, isolation.LabelValue))
			}
		}
		if len(offs) > 0 {
			return denied(req, fmt.Sprintf("a Pod in namespace %q without the %s label must not tolerate the IPP taint, select IPP nodes or name one in spec.nodeName: %s. Remove them, or give the Pod the label %s=<class> to run on IPP nodes of its own; cluster-wide agents (DaemonSets) belong in an exempt namespace",
				req.Namespace, cfg.PodLabel, strings.Join(offs, "; "), cfg.PodLabel))
		}
		if unsure {
			return errored(req, http.StatusServiceUnavailable, fmt.Sprintf("the IPP webhook has not yet loaded the list of IPP nodes (labelled %s=%s), so it cannot tell whether spec.nodeName %q of this Pod without the %s label names one: retry in a few seconds",
				cfg.NodeLabel, isolation.LabelValue, in.pod.spec().NodeName, cfg.PodLabel))
		}
		return allowed(req)
	}

	if resp := nodeClassLabelChange(cfg, req, in); resp != nil {
		return resp
	}
	if req.Operation == admissionv1.Create && cfg.Mode == isolation.ModeDedicated && from.NodeClasses != nil {
		if resp := admitNodeClass(from.NodeClasses, req, in.pod); resp != nil {
			return resp
		}
	}
	p := pinOf(cfg, req, in, class)
	if bound(req, in) {
		// Its placement is final; refuse only an update that takes part of the pin away.
		if gone := subtract(p.missing(spec), p.missing(in.old.spec())); len(gone) > 0 {
			return denied(req, fmt.Sprintf("%s: the update removes %s: keep them", p.describe(), strings.Join(gone, "; ")))
		}
		return allowed(req)
	}
	if spec.NodeName != "" {
		return denied(req, nodeNameMessage(p, spec.NodeName))
	}
	msgs, miss := p.conflicts(spec), p.missing(spec)
	if len(msgs)+len(miss) > 0 && req.Operation == admissionv1.Update {
		// Under --placement=controller an unbound Pod may carry either pin on UPDATE: the one it
		// was admitted with under --placement=admission, or the class key. Both keep it on nodes
		// of its class; the denial names the pin that pinOf chose.
		if alt := otherPin(cfg, req.Namespace, class, p); alt != nil && len(alt.conflicts(spec))+len(alt.missing(spec)) == 0 {
			return allowed(req)
		}
	}
	if len(msgs) > 0 {
		return denied(req, fmt.Sprintf("%s: %s", p.describe(), strings.Join(msgs, "; ")))
	}
	if len(miss) > 0 {
		return denied(req, fmt.Sprintf("%s, but it lacks %s. The IPP mutating webhook adds these; check that it runs for namespace %q and that no later webhook removes them",
			p.describe(), strings.Join(miss, "; "), req.Namespace))
	}
	return allowed(req)
}

// otherPin returns, in dedicated mode under --placement=controller, the pin of the other
// placement than p's: the class-key pin (without the gate) for the legacy pin and the legacy pin
// for the class-key pin. It returns nil otherwise.
func otherPin(cfg isolation.Config, namespace, class string, p *pin) *pin {
	if cfg.Mode != isolation.ModeDedicated || cfg.Placement != isolation.PlacementController {
		return nil
	}
	if p.key != "" {
		return legacyPin(cfg, namespace, class)
	}
	alt := pinFor(cfg, namespace, class)
	alt.gate = ""
	return alt
}

// presetNode returns the node that req's Pod names in spec.nodeName, unless it is an UPDATE that
// leaves spec.nodeName as it was: an update is checked only for what it adds, and the node a Pod
// was bound to is no news.
func presetNode(req *admissionv1.AdmissionRequest, in input) string {
	node := in.pod.spec().NodeName
	if req.Operation == admissionv1.Update && in.old != nil && in.old.spec().NodeName == node {
		return ""
	}
	return node
}

func labelString(class string, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", class)
}
