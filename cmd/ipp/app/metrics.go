package app

import (
	"github.com/ipp-project/ipp/pkg/metrics"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// observeAdmission records one answered admission request in IPP's metrics. It is the webhook
// server's Observer in every subcommand that serves the webhook.
func observeAdmission(o webhook.Observation) {
	metrics.ObserveAdmission(o.Path, metrics.AdmissionVerdict(o.Code, o.Allowed, o.Patched), o.Duration)
}
