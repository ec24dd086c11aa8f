package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/ipp-project/ipp/e2e/kubelet"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/nodeclass"
	"github.com/ipp-project/ipp/pkg/placement"
)

// decodeExamples decodes examples.yaml: NodeClasses, Namespaces and Deployments, in file order.
func decodeExamples() ([]runtime.Object, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := ippv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(examplesYAML)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the examples: %w", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding the examples: %w", err)
		}
		switch obj.(type) {
		case *ippv1alpha1.NodeClass, *corev1.Namespace, *appsv1.Deployment:
			objs = append(objs, obj)
		default:
			return nil, fmt.Errorf("the examples hold a %T; only NodeClasses, Namespaces and Deployments are applied", obj)
		}
	}
}

// stripComments drops the YAML comment lines of doc.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// applyExamples applies examples.yaml: first the NodeClasses and the tenant namespace, then, once
// the webhook admits the example Pods (it reads NodeClasses and namespaces from informers), the
// Deployments. In between it shows the webhook denying a Pod a NodeClass its namespace may not use.
func (s *sandbox) applyExamples(ctx context.Context) error {
	objs, err := decodeExamples()
	if err != nil {
		return err
	}
	var deployments []*appsv1.Deployment
	for _, obj := range objs {
		switch o := obj.(type) {
		case *ippv1alpha1.NodeClass:
			if o.Spec.Warm != nil && s.placement == isolation.PlacementAdmission {
				// Only the controller's placement claims warm nodes: they would boot for nothing.
				s.printf("Left out the warm pool of NodeClass %s (warm.size %d): --placement=admission never claims warm nodes (--placement=controller does)", o.Name, o.Spec.Warm.Size)
				o.Spec.Warm = nil
			}
			created, err := s.ipp.IppV1alpha1().NodeClasses().Create(ctx, o, metav1.CreateOptions{FieldManager: "ipp-sandbox"})
			if err != nil {
				return fmt.Errorf("creating example NodeClass %s: %w", o.Name, err)
			}
			s.nodeClasses = append(s.nodeClasses, created.Name)
			if created.Spec.Warm != nil && created.Spec.Warm.Size > 0 {
				s.warmPools[created.Name] = int(created.Spec.Warm.Size)
				s.appliedAt[created.Name] = time.Now()
			}
			s.printf("Applied NodeClass %s (%s): validated by the API server; %s", created.Name, describeNodeClass(created), whoGets(created.Name))
		case *corev1.Namespace:
			if _, err := s.cp.Client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating example namespace %s: %w", o.Name, err)
			}
			s.printf("Applied Namespace %s (labels %s)", o.Name, labels.FormatLabels(o.Labels))
		case *appsv1.Deployment:
			if o.Namespace == "" {
				o.Namespace = metav1.NamespaceDefault
			}
			deployments = append(deployments, o)
		}
	}
	if s.placement == isolation.PlacementAdmission {
		// Admission placement gives a class one node: a class that needs more would wait forever.
		kept := deployments[:0]
		for _, d := range deployments {
			if need := needsMoreThanOneNode(d); need != "" {
				s.printf("Left out Deployment %s/%s: %s, and --placement=admission gives a class one node (--placement=controller grows it)", d.Namespace, d.Name, need)
				continue
			}
			kept = append(kept, d)
		}
		deployments = kept
	}
	for _, d := range deployments {
		if err := s.waitAdmitted(ctx, d); err != nil {
			return err
		}
	}
	s.showDenial(ctx)
	if err := s.waitWarmPools(ctx); err != nil {
		return err
	}
	if s.expectPods == nil {
		s.expectPods = map[string]int{}
	}
	for _, d := range deployments {
		_, err := s.cp.Client.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating example Deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		s.examples = append(s.examples, d.Spec.Selector.MatchLabels["app"])
		s.exampleDeployments = append(s.exampleDeployments, d)
		s.replicas += int(*d.Spec.Replicas)
		nc := nodeclass.NameOf(d.Spec.Template.Labels)
		s.expectPods[nc] += int(*d.Spec.Replicas)
		s.printf("Applied Deployment %s/%s (%s=%s, NodeClass %s, %d replicas%s)", d.Namespace, d.Name, isolation.DefaultPodLabel,
			d.Spec.Template.Labels[isolation.DefaultPodLabel], nc, *d.Spec.Replicas, describeRequests(d))
	}
	return nil
}

// podRequests returns the requests of one Pod of d's template.
func podRequests(d *appsv1.Deployment) corev1.ResourceList {
	return placement.PodRequests(&corev1.Pod{Spec: d.Spec.Template.Spec})
}

// describeRequests says what each Pod of d requests, or "" when nothing.
func describeRequests(d *appsv1.Deployment) string {
	req := podRequests(d)
	if len(req) == 0 {
		return ""
	}
	var parts []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := req[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", q.String(), name))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ", each requesting " + strings.Join(parts, " and ")
}

// needsMoreThanOneNode says why the Pods of d do not fit together on one emulated node
// (kubelet.DefaultCapacity), or "" when they do.
func needsMoreThanOneNode(d *appsv1.Deployment) string {
	replicas := int64(1)
	if d.Spec.Replicas != nil {
		replicas = int64(*d.Spec.Replicas)
	}
	capacity := kubelet.DefaultCapacity()
	for name, q := range podRequests(d) {
		total := q.DeepCopy()
		total.Mul(replicas)
		if c, ok := capacity[name]; ok && total.Cmp(c) > 0 {
			return fmt.Sprintf("its %d Pods request %s %s in all, more than one node's %s", replicas, total.String(), name, c.String())
		}
	}
	return ""
}

// examplePod is a Pod of d's template, for a server-side dry run.
func examplePod(d *appsv1.Deployment) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: d.Name + "-dry-run-", Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
}

// waitAdmitted waits until the webhook admits a Pod of d's template (a server-side dry run, which
// creates nothing): until then, it does not yet know the NodeClasses or namespaces just applied.
func (s *sandbox) waitAdmitted(ctx context.Context, d *appsv1.Deployment) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = s.cp.Client.CoreV1().Pods(d.Namespace).Create(ctx, examplePod(d), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the webhook to admit Pods of example Deployment %s/%s: %w (last answer: %v)", d.Namespace, d.Name, err, last)
	}
	return nil
}

// showDenial asks the webhook, in a server-side dry run, to admit a Pod of namespace default
// that asks for NodeClass metal, which only namespaces labelled tenant-tier=untrusted may use, and
// prints its answer.
func (s *sandbox) showDenial(ctx context.Context) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "wants-metal-", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{isolation.DefaultPodLabel: "wants-metal", isolation.NodeClassLabel: "metal"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	var err error
	// An answer other than a denial (such as "not yet seen namespace default: retry") is retried.
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err = s.cp.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil || apierrors.IsForbidden(err), nil
	})
	switch {
	case err == nil:
		s.printf("Unexpected: the webhook admitted a Pod of namespace default that asks for NodeClass metal (dry run)")
		return
	case !apierrors.IsForbidden(err):
		s.printf("The webhook gave no answer on a Pod of namespace default that asks for NodeClass metal (dry run): %v", err)
		return
	}
	s.printf("Webhook denied a Pod of namespace default labelled %s=metal (dry run, nothing created): %v", isolation.NodeClassLabel, err)
}

// whoGets says which Pods get NodeClass name.
func whoGets(name string) string {
	if name == isolation.DefaultNodeClass {
		return fmt.Sprintf("Pods without the label %s get its shape and limits", isolation.NodeClassLabel)
	}
	return fmt.Sprintf("Pods labelled %s=%s get its shape and limits", isolation.NodeClassLabel, name)
}

// describeNodeClass summarizes the spec fields that the sandbox's NodeClasses set.
func describeNodeClass(nc *ippv1alpha1.NodeClass) string {
	var parts []string
	if g := nc.Spec.GCE; g != nil && g.MachineType != "" {
		parts = append(parts, "machineType "+g.MachineType)
	} else {
		parts = append(parts, "machine type of the --gce-* flags")
	}
	parts = append(parts, "isolation "+string(nc.Spec.Isolation))
	if nc.Spec.MaxNodesPerClass != nil {
		parts = append(parts, fmt.Sprintf("maxNodesPerClass %d", *nc.Spec.MaxNodesPerClass))
	}
	if nc.Spec.IdleTTL != nil {
		parts = append(parts, "idleTTL "+nc.Spec.IdleTTL.Duration.String())
	} else {
		parts = append(parts, "idleTTL of --idle-ttl")
	}
	if l := nc.Spec.Limits; l != nil {
		if l.Instances != nil {
			parts = append(parts, fmt.Sprintf("limits.instances %d", *l.Instances))
		}
		if l.InstancesPerNamespace != nil {
			parts = append(parts, fmt.Sprintf("limits.instancesPerNamespace %d", *l.InstancesPerNamespace))
		}
	}
	if w := nc.Spec.Warm; w != nil {
		parts = append(parts, fmt.Sprintf("warm.size %d", w.Size))
		if w.MaxAge != nil {
			parts = append(parts, "warm.maxAge "+w.MaxAge.Duration.String())
		}
	}
	if nc.Spec.NamespaceSelector != nil {
		parts = append(parts, "namespaceSelector "+metav1.FormatLabelSelector(nc.Spec.NamespaceSelector))
	} else {
		parts = append(parts, "every namespace")
	}
	return strings.Join(parts, ", ")
}

// conditionStatus returns the status of condition t, or "" when it is not there, as
// kubectl's JSONPath column shows it.
func conditionStatus(nc *ippv1alpha1.NodeClass, t string) string {
	if c := meta.FindStatusCondition(nc.Status.Conditions, t); c != nil {
		return string(c.Status)
	}
	return ""
}

// nodeClassTable formats ncs as `kubectl get nodeclasses` does (the CRD's printer columns of
// priority 0).
func nodeClassTable(ncs []*ippv1alpha1.NodeClass, now time.Time) string {
	sort.Slice(ncs, func(i, j int) bool { return ncs[i].Name < ncs[j].Name })
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tNODES\tCLASSES\tPODS\tWARM\tWARM-SIZE\tISOLATION\tREADY\tAGE")
	for _, nc := range ncs {
		size := "" // kubectl prints a column whose JSONPath finds nothing empty
		if nc.Spec.Warm != nil {
			size = fmt.Sprint(nc.Spec.Warm.Size)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", nc.Name, nc.Status.Nodes, nc.Status.Classes, nc.Status.Pods,
			nc.Status.WarmReady, size, nc.Spec.Isolation, conditionStatus(nc, ippv1alpha1.ConditionReady), duration.HumanDuration(now.Sub(nc.CreationTimestamp.Time)))
	}
	_ = w.Flush()
	return b.String()
}

// waitNodeClassesSettled waits until the status of each example NodeClass counts the example
// Pods placed on its nodes and its Ready warm nodes, and says Ready, then prints the NodeClasses as `kubectl get
// nodeclasses` shows them.
func (s *sandbox) waitNodeClassesSettled(ctx context.Context) error {
	lister := s.progress.ncs.Ipp().V1alpha1().NodeClasses().Lister()
	var ncs []*ippv1alpha1.NodeClass
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		var err error
		if ncs, err = lister.List(labels.Everything()); err != nil {
			return false, nil
		}
		for _, nc := range ncs {
			if want, ok := s.expectPods[nc.Name]; ok && (int(nc.Status.Pods) != want || conditionStatus(nc, ippv1alpha1.ConditionReady) != string(metav1.ConditionTrue)) {
				return false, nil
			}
			if size, ok := s.warmPools[nc.Name]; ok && int(nc.Status.WarmReady) != size {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the NodeClasses' status to count the example Pods: %w", err)
	}
	table := nodeClassTable(ncs, time.Now())
	s.printf("NodeClasses settled (kubectl get nodeclasses):")
	s.outMu.Lock()
	defer s.outMu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		fmt.Fprintf(s.out, "          %s\n", l)
	}
	return nil
}

// waitWarmPools waits until the warm pool of each example NodeClass that has one holds its size
// of Ready warm nodes, bound to no class, and prints them: the example Deployments are created
// after, so that a class finds a warm node to claim.
func (s *sandbox) waitWarmPools(ctx context.Context) error {
	for _, nc := range slices.Sorted(maps.Keys(s.warmPools)) {
		size := s.warmPools[nc]
		s.printf("Waiting for the warm pool of NodeClass %s (warm.size %d) to be Ready before creating the example Deployments", nc, size)
		var warm []*corev1.Node
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
			warm = s.progress.warmNodes(nc)
			return len(warm) >= size, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for the warm pool of NodeClass %s: %w", nc, err)
		}
		for _, n := range warm {
			s.firstWarm[n.Name] = nc
			s.printf("Warm pool of NodeClass %s ready: node %s booted, joined and Ready, bound to no class (%s; no %s label), %.1fs after the NodeClass was applied",
				nc, n.Name, warmLabels(n), isolation.ClassLabel, time.Since(s.appliedAt[nc]).Seconds())
		}
	}
	return nil
}

// printWarmClaims prints, for each example class whose Pods run on a node that was warm before
// the Deployments were created, how long its Pods took from creation to Running: no boot.
func (s *sandbox) printWarmClaims() {
	if len(s.firstWarm) == 0 {
		return
	}
	cfg := isolation.DefaultConfig()
	for _, d := range s.exampleDeployments {
		pods, err := s.progress.pods.Core().V1().Pods().Lister().Pods(d.Namespace).List(labels.SelectorFromSet(d.Spec.Selector.MatchLabels))
		if err != nil {
			continue
		}
		byNode := map[string][]string{}
		for _, pod := range pods {
			if _, warm := s.firstWarm[pod.Spec.NodeName]; warm && pod.DeletionTimestamp == nil {
				byNode[pod.Spec.NodeName] = append(byNode[pod.Spec.NodeName], fmt.Sprintf("%s %.2fs", pod.Name, s.progress.runningTime(pod).Seconds()))
			}
		}
		for _, node := range slices.Sorted(maps.Keys(byNode)) {
			sort.Strings(byNode[node])
			s.printf("Class %s/%s claimed warm node %s of NodeClass %s at once: creation to Running %s, no boot waited (an instance takes --boot-delay %v to register)",
				d.Namespace, d.Spec.Template.Labels[cfg.PodLabel], node, s.firstWarm[node], strings.Join(byNode[node], ", "), s.bootDelay)
		}
	}
}

// waitWarmReplacements waits until each warm pool holds its size of Ready warm nodes again, and
// prints the replacements of the claimed ones.
func (s *sandbox) waitWarmReplacements(ctx context.Context) error {
	for _, nc := range slices.Sorted(maps.Keys(s.warmPools)) {
		size := s.warmPools[nc]
		var warm []*corev1.Node
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
			warm = s.progress.warmNodes(nc)
			return len(warm) >= size, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for the warm pool of NodeClass %s to be back to warm.size %d: %w", nc, size, err)
		}
		for _, n := range warm {
			if _, first := s.firstWarm[n.Name]; first {
				continue
			}
			since := ""
			claimedAt, claimed := s.progress.lastClaim(nc)
			readyAt, ready := s.progress.warmReadyAt(n.Name)
			if claimed && ready {
				since = fmt.Sprintf(", Ready %.1fs after the claim", readyAt.Sub(claimedAt).Seconds())
			}
			s.printf("Replacement warm node %s of NodeClass %s booted, joined and Ready, bound to no class (%s)%s: the pool is back to warm.size %d",
				n.Name, nc, warmLabels(n), since, size)
		}
	}
	return nil
}
