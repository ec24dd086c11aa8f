package framework

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ipp-project/ipp/pkg/isolation"
)

// IsolationViolations checks DESIGN.md's placement invariants over the Pods placed on nodes
// (spec.nodeName set, not terminal) and returns one line per violation, sorted:
//
//   - I1: Pods of two classes (or, in namespace scope, of two namespaces) share a node;
//   - I2: a Pod without an IPP class, outside the exempt namespaces, is on an IPP node;
//   - I3: an IPP Pod is on a node other than its class's dedicated node (dedicated mode with
//     admission placement), on a node not bound to its class key, namespace and class (controller
//     placement), or not on an IPP node (autoscaler mode).
//
// An IPP node is a Node with cfg.NodeLabel=true. Pods on nodes that no longer exist are judged
// by the node name alone.
func IsolationViolations(cfg isolation.Config, pods []corev1.Pod, nodes []corev1.Node) []string {
	ippNode := map[string]bool{}
	nodeLabels := map[string]map[string]string{}
	for _, n := range nodes {
		ippNode[n.Name] = n.Labels[cfg.NodeLabel] == isolation.LabelValue
		nodeLabels[n.Name] = n.Labels
	}
	var out []string
	owner := map[string]string{} // node -> the class key of the first IPP Pod seen on it
	sort.SliceStable(pods, func(i, j int) bool {
		return pods[i].Namespace+"/"+pods[i].Name < pods[j].Namespace+"/"+pods[j].Name
	})
	for _, p := range pods {
		node := p.Spec.NodeName
		if node == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ref := p.Namespace + "/" + p.Name
		class, isIPP := cfg.Class(&p)
		if !isIPP {
			if ippNode[node] && !cfg.Exempt(p.Namespace) {
				out = append(out, fmt.Sprintf("I2: pod %s without a class is on IPP node %s", ref, node))
			}
			continue
		}
		key := class
		if cfg.ClassScope == isolation.ScopeNamespace {
			key = p.Namespace + "/" + class
		}
		if prev, ok := owner[node]; ok && prev != key {
			out = append(out, fmt.Sprintf("I1: pod %s of class %s shares node %s with class %s", ref, key, node, prev))
		} else if !ok {
			owner[node] = key
		}
		switch {
		case cfg.Mode == isolation.ModeDedicated && cfg.Placement == isolation.PlacementController:
			l := nodeLabels[node]
			if l[isolation.ClassLabel] != cfg.ClassKey(p.Namespace, class) || l[isolation.NamespaceLabel] != cfg.ScopedNamespace(p.Namespace) || l[isolation.ClassNameLabel] != class {
				out = append(out, fmt.Sprintf("I3: pod %s of class %s is on node %s, which is bound to class key %q (namespace %q, class %q), not its class's %q",
					ref, key, node, l[isolation.ClassLabel], l[isolation.NamespaceLabel], l[isolation.ClassNameLabel], cfg.ClassKey(p.Namespace, class)))
			}
		case cfg.Mode == isolation.ModeDedicated:
			if want := cfg.NodeName(p.Namespace, class); node != want {
				out = append(out, fmt.Sprintf("I3: pod %s of class %s is on node %s, not its dedicated node %s", ref, key, node, want))
			}
		case !ippNode[node]:
			out = append(out, fmt.Sprintf("I3: pod %s of class %s is on node %s, which is not an IPP node", ref, key, node))
		}
	}
	sort.Strings(out)
	return out
}

// CheckIsolation lists every Pod and Node and returns IsolationViolations.
func CheckIsolation(ctx context.Context, c kubernetes.Interface, cfg isolation.Config) ([]string, error) {
	pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return IsolationViolations(cfg, pods.Items, nodes.Items), nil
}
