package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/cloudprovider/fake"
	ippfake "github.com/ipp-project/ipp/pkg/generated/clientset/versioned/fake"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	testIdleTTL    = 10 * time.Minute
	testRegTimeout = 15 * time.Minute
	testResync     = 30 * time.Second
)

// recordingProvider is the fake provider plus a log of the specs Create was given.
type recordingProvider struct {
	*fake.Provider
	mu    sync.Mutex
	specs []cloudprovider.InstanceSpec
}

func (p *recordingProvider) Create(ctx context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	p.mu.Lock()
	p.specs = append(p.specs, spec)
	p.mu.Unlock()
	return p.Provider.Create(ctx, spec)
}

// fixture is a controller over a fake clientset whose listers the test fills, a fake provider, a
// fake recorder and a fake clock. Tests call sync directly, as sample-controller's do.
type fixture struct {
	t        *testing.T
	ctx      context.Context
	cfg      isolation.Config
	clock    *testingclock.FakeClock
	kube     *k8sfake.Clientset
	provider *recordingProvider
	recorder *record.FakeRecorder
	pods     informers.SharedInformerFactory
	nodes    informers.SharedInformerFactory
	c        *Controller
	seenCall int
	// createQPS and createBurst are the controller's per-namespace creation rate limit; zero
	// QPS, the default, means none.
	createQPS   float64
	createBurst int
	// ipp holds the NodeClasses; with it, the controller reads them (and the namespaces) from
	// informers that refresh fills. maxInstances is --max-instances.
	ipp          *ippfake.Clientset
	ncs          ippinformers.SharedInformerFactory
	nss          informers.SharedInformerFactory
	maxInstances int
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	f := &fixture{
		t:        t,
		ctx:      ctx,
		cfg:      isolation.DefaultConfig(),
		clock:    testingclock.NewFakeClock(t0),
		kube:     k8sfake.NewClientset(objs...),
		recorder: record.NewFakeRecorder(100),
	}
	// The API server sets a Secret's creationTimestamp, to the second; the fake clientset does not.
	f.kube.PrependReactor("create", "secrets", func(a core.Action) (bool, runtime.Object, error) {
		if s, ok := a.(core.CreateAction).GetObject().(*corev1.Secret); ok && s.CreationTimestamp.IsZero() {
			s.CreationTimestamp = metav1.NewTime(f.clock.Now().Truncate(time.Second))
		}
		return false, nil, nil
	})
	f.provider = &recordingProvider{Provider: fake.New(f.clock)}
	f.provider.Timeout = testRegTimeout
	f.newController()
	return f
}

// newController (re)builds the controller on the same cluster, cloud and clock, as a restart does.
func (f *fixture) newController() {
	f.t.Helper()
	f.pods, f.nodes = newInformerFactories(f.kube, f.cfg)
	c, err := newWithInformers(f.kube, f.pods.Core().V1().Pods(), f.nodes.Core().V1().Nodes(), f.provider, f.recorder, Options{
		Config:         f.cfg,
		IdleTTL:        testIdleTTL,
		ProviderResync: testResync,
		Clock:          f.clock,

		NamespaceCreateQPS:   f.createQPS,
		NamespaceCreateBurst: f.createBurst,
	}.with(f))
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.t.Cleanup(c.queue.ShutDown)
	f.c = c
	f.refresh()
}

// refresh loads the listers from the fake clientset, trimmed as the informers do.
func (f *fixture) refresh() {
	f.t.Helper()
	pods, err := f.kube.CoreV1().Pods("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var podObjs []any
	for i := range pods.Items {
		if _, ok := pods.Items[i].Labels[f.cfg.PodLabel]; ok {
			podObjs = append(podObjs, newCachedPod(f.cfg, &pods.Items[i]))
		}
	}
	if err := f.c.podIndexer.Replace(podObjs, ""); err != nil {
		f.t.Fatal(err)
	}
	nodes, err := f.kube.CoreV1().Nodes().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var nodeObjs []any
	for i := range nodes.Items {
		if nodes.Items[i].Labels[f.cfg.NodeLabel] == isolation.LabelValue {
			nodeObjs = append(nodeObjs, trimNode(&nodes.Items[i]))
		}
	}
	if err := f.c.nodeIndexer.Replace(nodeObjs, ""); err != nil {
		f.t.Fatal(err)
	}
	if f.ncs == nil {
		return
	}
	ncs, err := f.ipp.IppV1alpha1().NodeClasses().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var ncObjs []any
	for i := range ncs.Items {
		ncObjs = append(ncObjs, &ncs.Items[i])
	}
	if err := f.ncs.Ipp().V1alpha1().NodeClasses().Informer().GetIndexer().Replace(ncObjs, ""); err != nil {
		f.t.Fatal(err)
	}
	nss, err := f.kube.CoreV1().Namespaces().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var nsObjs []any
	for i := range nss.Items {
		nsObjs = append(nsObjs, &nss.Items[i])
	}
	if err := f.nss.Core().V1().Namespaces().Informer().GetIndexer().Replace(nsObjs, ""); err != nil {
		f.t.Fatal(err)
	}
	// Reads from the fake clientsets are not the controller's.
	f.ipp.ClearActions()
}

// with adds the fixture's NodeClass options to o: new informers over f.ipp and f.kube, and
// --max-instances.
func (o Options) with(f *fixture) Options {
	o.MaxInstances = f.maxInstances
	if f.ipp != nil {
		f.ncs = ippinformers.NewSharedInformerFactory(f.ipp, 0)
		f.nss = newNamespaceInformerFactory(f.kube)
		o.IPPClient = f.ipp
		o.NodeClasses = f.ncs.Ipp().V1alpha1().NodeClasses()
		o.Namespaces = f.nss.Core().V1().Namespaces()
	}
	return o
}

// list runs one provider List into the controller's index.
func (f *fixture) list() {
	f.t.Helper()
	if err := f.c.syncInstances(f.ctx); err != nil {
		f.t.Fatalf("syncInstances: %v", err)
	}
}

// sync refreshes the listers, then reconciles name.
func (f *fixture) sync(name string) (time.Duration, error) {
	f.t.Helper()
	f.refresh()
	return f.c.sync(f.ctx, name)
}

func (f *fixture) mustSync(name string) time.Duration {
	f.t.Helper()
	after, err := f.sync(name)
	if err != nil {
		f.t.Fatalf("sync(%s): %v", name, err)
	}
	return after
}

// drainQueue empties the work queue and returns what it held, sorted.
func (f *fixture) drainQueue() []string {
	var keys []string
	for f.c.queue.Len() > 0 {
		key, _ := f.c.queue.Get()
		f.c.queue.Done(key)
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// actions returns the kube actions since the last call, reads left out, as "verb resource/name"
// plus the patch, and forgets them.
func (f *fixture) actions() []string {
	var out []string
	for _, a := range f.kube.Actions() {
		f.checkFieldManager(a)
		switch a := a.(type) {
		case core.PatchAction:
			out = append(out, fmt.Sprintf("patch %s/%s %s %s", a.GetResource().Resource, a.GetName(), patchTypeName(a.GetPatchType()), a.GetPatch()))
		case core.DeleteAction:
			out = append(out, fmt.Sprintf("delete %s/%s", a.GetResource().Resource, a.GetName()))
		case core.CreateAction:
			out = append(out, fmt.Sprintf("create %s", a.GetResource().Resource))
		case core.ListAction:
			if a.GetResource().Resource == "pods" && a.GetListRestrictions().Fields.String() != "" {
				out = append(out, fmt.Sprintf("list pods %s", a.GetListRestrictions().Fields))
			}
		}
	}
	f.kube.ClearActions()
	return out
}

// testFieldManager marks the writes a test makes itself, standing in for someone else.
const testFieldManager = "test"

// checkFieldManager fails the test when a write the controller made names no field manager
// (issue 14: a FieldManager on every write, as sample-controller does).
func (f *fixture) checkFieldManager(a core.Action) {
	f.t.Helper()
	var manager string
	switch a := a.(type) {
	case core.PatchActionImpl:
		manager = a.PatchOptions.FieldManager
	case core.CreateActionImpl:
		manager = a.CreateOptions.FieldManager
	case core.UpdateActionImpl:
		manager = a.UpdateOptions.FieldManager
	default:
		return
	}
	if manager != FieldManager && manager != testFieldManager {
		f.t.Errorf("%s %s/%s was sent with field manager %q, want %q", a.GetVerb(), a.GetResource().Resource, a.GetSubresource(), manager, FieldManager)
	}
}

func patchTypeName(t types.PatchType) string {
	switch t {
	case types.JSONPatchType:
		return "json"
	case types.MergePatchType:
		return "merge"
	}
	return string(t)
}

// calls returns the provider's create and delete calls since the last call, as "op node".
func (f *fixture) calls() []string {
	all := f.provider.Calls()
	var out []string
	for _, c := range all[f.seenCall:] {
		if c.Op != "list" {
			out = append(out, c.Op+" "+c.NodeName)
		}
	}
	f.seenCall = len(all)
	return out
}

// events drains the recorder and returns "Type Reason" of each Event, sorted.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			w := strings.Fields(e)
			out = append(out, w[0]+" "+w[1])
		default:
			sort.Strings(out)
			return out
		}
	}
}

func (f *fixture) addPod(p *corev1.Pod) *corev1.Pod {
	f.t.Helper()
	got, err := f.kube.CoreV1().Pods(p.Namespace).Create(f.ctx, p, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
	return got
}

func (f *fixture) deletePod(p *corev1.Pod) {
	f.t.Helper()
	if err := f.kube.CoreV1().Pods(p.Namespace).Delete(f.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
}

func (f *fixture) addNode(n *corev1.Node) {
	f.t.Helper()
	if _, err := f.kube.CoreV1().Nodes().Create(f.ctx, n, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
}

func (f *fixture) getNode(name string) *corev1.Node {
	f.t.Helper()
	n, err := f.kube.CoreV1().Nodes().Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.kube.ClearActions()
	return n
}

func (f *fixture) nodeExists(name string) bool {
	_, err := f.kube.CoreV1().Nodes().Get(f.ctx, name, metav1.GetOptions{})
	f.kube.ClearActions()
	return err == nil
}

// liveInstances returns the fake cloud's live instances.
func (f *fixture) liveInstances() []cloudprovider.Instance {
	f.t.Helper()
	insts, err := f.provider.Provider.List(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	f.seenCall++ // that List is not the controller's
	return insts
}

// nodeName is the dedicated node name of class in namespace "team".
func (f *fixture) nodeName(class string) string {
	return f.cfg.NodeName("team", class)
}

// pod returns a Pod of class in namespace "team", pinned as the webhook pins it.
func (f *fixture) pod(name, class string, created time.Time) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         "team",
			Name:              name,
			UID:               types.UID("uid-" + name),
			Labels:            map[string]string{f.cfg.PodLabel: class},
			CreationTimestamp: metav1.NewTime(created),
		},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{isolation.BindingLabel: f.cfg.NodeName("team", class)},
			Tolerations:  f.cfg.Tolerations(),
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
}

// node returns a Node as the kubelet of an IPP instance registers it.
func (f *fixture) node(name, providerID string, created time.Time) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			UID:               types.UID("uid-" + name + "-" + providerID),
			Labels:            map[string]string{f.cfg.NodeLabel: isolation.LabelValue, corev1.LabelHostname: name},
			CreationTimestamp: metav1.NewTime(created),
		},
		Spec: corev1.NodeSpec{ProviderID: providerID, Taints: f.cfg.Taints()},
	}
}

func bound(n *corev1.Node, name string) *corev1.Node {
	n.Labels[isolation.BindingLabel] = name
	return n
}

// label sets labels on n, as key, value, key, value...
func label(n *corev1.Node, kv ...string) *corev1.Node {
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

// unix renders t as the idle clock and the reaping mark hold it: Unix seconds, rounded up.
func unix(t time.Time) string { return strconv.FormatInt(ceilUnix(t), 10) }

// guarded renders the JSON patch that patchNode sends to node for ops, as f.actions shows it.
func guarded(node *corev1.Node, ops ...jsonpatch.Operation) string {
	all := []jsonpatch.Operation{
		{Op: "test", Path: "/metadata/uid", Value: string(node.UID)},
		{Op: "test", Path: "/spec/providerID", Value: node.Spec.ProviderID},
	}
	b, err := json.Marshal(append(all, ops...))
	if err != nil {
		panic(err)
	}
	return "patch nodes/" + node.Name + " json " + string(b)
}

// mergePatch renders a merge patch as the controller sends it.
func mergePatch(p map[string]any) string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}
