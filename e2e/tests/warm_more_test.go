package tests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// startWarmIPP starts IPP under controller placement on provider with a NodeClass named name
// whose pool is warm, and deletes the NodeClass when the test ends.
func startWarmIPP(t *testing.T, provider, name string, warm ippv1alpha1.WarmPool) (*framework.IPP, isolation.Config) {
	t.Helper()
	ctx := t.Context()
	cfg := isolation.DefaultConfig()
	cfg.ClusterName = name
	cfg.Placement = isolation.PlacementController
	ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{Provider: provider, Config: &cfg, IdleTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipp.Stop(context.Background()) })
	ippc, err := ippclientset.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	nc := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       ippv1alpha1.NodeClassSpec{Warm: &warm},
	}
	if _, err := ippc.IppV1alpha1().NodeClasses().Create(ctx, nc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ippc.IppV1alpha1().NodeClasses().Delete(context.Background(), nc.Name, metav1.DeleteOptions{})
	})
	return ipp, cfg
}

// waitInstanceGone waits until the Node is deleted and its cloud instance is no longer live.
func waitInstanceGone(t *testing.T, ipp *framework.IPP, node string) {
	t.Helper()
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		inst, exists := ipp.Cloud.Instance(node)
		return apierrors.IsNotFound(err) && (!exists || !inst.Live), nil
	})
	if err != nil {
		t.Fatalf("Waiting for node %s and its instance to go: %v", node, err)
	}
}

// waitNewWarm waits for a Ready warm node of NodeClass nc that is none of old, and returns it.
func waitNewWarm(t *testing.T, nc string, old sets.Set[string]) string {
	t.Helper()
	var got string
	err := waitFor(t.Context(), ippTimeout, func(context.Context) (bool, error) {
		for n := range warmNodes(t, nc) {
			if !old.Has(n) {
				got = n
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Waiting for a new warm node of NodeClass %s (not one of %v): %v", nc, sets.List(old), err)
	}
	return got
}

// waitUntil waits until the clock reaches at.
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	if err := waitFor(t.Context(), time.Until(at)+time.Minute, func(context.Context) (bool, error) {
		return !time.Now().Before(at), nil
	}); err != nil {
		t.Fatalf("Waiting for %v: %v", at, err)
	}
}

// TestWarmMaxAge runs a pool of one warm node with warm.maxAge 5s under controller placement on
// each provider:
//
//   - the warm node, left unclaimed, is replaced once older than maxAge: a new warm node of
//     another name joins, and the old Node and its instance are gone;
//   - classes arrive right around the maxAge of the warm node of the moment (from 300 ms before
//     to 150 ms after): whether the claim or the replacement wins, the class's Pod runs on a node
//     bound to it, and a claimed warm node stays, with its Pod, past its maxAge;
//   - all along, no Node changes class once bound and no Node is deleted under a running Pod.
//
// No Pod breaks I1-I3.
func TestWarmMaxAge(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		const maxAge = 5 * time.Second
		ncName := "warmage-" + provider
		bindings := framework.WatchBindings(t, cluster.Client, isolation.DefaultConfig().NodeLabel+"="+isolation.LabelValue)
		ipp, cfg := startWarmIPP(t, provider, ncName, ippv1alpha1.WarmPool{Size: 1, MaxAge: &metav1.Duration{Duration: maxAge}})
		ns := namespace(t, "warmage")

		// Unclaimed: replaced after maxAge.
		first := sets.List(waitWarm(t, ncName, 1))[0]
		seen := sets.New(first)
		second := waitNewWarm(t, ncName, seen)
		waitInstanceGone(t, ipp, first)
		seen.Insert(second)
		if !hasEvent(t, "", "Node", first, "WarmReplaced") {
			t.Errorf("No WarmReplaced Event on the replaced warm node %s", first)
		}

		// Claims around the boundary.
		warm := second
		claimedWarm := 0
		offsets := []time.Duration{-300 * time.Millisecond, -100 * time.Millisecond, -40 * time.Millisecond, 0, 150 * time.Millisecond}
		for i, offset := range offsets {
			inst, ok := ipp.Cloud.Instance(warm)
			if !ok {
				// Replaced between the wait and here: take the next one.
				warm = waitNewWarm(t, ncName, seen)
				seen.Insert(warm)
				inst, ok = ipp.Cloud.Instance(warm)
				if !ok {
					t.Fatalf("No instance of warm node %s", warm)
				}
			}
			deadline := inst.CreatedAt.Add(maxAge)
			waitUntil(t, deadline.Add(offset))
			class := fmt.Sprintf("edge-%d", i)
			createPod(t, ns, pod(class, withLabels(cfg.PodLabel, class, isolation.NodeClassLabel, ncName)))
			var node string
			for n := range waitPlacedRunning(t, ns, []string{class}) {
				node = n
			}
			checkBoundTo(t, cfg, node, ns, class)
			if node == warm {
				claimedWarm++
				// The claimed node outlives its maxAge with its Pod.
				waitUntil(t, deadline.Add(2*time.Second))
				p, err := cluster.Client.CoreV1().Pods(ns).Get(t.Context(), class, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning {
					t.Errorf("Class %s claimed warm node %s %v before its maxAge; past it the Pod is %s on %q", class, node, -offset, p.Status.Phase, p.Spec.NodeName)
				}
				checkBoundTo(t, cfg, node, ns, class)
			}
			t.Logf("Class %s arrived %v from warm node %s's maxAge: placed on %s (claimed the warm node: %t)", class, offset, warm, node, node == warm)
			seen.Insert(node)
			if node != warm {
				// The replacement won: the old warm node goes, unclaimed.
				waitInstanceGone(t, ipp, warm)
			}
			warm = waitNewWarm(t, ncName, seen)
			seen.Insert(warm)
		}
		t.Logf("%d of %d classes claimed the warm node", claimedWarm, len(offsets))
		checkIsolation(t, cfg)
		bound, _ := bindings()
		for node, key := range bound {
			if node == first {
				t.Errorf("Replaced warm node %s was bound to class key %s", node, key)
			}
		}
	})
}

// TestWarmBurst sends 20 new classes at once against a pool of 5 warm nodes, under controller
// placement on each provider: every class's Pod runs on a node of its own, bound to it; exactly
// 5 classes got one of the 5 nodes warm before the burst and the other 15 nodes that were not
// (booted cold, or a replacement); the pool is back to 5 warm nodes, none of which served a
// class; no Node changes class. No Pod breaks I1-I3.
func TestWarmBurst(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		const (
			size    = 5
			classes = 20
		)
		ncName := "warmburst-" + provider
		bindings := framework.WatchBindings(t, cluster.Client, isolation.DefaultConfig().NodeLabel+"="+isolation.LabelValue)
		_, cfg := startWarmIPP(t, provider, ncName, ippv1alpha1.WarmPool{Size: size})
		ns := namespace(t, "warmburst")
		before := waitWarm(t, ncName, size)

		names := make([]string, classes)
		var wg sync.WaitGroup
		errs := make(chan error, classes)
		for i := range names {
			names[i] = fmt.Sprintf("b-%d", i)
			wg.Add(1)
			go func(name string) {
				defer wg.Done()
				p := pod(name, withLabels(cfg.PodLabel, name, isolation.NodeClassLabel, ncName))
				if _, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}(names[i])
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		perNode := waitPlacedRunning(t, ns, names)
		if len(perNode) != classes {
			t.Fatalf("%d classes run on %d nodes, want one each: %v", classes, len(perNode), perNode)
		}
		var fromPool, other []string
		for node, pods := range perNode {
			checkBoundTo(t, cfg, node, ns, pods[0])
			if before.Has(node) {
				fromPool = append(fromPool, pods[0])
			} else {
				other = append(other, pods[0])
			}
		}
		if len(fromPool) != size {
			t.Errorf("%d classes got a node that was warm before the burst, want %d: %v", len(fromPool), size, fromPool)
		}
		t.Logf("Warm: %v; on nodes not warm before the burst: %v", fromPool, other)
		after := waitWarm(t, ncName, size)
		for n := range after {
			if _, served := perNode[n]; served || before.Has(n) {
				t.Errorf("Warm node %s after the burst served a class or was warm before it", n)
			}
		}
		checkIsolation(t, cfg)
		bound, _ := bindings()
		for node, pods := range perNode {
			if got, want := bound[node], cfg.ClassKey(ns, pods[0]); got != want {
				t.Errorf("Node %s was first bound to %q, want %q", node, got, want)
			}
		}
	})
}
