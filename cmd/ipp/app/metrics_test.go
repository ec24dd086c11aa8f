package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// admissionCount returns ipp_admission_requests_total{webhook, verdict}.
func admissionCount(t *testing.T, wh, verdict string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ipp_admission_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["webhook"] == wh && labels["verdict"] == verdict {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series ipp_admission_requests_total{webhook=%q,verdict=%q}", wh, verdict)
	return 0
}

func TestObserveAdmission(t *testing.T) {
	opts, err := (&webhookOptions{listenAddress: ":8443", certFile: "c", keyFile: "k"}).complete()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Observer == nil {
		t.Fatalf("the webhook's server options record no metrics")
	}
	tests := []struct {
		obs              webhook.Observation
		webhook, verdict string
	}{
		{webhook.Observation{Path: webhook.MutatePath, Code: http.StatusOK, Allowed: true, Patched: true}, "mutate", "patched"},
		{webhook.Observation{Path: webhook.ValidatePath, Code: http.StatusOK}, "validate", "denied"},
		{webhook.Observation{Path: webhook.ValidatePath, Code: http.StatusOK, Allowed: true}, "validate", "allowed"},
		{webhook.Observation{Path: webhook.MutatePath, Code: http.StatusRequestEntityTooLarge}, "mutate", "error"},
	}
	for _, tc := range tests {
		before := admissionCount(t, tc.webhook, tc.verdict)
		tc.obs.Duration = 50 * time.Microsecond
		opts.Observer(tc.obs)
		if got := admissionCount(t, tc.webhook, tc.verdict) - before; got != 1 {
			t.Errorf("%+v: ipp_admission_requests_total{webhook=%q,verdict=%q} grew by %v, want 1", tc.obs, tc.webhook, tc.verdict, got)
		}
	}
}

func TestRunTLSFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"run", "--tls-secret=ipp-webhook-tls", "--tls-cert-file=c.pem", "--tls-private-key-file=k.pem"}, "not both"},
		{[]string{"run", "--tls-secret=Bad_Name"}, "invalid --tls-secret"},
		{[]string{"run", "--tls-secret=ipp-webhook-tls", "--tls-serving-validity=0s"}, "invalid --tls-serving-validity"},
		{[]string{"run"}, "--tls-secret"}, // neither files nor a Secret: the message names both ways
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := NewRootCommand()
			root.SetArgs(tc.args)
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ipp %v: err = %v, want one containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}
