// Package fake implements cloudprovider.Provider in memory, for the controller's unit tests. It
// logs every call and can fail the next calls with injected errors. End-to-end tests do not use it:
// they run the real providers against emulators of the cloud APIs.
package fake

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// Call is one call made to the fake.
type Call struct {
	Op       string // "create", "delete" or "list"
	NodeName string
	Key      string // the IdempotencyKey of a create
}

// Provider is an in-memory cloudprovider.Provider.
type Provider struct {
	mu        sync.Mutex
	clock     clock.PassiveClock
	instances map[string]*cloudprovider.Instance // by ID
	byKey     map[string]string                  // IdempotencyKey -> ID
	nextID    int
	calls     []Call
	errs      map[string][]error // op -> errors returned by the next calls, one each

	// Timeout is what RegistrationTimeout returns.
	Timeout time.Duration
}

var _ cloudprovider.Provider = &Provider{}

// New returns an empty fake whose creation times come from clk.
func New(clk clock.PassiveClock) *Provider {
	return &Provider{
		clock:     clk,
		instances: map[string]*cloudprovider.Instance{},
		byKey:     map[string]string{},
		errs:      map[string][]error{},
		Timeout:   15 * time.Minute,
	}
}

// Name returns "fake".
func (p *Provider) Name() string { return "fake" }

// RegistrationTimeout returns p.Timeout.
func (p *Provider) RegistrationTimeout() time.Duration { return p.Timeout }

// FailNext makes the next call of op ("create", "delete", "list") return err, once. Calling it
// several times queues several errors.
func (p *Provider) FailNext(op string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs[op] = append(p.errs[op], err)
}

// Calls returns the calls made so far.
func (p *Provider) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// CallCount returns how many calls of op were made.
func (p *Provider) CallCount(op string) int {
	n := 0
	for _, c := range p.Calls() {
		if c.Op == op {
			n++
		}
	}
	return n
}

// Add puts an instance into the fake as if it had been created earlier.
func (p *Provider) Add(inst cloudprovider.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if inst.ID == "" {
		p.nextID++
		inst.ID = fmt.Sprintf("i-%d", p.nextID)
	}
	if inst.ProviderID == "" {
		inst.ProviderID = "fake:///" + inst.ID
	}
	p.instances[inst.ID] = &inst
}

// SetState sets the state of every instance of nodeName.
func (p *Provider) SetState(nodeName string, state cloudprovider.InstanceState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inst := range p.instances {
		if inst.NodeName == nodeName {
			inst.State = state
		}
	}
}

func (p *Provider) takeErr(op string) error {
	if q := p.errs[op]; len(q) > 0 {
		p.errs[op] = q[1:]
		return q[0]
	}
	return nil
}

// Create implements cloudprovider.Provider.
func (p *Provider) Create(_ context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, Call{Op: "create", NodeName: spec.NodeName, Key: spec.IdempotencyKey})
	if err := p.takeErr("create"); err != nil {
		return nil, err
	}
	if id, ok := p.byKey[spec.IdempotencyKey]; ok && spec.IdempotencyKey != "" {
		inst := *p.instances[id]
		return &inst, nil
	}
	for _, inst := range p.instances {
		if inst.NodeName == spec.NodeName && inst.State != cloudprovider.StateTerminated {
			out := *inst
			return &out, nil
		}
	}
	p.nextID++
	id := fmt.Sprintf("i-%d", p.nextID)
	inst := &cloudprovider.Instance{
		NodeName:   spec.NodeName,
		ID:         id,
		ProviderID: "fake:///" + id,
		Class:      spec.Class,
		Namespace:  spec.Namespace,
		State:      cloudprovider.StatePending,
		CreatedAt:  p.clock.Now(),

		JoinTokenID: spec.JoinTokenID,
		NodeClass:   spec.NodeClass,
	}
	p.instances[id] = inst
	if spec.IdempotencyKey != "" {
		p.byKey[spec.IdempotencyKey] = id
	}
	out := *inst
	return &out, nil
}

// Delete implements cloudprovider.Provider. It marks the instance terminated.
func (p *Provider) Delete(_ context.Context, instance cloudprovider.Instance) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, Call{Op: "delete", NodeName: instance.NodeName})
	if err := p.takeErr("delete"); err != nil {
		return err
	}
	if inst, ok := p.instances[instance.ID]; ok {
		inst.State = cloudprovider.StateTerminated
	}
	return nil
}

// List implements cloudprovider.Provider, sorted by node name then ID.
func (p *Provider) List(_ context.Context) ([]cloudprovider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, Call{Op: "list"})
	if err := p.takeErr("list"); err != nil {
		return nil, err
	}
	var out []cloudprovider.Instance
	for _, inst := range p.instances {
		if inst.State != cloudprovider.StateTerminated {
			out = append(out, *inst)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].NodeName != out[j].NodeName {
			return out[i].NodeName < out[j].NodeName
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}
