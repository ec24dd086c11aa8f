// Package metrics holds IPP's Prometheus metrics, the small helpers that record them, and the
// HTTP server that exposes them on their own port (--metrics-address).
//
// Every metric is documented in docs/metrics.md; keep the two in step. Recording is cheap enough
// for the admission path (tens of thousands of requests a second): the admission series are
// resolved once, at start-up, so recording one request is two atomic adds and a bucket search.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every IPP metric name.
const Namespace = "ipp"

// Registry holds every metric that /metrics serves: IPP's own, plus the Go runtime and process
// collectors. Tests may gather from it directly.
var Registry = prometheus.NewRegistry()

// Webhook names, the values of the webhook label.
const (
	WebhookMutate   = "mutate"
	WebhookValidate = "validate"
)

// Admission verdicts, the values of the verdict label.
const (
	// VerdictAllowed is an admitted request with no patch.
	VerdictAllowed = "allowed"
	// VerdictPatched is an admitted request with a patch (mutate only).
	VerdictPatched = "patched"
	// VerdictDenied is a request answered with allowed=false.
	VerdictDenied = "denied"
	// VerdictError is a request that got no AdmissionReview answer: a bad body (400), a body too
	// large (413), a wrong method (405) or a panic (500).
	VerdictError = "error"
)

// Reconcile results, the values of the result label of ipp_reconcile_total.
const (
	// ResultSuccess is a reconcile that finished with nothing left to do now.
	ResultSuccess = "success"
	// ResultRequeue is a reconcile that finished and asked to run again later (waiting for a
	// node, an idle TTL, a registration timeout).
	ResultRequeue = "requeue"
	// ResultError is a reconcile that returned an error and was put back with back-off.
	ResultError = "error"
)

var (
	admissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "admission_requests_total",
		Help:      "Admission requests answered, by webhook (mutate, validate) and verdict (allowed, patched, denied, error).",
	}, []string{"webhook", "verdict"})

	admissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "admission_duration_seconds",
		Help:      "Time to answer one admission request, from reading the body to writing the response, by webhook.",
		// 25µs .. ~100ms: the decision itself takes microseconds; the apiserver gives up at 5s.
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 13),
	}, []string{"webhook"})

	reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "reconcile_total",
		Help:      "Reconciles of dedicated nodes, by result (success, requeue, error).",
	}, []string{"result"})

	reconcileDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "reconcile_duration_seconds",
		Help:      "Time of one reconcile of one dedicated node, provider calls included.",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 16),
	})

	providerCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "provider_calls_total",
		Help:      "Cloud provider calls, by provider (gce, ec2), operation (create, delete, list) and outcome (success, or the error kind: not_found, rate_limited, capacity, quota, transient, invalid, canceled, error).",
	}, []string{"provider", "operation", "outcome"})

	providerDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "provider_call_duration_seconds",
		Help:      "Time of one cloud provider call, including the SDK's own retries and operation waits, by provider and operation.",
		// 10ms .. ~5.5min: a GCE insert waits for its operation; bare metal takes minutes.
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	}, []string{"provider", "operation"})

	instances = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "instances",
		Help:      "Instances this cluster owns, by state (Pending, Running, Stopping, Stopped), as of the provider's last successful List.",
	}, []string{"state"})

	podBound = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "pod_bound_duration_seconds",
		Help:      "Time from an IPP Pod's creation to its binding to a node (spec.nodeName set by the scheduler), as seen by the leading controller. It includes creating and booting the class's instance when the class had none.",
		// 0.5s .. ~68min.
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
	})

	creationRateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "creation_rate_limited_total",
		Help:      "Instance creations that had to wait for their namespace's creation rate limit (--namespace-create-qps, --namespace-create-burst), counted once per creation.",
	})

	limitReached = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "limit_reached_total",
		Help:      "Dedicated nodes whose instance creation was refused by a limit, by limit (max-instances, limits.instances, limits.instancesPerNamespace, maxNodesPerClass), counted once each time a node starts waiting.",
	}, []string{"limit"})

	podsPlaced = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "pods_placed_total",
		Help:      "IPP Pods the controller placed on a node of their class (--placement=controller): the PATCH that pins the Pod to its node and lifts its scheduling gate succeeded.",
	})

	warmNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "warm_nodes",
		Help:      "Unclaimed warm nodes of each NodeClass's warm pool, by state: ready (Node Ready, claimable) or booting (instance created, Node not Ready or not registered yet).",
	}, []string{"node_class", "state"})

	warmOldestAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "warm_oldest_age_seconds",
		Help:      "Age of the oldest unclaimed warm node of each NodeClass's warm pool, from its instance's creation, as of the pool's last reconcile; 0 for an empty pool. Compare with warm.maxAge, after which warm nodes are replaced.",
	}, []string{"node_class"})

	warmClaims = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "warm_claims_total",
		Help:      "Warm nodes bound to a class whose Pods needed a node.",
	})

	warmClaimMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "warm_claim_misses_total",
		Help:      "New nodes of a NodeClass with a warm pool that had to boot cold because no warm node was ready.",
	})

	limitWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "limit_waiting_nodes",
		Help:      "Dedicated nodes whose Pods wait because a limit keeps their instance from being created.",
	})

	leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "leader",
		Help:      "1 while this replica holds the controller's leader Lease, else 0.",
	})

	servingCertExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "tls_serving_certificate_expiry_timestamp_seconds",
		Help:      "Unix time at which the webhook's current serving certificate expires (self-managed TLS only).",
	})

	certRotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "tls_rotations_total",
		Help:      "Certificates this replica issued and stored in the TLS Secret, by kind (ca, serving). The replica that loses a race to update the Secret does not count.",
	}, []string{"kind"})
)

// ippCollectors are IPP's own metrics, each documented in docs/metrics.md.
var ippCollectors = []prometheus.Collector{
	admissionRequests, admissionDuration,
	reconciles, reconcileDuration,
	providerCalls, providerDuration, instances,
	podBound, creationRateLimited, limitReached, limitWaiting, leader, podsPlaced, warmNodes, warmOldestAge, warmClaims, warmClaimMisses,
	servingCertExpiry, certRotations,
}

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	Registry.MustRegister(ippCollectors...)
	admission = newAdmissionSeries()
	// Pre-create the series that dashboards and alerts expect to find at zero.
	for _, r := range []string{ResultSuccess, ResultRequeue, ResultError} {
		reconciles.WithLabelValues(r)
	}
	for _, l := range limitNames {
		limitReached.WithLabelValues(l)
	}
	leader.Set(0)
}

// Admission series, resolved once so that recording does no label hashing or map lookups.
var admission admissionSeries

var (
	webhooks = [...]string{WebhookMutate, WebhookValidate}
	verdicts = [...]string{VerdictAllowed, VerdictPatched, VerdictDenied, VerdictError}
)

type admissionSeries struct {
	requests [len(webhooks)][len(verdicts)]prometheus.Counter
	duration [len(webhooks)]prometheus.Observer
}

func newAdmissionSeries() admissionSeries {
	var s admissionSeries
	for w, wn := range webhooks {
		s.duration[w] = admissionDuration.WithLabelValues(wn)
		for v, vn := range verdicts {
			// Patched only happens on mutate; leave the series out of validate.
			if vn == VerdictPatched && wn != WebhookMutate {
				continue
			}
			s.requests[w][v] = admissionRequests.WithLabelValues(wn, vn)
		}
	}
	return s
}

func webhookIndex(webhook string) (int, bool) {
	switch webhook {
	case WebhookMutate, "/" + WebhookMutate:
		return 0, true
	case WebhookValidate, "/" + WebhookValidate:
		return 1, true
	}
	return 0, false
}

func verdictIndex(verdict string) (int, bool) {
	switch verdict {
	case VerdictAllowed:
		return 0, true
	case VerdictPatched:
		return 1, true
	case VerdictDenied:
		return 2, true
	case VerdictError:
		return 3, true
	}
	return 0, false
}

// AdmissionVerdict returns the verdict label of an answered request from the HTTP status code
// sent and, for a 200, the response's allowed and patched.
func AdmissionVerdict(code int, allowed, patched bool) string {
	switch {
	case code != 200:
		return VerdictError
	case !allowed:
		return VerdictDenied
	case patched:
		return VerdictPatched
	}
	return VerdictAllowed
}

// ObserveAdmission records one answered admission request: webhook is WebhookMutate or
// WebhookValidate (or its path, "/mutate", "/validate"), verdict one of the Verdict constants
// (see AdmissionVerdict), elapsed the time it took. Unknown webhook or verdict values are dropped
// rather than creating new series.
func ObserveAdmission(webhook, verdict string, elapsed time.Duration) {
	w, ok := webhookIndex(webhook)
	if !ok {
		return
	}
	v, ok := verdictIndex(verdict)
	if !ok {
		return
	}
	if c := admission.requests[w][v]; c != nil {
		c.Inc()
	}
	admission.duration[w].Observe(elapsed.Seconds())
}

// ObserveReconcile records one reconcile of a dedicated node with its result (ResultSuccess,
// ResultRequeue or ResultError) and how long it took.
func ObserveReconcile(result string, elapsed time.Duration) {
	reconciles.WithLabelValues(result).Inc()
	reconcileDuration.Observe(elapsed.Seconds())
}

// ObservePodBound records the time from a Pod's creation to its binding to a node. Call it once
// per Pod, when the controller first sees the Pod with spec.nodeName set after having seen it
// without.
func ObservePodBound(created, bound time.Time) {
	if created.IsZero() || bound.Before(created) {
		return
	}
	podBound.Observe(bound.Sub(created).Seconds())
}

// IncCreationRateLimited counts one instance creation delayed by its namespace's creation rate
// limit.
func IncCreationRateLimited() {
	creationRateLimited.Inc()
}

// SetWarmNodes records the unclaimed warm nodes of a NodeClass by state.
func SetWarmNodes(nodeClass string, ready, booting int) {
	warmNodes.WithLabelValues(nodeClass, "ready").Set(float64(ready))
	warmNodes.WithLabelValues(nodeClass, "booting").Set(float64(booting))
}

// SetWarmOldestAge records the age of the oldest unclaimed warm node of a NodeClass.
func SetWarmOldestAge(nodeClass string, age time.Duration) {
	warmOldestAge.WithLabelValues(nodeClass).Set(age.Seconds())
}

// IncWarmClaims counts one warm node claimed.
func IncWarmClaims() { warmClaims.Inc() }

// AddWarmClaimMisses counts new nodes that booted cold although their NodeClass has a warm pool.
func AddWarmClaimMisses(n int) { warmClaimMisses.Add(float64(n)) }

// IncPlaced counts one Pod placed by the controller.
func IncPlaced() {
	podsPlaced.Inc()
}

// Limit names, the values of the limit label of ipp_limit_reached_total.
var limitNames = []string{"max-instances", "limits.instances", "limits.instancesPerNamespace", "maxNodesPerClass"}

// IncLimitReached counts one dedicated node that starts waiting for limit.
func IncLimitReached(limit string) {
	limitReached.WithLabelValues(limit).Inc()
}

// SetLimitWaiting records how many dedicated nodes a limit keeps waiting.
func SetLimitWaiting(n int) {
	limitWaiting.Set(float64(n))
}

// SetLeader records whether this replica leads the controller.
func SetLeader(leading bool) {
	if leading {
		leader.Set(1)
		return
	}
	leader.Set(0)
}

// SetServingCertificateExpiry records when the serving certificate in use expires.
func SetServingCertificateExpiry(notAfter time.Time) {
	servingCertExpiry.Set(float64(notAfter.Unix()))
}

// IncCertificateRotations counts one certificate issued and stored, of kind "ca" or "serving".
func IncCertificateRotations(kind string) {
	certRotations.WithLabelValues(kind).Inc()
}
