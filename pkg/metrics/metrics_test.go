package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/cloudprovider/fake"
)

func TestObserveAdmission(t *testing.T) {
	tests := []struct {
		name             string
		webhook, verdict string
		// wantSeries is the series that must grow by one; empty means none does.
		wantSeries []string
	}{
		{name: "mutate patched", webhook: WebhookMutate, verdict: VerdictPatched, wantSeries: []string{"mutate", "patched"}},
		{name: "validate denied", webhook: WebhookValidate, verdict: VerdictDenied, wantSeries: []string{"validate", "denied"}},
		{name: "by path", webhook: "/validate", verdict: VerdictError, wantSeries: []string{"validate", "error"}},
		{name: "unknown verdict is dropped", webhook: WebhookMutate, verdict: "maybe"},
		{name: "unknown webhook is dropped", webhook: "/healthz", verdict: VerdictAllowed},
		{name: "patched on validate is dropped", webhook: WebhookValidate, verdict: VerdictPatched},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			beforeSeries := testutil.CollectAndCount(admissionRequests)
			beforeTotal := sumCounterVec(t, "ipp_admission_requests_total")
			var before float64
			if tc.wantSeries != nil {
				before = testutil.ToFloat64(admissionRequests.WithLabelValues(tc.wantSeries...))
			}
			ObserveAdmission(tc.webhook, tc.verdict, 30*time.Microsecond)
			if got := testutil.CollectAndCount(admissionRequests); got != beforeSeries {
				t.Errorf("series count = %d, want %d (no new series)", got, beforeSeries)
			}
			wantDelta := 0.0
			if tc.wantSeries != nil {
				wantDelta = 1
				if got := testutil.ToFloat64(admissionRequests.WithLabelValues(tc.wantSeries...)) - before; got != 1 {
					t.Errorf("series %v grew by %v, want 1", tc.wantSeries, got)
				}
			}
			if got := sumCounterVec(t, "ipp_admission_requests_total") - beforeTotal; got != wantDelta {
				t.Errorf("total grew by %v, want %v", got, wantDelta)
			}
		})
	}
}

func TestAdmissionVerdict(t *testing.T) {
	tests := []struct {
		code             int
		allowed, patched bool
		want             string
	}{
		{200, true, true, VerdictPatched},
		{200, true, false, VerdictAllowed},
		{200, false, false, VerdictDenied},
		{400, false, false, VerdictError},
		{413, false, false, VerdictError},
		{500, false, false, VerdictError},
	}
	for _, tc := range tests {
		if got := AdmissionVerdict(tc.code, tc.allowed, tc.patched); got != tc.want {
			t.Errorf("AdmissionVerdict(%d, %v, %v) = %q, want %q", tc.code, tc.allowed, tc.patched, got, tc.want)
		}
	}
}

// sumCounterVec sums every series of the named counter in Registry.
func sumCounterVec(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, OutcomeSuccess},
		{cloudprovider.NewError(cloudprovider.KindNotFound, "delete", "", errors.New("gone")), OutcomeNotFound},
		{fmt.Errorf("wrapped: %w", cloudprovider.NewError(cloudprovider.KindRateLimited, "list", "429", errors.New("slow down"))), OutcomeRateLimited},
		{cloudprovider.NewError(cloudprovider.KindCapacity, "create", "ZONE_RESOURCE_POOL_EXHAUSTED", errors.New("none left")), OutcomeCapacity},
		{cloudprovider.NewError(cloudprovider.KindQuota, "create", "", errors.New("quota")), OutcomeQuota},
		{cloudprovider.NewError(cloudprovider.KindTransient, "create", "", errors.New("503")), OutcomeTransient},
		{cloudprovider.NewError(cloudprovider.KindInvalid, "create", "", errors.New("bad type")), OutcomeInvalid},
		{fmt.Errorf("listing: %w", context.DeadlineExceeded), OutcomeCanceled},
		{errors.New("something"), OutcomeError},
	}
	for _, tc := range tests {
		if got := Outcome(tc.err); got != tc.want {
			t.Errorf("Outcome(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestInstrumentProvider(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f := fake.New(clk)
	p := InstrumentProvider(f, clk)
	calls := func(op, outcome string) float64 {
		return testutil.ToFloat64(providerCalls.WithLabelValues("fake", op, outcome))
	}
	createOK, createCap, listOK := calls("create", OutcomeSuccess), calls("create", OutcomeCapacity), calls("list", OutcomeSuccess)

	if _, err := p.Create(ctx, cloudprovider.InstanceSpec{NodeName: "ipp-a-1", IdempotencyKey: "k1"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	f.FailNext("create", cloudprovider.NewError(cloudprovider.KindCapacity, "create", "", errors.New("none")))
	if _, err := p.Create(ctx, cloudprovider.InstanceSpec{NodeName: "ipp-b-2", IdempotencyKey: "k2"}); !cloudprovider.IsCapacity(err) {
		t.Fatalf("Create error = %v, want the injected capacity error unchanged", err)
	}
	if _, err := p.Create(ctx, cloudprovider.InstanceSpec{NodeName: "ipp-b-2", IdempotencyKey: "k2"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	f.SetState("ipp-b-2", cloudprovider.StateRunning)
	list, err := p.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v; want 2 instances", list, err)
	}

	got := map[string]float64{
		"create success":  calls("create", OutcomeSuccess) - createOK,
		"create capacity": calls("create", OutcomeCapacity) - createCap,
		"list success":    calls("list", OutcomeSuccess) - listOK,
		"pending":         testutil.ToFloat64(instances.WithLabelValues("Pending")),
		"running":         testutil.ToFloat64(instances.WithLabelValues("Running")),
		"stopped":         testutil.ToFloat64(instances.WithLabelValues("Stopped")),
	}
	want := map[string]float64{"create success": 2, "create capacity": 1, "list success": 1, "pending": 1, "running": 1, "stopped": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if p.Name() != "fake" || p.RegistrationTimeout() != f.Timeout {
		t.Errorf("Name/RegistrationTimeout not passed through: %q %v", p.Name(), p.RegistrationTimeout())
	}
}

func TestObservePodBoundAndLeader(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	countBefore := histogramCount(t, "ipp_pod_bound_duration_seconds")
	ObservePodBound(created, created.Add(42*time.Second))
	ObservePodBound(created, created.Add(-time.Second)) // clock skew: dropped
	ObservePodBound(time.Time{}, created)               // no creation time: dropped
	if got := histogramCount(t, "ipp_pod_bound_duration_seconds") - countBefore; got != 1 {
		t.Errorf("pod bound observations = %d, want 1", got)
	}
	SetLeader(true)
	if got := testutil.ToFloat64(leader); got != 1 {
		t.Errorf("ipp_leader = %v after SetLeader(true), want 1", got)
	}
	SetLeader(false)
	if got := testutil.ToFloat64(leader); got != 0 {
		t.Errorf("ipp_leader = %v after SetLeader(false), want 0", got)
	}
}

func histogramCount(t *testing.T, name string) uint64 {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	return 0
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ObserveReconcile(ResultSuccess, time.Millisecond)
	o := &Options{Address: "127.0.0.1:0"}
	addr, err := o.Start(ctx)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{`ipp_reconcile_total{result="success"}`, "ipp_leader 0", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if _, err := (&Options{Address: "not-an-address"}).Start(ctx); err == nil || !strings.Contains(err.Error(), "--metrics-address") {
		t.Errorf("Start with a bad address: err = %v, want one naming --metrics-address", err)
	}
	if addr, err := (&Options{}).Start(ctx); addr != nil || err != nil {
		t.Errorf("Start with no address = %v, %v; want nil, nil", addr, err)
	}
	if _, err := (&Options{Profiling: true}).Start(ctx); err == nil || !strings.Contains(err.Error(), "--profiling") {
		t.Errorf("Start with --profiling and no address: err = %v, want one naming --profiling", err)
	}
}

func TestServeProfiling(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, profiling := range []bool{false, true} {
		addr, err := (&Options{Address: "127.0.0.1:0", Profiling: profiling}).Start(ctx)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		resp, err := http.Get("http://" + addr.String() + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatalf("GET /debug/pprof/heap: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusNotFound
		if profiling {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("profiling=%v: GET /debug/pprof/heap = %d, want %d: %.200s", profiling, resp.StatusCode, want, body)
		}
		if profiling && !strings.Contains(string(body), "heap profile") {
			t.Errorf("profiling=%v: the heap profile is missing: %.200s", profiling, body)
		}
	}
}

// TestDocumented checks that docs/metrics.md documents every ipp_ metric and documents no
// metric that does not exist.
func TestDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatalf("reading docs/metrics.md: %v", err)
	}
	registered := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range ippCollectors {
		ch := make(chan *prometheus.Desc, 1)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			registered[m[1]] = true
		}
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(ipp_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	if diff := cmp.Diff(registered, documented); diff != "" {
		t.Errorf("metrics registered vs documented in docs/metrics.md (-registered +documented):\n%s", diff)
	}
}

func BenchmarkObserveAdmission(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ObserveAdmission(WebhookMutate, VerdictPatched, 40*time.Microsecond)
	}
}
