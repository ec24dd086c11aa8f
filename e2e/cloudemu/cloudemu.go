// Package cloudemu holds what the Compute and EC2 emulators share: how an emulated instance boots
// into a Node, and the faults a test can inject into either emulator.
package cloudemu

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// BootRequest describes an instance that has finished booting, in the terms a kubelet on it
// would see: its bootstrap (GCE startup-script metadata, EC2 user data) and the providerID the
// cloud gives it.
type BootRequest struct {
	// InstanceID is the cloud's identifier (GCE instance name, EC2 instance id).
	InstanceID string
	// ProviderID is gce://<project>/<zone>/<name> or aws:///<az>/<instance-id>.
	ProviderID string
	// Zone is the zone or availability zone.
	Zone string
	// Bootstrap is the rendered first-boot script, exactly as the provider sent it.
	Bootstrap string
}

// Booter turns booted instances into Nodes and stops them again. The e2e harness implements it
// with an emulated kubelet; emulator tests may use a recorder.
type Booter interface {
	// Boot is called once per instance, after the emulator's boot delay. The Booter must
	// register the Node only from what req says.
	Boot(ctx context.Context, req BootRequest) error
	// Shutdown is called when the instance is deleted: its kubelet stops.
	Shutdown(ctx context.Context, instanceID string)
}

// Faults are failures a test injects into an emulator. Rates are fractions of calls in [0, 1].
// The zero value injects nothing.
type Faults struct {
	// ErrorRate fails this fraction of calls with a 5xx before doing anything.
	ErrorRate float64
	// ThrottleRate fails this fraction of calls with the cloud's throttling error
	// (GCE 429 rateLimitExceeded, EC2 RequestLimitExceeded).
	ThrottleRate float64
	// CapacityRate fails this fraction of creations with the cloud's capacity error
	// (GCE ZONE_RESOURCE_POOL_EXHAUSTED, EC2 InsufficientInstanceCapacity).
	CapacityRate float64
	// LostReplyRate performs this fraction of mutating calls and then fails the reply
	// (a 5xx or a dropped connection), so the caller cannot know the action happened.
	LostReplyRate float64
	// NeverBoot, if set, is asked for each created instance; instances for which it returns true
	// never boot (their Node never registers).
	NeverBoot func(instanceName string) bool
}

// Injector draws faults. It is safe for concurrent use.
type Injector struct {
	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand
}

// NewInjector returns an Injector with no faults, drawing from a generator seeded with seed.
func NewInjector(seed uint64) *Injector {
	return &Injector{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Set replaces the faults.
func (in *Injector) Set(f Faults) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.faults = f
}

// Get returns the current faults.
func (in *Injector) Get() Faults {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.faults
}

// Draw reports whether an event of the given rate happens on this call.
func (in *Injector) Draw(rate float64) bool {
	if rate <= 0 {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rng.Float64() < rate
}

// BootDelay is how long an emulated instance takes from creation to its Boot call.
type BootDelay = time.Duration
