package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"

	"github.com/ipp-project/ipp/e2e/framework"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	"github.com/ipp-project/ipp/pkg/isolation"
)

// TestNodeClassLimit: on each provider, five classes against a NodeClass limited to three
// instances get exactly three instances in the emulator, never more at any moment; the other two
// classes wait with LimitReached Events naming the limit, and the NodeClass's status says so.
// Once one class's Pod is deleted, its node is reaped after the NodeClass's idle TTL (3 s; the
// controller's --idle-ttl is the 10 min default), and a waiting class gets its node. No Pod breaks
// I1-I3, and the reaped node's instance is gone (I6).
//
// The NodeClass is the cluster's default one (an object named default): Pods without the
// ipp.io/node-class label get it.
func TestNodeClassLimit(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "limits-" + provider
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{
			Provider: provider,
			Config:   &cfg,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })

		client, err := ippclientset.NewForConfig(cluster.AdminConfig)
		if err != nil {
			t.Fatal(err)
		}
		ncs := client.IppV1alpha1().NodeClasses()
		nc := &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: isolation.DefaultNodeClass},
			Spec: ippv1alpha1.NodeClassSpec{
				IdleTTL: &metav1.Duration{Duration: 3 * time.Second},
				Limits:  &ippv1alpha1.NodeClassLimits{Instances: ptr.To[int32](3)},
			},
		}
		if _, err := ncs.Create(ctx, nc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := ncs.Delete(context.Background(), nc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
		})
		// The controller has seen the NodeClass once it writes its status.
		err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			got, err := ncs.Get(ctx, nc.Name, metav1.GetOptions{})
			return err == nil && meta.IsStatusConditionTrue(got.Status.Conditions, ippv1alpha1.ConditionReady), err
		})
		if err != nil {
			t.Fatalf("Waiting for NodeClass %s to be Ready: %v", nc.Name, err)
		}

		// Watch the emulator for the whole test: never more than three live instances.
		watchCtx, stopWatch := context.WithCancel(ctx)
		var most int
		var watched sync.WaitGroup
		watched.Add(1)
		go func() {
			defer watched.Done()
			for watchCtx.Err() == nil {
				live := 0
				for _, inst := range ipp.Cloud.Instances() {
					if inst.Live {
						live++
					}
				}
				most = max(most, live)
				select {
				case <-watchCtx.Done():
				case <-time.After(framework.PollInterval):
				}
			}
		}()
		stopWatching := func() int {
			stopWatch()
			watched.Wait()
			return most
		}
		defer stopWatching()

		ns := namespace(t, "limits")
		classes := []string{"c0", "c1", "c2", "c3", "c4"}
		for _, class := range classes {
			createPod(t, ns, pod(class, classOf(cfg, class)))
		}
		// Three run on their nodes; two wait, each told why.
		var running, waiting []string
		err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			running, waiting = nil, nil
			for _, class := range classes {
				p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, class, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				switch {
				case p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == cfg.NodeName(ns, class):
					running = append(running, class)
				case limitEvent(t, ns, class) != "":
					waiting = append(waiting, class)
				}
			}
			if len(running) > 3 {
				return false, fmt.Errorf("%d classes run on nodes of their own, above the limit of 3", len(running))
			}
			return len(running) == 3 && len(waiting) == 2, nil
		})
		if err != nil {
			t.Fatalf("Waiting for 3 running and 2 waiting classes: %v (running %v, waiting %v)", err, running, waiting)
		}
		for _, class := range waiting {
			msg := limitEvent(t, ns, class)
			if !strings.Contains(msg, "NodeClass default allows 3 instances (spec.limits.instances)") {
				t.Errorf("LimitReached Event of %s = %q, want the limit, its value and the NodeClass named", class, msg)
			}
			if _, ok := ipp.Cloud.Instance(cfg.NodeName(ns, class)); ok {
				t.Errorf("Class %s waits for the limit but has an instance", class)
			}
		}
		err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			got, err := ncs.Get(ctx, nc.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			st := got.Status
			return st.Nodes == 3 && st.Classes == 3 && st.Pods == 3 &&
				meta.IsStatusConditionTrue(st.Conditions, ippv1alpha1.ConditionLimitReached), nil
		})
		if err != nil {
			got, _ := ncs.Get(ctx, nc.Name, metav1.GetOptions{})
			t.Errorf("NodeClass status: %v; got %+v", err, got.Status)
		}

		// One class goes: its node is reaped after the NodeClass's idle TTL, and a waiting
		// class gets the slot.
		gone := running[0]
		goneNode := cfg.NodeName(ns, gone)
		goneInst, _ := ipp.Cloud.Instance(goneNode)
		if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, gone, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		var next string
		err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
			for _, class := range waiting {
				p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, class, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == cfg.NodeName(ns, class) {
					next = class
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("Waiting for a waiting class to get the freed node: %v", err)
		}
		if _, err := cluster.Client.CoreV1().Nodes().Get(ctx, goneNode, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Node %s of the deleted class: %v, want it reaped", goneNode, err)
		}
		for _, inst := range ipp.Cloud.Instances() {
			if inst.ID == goneInst.ID && inst.Live {
				t.Errorf("Instance %s of the reaped node %s is live", inst.ID, goneNode)
			}
		}
		// The other waiting class still waits: three is the limit.
		for _, class := range waiting {
			if class == next {
				continue
			}
			if _, ok := ipp.Cloud.Instance(cfg.NodeName(ns, class)); ok {
				t.Errorf("Class %s got an instance too: 4 live instances", class)
			}
		}
		if got := stopWatching(); got > 3 {
			t.Errorf("The emulator had %d live instances at once, above the limit of 3", got)
		}
		for name, n := range ipp.Cloud.CreatedCounts() {
			if n > 1 {
				t.Errorf("Instances created for %s: %d, want at most 1", name, n)
			}
		}
		checkIsolation(t, ipp.Config)
	})
}

// limitEvent returns the message of the LimitReached Event on the Pod, or "".
func limitEvent(t *testing.T, ns, name string) string {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": name, "reason": controller.ReasonLimitReached}.AsSelector().String()
	events, err := cluster.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatalf("Listing events: %v", err)
	}
	if len(events.Items) == 0 {
		return ""
	}
	return events.Items[0].Message
}
