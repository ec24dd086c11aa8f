package admission

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

func validate(cfg isolation.Config, req *admissionv1.AdmissionRequest, in input) *admissionv1.AdmissionResponse {
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
		if len(offs) > 0 {
			return denied(req, fmt.Sprintf("a Pod in namespace %q without the %s label must not tolerate the IPP taint or select IPP nodes: %s. Remove them, or give the Pod the label %s=<class> to run on IPP nodes of its own; cluster-wide agents (DaemonSets) belong in an exempt namespace",
				req.Namespace, cfg.PodLabel, strings.Join(offs, "; "), cfg.PodLabel))
		}
		return allowed(req)
	}

	p := pinFor(cfg, req.Namespace, class)
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
	if msgs := p.conflicts(spec); len(msgs) > 0 {
		return denied(req, fmt.Sprintf("%s: %s", p.describe(), strings.Join(msgs, "; ")))
	}
	if miss := p.missing(spec); len(miss) > 0 {
		return denied(req, fmt.Sprintf("%s, but it lacks %s. The IPP mutating webhook adds these; check that it runs for namespace %q and that no later webhook removes them",
			p.describe(), strings.Join(miss, "; "), req.Namespace))
	}
	return allowed(req)
}

func labelString(class string, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", class)
}
