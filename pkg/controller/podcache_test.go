package controller

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
)

// BenchmarkPodCache reports the live heap that the controller's Pod cache holds per Pod (the
// cachedPods, their strings and the informer's indices, the namespace index included), for Pods
// as P3 has them: 10 per class and per node, placed by the controller and bound. Each Pod is
// decoded from protobuf before the transform, as the informer receives it, so that its strings
// are allocations of their own.
func BenchmarkPodCache(b *testing.B) {
	const pods = 20000
	cfg := isolation.DefaultConfig()
	c := &Controller{cfg: cfg}
	raw := make([][]byte, pods)
	for i := range raw {
		var err error
		if raw[i], err = placedPod(cfg, i).Marshal(); err != nil {
			b.Fatal(err)
		}
	}
	trim := newTrim(cfg)
	indexers := c.podIndexers()
	indexers[cache.NamespaceIndex] = cache.MetaNamespaceIndexFunc
	var perPod float64
	for b.Loop() {
		indexer := cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, indexers)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, r := range raw {
			var p corev1.Pod
			if err := p.Unmarshal(r); err != nil {
				b.Fatal(err)
			}
			obj, err := trim(&p)
			if err != nil {
				b.Fatal(err)
			}
			if err := indexer.Add(obj); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perPod = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / pods
		runtime.KeepAlive(indexer)
	}
	b.ReportMetric(perPod, "heap-B/pod")
}

// placedPod is the i-th Pod of a P3-like cluster under controller placement: class c<i/10> of
// namespace ns<i/1000>, placed on and bound to its class's node.
func placedPod(cfg isolation.Config, i int) *corev1.Pod {
	ns, class := fmt.Sprintf("ns%d", i/1000), fmt.Sprintf("c%d", i/10)
	node := fmt.Sprintf("ipp-%s-%016x", class, i/10)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-7d4b9c6f5-%05d", class, i), Namespace: ns,
			UID:               types.UID(fmt.Sprintf("6f1c1a9e-0b7d-4c1e-9a55-%012d", i)),
			ResourceVersion:   fmt.Sprint(100000 + i),
			Labels:            map[string]string{cfg.PodLabel: class, "app": class, "pod-template-hash": "7d4b9c6f5"},
			CreationTimestamp: metav1.Now(),
		},
		Spec: corev1.PodSpec{
			NodeName:     node,
			NodeSelector: map[string]string{isolation.ClassLabel: cfg.ClassKey(ns, class)},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{placement.NodeNameRequirement(node)}}},
			}}},
			Tolerations: cfg.Tolerations(),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}
