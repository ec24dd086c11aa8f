package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ipp-project/ipp/cmd/ipp/app"
	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/certs"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/leader"
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/nodeclass"
	"github.com/ipp-project/ipp/pkg/nodeset"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// Names of the installation that deploy/ makes, as docs/operations.md describes it.
const (
	opsNamespace   = "ipp-system"
	opsSecret      = "ipp-webhook-tls"
	opsLease       = "ipp-controller"
	opsWebhooks    = "ipp"
	opsSAUser      = "system:serviceaccount:ipp-system:ipp"
	opsClusterName = "ops-e2e"
	// opsNodeClassCRD is the CRD of deploy/base/crds.
	opsNodeClassCRD = "nodeclasses.ipp.io"
	// opsOverlays is the directory of the overlays docs/operations.md installs, one per
	// provider, from this package's directory.
	opsOverlays = "../../deploy/overlays"
)

// TestOperations installs IPP from the rendered deploy/overlays/<provider> manifests, on each
// provider chosen by -provider in turn, and runs it with the ServiceAccount's identity, then
// uninstalls it in the order docs/operations.md gives:
//
//   - every object of the overlay is accepted by the apiserver (the Deployment and a Pod of its
//     template by a dry run, against the namespace's restricted Pod Security level);
//   - two replicas, each with self-managed TLS, the webhook and a leader-elected controller with
//     the real provider on its cloud's emulator, run with the ServiceAccount's credentials:
//     the RBAC is enough to serve a class end to end (the webhook's watches of IPP nodes,
//     NodeClasses and namespaces included), and actions outside it are refused;
//   - the webhook configurations are the overlay's, with only their clientConfig pointed at the
//     replicas, and their caBundle written by the replicas; the CA is rotated while Pods are
//     admitted, with no failed admission (on the first provider only: the rotation does not
//     depend on the provider, and it takes 40 s);
//   - /metrics then shows every metric of docs/metrics.md with a non-zero count;
//   - `ipp cleanup` refuses without --yes, and with --yes leaves no instance in the emulator.
//
// It runs alone (not in parallel): its webhook configurations, named as in production, see every
// namespace but ipp-system and kube-system.
func TestOperations(t *testing.T) {
	forEachProvider(t, testOperations)
}

func testOperations(t *testing.T, provider string) {
	ctx := t.Context()
	objs := renderOverlay(t, filepath.Join(opsOverlays, provider))
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = opsClusterName + "-" + provider
	// deploy/ passes no --placement: an installed ipp runs the default, --placement=controller,
	// so its ServiceAccount places each Pod with a PATCH that skips the webhooks and meets the
	// policy ipp-pods.
	if cfg.Placement != isolation.PlacementController {
		t.Fatalf("the default placement is %q; this test follows the controller's", cfg.Placement)
	}

	// Install: every object is accepted. (Not a subtest: what it creates lives until the end.)
	mwc, vwc := applyOverlay(t, objs)
	if t.Failed() {
		return
	}
	checkWebhookConfigurationsMatchHarness(t, mwc, vwc)

	saConfig, err := cluster.UserConfig(opsSAUser, "system:serviceaccounts", "system:serviceaccounts:"+opsNamespace)
	if err != nil {
		t.Fatal(err)
	}
	saIPP, err := ippclient.NewForConfig(saConfig)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(saConfig)
	if err != nil {
		t.Fatal(err)
	}

	// The cloud: the provider's emulator, whose instances boot into Nodes through emulated
	// kubelets.
	booter := kubelet.NewBooter(kubelet.Config{})
	cloud, err := framework.StartCloud(ctx, provider, framework.CloudOptions{
		ClusterName: cfg.ClusterName,
		Booter:      booter,
		Join:        cluster.MintedJoin(),
	})
	if err != nil {
		booter.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		booter.Stop()
		cloud.Close()
	})

	// Two replicas, as the Deployment runs them.
	runCtx, stopReplicas := context.WithCancel(ctx)
	var replicas []*opsReplica
	for i := range 2 {
		r, err := startReplica(runCtx, fmt.Sprintf("replica-%d", i), sa, saIPP, cfg, cloud)
		if err != nil {
			stopReplicas()
			t.Fatal(err)
		}
		replicas = append(replicas, r)
	}
	t.Cleanup(func() {
		stopReplicas()
		for _, r := range replicas {
			r.wait()
		}
	})

	// The overlay's webhook configurations, pointed at the replicas: the apiserver cannot reach a
	// Service's endpoints in this cluster, so the url replaces the service reference.
	mwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(replicas[0].url + webhook.MutatePath)}
	vwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(replicas[1].url + webhook.ValidatePath)}
	registerOpsWebhooks(t, mwc, vwc)

	ns := namespace(t, "ops")
	t.Run("self-managed TLS: the apiserver trusts both replicas", func(t *testing.T) {
		waitAdmitted(t, ns, replicas)
	})
	if t.Failed() {
		return
	}

	const class = "web"
	key := cfg.ClassKey(ns, class)
	// The class's node: the one the controller placed its Pod on.
	var dedicated string
	t.Run("a class gets its node with the ServiceAccount's RBAC", func(t *testing.T) {
		placedBefore := metricTotal(t, "ipp_pods_placed_total", nil)
		createDeployment(t, ns, deployment(cfg, class, class, 1))
		for _, p := range waitDeploymentRunning(t, ns, class, 1) {
			dedicated = p.Spec.NodeName
		}
		if dedicated == "" {
			t.Fatal("the class's Pod runs on no node")
		}
		// kubectl get nodes -l ipp=true -L node-restriction.kubernetes.io/ipp-class
		nodes, err := cluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: cfg.NodeLabel + "=true"})
		if err != nil {
			t.Fatal(err)
		}
		bound := false
		for _, n := range nodes.Items {
			bound = bound || (n.Name == dedicated && n.Labels[isolation.BindingLabel] == dedicated && n.Labels[isolation.ClassLabel] == key)
		}
		if !bound {
			t.Errorf("the Pod's Node %s is not among the ipp=true Nodes labelled %s=%s and %s=%s", dedicated, isolation.BindingLabel, dedicated, isolation.ClassLabel, key)
		}
		if n := metricTotal(t, "ipp_pods_placed_total", nil) - placedBefore; n < 1 {
			t.Errorf("ipp_pods_placed_total grew by %v, want the Pod's placement (by the ServiceAccount, through the policy ipp-pods)", n)
		}
		if !hasEvent(t, "", "Node", dedicated, controller.ReasonBound) {
			t.Errorf("no %s Event on Node %s (Events need create on events)", controller.ReasonBound, dedicated)
		}
		lease, err := cluster.Client.CoordinationV1().Leases(opsNamespace).Get(ctx, opsLease, metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || !strings.HasPrefix(*lease.Spec.HolderIdentity, "replica-") {
			t.Errorf("Lease %s/%s: %v, %v; want held by a replica", opsNamespace, opsLease, lease, err)
		}
		// The replicas watch the IPP nodes with the ServiceAccount's RBAC: a Pod without a class
		// that names the class's node is denied for it (not with "retry", which an unsynced
		// watch, such as one that RBAC refused, would give).
		var last error
		err = waitFor(ctx, podTimeout, func(ctx context.Context) (bool, error) {
			_, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, strayPod("stray", dedicated), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if ctx.Err() == nil {
				last = err
			}
			return err != nil && strings.Contains(err.Error(), "names an IPP node"), nil
		})
		if err != nil {
			t.Errorf("A Pod without a class with spec.nodeName=%s: last error %v, want the webhook's denial naming the IPP node: %v", dedicated, last, err)
		}
	})

	if t.Failed() {
		return
	}

	t.Run("actions outside the RBAC are refused", func(t *testing.T) {
		checkForbidden(t, sa, ns)
	})

	t.Run("join tokens: the ServiceAccount mints and deletes only IPP's", func(t *testing.T) {
		checkJoinTokenPolicy(t, sa, cfg.ClusterName)
	})

	t.Run("Nodes: the ServiceAccount writes only IPP's labels, annotations and cordon on IPP nodes", func(t *testing.T) { checkNodePolicy(t, sa, cfg, dedicated) })
	t.Run("the CA rotates with no failed admission", func(t *testing.T) {
		if provider != providers[0] {
			t.Skipf("The rotation does not depend on the provider; it ran on %s", providers[0])
		}
		checkRotation(t, ns, cfg)
	})

	t.Run("metrics: every documented metric counts", func(t *testing.T) {
		// Two new classes in one namespace at once: the second creation waits for the
		// namespace's creation rate limit, which has its own metric, and then for
		// --max-instances (2, with the class web), which has its own two.
		burst := namespace(t, "ops-burst")
		for _, class := range []string{"burst-a", "burst-b"} {
			createPod(t, burst, pod(class, classOf(cfg, class)))
		}
		checkMetrics(t)
		// Events are written after the fact.
		err := waitFor(t.Context(), time.Minute, func(context.Context) (bool, error) {
			return hasEvent(t, burst, "Pod", "burst-b", controller.ReasonCreationRateLimited) ||
				hasEvent(t, burst, "Pod", "burst-a", controller.ReasonCreationRateLimited), nil
		})
		if err != nil {
			t.Errorf("no %s Event on the second class's Pod: %v", controller.ReasonCreationRateLimited, err)
		}
	})

	t.Run("uninstall in the documented order leaves no instance", func(t *testing.T) {
		uninstall(t, ns, class, dedicated, cloud, cfg)
	})
}

// renderOverlay builds a kustomization with the kustomize library, as `kubectl apply -k` does,
// and returns its objects in kustomize's order.
func renderOverlay(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// applyOverlay creates every object with the dynamic client, as kubectl does. The Deployment and
// the webhook configurations are only dry-run here: the Deployment's Pods could not run in this
// cluster (their replicas run in the test process instead), and the webhook configurations are
// registered once the replicas serve. A Pod of the Deployment's template is dry-run too, so that
// the namespace's restricted Pod Security level checks its securityContext.
func applyOverlay(t *testing.T, objs []*unstructured.Unstructured) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	ctx := t.Context()
	dyn, err := dynamic.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))

	var (
		mwc    *admissionregistrationv1.MutatingWebhookConfiguration
		vwc    *admissionregistrationv1.ValidatingWebhookConfiguration
		deploy *appsv1.Deployment
	)
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
		}
		var client dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if u.GetNamespace() != "" {
			client = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		opts := metav1.CreateOptions{FieldManager: "kubectl"}
		switch gvk.Kind {
		case "Deployment", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := client.Create(ctx, u, opts); err != nil {
			t.Errorf("The apiserver refuses %s %s: %v", gvk.Kind, u.GetName(), err)
			continue
		}
		t.Cleanup(func() { deleteIfPresent(dyn, mapping.Resource, u) })
		switch gvk.Kind {
		case "Deployment":
			deploy = &appsv1.Deployment{}
			fromUnstructured(t, u, deploy)
		case "MutatingWebhookConfiguration":
			mwc = &admissionregistrationv1.MutatingWebhookConfiguration{}
			fromUnstructured(t, u, mwc)
		case "ValidatingWebhookConfiguration":
			vwc = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			fromUnstructured(t, u, vwc)
		}
	}
	if deploy == nil || mwc == nil || vwc == nil {
		t.Fatalf("the overlay lacks the Deployment or a webhook configuration")
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "ipp-", Namespace: deploy.Namespace, Labels: deploy.Spec.Template.Labels},
		Spec:       deploy.Spec.Template.Spec,
	}
	if _, err := cluster.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("A Pod of the Deployment's template is refused in %s: %v", p.Namespace, err)
	}
	return mwc, vwc
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into runtime.Object) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}

// deleteIfPresent deletes what the install created, for a test that stops half-way; the
// uninstall has normally deleted it already.
func deleteIfPresent(dyn dynamic.Interface, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	var client dynamic.ResourceInterface = dyn.Resource(gvr)
	if u.GetNamespace() != "" {
		client = dyn.Resource(gvr).Namespace(u.GetNamespace())
	}
	_ = client.Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
}

// checkWebhookConfigurationsMatchHarness checks that the webhook configurations of deploy/ and
// those the harness registers for every other e2e test (framework.RegisterWebhook) agree on what
// decides which requests reach the webhook, so that the e2e tests test the configuration that
// users install.
func checkWebhookConfigurationsMatchHarness(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration, vwc *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	// Registered as StartIPP registers it, with the real handler, which answers its probes.
	exempt := sets.List(isolation.DefaultConfig().ExemptNamespaces)
	h, err := cluster.RegisterWebhook(t.Context(), webhook.NewHandler(isolation.DefaultConfig()), framework.WebhookOptions{Name: "ops-compare", ExemptNamespaces: exempt})
	if err != nil {
		t.Fatalf("registering the harness's webhook to compare: %v", err)
	}
	defer func() { _ = h.Unregister(context.Background()) }()
	hm, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), h.MutatingName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hv, err := cluster.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(t.Context(), h.ValidatingName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type decisive struct {
		Rules                   []admissionregistrationv1.RuleWithOperations
		FailurePolicy           *admissionregistrationv1.FailurePolicyType
		SideEffects             *admissionregistrationv1.SideEffectClass
		TimeoutSeconds          *int32
		AdmissionReviewVersions []string
		NamespaceSelector       *metav1.LabelSelector
		ObjectSelector          *metav1.LabelSelector
	}
	// normal makes equal what the apiserver treats as equal: a nil selector is the empty one,
	// and the order of a requirement's values does not matter.
	normal := func(s *metav1.LabelSelector) *metav1.LabelSelector {
		if s == nil {
			return &metav1.LabelSelector{}
		}
		s = s.DeepCopy()
		for i := range s.MatchExpressions {
			slices.Sort(s.MatchExpressions[i].Values)
		}
		return s
	}
	of := func(w any) decisive {
		switch w := w.(type) {
		case admissionregistrationv1.MutatingWebhook:
			return decisive{w.Rules, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions, normal(w.NamespaceSelector), normal(w.ObjectSelector)}
		case admissionregistrationv1.ValidatingWebhook:
			return decisive{w.Rules, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions, normal(w.NamespaceSelector), normal(w.ObjectSelector)}
		}
		return decisive{}
	}
	for _, pair := range []struct{ name, deploy, harness string }{
		{"mutating", mustYAML(of(mwc.Webhooks[0])), mustYAML(of(hm.Webhooks[0]))},
		{"validating", mustYAML(of(vwc.Webhooks[0])), mustYAML(of(hv.Webhooks[0]))},
	} {
		if pair.deploy != pair.harness {
			t.Errorf("%s webhook: deploy/ has\n%s\nthe e2e harness registers\n%s", pair.name, pair.deploy, pair.harness)
		}
	}
}

func mustYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// opsReplica is one replica of `ipp run`, assembled as cmd/ipp/app does it, with the
// ServiceAccount's client: self-managed TLS, the webhook server, and the controller under
// leader election, with the metrics recorded.
type opsReplica struct {
	url      string
	tls      *certs.Manager
	provider cloudprovider.Provider
	done     sync.WaitGroup

	mu    sync.Mutex
	calls map[string]int // by path
}

// wait waits until the replica has stopped, and closes its provider.
func (r *opsReplica) wait() {
	r.done.Wait()
	if r.provider != nil {
		framework.CloseProvider(r.provider)
	}
}

func (r *opsReplica) called(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[path]
}

func startReplica(ctx context.Context, id string, kube kubernetes.Interface, ipp ippclient.Interface, cfg isolation.Config, cloud framework.Cloud) (*opsReplica, error) {
	logger := klog.FromContext(ctx).WithName(id)
	ctx = klog.NewContext(ctx, logger)
	r := &opsReplica{calls: map[string]int{}}

	tlsOpts := certs.NewOptions()
	tlsOpts.SecretName = opsSecret
	tlsOpts.Namespace = opsNamespace
	tlsOpts.ExtraNames = []string{"127.0.0.1"}
	// Lifetimes of seconds, so that a CA rotation happens within the test: the CA is rotated
	// about 40 s after it was made, and the serving certificate renewed every 10 s.
	tlsOpts.CAValidity = 60 * time.Second
	tlsOpts.ServingValidity = 15 * time.Second
	tlsOpts.Overlap = 2 * time.Second
	tlsOpts.Resync = 2 * time.Second
	var err error
	if r.tls, err = certs.NewManager(kube, *tlsOpts); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.url = "https://" + ln.Addr().String()

	// A provider of its own, as each replica's process has.
	if r.provider, err = cloud.NewProvider(ctx); err != nil {
		return nil, err
	}
	instrumented := metrics.InstrumentProvider(r.provider, clock.RealClock{})

	leaderCfg := leader.DefaultConfig()
	leaderCfg.Namespace = opsNamespace
	leaderCfg.Identity = id

	run := func(name string, f func() error) {
		r.done.Add(1)
		go func() {
			defer r.done.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				logger.Error(err, "Replica part stopped", "part", name)
			}
		}()
	}
	// The webhook's set of IPP nodes (--watch-ipp-nodes), with the ServiceAccount's RBAC.
	nodes, err := nodeset.New(kube, cfg.NodeLabel, isolation.LabelValue)
	if err != nil {
		return nil, err
	}
	// And its NodeClasses and namespaces (--watch-node-classes), likewise.
	classes, err := nodeclass.NewCache(kube, ipp)
	if err != nil {
		return nil, err
	}
	run("tls", func() error { return r.tls.Run(ctx) })
	run("nodes", func() error { nodes.Run(ctx); return nil })
	run("nodeclasses", func() error { classes.Run(ctx); return nil })
	run("webhook", func() error {
		return webhook.Serve(ctx, cfg, webhook.ServerOptions{
			Listener:       ln,
			GetCertificate: r.tls.GetCertificate,
			Nodes:          nodes,
			NodeClasses:    classes,
			Observer: func(o webhook.Observation) {
				metrics.ObserveAdmission(o.Path, metrics.AdmissionVerdict(o.Code, o.Allowed, o.Patched), o.Duration)
				r.mu.Lock()
				r.calls[o.Path]++
				r.mu.Unlock()
			},
		})
	})
	run("controller", func() error {
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ipp-controller"})
		return leader.Run(ctx, kube, leaderCfg, func(ctx context.Context) error {
			metrics.SetLeader(true)
			defer metrics.SetLeader(false)
			m, err := controller.NewManager(kube, instrumented, recorder, controller.Options{
				Config:           cfg,
				IPPClient:        ipp,
				ProviderResync:   2 * time.Second,
				MintJoinTokens:   true,
				JournalNamespace: opsNamespace,
				// One creation at once per namespace, the next 2 s later: checkMetrics makes it
				// bite, as ipp's defaults would for a burst of 21 classes.
				NamespaceCreateQPS:   0.5,
				NamespaceCreateBurst: 1,
				// The class web and one of the two burst classes get instances; the other
				// burst class waits for --max-instances, which has its metrics too.
				MaxInstances: 2,
			})
			if err != nil {
				return err
			}
			return m.Run(ctx, 2)
		})
	})
	return r, nil
}

// registerOpsWebhooks creates the webhook configurations; the replicas write their caBundle.
func registerOpsWebhooks(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration, vwc *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	ctx := t.Context()
	ar := cluster.Client.AdmissionregistrationV1()
	mwc.ResourceVersion, vwc.ResourceVersion = "", ""
	if _, err := ar.MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Deleted by the uninstall; this is for a test that stops before it.
	t.Cleanup(func() {
		_ = ar.MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})
	if _, err := ar.ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ar.ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
	})
}

// opsPod returns a Pod to dry-run; with a class it is an IPP Pod.
func opsPod(cfg isolation.Config, class string) *corev1.Pod {
	p := pod("probe-" + strings.ToLower(class))
	p.GenerateName, p.Name = "probe-", ""
	if class != "" {
		p.Labels = map[string]string{cfg.PodLabel: class}
	}
	return p
}

// waitAdmitted waits until a Pod is admitted through both replicas' webhooks: their CA is in
// the caBundle and they serve a certificate it signed.
func waitAdmitted(t *testing.T, ns string, replicas []*opsReplica) {
	t.Helper()
	var lastErr error
	err := waitFor(t.Context(), time.Minute, func(ctx context.Context) (bool, error) {
		_, lastErr = cluster.Client.CoreV1().Pods(ns).Create(ctx, pod("admitted", func(p *corev1.Pod) {}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return lastErr == nil && replicas[0].called(webhook.MutatePath) > 0 && replicas[1].called(webhook.ValidatePath) > 0, nil
	})
	if err != nil {
		t.Fatalf("Pods are not admitted through the replicas: %v (last: %v)", err, lastErr)
	}
	secret, err := cluster.Client.CoreV1().Secrets(opsNamespace).Get(t.Context(), opsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("The TLS Secret: %v", err)
	}
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret %s has type %s, want %s", opsSecret, secret.Type, corev1.SecretTypeTLS)
	}
	checkNoCAKey(t, secret)
}

// checkNoCAKey fails if the serving Secret, which the replicas watch and anything may mount, holds
// the CA's private key: only the CA Secret may.
func checkNoCAKey(t *testing.T, secret *corev1.Secret) {
	t.Helper()
	if _, ok := secret.Data[certs.KeyCAKey]; ok {
		t.Fatalf("Secret %s holds %s; the CA's private key belongs in %s alone", secret.Name, certs.KeyCAKey, certs.DefaultCASecretName)
	}
}

// checkForbidden makes requests that ipp never needs with the ServiceAccount's credentials: the
// apiserver must refuse each.
func checkForbidden(t *testing.T, sa kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	dry := []string{metav1.DryRunAll}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"list Secrets in ipp-system", func() error {
			_, err := sa.CoreV1().Secrets(opsNamespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list Secrets in every namespace", func() error {
			_, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"get another Secret in ipp-system", func() error {
			_, err := sa.CoreV1().Secrets(opsNamespace).Get(ctx, "another", metav1.GetOptions{})
			return err
		}},
		{"get a Secret elsewhere", func() error {
			_, err := sa.CoreV1().Secrets(ns).Get(ctx, opsSecret, metav1.GetOptions{})
			return err
		}},
		{"delete the TLS Secret", func() error {
			return sa.CoreV1().Secrets(opsNamespace).Delete(ctx, opsSecret, metav1.DeleteOptions{DryRun: dry})
		}},
		{"create a Pod", func() error {
			_, err := sa.CoreV1().Pods(ns).Create(ctx, pod("forbidden"), metav1.CreateOptions{DryRun: dry})
			return err
		}},
		{"delete a Pod", func() error {
			return sa.CoreV1().Pods(ns).Delete(ctx, "any", metav1.DeleteOptions{DryRun: dry})
		}},
		{"create a Node", func() error {
			_, err := sa.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "forbidden"}}, metav1.CreateOptions{DryRun: dry})
			return err
		}},
		{"get another Lease", func() error {
			_, err := sa.CoordinationV1().Leases(opsNamespace).Get(ctx, "kube-controller-manager", metav1.GetOptions{})
			return err
		}},
		{"get another MutatingWebhookConfiguration", func() error {
			_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "another", metav1.GetOptions{})
			return err
		}},
		{"delete its own webhook configuration", func() error {
			return sa.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, opsWebhooks, metav1.DeleteOptions{DryRun: dry})
		}},
		{"delete a Namespace", func() error {
			return sa.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{DryRun: dry})
		}},
		{"list ConfigMaps", func() error {
			_, err := sa.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list ClusterRoleBindings", func() error {
			_, err := sa.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
			return err
		}},
	} {
		if err := tc.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s with the ServiceAccount's credentials: err = %v, want Forbidden", tc.name, err)
		}
	}
}

// checkRotation admits Pods, with and without a class, every few hundred milliseconds until the
// CA in the Secret has been replaced and the old one has left the bundle: none may fail.
func checkRotation(t *testing.T, ns string, cfg isolation.Config) {
	t.Helper()
	ctx := t.Context()
	read := func() (ca []*x509.Certificate, serving *x509.Certificate) {
		s, err := cluster.Client.CoreV1().Secrets(opsNamespace).Get(ctx, opsSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkNoCAKey(t, s)
		return pemCerts(t, s.Data["ca.crt"]), pemCerts(t, s.Data["tls.crt"])[0]
	}
	firstCAs, _ := read()
	first := firstCAs[0]
	servings := map[string]bool{}
	var sawTwo, admitted int
	start := time.Now()
	err := waitFor(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		for _, class := range []string{"", "rotating"} {
			if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, opsPod(cfg, class), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				return false, fmt.Errorf("admission failed %v into the rotation: %w", time.Since(start).Round(time.Second), err)
			}
			admitted++
		}
		cas, serving := read()
		servings[serving.SerialNumber.String()] = true
		if len(cas) == 2 {
			sawTwo++
		}
		return sawTwo > 0 && len(cas) == 1 && !cas[0].Equal(first), nil
	})
	if err != nil {
		t.Fatalf("CA rotation: %v", err)
	}
	t.Logf("CA rotated %v after the test started watching; %d Pods admitted meanwhile, %d serving certificates seen, two CAs trusted in %d polls",
		time.Since(start).Round(time.Second), admitted, len(servings), sawTwo)
	if len(servings) < 3 {
		t.Errorf("%d serving certificates seen, want at least 3 (renewals and the switch to the new CA)", len(servings))
	}
	// The caBundles follow the Secret: the replicas write them after the Secret, within a resync.
	cas, _ := read()
	bundles := map[string]int{}
	err = waitFor(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		ar := cluster.Client.AdmissionregistrationV1()
		m, err := ar.MutatingWebhookConfigurations().Get(ctx, opsWebhooks, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		v, err := ar.ValidatingWebhookConfigurations().Get(ctx, opsWebhooks, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		done := true
		for name, bundle := range map[string][]byte{"mutating": m.Webhooks[0].ClientConfig.CABundle, "validating": v.Webhooks[0].ClientConfig.CABundle} {
			got := pemCerts(t, bundle)
			bundles[name] = len(got)
			done = done && len(got) == 1 && got[0].Equal(cas[0])
		}
		return done, nil
	})
	if err != nil {
		t.Errorf("caBundles hold %v CAs, want the Secret's one new CA each: %v", bundles, err)
	}
}

func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("no certificate in %q", data)
	}
	return out
}

// checkMetrics scrapes /metrics, served as ipp serves it, and finds every metric that
// docs/metrics.md documents with a non-zero count.
func checkMetrics(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	addr, err := (&metrics.Options{Address: "127.0.0.1:0"}).Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(ipp_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
	}
	if len(documented) < 10 {
		t.Fatalf("found %d metrics in docs/metrics.md", len(documented))
	}
	var missing []string
	err = waitFor(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://" + addr.String() + "/metrics")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			return false, err
		}
		missing = missing[:0]
		for _, name := range documented {
			if _, ok := countedElsewhere[name]; ok {
				continue
			}
			if total(families[name]) <= 0 {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		t.Errorf("documented metrics without a count on /metrics: %v (%v)", missing, err)
	}
}

// total sums a family's samples: counter and gauge values, histogram counts.
// countedElsewhere are the documented metrics of features that TestOperations's installation
// (no warm pool) does not use, with the test that checks that they count.
var countedElsewhere = map[string]string{
	"ipp_warm_nodes":              "TestWarmPool",
	"ipp_warm_oldest_age_seconds": "TestWarmPool",
	"ipp_warm_claims_total":       "TestWarmPool",
	"ipp_warm_claim_misses_total": "TestWarmPool",
}

// metricTotal returns the sum of the metric's samples in this process's registry, whose labels
// include match.
func metricTotal(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			ok := true
			for k, v := range match {
				ok = ok && labels[k] == v
			}
			if ok {
				sum += total(&dto.MetricFamily{Metric: []*dto.Metric{m}})
			}
		}
	}
	return sum
}

func total(mf *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// uninstall runs docs/operations.md's uninstall: the class's workload first, then `ipp cleanup`
// (refusing without --yes), then the webhook configurations, then the namespace and the rest.
// node is the class's node.
func uninstall(t *testing.T, ns, class, node string, cloud framework.Cloud, cfg isolation.Config) {
	t.Helper()
	ctx := t.Context()
	if err := cluster.Client.AppsV1().Deployments(ns).Delete(ctx, class, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	err := waitFor(ctx, podTimeout, func(ctx context.Context) (bool, error) {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: cfg.PodLabel})
		return err == nil && len(pods.Items) == 0, err
	})
	if err != nil {
		t.Fatalf("the class's Pods are not gone: %v", err)
	}

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"cleanup", "--cluster-name=" + cfg.ClusterName, "--kubeconfig=" + kubeconfig, "--poll-interval=200ms", "--timeout=2m"}, cloud.IPPFlags()...)
	// ipp cleanup takes its cloud credentials from the environment, as in production.
	for _, kv := range cloud.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if code := app.Main(args); code != 1 {
		t.Errorf("ipp cleanup without --yes exited %d, want 1", code)
	}
	if len(framework.LiveInstances(cloud)) == 0 {
		t.Fatalf("ipp cleanup without --yes deleted the instances")
	}
	if code := app.Main(append(args, "--yes")); code != 0 {
		t.Fatalf("ipp cleanup --yes exited %d", code)
	}
	if insts := framework.LiveInstances(cloud); len(insts) != 0 {
		t.Errorf("%d instances remain after ipp cleanup --yes: %v", len(insts), insts)
	}
	nodes, err := cluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: isolation.BindingLabel})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Name == node {
			t.Errorf("Node %s remains after ipp cleanup --yes", n.Name)
		}
	}
	if code := app.Main(append(args, "--yes")); code != 0 {
		t.Errorf("a second ipp cleanup --yes exited %d, want 0 (idempotent)", code)
	}

	ar := cluster.Client.AdmissionregistrationV1()
	if err := ar.MutatingWebhookConfigurations().Delete(ctx, opsWebhooks, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
	if err := ar.ValidatingWebhookConfigurations().Delete(ctx, opsWebhooks, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
	if err := cluster.Client.CoreV1().Namespaces().Delete(ctx, opsNamespace, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
	err = waitFor(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.CoreV1().Namespaces().Get(ctx, opsNamespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), ignoreNotFound(err)
	})
	if err != nil {
		t.Errorf("namespace %s is not gone: %v", opsNamespace, err)
	}
	// The CRDs, with every NodeClass, as `kubectl delete -k` removes them; waited for, so that
	// the next install can create them again.
	ext, err := apiextensionsclient.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	crds := ext.ApiextensionsV1().CustomResourceDefinitions()
	if err := crds.Delete(ctx, opsNodeClassCRD, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
	err = waitFor(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		_, err := crds.Get(ctx, opsNodeClassCRD, metav1.GetOptions{})
		return apierrors.IsNotFound(err), ignoreNotFound(err)
	})
	if err != nil {
		t.Errorf("CRD %s is not gone: %v", opsNodeClassCRD, err)
	}
}
