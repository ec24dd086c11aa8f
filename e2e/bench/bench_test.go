package bench

import (
	"math"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want float64
	}{
		{"empty", Histogram{}, 0.5, math.NaN()},
		{"first bucket interpolates from zero", Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{10, 10, 10}, Count: 10}, 0.5, 0.5},
		{"second bucket", Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{0, 10, 10}, Count: 10}, 0.99, 1.99},
		{"in +Inf is the largest bound", Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{0, 0, 4}, Count: 4}, 0.5, 2},
		{"exact bucket edge", Histogram{Bounds: []float64{1, 2, 4, inf}, Counts: []float64{5, 10, 10, 10}, Count: 10}, 0.5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Quantile(tt.q)
			if math.IsNaN(tt.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tt.want) > 1e-9) {
				t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestHistogramSub(t *testing.T) {
	inf := math.Inf(1)
	before := Histogram{Bounds: []float64{1, inf}, Counts: []float64{3, 4}, Count: 4, Sum: 2}
	after := Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{5, 9, 10}, Count: 10, Sum: 12}
	want := Histogram{Bounds: []float64{1, 2, inf}, Counts: []float64{2, 9, 6}, Count: 6, Sum: 10}
	if diff := cmp.Diff(want, after.Sub(before)); diff != "" {
		t.Errorf("Sub (-want +got):\n%s", diff)
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 1000; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(ds)
	want := Latency{Count: 1000, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000, Mean: 500.5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Latency{}, Summarize(nil)); diff != "" {
		t.Errorf("Summarize(nil) (-want +got):\n%s", diff)
	}
}

func TestResourceOf(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/api/v1/namespaces/a/pods", "pods"},
		{"/api/v1/namespaces/a/pods/p", "pods"},
		{"/api/v1/namespaces/a/pods/p/binding", "pods/binding"},
		{"/api/v1/nodes/n", "nodes"},
		{"/api/v1/nodes/n/status", "nodes/status"},
		{"/apis/events.k8s.io/v1/namespaces/a/events", "events"},
		{"/api/v1/namespaces/a", "namespaces"},
		{"/healthz", "/healthz"},
	}
	for _, tt := range tests {
		if got := resourceOf(tt.path); got != tt.want {
			t.Errorf("resourceOf(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestReadProcStat(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	st, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS <= 0 || st.HWM < st.RSS {
		t.Errorf("RSS %d, HWM %d: want 0 < RSS <= HWM", st.RSS, st.HWM)
	}
	if _, err := ReadProcStat(-1); err == nil {
		t.Error("ReadProcStat(-1) succeeded, want an error")
	}
}

func TestGCLiveHeap(t *testing.T) {
	tests := []struct {
		line   string
		want   float64
		wantOK bool
	}{
		{"gc 7 @1.204s 2%: 0.021+3.1+0.019 ms clock, 0.043+0.52/2.9/0+0.039 ms cpu, 38->39->21 MB, 40 MB goal, 0 MB stacks, 0 MB globals, 2 P", 21, true},
		{"gc 8 @1.204s 2%: 0.021+3.1+0.019 ms clock, 0.043+0.52/2.9/0+0.039 ms cpu, 4->4->0 MB, 4 MB goal, 2 P (forced)", 0, true},
		{"I1125 controller.go:251] \"Started workers\"", 0, false},
	}
	for _, tt := range tests {
		got, ok := gcLiveHeap(tt.line)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("gcLiveHeap(%q) = %v, %v; want %v, %v", tt.line, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestCreatedByClass(t *testing.T) {
	p := newTimedProvider(nil)
	// Under controller placement a class's instances have names of their own.
	p.names["ipp-c1-aaaa"] = classID{"a", "c1"}
	p.names["ipp-c1-bbbb"] = classID{"a", "c1"}
	p.names["ipp-c2-cccc"] = classID{"a", "c2"}
	got := p.createdByClass(map[string]int{"ipp-c1-aaaa": 1, "ipp-c1-bbbb": 2, "ipp-c2-cccc": 1, "stray": 1})
	want := map[classID]int{{"a", "c1"}: 3, {"a", "c2"}: 1, {class: "instance stray"}: 1}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(classID{})); diff != "" {
		t.Errorf("createdByClass (-want +got):\n%s", diff)
	}
}

func TestSteadyRate(t *testing.T) {
	t0 := time.Unix(0, 0)
	var ts []time.Time
	// A slow start (10 events in 1 s), then 100 events 10 ms apart, then one late straggler.
	for i := range 10 {
		ts = append(ts, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	for i := range 100 {
		ts = append(ts, t0.Add(time.Second+time.Duration(i)*10*time.Millisecond))
	}
	ts = append(ts, t0.Add(10*time.Second))
	got := steadyRate(ts)
	if got < 95 || got > 105 {
		t.Errorf("steadyRate = %.1f/s, want about 100/s (the pace between the start-up and the straggler)", got)
	}
	if got := steadyRate(ts[:19]); got != 0 {
		t.Errorf("steadyRate of 19 events = %v, want 0", got)
	}
}
