package bench

import (
	"fmt"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Snapshot holds the process's metrics (legacyregistry: what the in-process scheduler, apiserver
// and workqueues record) at one moment. Histograms and counters are cumulative, so measurements
// are differences of two snapshots.
type Snapshot map[string]*dto.MetricFamily

// TakeSnapshot gathers the legacyregistry.
func TakeSnapshot() (Snapshot, error) {
	mfs, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering metrics: %w", err)
	}
	s := Snapshot{}
	for _, mf := range mfs {
		s[mf.GetName()] = mf
	}
	return s, nil
}

// matches reports whether m has every label in want.
func matches(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Counter sums the counters (or the histograms' sample counts) of name whose labels match.
func (s Snapshot) Counter(name string, labels map[string]string) float64 {
	mf := s[name]
	if mf == nil {
		return 0
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		if !matches(m, labels) {
			continue
		}
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

// Histogram is a histogram's buckets (upper bound → cumulative count), count and sum.
type Histogram struct {
	Bounds []float64
	Counts []float64 // cumulative, one per bound; the last bound is +Inf
	Count  float64
	Sum    float64
}

// Histogram merges the histograms of name whose labels match.
func (s Snapshot) Histogram(name string, labels map[string]string) Histogram {
	var h Histogram
	byBound := map[float64]float64{}
	if mf := s[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			if m.Histogram == nil || !matches(m, labels) {
				continue
			}
			hh := m.GetHistogram()
			h.Count += float64(hh.GetSampleCount())
			h.Sum += hh.GetSampleSum()
			for _, b := range hh.GetBucket() {
				byBound[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
	}
	for b := range byBound {
		h.Bounds = append(h.Bounds, b)
	}
	sort.Float64s(h.Bounds)
	for _, b := range h.Bounds {
		h.Counts = append(h.Counts, byBound[b])
	}
	if len(h.Bounds) == 0 || !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
		h.Bounds = append(h.Bounds, math.Inf(1))
		h.Counts = append(h.Counts, h.Count)
	}
	return h
}

// Sub returns h minus an earlier snapshot of the same histogram.
func (h Histogram) Sub(earlier Histogram) Histogram {
	prev := map[float64]float64{}
	for i, b := range earlier.Bounds {
		prev[b] = earlier.Counts[i]
	}
	out := Histogram{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	for i, b := range h.Bounds {
		out.Bounds = append(out.Bounds, b)
		out.Counts = append(out.Counts, h.Counts[i]-prev[b])
	}
	return out
}

// Quantile estimates the q-quantile by linear interpolation inside the bucket that holds it, as
// Prometheus's histogram_quantile does. A quantile in the +Inf bucket returns the largest finite
// bound. It returns NaN for an empty histogram.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.Count
	lower, below := 0.0, 0.0
	for i, b := range h.Bounds {
		if h.Counts[i] >= rank {
			if math.IsInf(b, 1) {
				return lower
			}
			in := h.Counts[i] - below
			if in <= 0 {
				return b
			}
			return lower + (b-lower)*(rank-below)/in
		}
		lower, below = b, h.Counts[i]
	}
	return lower
}

// Mean is Sum / Count, or NaN when empty.
func (h Histogram) Mean() float64 {
	if h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}
