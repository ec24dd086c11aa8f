package app

import (
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// isolationOptions are the flags that the webhook and the controller must agree on.
type isolationOptions struct {
	mode             string
	classScope       string
	placement        string
	exemptNamespaces []string
	cfg              isolation.Config
}

func newIsolationOptions() *isolationOptions {
	cfg := isolation.DefaultConfig()
	return &isolationOptions{
		mode:             string(cfg.Mode),
		classScope:       string(cfg.ClassScope),
		placement:        string(cfg.Placement),
		exemptNamespaces: sets.List(cfg.ExemptNamespaces),
		cfg:              cfg,
	}
}

func (o *isolationOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.mode, "mode", o.mode, "How classes are kept apart: "+strings.Join(isolation.Modes, " or ")+". dedicated pins each class to a node the IPP controller creates; autoscaler uses the original tolerations, nodeAffinity and podAntiAffinity on a Cluster Autoscaler node pool.")
	fs.StringVar(&o.cfg.PodLabel, "pod-label", o.cfg.PodLabel, "Pod label whose value is the Pod's isolation class.")
	fs.StringVar(&o.cfg.NodeLabel, "node-label", o.cfg.NodeLabel, "Key of the label (value \"true\") on every IPP node.")
	fs.StringVar(&o.cfg.NodeTaint, "node-taint", o.cfg.NodeTaint, "Key of the taint (value \"true\", effects NoSchedule and NoExecute) on every IPP node.")
	fs.StringVar(&o.classScope, "class-scope", o.classScope, "Which Pods share a class: "+strings.Join(isolation.Scopes, " or ")+". namespace gives the same class name in two namespaces two nodes.")
	fs.StringVar(&o.cfg.ClusterName, "cluster-name", o.cfg.ClusterName, "Name of this cluster. It is part of every dedicated node name and of the instances' ownership tags, so two clusters in one cloud project never collide.")
	fs.StringVar(&o.placement, "placement", o.placement, "Who chooses an IPP Pod's node in dedicated mode: "+strings.Join(isolation.Placements, " or ")+". controller (the default) pins each Pod to its class key and a scheduling gate, and the controller places it on a node of its class with room, so a class grows past one node; admission (the legacy placement, for migration and clusters that want it) pins each class to one dedicated node named at admission. Webhook and controller must agree.")
	fs.BoolVar(&o.cfg.PinNodeName, "pin-node-name", o.cfg.PinNodeName, "Under --placement=admission only: pin IPP Pods by node name (matchFields metadata.name) as well as by the binding label, so the scheduler checks one node per Pod. Set to false only where node names cannot be chosen (EKS). No effect under --placement=controller, where the controller names the node.")
	fs.StringSliceVar(&o.exemptNamespaces, "exempt-namespaces", o.exemptNamespaces, "Namespaces whose Pods the webhook neither mutates nor checks (cluster DaemonSets belong here). Must match the webhook configurations' namespaceSelector.")
}

// complete fills cfg from the flags and validates it.
func (o *isolationOptions) complete() (isolation.Config, error) {
	o.cfg.Mode = isolation.Mode(o.mode)
	o.cfg.ClassScope = isolation.Scope(o.classScope)
	o.cfg.Placement = isolation.Placement(o.placement)
	o.cfg.ExemptNamespaces = sets.New[string]()
	for _, ns := range o.exemptNamespaces {
		if ns = strings.TrimSpace(ns); ns != "" {
			o.cfg.ExemptNamespaces.Insert(ns)
		}
	}
	return o.cfg, o.cfg.Validate()
}
