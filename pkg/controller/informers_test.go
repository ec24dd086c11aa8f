package controller

import (
	"testing"
	"time"
	"unique"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

func fullPod() *corev1.Pod {
	deleted := metav1.NewTime(t0.Add(time.Hour))
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "p", Namespace: "team", UID: "uid-p", ResourceVersion: "7", Generation: 2,
			Labels:            map[string]string{"ipp-class": "a", "app": "web"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"},
			CreationTimestamp: metav1.NewTime(t0),
			DeletionTimestamp: &deleted,
			OwnerReferences:   []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web"}},
			Finalizers:        []string{"f"},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: corev1.PodSpec{
			NodeName:     "ipp-a-0123456789ab",
			NodeSelector: map[string]string{isolation.BindingLabel: "ipp-a-0123456789ab"},
			Tolerations:  isolation.DefaultConfig().Tolerations(),
			Containers:   []corev1.Container{{Name: "c", Image: "nginx"}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			PodIP:      "10.0.0.1",
		},
	}
}

func fullNode() *corev1.Node {
	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "n", UID: "uid-n", ResourceVersion: "9",
			Labels: map[string]string{isolation.DefaultConfig().NodeLabel: "true", isolation.BindingLabel: "n", isolation.IdleSinceLabel: "1767225600"},
			Annotations: map[string]string{
				"ipp.io/idle-since":            t0.Format(time.RFC3339),
				"node.alpha.kubernetes.io/ttl": "0",
			},
			CreationTimestamp: metav1.NewTime(t0),
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec: corev1.NodeSpec{ProviderID: "fake://n", Unschedulable: true, Taints: isolation.DefaultConfig().Taints()},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Images:     []corev1.ContainerImage{{Names: []string{"nginx"}, SizeBytes: 1}},
		},
	}
}

// TestCachedPodSize keeps a cachedPod within the 288-byte size class of the allocator: 50,000 of
// them are the largest item of the controller's heap (P3).
func TestCachedPodSize(t *testing.T) {
	if size := unsafe.Sizeof(cachedPod{}); size > 288 {
		t.Errorf("a cachedPod takes %d bytes; keep it within 288 (each byte is 50 KB at 50,000 Pods)", size)
	}
	// The informer's key functions read it through meta.Accessor.
	key, err := cache.MetaNamespaceKeyFunc(&cachedPod{podMeta: podMeta{Name: "p", Namespace: "team"}})
	if err != nil || key != "team/p" {
		t.Errorf("MetaNamespaceKeyFunc(cachedPod) = %q, %v; want team/p", key, err)
	}
}

// cachedPodCmp compares cachedPods field by field; interned class keys by handle.
var cachedPodCmp = []cmp.Option{
	cmp.AllowUnexported(cachedPod{}, podMeta{}, podFields{}),
	cmp.Comparer(func(a, b unique.Handle[string]) bool { return a == b }),
}

func TestTrim(t *testing.T) {
	cfg := isolation.DefaultConfig()
	pod := fullPod()
	wantPod := &cachedPod{
		podMeta: podMeta{
			Name: "p", Namespace: "team", UID: "uid-p", ResourceVersion: "7",
			CreationTimestamp: pod.CreationTimestamp,
			DeletionTimestamp: pod.DeletionTimestamp,
		},
		podFields: podFields{class: "a", nodeClass: "default", pin: pod.Spec.NodeSelector[isolation.BindingLabel], nodeName: pod.Spec.NodeName, phase: corev1.PodRunning,
			classKey: unique.Make(cfg.ClassKey("team", "a")), gateIndex: -1},
		requests: placement.Requests{},
	}
	node := fullNode()
	wantNode := &corev1.Node{
		TypeMeta: node.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: "n", UID: "uid-n", ResourceVersion: "9",
			Labels:            node.Labels,
			CreationTimestamp: node.CreationTimestamp,
		},
		Spec: corev1.NodeSpec{ProviderID: "fake://n", Unschedulable: true, Taints: node.Spec.Taints},
		// The Ready condition without its heartbeat times; nothing else of the status.
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	tombstone := cache.DeletedFinalStateUnknown{Key: "team/p", Obj: wantPod}
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"pod", pod, wantPod},
		{"pod again", wantPod, wantPod},
		{"node", node, wantNode},
		{"node again", wantNode, wantNode},
		{"tombstone", tombstone, tombstone},
		{"anything else", "x", "x"},
	}
	trim := newTrim(cfg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := trim(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cachedPodCmp...); diff != "" {
				t.Errorf("trim (-want +got):\n%s", diff)
			}
		})
	}

	// The Pods of a class share one class key string.
	other := fullPod()
	other.Name, other.UID = "q", "uid-q"
	a, _ := trim(fullPod())
	b, _ := trim(other)
	ka, kb := a.(*cachedPod).key(), b.(*cachedPod).key()
	if ka != cfg.ClassKey("team", "a") || unsafe.StringData(ka) != unsafe.StringData(kb) {
		t.Errorf("class keys %q at %p and %q at %p; want %q, one string", ka, unsafe.StringData(ka), kb, unsafe.StringData(kb), cfg.ClassKey("team", "a"))
	}
	if k := (&cachedPod{}).key(); k != "" {
		t.Errorf("the key of a Pod without a class is %q; want none", k)
	}
}

// TestCachedPod checks the decisions made on the cached part of a Pod: whether it is demand, the
// dedicated node its class maps to, its key, its Event reference.
func TestCachedPod(t *testing.T) {
	cfg := isolation.DefaultConfig()
	c := &Controller{cfg: cfg}
	name := cfg.NodeName("team", "a")
	for _, tc := range []struct {
		name       string
		change     func(*corev1.Pod)
		wantDemand bool
		wantNode   string
	}{
		{"bound", func(*corev1.Pod) {}, true, name},
		{"pending", func(p *corev1.Pod) { p.Spec.NodeName = "" }, true, name},
		{"being deleted", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0} }, false, name},
		// Bound there: it keeps the node whatever its pin.
		{"not pinned", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"other": "x"} }, true, name},
		{"not pinned, pending", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"other": "x"}; p.Spec.NodeName = "" }, false, ""},
		{"pinned elsewhere", func(p *corev1.Pod) { p.Spec.NodeSelector[isolation.BindingLabel] = "ipp-b-0123456789ab" }, false, name},
		{"no class", func(p *corev1.Pod) { delete(p.Labels, cfg.PodLabel) }, false, ""},
		{"empty class", func(p *corev1.Pod) { p.Labels[cfg.PodLabel] = "" }, false, ""},
		{"succeeded", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, false, name},
		{"failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, false, name},
		{"exempt namespace", func(p *corev1.Pod) { p.Namespace = "kube-system" }, false, cfg.NodeName("kube-system", "a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := fullPod()
			full.DeletionTimestamp = nil
			full.Spec.NodeName = name
			full.Spec.NodeSelector = map[string]string{isolation.BindingLabel: name}
			tc.change(full)
			cached := newCachedPod(cfg, full)
			if got := c.isDemand(cached, name); got != tc.wantDemand {
				t.Errorf("isDemand = %v, want %v", got, tc.wantDemand)
			}
			gotNames, _ := c.podNodeNames(cached)
			var wantNames []string
			if tc.wantNode != "" {
				wantNames = []string{tc.wantNode}
			}
			if diff := cmp.Diff(wantNames, gotNames); diff != "" {
				t.Errorf("podNodeNames (-want +got):\n%s", diff)
			}
			wantKey, _ := cache.MetaNamespaceKeyFunc(full)
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(cached); err != nil || key != wantKey {
				t.Errorf("key = %q, %v; want %q", key, err, wantKey)
			}
			wantRef := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: full.Namespace, Name: "p", UID: "uid-p", ResourceVersion: "7"}
			if diff := cmp.Diff(wantRef, cached.ref()); diff != "" {
				t.Errorf("ref (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(cached, cached.DeepCopyObject(), cachedPodCmp...); diff != "" {
				t.Errorf("DeepCopyObject (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodChanged(t *testing.T) {
	cfg := isolation.DefaultConfig()
	tests := []struct {
		name   string
		change func(*corev1.Pod)
		want   bool
	}{
		{"resourceVersion only", func(p *corev1.Pod) { p.ResourceVersion = "8" }, false},
		{"status conditions", func(p *corev1.Pod) { p.Status.Conditions = nil; p.Status.PodIP = "10.0.0.2" }, false},
		{"annotations", func(p *corev1.Pod) { p.Annotations = map[string]string{"x": "y"} }, false},
		{"other labels", func(p *corev1.Pod) { p.Labels["app"] = "api" }, false},
		{"phase", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, true},
		{"class label", func(p *corev1.Pod) { p.Labels = map[string]string{"ipp-class": "b"} }, true},
		{"bound", func(p *corev1.Pod) { p.Spec.NodeName = "" }, true},
		{"pin", func(p *corev1.Pod) { p.Spec.NodeSelector = nil }, true},
		{"deletion", func(p *corev1.Pod) { p.DeletionTimestamp = nil }, true},
		{"uid", func(p *corev1.Pod) { p.UID = "uid-q" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := fullPod()
			cur := old.DeepCopy()
			tc.change(cur)
			if got := podChanged(newCachedPod(cfg, old), newCachedPod(cfg, cur)); got != tc.want {
				t.Errorf("podChanged = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNodeChanged(t *testing.T) {
	tests := []struct {
		name   string
		change func(*corev1.Node)
		want   bool
	}{
		{"resourceVersion only", func(n *corev1.Node) { n.ResourceVersion = "10" }, false},
		{"status heartbeat", func(n *corev1.Node) { n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(t0.Add(time.Minute)) }, false},
		{"someone else's annotation", func(n *corev1.Node) { n.Annotations["node.alpha.kubernetes.io/ttl"] = "1" }, false},
		{"the old idle annotation", func(n *corev1.Node) { n.Annotations["ipp.io/idle-since"] = t0.Add(time.Hour).Format(time.RFC3339) }, false},
		// Placement waits for the node lifecycle controller to remove node.kubernetes.io/not-ready.
		{"taints", func(n *corev1.Node) { n.Spec.Taints = nil }, true},
		{"idle clock", func(n *corev1.Node) { delete(n.Labels, isolation.IdleSinceLabel) }, true},
		{"binding label", func(n *corev1.Node) { delete(n.Labels, isolation.BindingLabel) }, true},
		{"providerID", func(n *corev1.Node) { n.Spec.ProviderID = "fake://m" }, true},
		{"uncordoned", func(n *corev1.Node) { n.Spec.Unschedulable = false }, true},
		{"uid", func(n *corev1.Node) { n.UID = "uid-m" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := fullNode()
			cur := old.DeepCopy()
			tc.change(cur)
			if got := nodeChanged(old, cur); got != tc.want {
				t.Errorf("nodeChanged = %v, want %v", got, tc.want)
			}
		})
	}
}
