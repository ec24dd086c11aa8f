package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/deploy"
	"github.com/ipp-project/ipp/e2e/gceemu"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/placement"
	"github.com/ipp-project/ipp/providers/gce"
)

// Client rate limit of the IPP controller in P1's dedicated-placed variant: what `ipp controller`
// sets by default (cmd/ipp/app), so that its placement PATCHes keep up with the scheduler.
const (
	PlacementControllerQPS   = 1000
	PlacementControllerBurst = 2000
)

// placedCluster is the part of P1's cluster that the dedicated-placed variant uses: nodes of
// controller placement, each created as an instance in the GCE emulator, registered as a Ready
// Node from the instance's bootstrap, and bound to its class by the real IPP controller.
type placedCluster struct {
	iso      isolation.Config
	emu      *gceemu.Server
	provider *gce.Provider
	classes  []string
	nodes    int
	// stop stops the controller; nil while it is not running.
	stop func()
}

// placedConfig is the webhook's and the controller's configuration in the dedicated-placed
// variant: --placement=controller.
func placedConfig() isolation.Config {
	cfg := isolation.DefaultConfig()
	cfg.Placement = isolation.PlacementController
	return cfg
}

// placedClass names the i-th class of the dedicated-placed variant; they are not the dedicated
// variant's classes, whose nodes are pinned by name.
func placedClass(i int) string { return fmt.Sprintf("p%04d", i) }

// preparePlaced starts the GCE emulator on first use, creates the instances of k classes with
// perClass nodes each (adding to those of a smaller size), starts the IPP controller and waits
// until it has bound every node to its class. The controller runs until stopPlaced: it would
// unbind the dedicated variant's nodes, which have no instance.
func (s *p1Size) preparePlaced(ctx context.Context, k, perClass int) error {
	logger := klog.FromContext(ctx)
	p := s.placed
	if p == nil {
		p = &placedCluster{iso: placedConfig()}
		p.emu = gceemu.New(gceemu.Options{BootDelay: 0, Booter: nodeBooter{client: s.cluster.Fast}})
		if err := p.emu.Start(); err != nil {
			return err
		}
		prov, err := gce.New(ctx, gce.Config{
			ClusterName: p.iso.ClusterName,
			Project:     p.emu.Project(),
			Zone:        p.emu.Zones()[0],
			Image:       gceemu.Image,
			Endpoint:    p.emu.URL(),
		})
		if err != nil {
			p.emu.Close()
			return fmt.Errorf("building the gce provider: %w", err)
		}
		p.provider = prov
		if _, err := s.cluster.UseCRD(ctx, deploy.NodeClassCRD); err != nil {
			_ = prov.Close()
			p.emu.Close()
			return err
		}
		s.placed = p
	}
	begin := time.Now()
	type inst struct{ class string }
	var add []inst
	for i := len(p.classes); i < k; i++ {
		p.classes = append(p.classes, placedClass(i))
	}
	// Each class grows to perClass nodes; a class of an earlier size has them already.
	have := p.nodes / max(1, perClass)
	for c := have; c < len(p.classes); c++ {
		for range perClass {
			add = append(add, inst{class: p.classes[c]})
		}
	}
	err := Parallel(ctx, len(add), s.cfg.CreateWorkers, func(ctx context.Context, i int) error {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		name := isolation.InstanceName(add[i].class, b[:])
		_, err := p.provider.Create(ctx, cloudprovider.InstanceSpec{
			NodeName:       name,
			Class:          add[i].class,
			Namespace:      P1Namespace,
			NodeLabels:     p.iso.NodeLabels(),
			NodeTaints:     p.iso.Taints(),
			NodeClass:      isolation.DefaultNodeClass,
			IdempotencyKey: name,
		})
		if err != nil {
			return fmt.Errorf("creating instance %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.nodes += len(add)
	if err := s.startController(ctx); err != nil {
		return err
	}
	// Bound: the controller has written the class key on the Node of each instance.
	want := p.nodes
	err = pollUntil(ctx, 5*time.Minute, func(ctx context.Context) (bool, error) {
		list, err := s.cluster.Fast.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: isolation.ClassLabel})
		if err != nil {
			return false, err
		}
		n := 0
		for _, node := range list.Items {
			if node.Labels[isolation.NamespaceLabel] == p.iso.ScopedNamespace(P1Namespace) && nodeIsReady(&node) {
				n++
			}
		}
		return n >= want, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the controller to bind %d placed nodes: %w", want, err)
	}
	logger.Info("P1 placed nodes bound", "nodes", p.nodes, "classes", len(p.classes), "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startController runs pkg/controller in this process through controller.NewManager, wired as
// `ipp controller --placement=controller` wires it: as the ipp ServiceAccount (so that its
// placements skip the webhooks and meet the policy ipp-pods, as installed by deploy/), protobuf,
// client QPS 1000 / burst 2000, 4 workers, the
// default placement workers, the real gce provider pointed at the emulator. The idle TTL is an
// hour, so that no empty node is reaped during a run.
func (s *p1Size) startController(ctx context.Context) error {
	p := s.placed
	restCfg, err := s.cluster.ServiceAccountConfig(ctx)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = PlacementControllerQPS, PlacementControllerBurst
	restCfg = rest.AddUserAgent(restCfg, "ipp-controller")
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(restCfg))
	if err != nil {
		return fmt.Errorf("making the controller's client: %w", err)
	}
	ipp, err := ippclientset.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(quiet(ctx))
	broadcaster := record.NewBroadcaster(record.WithContext(cctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ipp-controller"})
	m, err := controller.NewManager(kube, p.provider, recorder, controller.Options{
		Config:           p.iso,
		IPPClient:        ipp,
		IdleTTL:          time.Hour,
		PlacementWorkers: s.cfg.PlacementWorkers,
	})
	if err != nil {
		cancel()
		broadcaster.Shutdown()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(cctx, 4) }()
	p.stop = func() {
		cancel()
		if err := <-done; err != nil {
			klog.FromContext(ctx).Error(err, "IPP controller stopped with an error")
		}
		broadcaster.Shutdown()
	}
	return nil
}

// stopPlaced stops the controller, if it runs.
func (s *p1Size) stopPlaced() {
	if s.placed != nil && s.placed.stop != nil {
		s.placed.stop()
		s.placed.stop = nil
	}
}

// closePlaced stops the controller and the emulator.
func (s *p1Size) closePlaced() {
	if s.placed == nil {
		return
	}
	s.stopPlaced()
	_ = s.placed.provider.Close()
	s.placed.emu.Close()
}

// gated reports whether p still waits for the controller's placement.
func gated(p *corev1.Pod) bool {
	for _, g := range p.Spec.SchedulingGates {
		if g.Name == placement.Gate {
			return true
		}
	}
	return false
}

// patchAll places every gated Pod of the selector as the controller would, without it: one
// placement.PinPatch per Pod, to a node of the Pod's class (round robin; the nodes' room is not
// looked at, as no scheduler runs), sent as the ipp ServiceAccount with PatchOnlyWorkers in
// flight. It returns once every PATCH has returned.
func (s *p1Size) patchAll(ctx context.Context, selector string) error {
	restCfg, err := s.cluster.ServiceAccountConfig(ctx)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(controller.ProtobufConfig(UnlimitedConfig(rest.AddUserAgent(restCfg, "bench-patch-only"))))
	if err != nil {
		return err
	}
	nodes, err := s.cluster.Fast.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: isolation.ClassLabel})
	if err != nil {
		return err
	}
	byKey := map[string][]string{}
	for _, n := range nodes.Items {
		k := n.Labels[isolation.ClassLabel]
		byKey[k] = append(byKey[k], n.Name)
	}
	pods, err := s.cluster.Fast.CoreV1().Pods(P1Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	next := map[string]int{}
	patches := make([][]byte, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		key := p.Spec.NodeSelector[isolation.ClassLabel]
		names := byKey[key]
		if len(names) == 0 {
			return fmt.Errorf("no node bound to the class key %q of Pod %s", key, p.Name)
		}
		patch, err := placement.PinPatch(p, names[next[key]%len(names)])
		if err != nil {
			return err
		}
		next[key]++
		if patches[i], err = patch.Marshal(); err != nil {
			return err
		}
	}
	return Parallel(ctx, len(patches), PatchOnlyWorkers, func(ctx context.Context, i int) error {
		p := &pods.Items[i]
		_, err := kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.JSONPatchType, patches[i],
			metav1.PatchOptions{FieldManager: controller.FieldManager, FieldValidation: metav1.FieldValidationIgnore})
		if err != nil {
			return fmt.Errorf("placing Pod %s: %w", p.Name, err)
		}
		return nil
	})
}
