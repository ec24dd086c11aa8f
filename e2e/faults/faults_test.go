package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipp-project/ipp/e2e/cloudemu"
	"github.com/ipp-project/ipp/e2e/faults/scenario"
	"github.com/ipp-project/ipp/pkg/controller"
)

// Timeouts of the waits: generous for a busy 2-core machine; every wait ends as soon as its
// condition holds.
const (
	runTimeout   = 2 * time.Minute
	eventTimeout = time.Minute
)

// options are the controller's options for these tests: short retry delays and resync, so that
// faults cost little time, and a registration timeout far above the time an emulated instance
// takes to register, so that no instance is replaced unless a test means it to be.
func options() controller.Options {
	return controller.Options{
		RegistrationTimeout: 2 * time.Minute,
		ProviderResync:      2 * time.Second,
		RetryBaseDelay:      50 * time.Millisecond,
		RetryMaxDelay:       time.Second,
	}
}

// forEachCloud runs test once per cloud, in parallel subtests, in parallel with the other tests:
// each works in a tenant of its own.
func forEachCloud(t *testing.T, test func(t *testing.T, kind scenario.Kind)) {
	t.Parallel()
	for _, kind := range scenario.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

// nodeNames returns the dedicated node names of the tenant's classes.
func nodeNames(tn *scenario.Tenant, classes []string) []string {
	out := make([]string, len(classes))
	for i, c := range classes {
		out[i] = tn.NodeName(c)
	}
	return out
}

// TestServerErrors: with 30% of all cloud API calls failing with a 5xx, every class still gets
// exactly one instance and every Pod runs on its class's node.
func TestServerErrors(t *testing.T) {
	forEachCloud(t, func(t *testing.T, kind scenario.Kind) {
		const rate = 0.3
		tn := scenario.NewTenant(t, cluster, "errors-"+string(kind))
		cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 30})
		cloud.SetFaults(cloudemu.Faults{ErrorRate: rate})
		tn.StartController(t, cloud.Provider(t, tn.Config.ClusterName), options())

		classes := scenario.Classes("c", 20)
		tn.CreatePods(t, classes, 2)
		took := tn.WaitAllRunning(t, 40, runTimeout)
		scenario.CheckSettled(t, tn, cloud, 40)
		scenario.CheckCreatedOnce(t, cloud, nodeNames(tn, classes))

		stats := cloud.CallStats()
		t.Logf("%s, %.0f%% 5xx injected: %s (measured %.1f%% 5xx); %d classes -> %d instances, each created once: %t; 40 pods running on their class's node %v after creation",
			kind, rate*100, stats, 100*stats.Rate(scenario.ErrorFaults...), len(classes), len(cloud.LiveInstances()), !t.Failed(), took.Round(time.Millisecond))
		if stats.Faulted["error"] == 0 {
			t.Errorf("No call failed: the test tested nothing")
		}
	})
}

// TestThrottlingBacksOff: while every call is throttled (GCE 429 rateLimitExceeded, EC2
// RequestLimitExceeded), the controller's attempts to create a class's instance back off
// exponentially from RetryBaseDelay up to RetryMaxDelay, as the emulator's call log shows; the
// waiting Pod says why; once the throttling stops, the instance is created once and the Pod runs.
func TestThrottlingBacksOff(t *testing.T) {
	forEachCloud(t, func(t *testing.T, kind scenario.Kind) {
		const (
			base     = 50 * time.Millisecond
			maxDelay = 800 * time.Millisecond
			attempts = 9
			// slack is how late an attempt may come after its back-off on a busy machine. Every
			// gap must stay below maxDelay+slack = 1.6 s, which the uncapped back-off of the
			// last attempts (1.6 s, 3.2 s, 6.4 s) cannot.
			slack = maxDelay
		)
		tn := scenario.NewTenant(t, cluster, "throttle-"+string(kind))
		cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 429})
		opts := options()
		opts.RetryBaseDelay, opts.RetryMaxDelay = base, maxDelay
		// No List during the throttled window: on EC2 a List and a Create both begin with
		// DescribeInstances, and only the Creates' back-off is measured.
		opts.ProviderResync = 10 * time.Minute
		started := time.Now()
		tn.StartController(t, cloud.Provider(t, tn.Config.ClusterName), opts)
		scenario.WaitFor(t, "the controller's first List", eventTimeout, func(context.Context) (bool, error) {
			return cloud.ListedSince(started), nil
		})

		throttled := time.Now()
		cloud.SetFaults(cloudemu.Faults{ThrottleRate: 1})
		tn.CreatePod(t, "p-0", "c-0")
		tn.WaitForPodEvent(t, "p-0", controller.ReasonProvisioningFailed, eventTimeout, "(RateLimited)")
		scenario.WaitFor(t, fmt.Sprintf("%d throttled create attempts", attempts), eventTimeout, func(context.Context) (bool, error) {
			return len(cloud.CreateAttempts(throttled)) >= attempts, nil
		})
		cloud.SetFaults(cloudemu.Faults{})
		times := cloud.CreateAttempts(throttled)[:attempts]

		var gaps []string
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			want := min(base<<(i-1), maxDelay)
			gaps = append(gaps, fmt.Sprintf("%v (back-off %v)", gap.Round(time.Millisecond), want))
			// The emulator stamps a call when it arrives; the controller starts the back-off
			// only after that call has answered, so a gap is never shorter than its back-off.
			if gap < want-2*time.Millisecond {
				t.Errorf("Attempt %d came %v after the one before, sooner than the back-off %v", i+1, gap, want)
			}
			if gap >= maxDelay+slack {
				t.Errorf("Attempt %d came %v after the one before, more than the cap %v (+%v slack)", i+1, gap, maxDelay, slack)
			}
		}
		t.Logf("%s, every call throttled: gaps between create attempts: %s", kind, strings.Join(gaps, ", "))

		took := tn.WaitAllRunning(t, 1, runTimeout)
		scenario.CheckCreatedOnce(t, cloud, []string{tn.NodeName("c-0")})
		t.Logf("%s: %s (measured %.1f%% throttled); after the throttling stopped the pod ran in %v, one instance",
			kind, cloud.CallStats(), 100*cloud.CallStats().Rate(scenario.ThrottleFaults...), took.Round(time.Millisecond))
	})
}

// TestCapacityErrors: while the cloud has no capacity (GCE ZONE_RESOURCE_POOL_EXHAUSTED; EC2
// InsufficientInstanceCapacity in every subnet's zone), the waiting Pods carry a
// ProvisioningFailed Event naming the Capacity kind and the cloud's code. When capacity returns
// (on EC2, in the second subnet's zone only) the instance is created once, there, and the Pods run.
func TestCapacityErrors(t *testing.T) {
	forEachCloud(t, func(t *testing.T, kind scenario.Kind) {
		tn := scenario.NewTenant(t, cluster, "capacity-"+string(kind))
		cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 503})
		code := "ZONE_RESOURCE_POOL_EXHAUSTED"
		var subnets []string
		if kind == scenario.EC2 {
			code = "InsufficientInstanceCapacity"
			subnets = cloud.EC2().SubnetIDs()
			for _, s := range subnets {
				cloud.EC2().SetZoneCapacity(scenario.EC2Subnets[s], false)
			}
		} else {
			cloud.SetFaults(cloudemu.Faults{CapacityRate: 1})
		}
		tn.StartController(t, cloud.Provider(t, tn.Config.ClusterName), options())

		tn.CreatePods(t, []string{"c-0"}, 2)
		for _, pod := range []string{"c-0-0", "c-0-1"} {
			e := tn.WaitForPodEvent(t, pod, controller.ReasonProvisioningFailed, eventTimeout, "(Capacity)", code)
			t.Logf("%s: pod %s: %s %s: %s", kind, pod, e.Type, e.Reason, e.Message)
		}
		if kind == scenario.EC2 {
			cloud.EC2().SetZoneCapacity(scenario.EC2Subnets[subnets[1]], true)
		} else {
			cloud.SetFaults(cloudemu.Faults{})
		}
		took := tn.WaitAllRunning(t, 2, runTimeout)
		scenario.CheckSettled(t, tn, cloud, 2)
		name := tn.NodeName("c-0")
		scenario.CheckCreatedOnce(t, cloud, []string{name})
		if kind == scenario.EC2 {
			if live := cloud.LiveInstances()[name]; len(live) == 1 && live[0].Subnet != subnets[1] {
				t.Errorf("Instance %s is in subnet %s, want the second subnet %s (the first has no capacity)", live[0].ID, live[0].Subnet, subnets[1])
			}
		}
		stats := cloud.CallStats()
		t.Logf("%s: %s (%d capacity errors); after capacity returned the pods ran in %v", kind, stats, stats.Faulted["capacity"], took.Round(time.Millisecond))
	})
}

// TestLostReplies: with half of the mutating calls' replies lost after the cloud acted (a 5xx or
// a dropped connection), no dedicated node's instance is ever created twice, and every Pod runs
// on its class's node.
func TestLostReplies(t *testing.T) {
	forEachCloud(t, func(t *testing.T, kind scenario.Kind) {
		const rate = 0.5
		tn := scenario.NewTenant(t, cluster, "lost-"+string(kind))
		cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 504})
		cloud.SetFaults(cloudemu.Faults{LostReplyRate: rate})
		tn.StartController(t, cloud.Provider(t, tn.Config.ClusterName), options())

		classes := scenario.Classes("c", 10)
		tn.CreatePods(t, classes, 2)
		took := tn.WaitAllRunning(t, 20, runTimeout)
		scenario.CheckSettled(t, tn, cloud, 20)
		scenario.CheckCreatedOnce(t, cloud, nodeNames(tn, classes))

		stats := cloud.CallStats()
		lost := 0
		for _, f := range scenario.LostReplyFaults {
			lost += stats.Faulted[f]
		}
		t.Logf("%s, %.0f%% of mutating replies lost: %s; %d replies lost; %d classes -> %d instances, each created once: %t; pods running in %v",
			kind, rate*100, stats, lost, len(classes), len(cloud.LiveInstances()), !t.Failed(), took.Round(time.Millisecond))
		if lost == 0 {
			t.Errorf("No reply was lost: the test tested nothing")
		}
	})
}

// TestNeverRegisters: an instance whose Node never registers is deleted after the registration
// timeout and created again; the replacement registers and the class's Pods run on it. The
// waiting Pods say why. Another class, whose instance boots, is left alone.
func TestNeverRegisters(t *testing.T) {
	forEachCloud(t, func(t *testing.T, kind scenario.Kind) {
		// Long enough that an instance that boots always registers in time on a busy machine.
		const registrationTimeout = 6 * time.Second
		tn := scenario.NewTenant(t, cluster, "mute-"+string(kind))
		cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 15})
		mute, ok := tn.NodeName("mute"), tn.NodeName("ok")
		var refused atomic.Bool
		cloud.SetFaults(cloudemu.Faults{NeverBoot: func(name string) bool {
			// Only the first instance of the mute class never boots.
			return name == mute && !refused.Swap(true)
		}})
		opts := options()
		opts.RegistrationTimeout = registrationTimeout
		tn.StartController(t, cloud.Provider(t, tn.Config.ClusterName), opts)

		tn.CreatePods(t, []string{"mute", "ok"}, 2)
		took := tn.WaitAllRunning(t, 4, runTimeout)
		scenario.CheckSettled(t, tn, cloud, 4)
		e := tn.WaitForPodEvent(t, "mute-0", controller.ReasonRegistrationTimeout, eventTimeout, "did not register")
		t.Logf("%s: pod mute-0: %s %s: %s", kind, e.Type, e.Reason, e.Message)

		counts := cloud.CreatedCounts()
		if counts[mute] != 2 || counts[ok] != 1 {
			t.Errorf("Instances created: %d for the class that never registered, %d for the other; want 2 and 1", counts[mute], counts[ok])
		}
		live := cloud.LiveInstances()
		if len(live[mute]) != 1 || len(live[ok]) != 1 || len(live) != 2 {
			t.Errorf("Live instances %v, want one of each class", live)
		}
		if took < registrationTimeout {
			t.Errorf("Every pod ran %v after creation, before the registration timeout %v: the mute instance was not waited for", took, registrationTimeout)
		}
		t.Logf("%s: first instance never registered; replaced after the %v registration timeout; all pods running %v after creation; created %d+%d instances",
			kind, registrationTimeout, took.Round(time.Millisecond), counts[mute], counts[ok])
	})
}

// TestAllFaultsTogether: 30% 5xx, 10% throttling, 20% capacity errors and 40% lost replies at
// once, and the first instance of every fourth dedicated node never registers. Every class ends
// with one live instance; an instance is created twice only for a node whose first instance never
// registered, and once for every other; every Pod runs on its class's node and stays there.
func TestAllFaultsTogether(t *testing.T) {
	forEachCloud(t, func(t *testing.T, kind scenario.Kind) {
		const registrationTimeout = 8 * time.Second
		tn := scenario.NewTenant(t, cluster, "all-"+string(kind))
		cloud := scenario.StartCloud(t, kind, cluster, scenario.CloudOptions{Seed: 4})
		var (
			mu      sync.Mutex
			booted  = map[string]bool{}
			refused = map[string]bool{}
		)
		cloud.SetFaults(cloudemu.Faults{
			ErrorRate: 0.3, ThrottleRate: 0.1, CapacityRate: 0.2, LostReplyRate: 0.4,
			NeverBoot: func(name string) bool {
				mu.Lock()
				defer mu.Unlock()
				if booted[name] {
					return false
				}
				booted[name] = true
				refused[name] = len(booted)%4 == 0
				return refused[name]
			},
		})
		opts := options()
		opts.RegistrationTimeout = registrationTimeout
		tn.StartController(t, cloud.Provider(t, tn.Config.ClusterName), opts)

		classes := scenario.Classes("c", 20)
		tn.CreatePods(t, classes, 2)
		took := tn.WaitAllRunning(t, 40, runTimeout)
		scenario.CheckSettled(t, tn, cloud, 40)

		counts := cloud.CreatedCounts()
		live := cloud.LiveInstances()
		mu.Lock()
		defer mu.Unlock()
		replaced := 0
		for _, name := range nodeNames(tn, classes) {
			want := 1
			if refused[name] {
				want = 2
				replaced++
			}
			if counts[name] != want {
				t.Errorf("Instances created for %s: %d, want %d (its first instance never registered: %t)", name, counts[name], want, refused[name])
			}
			if len(live[name]) != 1 {
				t.Errorf("Live instances of %s: %v, want one", name, live[name])
			}
		}
		if len(counts) != len(classes) {
			t.Errorf("Instances were created for %d names, want the %d classes' only: %v", len(counts), len(classes), counts)
		}
		stats := cloud.CallStats()
		t.Logf("%s, 30%% 5xx + 10%% throttled + 20%% capacity + 40%% lost replies + every 4th first instance never registers: %s; %d classes, %d replaced after the %v registration timeout, the rest created once: %t; 40 pods running in %v",
			kind, stats, len(classes), replaced, registrationTimeout, !t.Failed(), took.Round(time.Millisecond))
	})
}
