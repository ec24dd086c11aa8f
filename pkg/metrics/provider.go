package metrics

import (
	"context"
	"errors"
	"time"

	"k8s.io/utils/clock"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// Outcomes of a provider call, the values of the outcome label of ipp_provider_calls_total.
const (
	OutcomeSuccess     = "success"
	OutcomeNotFound    = "not_found"
	OutcomeRateLimited = "rate_limited"
	OutcomeCapacity    = "capacity"
	OutcomeQuota       = "quota"
	OutcomeTransient   = "transient"
	OutcomeInvalid     = "invalid"
	// OutcomeCanceled is a call cut short by its context (cancelled or past its deadline).
	OutcomeCanceled = "canceled"
	// OutcomeError is an error that carries no cloudprovider kind.
	OutcomeError = "error"
)

// Outcome maps a provider call's error to its outcome label.
func Outcome(err error) string {
	if err == nil {
		return OutcomeSuccess
	}
	switch cloudprovider.KindOf(err) {
	case cloudprovider.KindNotFound:
		return OutcomeNotFound
	case cloudprovider.KindRateLimited:
		return OutcomeRateLimited
	case cloudprovider.KindCapacity:
		return OutcomeCapacity
	case cloudprovider.KindQuota:
		return OutcomeQuota
	case cloudprovider.KindTransient:
		return OutcomeTransient
	case cloudprovider.KindInvalid:
		return OutcomeInvalid
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return OutcomeCanceled
	}
	return OutcomeError
}

// ObserveProviderCall records one call of operation ("create", "delete", "list") on provider with
// its error (nil for success) and duration.
func ObserveProviderCall(provider, operation string, err error, elapsed time.Duration) {
	providerCalls.WithLabelValues(provider, operation, Outcome(err)).Inc()
	providerDuration.WithLabelValues(provider, operation).Observe(elapsed.Seconds())
}

// instanceStates are the states ipp_instances reports; List never returns terminated instances.
var instanceStates = []cloudprovider.InstanceState{
	cloudprovider.StatePending,
	cloudprovider.StateRunning,
	cloudprovider.StateStopping,
	cloudprovider.StateStopped,
}

// SetInstances sets ipp_instances from a complete list of the instances this cluster owns.
func SetInstances(list []cloudprovider.Instance) {
	counts := make(map[cloudprovider.InstanceState]int, len(instanceStates))
	for _, inst := range list {
		counts[inst.State]++
	}
	for _, s := range instanceStates {
		instances.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// InstrumentProvider returns p with every call recorded in ipp_provider_calls_total and
// ipp_provider_call_duration_seconds, and ipp_instances set from every successful List. The
// controller needs no other change to report its provider calls.
func InstrumentProvider(p cloudprovider.Provider, clk clock.PassiveClock) cloudprovider.Provider {
	return &instrumented{Provider: p, clock: clk}
}

type instrumented struct {
	cloudprovider.Provider
	clock clock.PassiveClock
}

func (p *instrumented) Create(ctx context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	start := p.clock.Now()
	inst, err := p.Provider.Create(ctx, spec)
	ObserveProviderCall(p.Name(), "create", err, p.clock.Since(start))
	return inst, err
}

func (p *instrumented) Delete(ctx context.Context, instance cloudprovider.Instance) error {
	start := p.clock.Now()
	err := p.Provider.Delete(ctx, instance)
	ObserveProviderCall(p.Name(), "delete", err, p.clock.Since(start))
	return err
}

func (p *instrumented) List(ctx context.Context) ([]cloudprovider.Instance, error) {
	start := p.clock.Now()
	list, err := p.Provider.List(ctx)
	ObserveProviderCall(p.Name(), "list", err, p.clock.Since(start))
	if err == nil {
		SetInstances(list)
	}
	return list, err
}
