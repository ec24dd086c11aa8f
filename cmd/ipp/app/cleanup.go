package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// cleanupFieldManager names `ipp cleanup` in the managedFields of the Nodes it cordons.
const cleanupFieldManager = "ipp-cleanup"

// errNeedYes is returned when cleanup found something to delete but was not told --yes.
var errNeedYes = errors.New("nothing was deleted: pass --yes to delete the Nodes and instances listed above")

// cleanupOptions are the flags of ipp cleanup.
type cleanupOptions struct {
	provider     providerOptions
	clusterName  string
	nodeLabel    string
	podLabel     string
	kubeconfig   string
	yes          bool
	timeout      time.Duration
	pollInterval time.Duration
}

func newCleanupCommand() *cobra.Command {
	cfg := isolation.DefaultConfig()
	o := &cleanupOptions{
		clusterName:  cfg.ClusterName,
		nodeLabel:    cfg.NodeLabel,
		podLabel:     cfg.PodLabel,
		timeout:      10 * time.Minute,
		pollInterval: 5 * time.Second,
	}
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Delete every Node and instance this cluster's IPP owns (run it first when uninstalling)",
		Long: `ipp cleanup finds every instance that this cluster owns in the cloud (by the ownership tags of
--cluster-name) and every Node that IPP bound or that belongs to one of those instances, prints
them, and with --yes cordons and deletes the Nodes, deletes the instances, and waits until the
cloud lists none.

Without --yes it only prints what it would delete and exits with status 1. Run it with the same
provider flags and --cluster-name as the controller. It is idempotent: run it again after a
failure or a timeout.

While the IPP controller runs, Pods that carry the class label ask for their nodes again; delete
those workloads first (cleanup lists them), or the wait ends in a timeout that names them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(klog.Background().WithName("cleanup"))
			defer cancel()
			return o.run(ctx, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.provider.addFlags(fs)
	fs.StringVar(&o.clusterName, "cluster-name", o.clusterName, "Name of the cluster whose instances to delete: the controller's --cluster-name.")
	fs.StringVar(&o.nodeLabel, "node-label", o.nodeLabel, "Key of the label on every IPP node: the controller's --node-label.")
	fs.StringVar(&o.podLabel, "pod-label", o.podLabel, "Pod label whose value is the Pod's isolation class: the controller's --pod-label. Used to list the Pods that still ask for dedicated nodes.")
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "Path to a kubeconfig. Empty uses $KUBECONFIG, ~/.kube/config, or the in-cluster configuration, as kubectl does.")
	fs.BoolVar(&o.yes, "yes", o.yes, "Delete what was found. Without it, cleanup only prints what it would delete and exits non-zero.")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "How long to wait, after deleting, for the cloud to list no instance and the cluster to hold no IPP Node.")
	fs.DurationVar(&o.pollInterval, "poll-interval", o.pollInterval, "How often to list instances and Nodes while waiting.")
	addKlogFlags(cmd)
	return cmd
}

// config is the isolation configuration that the flags describe.
func (o *cleanupOptions) config() isolation.Config {
	cfg := isolation.DefaultConfig()
	cfg.ClusterName, cfg.NodeLabel, cfg.PodLabel = o.clusterName, o.nodeLabel, o.podLabel
	return cfg
}

// validate checks the flags that need no API, naming the bad one.
func (o *cleanupOptions) validate() error {
	if err := o.config().Validate(); err != nil {
		return err
	}
	if o.timeout <= 0 {
		return fmt.Errorf("invalid --timeout %s: must be positive", o.timeout)
	}
	if o.pollInterval <= 0 {
		return fmt.Errorf("invalid --poll-interval %s: must be positive", o.pollInterval)
	}
	return o.provider.validate()
}

func (o *cleanupOptions) run(ctx context.Context, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	restConfig.UserAgent = "ipp-cleanup"
	client, err := kubernetes.NewForConfig(controller.ProtobufConfig(restConfig))
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	provider, err := o.provider.build(ctx, o.clusterName)
	if err != nil {
		return err
	}
	defer closeProvider(klog.FromContext(ctx), provider)
	return o.cleanup(ctx, out, client, provider)
}

// cleanupPlan is what cleanup found.
type cleanupPlan struct {
	instances []cloudprovider.Instance
	nodes     []corev1.Node
	// pinned are live Pods pinned to a dedicated node: while the controller runs, they make it
	// create their instances again.
	pinned []corev1.Pod
}

func (p *cleanupPlan) empty() bool { return len(p.instances) == 0 && len(p.nodes) == 0 }

// find lists what this cluster's IPP owns: every instance the provider lists, and every Node
// that IPP bound (it carries the binding label, which only the controller writes) or whose name
// or providerID is one of those instances. Nodes that merely carry the IPP node label, such as an
// autoscaler-mode node pool, are left alone.
func (o *cleanupOptions) find(ctx context.Context, client kubernetes.Interface, provider cloudprovider.Provider) (*cleanupPlan, error) {
	instances, err := provider.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the instances of cluster %q on %s: %w", o.clusterName, provider.Name(), err)
	}
	byName := map[string]bool{}
	byProviderID := map[string]bool{}
	for _, inst := range instances {
		byName[inst.NodeName] = true
		if inst.ProviderID != "" {
			byProviderID[inst.ProviderID] = true
		}
	}

	nodes := map[string]corev1.Node{}
	for _, selector := range []string{o.nodeLabel + "=" + isolation.LabelValue, isolation.BindingLabel} {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("listing Nodes with %s: %w", selector, err)
		}
		for _, n := range list.Items {
			if _, bound := n.Labels[isolation.BindingLabel]; bound || byName[n.Name] || byProviderID[n.Spec.ProviderID] {
				nodes[n.Name] = n
			}
		}
	}
	// A Node registered under an instance's name without the IPP label (a bootstrap that got the
	// labels wrong) still belongs to that instance.
	for name := range byName {
		if _, ok := nodes[name]; ok {
			continue
		}
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading Node %s: %w", name, err)
		default:
			nodes[name] = *n
		}
	}

	plan := &cleanupPlan{instances: instances}
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		plan.nodes = append(plan.nodes, nodes[name])
	}

	pods, err := client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: o.podLabel})
	if err != nil {
		// Only a warning depends on it; the cleanup itself does not.
		klog.FromContext(ctx).Info("Cannot list IPP Pods; not checking for Pods that would ask for their nodes again", "err", err)
	} else {
		cfg := o.config()
		for _, p := range pods.Items {
			if controller.IsLivePinned(cfg, &p) {
				plan.pinned = append(plan.pinned, p)
			}
		}
	}
	return plan, nil
}

func (o *cleanupOptions) print(out io.Writer, provider cloudprovider.Provider, plan *cleanupPlan) {
	if plan.empty() {
		fmt.Fprintf(out, "Cluster %q on %s owns no instance and no IPP Node: nothing to delete.\n", o.clusterName, provider.Name())
		return
	}
	fmt.Fprintf(out, "Cluster %q on %s: %d Node(s) and %d instance(s) to delete.\n", o.clusterName, provider.Name(), len(plan.nodes), len(plan.instances))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(plan.nodes) > 0 {
		fmt.Fprintln(w, "\nNODE\tBOUND TO\tPROVIDER ID\tCREATED")
		for _, n := range plan.nodes {
			bound := n.Labels[isolation.BindingLabel]
			if bound == "" {
				bound = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n.Name, bound, orDash(n.Spec.ProviderID), n.CreationTimestamp.UTC().Format(time.RFC3339))
		}
	}
	if len(plan.instances) > 0 {
		fmt.Fprintln(w, "\nINSTANCE\tNODE\tSTATE\tCLASS\tNAMESPACE\tCREATED")
		for _, i := range plan.instances {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.NodeName, i.State, orDash(i.Class), orDash(i.Namespace), i.CreatedAt.UTC().Format(time.RFC3339))
		}
	}
	_ = w.Flush()
	if len(plan.pinned) > 0 {
		fmt.Fprintf(out, "\nWarning: %d Pod(s) with %s are still pinned to dedicated nodes; while the IPP controller runs it creates their instances again. Delete their workloads first:\n", len(plan.pinned), o.podLabel)
		for i, p := range plan.pinned {
			if i == 10 {
				fmt.Fprintf(out, "  ... and %d more\n", len(plan.pinned)-10)
				break
			}
			fmt.Fprintf(out, "  %s/%s\n", p.Namespace, p.Name)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cleanup finds, prints and, with --yes, deletes and waits.
func (o *cleanupOptions) cleanup(ctx context.Context, out io.Writer, client kubernetes.Interface, provider cloudprovider.Provider) error {
	plan, err := o.find(ctx, client, provider)
	if err != nil {
		return err
	}
	o.print(out, provider, plan)
	if plan.empty() {
		return nil
	}
	if !o.yes {
		return errNeedYes
	}

	if err := o.delete(ctx, out, client, provider, plan); err != nil {
		return err
	}
	fmt.Fprintf(out, "Waiting up to %s for the instances and Nodes to be gone...\n", o.timeout)
	err = wait.PollUntilContextTimeout(ctx, o.pollInterval, o.timeout, false, func(ctx context.Context) (bool, error) {
		found, err := o.find(ctx, client, provider)
		if err != nil {
			// A failed list (throttling, say) is tried again at the next poll.
			klog.FromContext(ctx).Info("Listing failed; retrying", "err", err)
			return false, nil
		}
		plan = found
		if plan.empty() {
			return true, nil
		}
		// Delete again what is still there and not already going: a kubelet re-registers its
		// Node while its instance shuts down, and a lost delete is simply repeated.
		return false, o.delete(ctx, out, client, provider, plan)
	})
	if err != nil {
		if plan.empty() {
			return fmt.Errorf("waiting for the instances and Nodes to be gone: %w", err)
		}
		msg := fmt.Sprintf("after %s, %d instance(s) and %d Node(s) remain", o.timeout, len(plan.instances), len(plan.nodes))
		if len(plan.pinned) > 0 {
			msg += fmt.Sprintf("; %d Pod(s) with %s are still pinned to dedicated nodes, and the running IPP controller creates their instances again: delete those workloads and run cleanup again", len(plan.pinned), o.podLabel)
		} else {
			msg += "; run cleanup again, or raise --timeout"
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	fmt.Fprintf(out, "Done: cluster %q owns no instance and no IPP Node.\n", o.clusterName)
	return nil
}

// delete cordons and deletes the Nodes, then deletes the instances that are not already
// stopping. Everything already gone counts as done.
func (o *cleanupOptions) delete(ctx context.Context, out io.Writer, client kubernetes.Interface, provider cloudprovider.Provider, plan *cleanupPlan) error {
	var errs []error
	for _, n := range plan.nodes {
		if n.DeletionTimestamp != nil {
			continue
		}
		if !n.Spec.Unschedulable {
			_, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{FieldManager: cleanupFieldManager})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("cordoning Node %s: %w", n.Name, err))
				continue
			}
		}
		if err := controller.DeleteNode(ctx, client, &n); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "Deleted Node %s\n", n.Name)
	}
	for _, i := range plan.instances {
		if i.State == cloudprovider.StateStopping {
			continue
		}
		if err := controller.DeleteInstance(ctx, provider, i); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "Deleted instance %s (node %s)\n", i.ID, i.NodeName)
	}
	if err := errors.Join(errs...); err != nil {
		// Permanent errors (a missing permission) end the cleanup; others are retried by the wait.
		if isPermanent(err) {
			return err
		}
		klog.FromContext(ctx).Info("Some deletions failed; retrying", "err", err)
	}
	return nil
}

// isPermanent reports whether some error in err will not go away by retrying.
func isPermanent(err error) bool {
	var joined interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		if apierrors.IsForbidden(e) || apierrors.IsUnauthorized(e) || cloudprovider.KindOf(e) == cloudprovider.KindInvalid {
			return true
		}
	}
	return false
}
