package controller

import (
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ipp-project/ipp/pkg/metrics"
)

func TestReconcileResult(t *testing.T) {
	tests := []struct {
		after time.Duration
		err   error
		want  string
	}{
		{0, nil, metrics.ResultSuccess},
		{time.Minute, nil, metrics.ResultRequeue},
		{time.Minute, errors.New("boom"), metrics.ResultError},
	}
	for _, tc := range tests {
		if got := reconcileResult(tc.after, tc.err); got != tc.want {
			t.Errorf("reconcileResult(%v, %v) = %q, want %q", tc.after, tc.err, got, tc.want)
		}
	}
}

func TestObservePodBound(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(created.Add(90 * time.Second))
	c := &Controller{clock: clk}
	pending := &cachedPod{podMeta: podMeta{Name: "p", CreationTimestamp: metav1.NewTime(created)}}
	bound := pending.DeepCopyObject().(*cachedPod)
	bound.nodeName = "ipp-a-1"

	count := func() uint64 {
		t.Helper()
		mfs, err := metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "ipp_pod_bound_duration_seconds" {
				return mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		return 0
	}
	before := count()
	c.observePodBound(pending, bound) // the scheduler binds it: observed
	c.observePodBound(bound, bound)   // a later status update: not observed again
	c.observePodBound(pending, pending)
	if got := count() - before; got != 1 {
		t.Errorf("observations = %d, want 1", got)
	}
}
