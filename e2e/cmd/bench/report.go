package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/ipp-project/ipp/e2e/bench"
)

// report prints the results in dir (p1.json to p4.json, whichever exist) as the Markdown
// tables of BENCHMARKS.md.
func report(w io.Writer, dir string) error {
	found := false
	for _, part := range []string{"p1", "p2", "p3", "p4"} {
		b, err := os.ReadFile(filepath.Join(dir, part+".json"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		var res bench.Result
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("reading %s.json: %w", part, err)
		}
		found = true
		fmt.Fprintf(w, "<!-- %s: %s, %s to %s, load average %.2f to %.2f -->\n\n", part, res.Command,
			res.Started.Format("2006-01-02 15:04"), res.Finished.Format("15:04"), res.LoadAvgStart, res.LoadAvgEnd)
		switch {
		case res.P1 != nil:
			reportP1(w, res.P1)
		case res.P2 != nil:
			reportP2(w, res.P2)
		case res.P3 != nil:
			reportP3(w, res.P3)
		case res.P4 != nil:
			reportP4(w, res.P4)
		}
	}
	if !found {
		return fmt.Errorf("no p1.json, p2.json, p3.json or p4.json in %s", dir)
	}
	return nil
}

var variants = []string{bench.VariantDedicated, bench.VariantLabelPin, bench.VariantBaseline, bench.VariantAutoscaler}

type p1Key struct {
	nodes, existing int
	mode            string
}

// best returns the fastest successful run of each (size, existing, mode, variant).
func best(runs []bench.P1Run) (map[p1Key]map[string]bench.P1Run, []p1Key) {
	out := map[p1Key]map[string]bench.P1Run{}
	var keys []p1Key
	for _, r := range runs {
		if r.Error != "" {
			continue
		}
		k := p1Key{r.Nodes, r.ExistingPerNode, r.Mode}
		if out[k] == nil {
			out[k] = map[string]bench.P1Run{}
			keys = append(keys, k)
		}
		if cur, ok := out[k][r.Variant]; !ok || r.PodsPerSecond > cur.PodsPerSecond {
			out[k][r.Variant] = r
		}
	}
	slices.SortStableFunc(keys, func(a, b p1Key) int {
		if a.mode != b.mode {
			if a.mode == bench.ModeScheduler {
				return -1
			}
			return 1
		}
		if a.existing != b.existing {
			return a.existing - b.existing
		}
		return a.nodes - b.nodes
	})
	return out, keys
}

func reportP1(w io.Writer, res *bench.P1Result) {
	runs, keys := best(res.Runs)
	ratio := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	fmt.Fprintf(w, "Pods/s, best of %d (M = %d Pods, K = N/%d classes):\n\n", max(1, res.Config.Repeat), res.Config.Pods, res.Config.NodesPerClass)
	fmt.Fprintln(w, "| mode | nodes | running Pods | dedicated | label only | baseline | autoscaler | dedicated / baseline | dedicated / autoscaler |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range keys {
		m := runs[k]
		fmt.Fprintf(w, "| %s | %d | %d |", k.mode, k.nodes, m[bench.VariantBaseline].ExistingPods)
		for _, v := range variants {
			fmt.Fprintf(w, " %.0f |", m[v].PodsPerSecond)
		}
		fmt.Fprintf(w, " %s | %s |\n", ratio(m[bench.VariantDedicated].PodsPerSecond, m[bench.VariantBaseline].PodsPerSecond),
			ratio(m[bench.VariantDedicated].PodsPerSecond, m[bench.VariantAutoscaler].PodsPerSecond))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Scheduler-only runs, per Pod: scheduling algorithm mean (exact) and p99 (from 1 ms buckets), attempt p99 (algorithm + binding), and the whole process's CPU; load average and the process's CPU use (of 2) during the run:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| nodes | running Pods | variant | algorithm mean ms | algorithm p99 ms | attempt p50 / p99 ms | Filter / Score mean ms | process CPU ms/Pod | CPUs used | load |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range keys {
		if k.mode != bench.ModeScheduler {
			continue
		}
		for _, v := range variants {
			r, ok := runs[k][v]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| %d | %d | %s | %.3f | %.1f | %.0f / %.0f | %.3f / %.3f | %.2f | %.2f | %.1f |\n", k.nodes, r.ExistingPods, v,
				r.AlgorithmMeanMs, r.AlgorithmP99Ms, r.AttemptP50Ms, r.AttemptP99Ms, r.ExtensionPointMeanMs["Filter"], r.ExtensionPointMeanMs["Score"],
				r.CPUMsPerPod, r.ProcessCPUUtil, r.LoadAvg)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Create-to-bind runs, per Pod from its Create call returning to the watch seeing it bound:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| nodes | running Pods | variant | Pods/s | created/s | p50 ms | p99 ms |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|")
	for _, k := range keys {
		if k.mode != bench.ModeEndToEnd {
			continue
		}
		for _, v := range variants {
			r, ok := runs[k][v]
			if !ok || r.CreatedToBound == nil {
				continue
			}
			fmt.Fprintf(w, "| %d | %d | %s | %.0f | %.0f | %.0f | %.0f |\n", k.nodes, r.ExistingPods, v, r.PodsPerSecond, r.CreatePerSecond,
				r.CreatedToBound.P50, r.CreatedToBound.P99)
		}
	}
	fmt.Fprintln(w)
	reportPlacement(w, runs, keys)
}

// reportPlacement prints the dedicated-placed variant's runs (issue 11), if any: the controller's
// placement rate, and create-to-bind next to dedicated and baseline.
func reportPlacement(w io.Writer, runs map[p1Key]map[string]bench.P1Run, keys []p1Key) {
	var placed []p1Key
	for _, k := range keys {
		if _, ok := runs[k][bench.VariantPlaced]; ok {
			placed = append(placed, k)
		}
	}
	if len(placed) == 0 {
		return
	}
	fmt.Fprintln(w, "Placement by the controller (dedicated-placed): Pods placed per second, from the first Create (placement), the controller's start (placement-only) or the first of the benchmark's own placement PATCHes without the controller (patch-only, the API server's ceiling) to the last gate lifted, and between the 10th and 90th percentile of the placement times (p10–p90); no scheduler runs:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | nodes | placed nodes | classes | Pods | placed/s | placed/s p10–p90 | created/s | first placed s | all placed s | created-to-placed p50 / p99 ms | process CPU ms/Pod | CPUs used | load |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range placed {
		if k.mode != bench.ModePlacement && k.mode != bench.ModePlacementOnly && k.mode != bench.ModePatchOnly {
			continue
		}
		r := runs[k][bench.VariantPlaced]
		lat := "–"
		if r.CreatedToPlaced != nil {
			lat = fmt.Sprintf("%.0f / %.0f", r.CreatedToPlaced.P50, r.CreatedToPlaced.P99)
		}
		steady := "–"
		if r.SteadyPlacedPerSecond > 0 {
			steady = fmt.Sprintf("%.0f", r.SteadyPlacedPerSecond)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %.0f | %s | %.0f | %.2f | %.2f | %s | %.2f | %.2f | %.1f |\n", k.mode, k.nodes, r.PlacedNodes, r.Classes, r.Bound,
			r.PodsPerSecond, steady, r.CreatePerSecond, r.FirstPlacedSeconds, r.PlacedSeconds, lat, r.CPUMsPerPod, r.ProcessCPUUtil, r.LoadAvg)
	}
	fmt.Fprintln(w)
	if !slices.ContainsFunc(placed, func(k p1Key) bool { return k.mode == bench.ModeEndToEnd }) {
		return
	}
	fmt.Fprintln(w, "Create-to-bind, dedicated-placed next to dedicated and baseline of the same run:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| nodes | variant | Pods/s | / baseline | created/s | created-to-bound p50 / p99 ms | created-to-placed p50 / p99 ms | process CPU ms/Pod | load |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range placed {
		if k.mode != bench.ModeEndToEnd {
			continue
		}
		base := runs[k][bench.VariantBaseline].PodsPerSecond
		for _, v := range []string{bench.VariantBaseline, bench.VariantDedicated, bench.VariantPlaced} {
			r, ok := runs[k][v]
			if !ok || r.CreatedToBound == nil {
				continue
			}
			ratio, placedLat := "–", "–"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f", r.PodsPerSecond/base)
			}
			if r.CreatedToPlaced != nil {
				placedLat = fmt.Sprintf("%.0f / %.0f", r.CreatedToPlaced.P50, r.CreatedToPlaced.P99)
			}
			fmt.Fprintf(w, "| %d | %s | %.0f | %s | %.0f | %.0f / %.0f | %s | %.2f | %.1f |\n", k.nodes, v, r.PodsPerSecond, ratio, r.CreatePerSecond,
				r.CreatedToBound.P50, r.CreatedToBound.P99, placedLat, r.CPUMsPerPod, r.LoadAvg)
		}
	}
	fmt.Fprintln(w)
}

func reportP2(w io.Writer, res *bench.P2Result) {
	fmt.Fprintf(w, "%d s per run after %d s of warm-up; AdmissionReview bodies %d B (/mutate) and %d B (/validate); server peak RSS (VmHWM) %.1f MiB.\n\n",
		int(res.Config.Duration.Seconds()), int(res.Config.Warmup.Seconds()), res.MutateBodyBytes, res.ValidateBodyBytes, res.PeakRSSMiB)
	fmt.Fprintln(w, "| path | protocol | clients | paced to | requests/s | p50 ms | p99 ms | p99.9 ms | server CPU s / 1000 | server CPUs used | client CPU s / 1000 | errors | load |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range res.Runs {
		paced := "–"
		if r.PacedRate > 0 {
			paced = fmt.Sprintf("%.0f/s", r.PacedRate)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %.0f | %.2f | %.2f | %.2f | %.3f | %.2f | %.3f | %d | %.1f |\n", r.Path, r.Protocol, r.Concurrency, paced,
			r.RequestsPerSec, r.Latency.P50, r.Latency.P99, r.Latency.P999, r.ServerCPUSecPer1000, r.ServerCPUUtil, r.ClientCPUSecPer1000, r.Errors, r.LoadAvg)
	}
	fmt.Fprintln(w)
	if c := res.Create; c != nil {
		fmt.Fprintf(w, "Pod CREATE through the apiserver, one at a time, %d each way (load %.1f):\n\n", c.Pods, c.LoadAvg)
		fmt.Fprintln(w, "| | p50 ms | p90 ms | p99 ms | mean ms |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
		fmt.Fprintf(w, "| webhooks registered | %.2f | %.2f | %.2f | %.2f |\n", c.WithWebhooks.P50, c.WithWebhooks.P90, c.WithWebhooks.P99, c.WithWebhooks.Mean)
		fmt.Fprintf(w, "| exempt namespace | %.2f | %.2f | %.2f | %.2f |\n", c.Without.P50, c.Without.P90, c.Without.P99, c.Without.Mean)
		fmt.Fprintf(w, "| added | %.2f | | %.2f | %.2f |\n\n", c.AddedP50Ms, c.AddedP99Ms, c.WithWebhooks.Mean-c.Without.Mean)
	}
}

func reportP3(w io.Writer, res *bench.P3Result) {
	placement := res.Config.Placement
	if placement == "" {
		placement = "admission" // results from before the placement was recorded
	}
	fmt.Fprintf(w, "Placement: %s.\n\n", placement)
	if r := res.Reaction; r != nil {
		fmt.Fprintf(w, "Reaction, %d new classes one Pod each, %v apart (load %.1f):\n\n", r.Classes, res.Config.ReactionInterval.Duration, r.LoadAvg)
		fmt.Fprintln(w, "| from | p50 ms | p90 ms | p99 ms | max ms |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
		fmt.Fprintf(w, "| Pod Create call | %.2f | %.2f | %.2f | %.2f |\n", r.FromCreateCall.P50, r.FromCreateCall.P90, r.FromCreateCall.P99, r.FromCreateCall.Max)
		fmt.Fprintf(w, "| Pod Create returned | %.2f | %.2f | %.2f | %.2f |\n\n", r.FromCreated.P50, r.FromCreated.P90, r.FromCreated.P99, r.FromCreated.Max)
	}
	if s := res.Steady; s != nil {
		fmt.Fprintf(w, "Steady state, %d classes, %d Pods, all bound %.0f s after the first Pod (load %.1f):\n\n", s.Classes, s.Pods, s.SettleSeconds, s.LoadAvg)
		fmt.Fprintln(w, "| | reconciles | reconciles/s | API requests | requests / reconcile | requests | provider calls |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---|")
		fmt.Fprintf(w, "| build-up | %.0f | | %.0f | %.3f | %v | %v |\n", s.ActiveReconciles, s.ActiveRequests, s.ActiveRequestsPerRecon, s.ActiveRequestsByKind, s.ProviderCallsActive)
		fmt.Fprintf(w, "| idle %.0f s | %.0f | %.2f | %.0f | %.3f | %v | %v |\n\n", s.IdleSeconds, s.IdleReconciles, s.IdleReconcilesPerSecond, s.IdleRequests,
			s.IdleRequestsPerReconcile, s.IdleRequestsByKind, s.IdleProviderCalls)
		fmt.Fprintf(w, "Build-up: %.0f Pod PATCHes (placements, under controller placement) for %d Pods. At the end: %d instances, %d instance creations beyond one per class.\n\n",
			s.PodPatches, s.Pods, s.InstancesAtEnd, s.DuplicateInstanceCreation)
	}
	if b := res.Burst; b != nil {
		fmt.Fprintf(w, "Burst: %d Pods of %d new classes at once: %d instances.insert calls at the emulator, %d Provider.Create calls, at most %d per class; all bound in %.1f s (load %.1f).\n\n",
			b.Pods, b.Classes, b.InsertCalls, b.ProviderCreateCalls, b.MaxPerClass, b.SettleSeconds, b.LoadAvg)
	}
	fmt.Fprintf(w, "Pod creations retried after an apiserver error (such as a webhook call timing out): %d.\n\n", res.CreateRetries)
	if p := res.Process; p != nil {
		fmt.Fprintf(w, "`ipp controller` process on the settled cluster: caches synced and workers started %.1f s after start; after %.0f s idle: RSS %.1f MiB, peak RSS %.1f MiB, live heap after the last GC %.1f MiB (%d GCs), CPU %.2f s per minute, %d instances.insert calls (load %.1f).\n\n",
			p.SyncSeconds, p.IdleSeconds, p.RSSMiB, p.PeakRSSMiB, p.LiveHeapMiB, p.GCs, p.IdleCPUSecondsPerMinute, p.InsertCallsWhileIdle, p.LoadAvg)
		if p.HeapProfile != "" {
			fmt.Fprintf(w, "Its heap profile: `go tool pprof -sample_index=inuse_space %s`.\n\n", p.HeapProfile)
		}
	}
}

func reportP4(w io.Writer, res *bench.P4Result) {
	c := res.Config
	fmt.Fprintf(w, "Boot delay %v (%s emulator); both pools Ready %.1f s after their NodeClasses were created. Pod Create call to Running:\n\n", c.BootDelay.Duration, c.Provider, res.PoolFillSeconds)
	fmt.Fprintln(w, "| phase | classes | start | Pods | p50 ms | p90 ms | p99 ms | max ms | load |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|")
	row := func(name string, p *bench.P4Phase) {
		if p == nil {
			return
		}
		for _, k := range []struct {
			start string
			l     bench.Latency
		}{{"warm", p.Warm}, {"cold", p.Cold}} {
			if k.l.Count > 0 {
				fmt.Fprintf(w, "| %s | %d | %s | %d | %.0f | %.0f | %.0f | %.0f | %.1f |\n", name, p.Classes, k.start, k.l.Count, k.l.P50, k.l.P90, k.l.P99, k.l.Max, p.LoadAvg)
			}
		}
	}
	row(fmt.Sprintf("warm, pool of %d, %v apart", c.WarmPool, c.Interval.Duration), res.Warm)
	row(fmt.Sprintf("cold (no pool), %v apart", c.Interval.Duration), res.Cold)
	if res.Burst != nil {
		row(fmt.Sprintf("burst against a pool of %d", c.BurstPool), &res.Burst.P4Phase)
	}
	fmt.Fprintln(w)
	stages := func(name string, p *bench.P4Phase) {
		if p == nil || p.WarmStages == nil {
			return
		}
		st := p.WarmStages
		fmt.Fprintf(w, "| %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f |\n", name, st.Claimed.P50, st.Claimed.P99, st.Ungated.P50, st.Ungated.P99,
			st.Bound.P50, st.Bound.P99, st.Running.P50, st.Running.P99)
	}
	fmt.Fprintln(w, "Warm starts, from the Create call to each step seen by the benchmark's watch, p50 / p99 ms:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | node bound to the class (claim) | placement gate lifted | Pod bound (scheduler) | Running (kubelet) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	stages("warm", res.Warm)
	if res.Burst != nil {
		stages("burst", &res.Burst.P4Phase)
	}
	fmt.Fprintln(w)
	cold := func(name string, p *bench.P4Phase) {
		if p == nil || p.ColdStages == nil {
			return
		}
		st := p.ColdStages
		fmt.Fprintf(w, "| %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f |\n", name, st.NodeReady.P50, st.NodeReady.P99, st.Bound.P50, st.Bound.P99, st.Running.P50, st.Running.P99)
	}
	fmt.Fprintln(w, "Cold starts, likewise, p50 / p99 ms:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | new node Ready and bound to its instance | Pod bound (scheduler) | Running (kubelet) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	cold("warm", res.Warm)
	cold("cold", res.Cold)
	if res.Burst != nil {
		cold("burst", &res.Burst.P4Phase)
	}
	fmt.Fprintln(w)
	if res.Burst != nil {
		fmt.Fprintf(w, "Burst: %d warm and %d cold starts; every Pod bound and the pool back to %d Ready %.1f s after the first Create call. ", res.Burst.WarmStarts, res.Burst.ColdStarts, c.BurstPool, res.Burst.RefillSeconds)
	}
	for _, p := range []struct {
		name string
		p    *bench.P4Phase
	}{{"warm", res.Warm}, {"cold", res.Cold}, {"burst", burstPhase(res.Burst)}} {
		if p.p != nil {
			fmt.Fprintf(w, "Scheduler attempts in the %s phase: %v. ", p.name, p.p.SchedulerAttempts)
		}
	}
	if len(res.NodeTaints) > 0 {
		fmt.Fprintf(w, "Nodes seen with a taint other than IPP's, by taint: %v. ", res.NodeTaints)
	}
	fmt.Fprintf(w, "%d classes ran on %d nodes. Pod creations retried: %d.\n\n", res.Classes, res.DistinctNodes, res.CreateRetries)
}

func burstPhase(b *bench.P4Burst) *bench.P4Phase {
	if b == nil {
		return nil
	}
	return &b.P4Phase
}
