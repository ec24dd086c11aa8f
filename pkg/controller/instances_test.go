package controller

import (
	"testing"
	"time"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

func inst(node, id string, state cloudprovider.InstanceState) cloudprovider.Instance {
	return cloudprovider.Instance{NodeName: node, ID: id, ProviderID: "fake:///" + id, State: state, CreatedAt: t0}
}

func states(insts []cloudprovider.Instance) map[string]cloudprovider.InstanceState {
	out := map[string]cloudprovider.InstanceState{}
	for _, i := range insts {
		out[i.ID] = i.State
	}
	return out
}

func TestInstanceIndex(t *testing.T) {
	running, pending, stopping := cloudprovider.StateRunning, cloudprovider.StatePending, cloudprovider.StateStopping
	tests := []struct {
		name string
		run  func(x *instanceIndex)
		want map[string]cloudprovider.InstanceState
	}{
		{
			name: "List replaces",
			run: func(x *instanceIndex) {
				x.replace(x.beginList(t0), []cloudprovider.Instance{inst("n", "i-1", running)}, t0)
				x.replace(x.beginList(t0), []cloudprovider.Instance{inst("n", "i-2", running)}, t0)
			},
			want: map[string]cloudprovider.InstanceState{"i-2": running},
		},
		{
			name: "a create during a List survives it",
			run: func(x *instanceIndex) {
				tok := x.beginList(t0)
				x.add(inst("n", "i-1", pending), t0)
				x.replace(tok, nil, t0)
			},
			want: map[string]cloudprovider.InstanceState{"i-1": pending},
		},
		{
			name: "a List after a create is believed",
			run: func(x *instanceIndex) {
				x.add(inst("n", "i-1", pending), t0)
				x.replace(x.beginList(t0), nil, t0)
			},
			want: map[string]cloudprovider.InstanceState{},
		},
		{
			name: "a deleted instance is going while List still shows it",
			run: func(x *instanceIndex) {
				x.replace(x.beginList(t0), []cloudprovider.Instance{inst("n", "i-1", running)}, t0)
				x.remove(inst("n", "i-1", running), t0)
				x.replace(x.beginList(t0), []cloudprovider.Instance{inst("n", "i-1", running)}, t0)
			},
			want: map[string]cloudprovider.InstanceState{"i-1": stopping},
		},
		{
			name: "a delete during a List survives it",
			run: func(x *instanceIndex) {
				x.replace(x.beginList(t0), []cloudprovider.Instance{inst("n", "i-1", running)}, t0)
				tok := x.beginList(t0)
				x.remove(inst("n", "i-1", running), t0)
				x.replace(tok, []cloudprovider.Instance{inst("n", "i-1", running)}, t0)
			},
			want: map[string]cloudprovider.InstanceState{"i-1": stopping},
		},
		{
			name: "a tombstone expires",
			run: func(x *instanceIndex) {
				x.remove(inst("n", "i-1", running), t0)
				later := t0.Add(tombstoneTTL)
				x.replace(x.beginList(later), []cloudprovider.Instance{inst("n", "i-1", running)}, later)
			},
			want: map[string]cloudprovider.InstanceState{"i-1": running},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newInstanceIndex()
			tc.run(x)
			diff(t, "instances", tc.want, states(x.get("n")))
		})
	}
}

func TestInstanceIndexKeepsFirstSeenCreationTime(t *testing.T) {
	x := newInstanceIndex()
	i := inst("n", "i-1", cloudprovider.StateRunning)
	i.CreatedAt = time.Time{}
	x.replace(x.beginList(t0), []cloudprovider.Instance{i}, t0)
	x.replace(x.beginList(t0.Add(time.Hour)), []cloudprovider.Instance{i}, t0.Add(time.Hour))
	if got := x.get("n")[0].CreatedAt; !got.Equal(t0) {
		t.Errorf("CreatedAt = %v, want %v (first seen)", got, t0)
	}
}

func TestInstanceIndexChangedNames(t *testing.T) {
	x := newInstanceIndex()
	got := x.replace(x.beginList(t0), []cloudprovider.Instance{inst("a", "i-1", cloudprovider.StateRunning), inst("b", "i-2", cloudprovider.StateRunning)}, t0)
	diff(t, "changed", []string{"a", "b"}, got)
	got = x.replace(x.beginList(t0), []cloudprovider.Instance{inst("a", "i-1", cloudprovider.StateRunning)}, t0)
	diff(t, "changed", []string{"b"}, got)
	got = x.replace(x.beginList(t0), []cloudprovider.Instance{inst("a", "i-1", cloudprovider.StateRunning)}, t0)
	diff(t, "changed", []string(nil), got)
	if name, ok := x.nodeNameOf("fake:///i-1"); !ok || name != "a" {
		t.Errorf("nodeNameOf = %q, %v; want a", name, ok)
	}
}
