package controller

import (
	"sort"
	"sync"
	"time"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// tombstoneTTL bounds how long an instance that the controller deleted is treated as going even
// though List still shows it as live. After that the controller believes List again, so a
// deletion that the cloud accepted but never carried out is retried.
const tombstoneTTL = 10 * time.Minute

// instanceIndex is the controller's view of the provider's instances, by dedicated node name.
//
// It is rebuilt from every successful List, so it is never the only record of anything. Create and
// Delete results go into it at once, so the next reconcile does not create twice or wait for the
// next List; a List that started before such a change does not undo it.
type instanceIndex struct {
	mu sync.Mutex
	// seq counts local changes (creates and deletes), so that a List can tell which of them it
	// may already reflect.
	seq    uint64
	byNode map[string][]cloudprovider.Instance
	// created holds instances that Create returned and no List has shown yet.
	created map[string]localChange
	// deleted holds tombstones of instances the controller deleted, by ID, until a List no
	// longer shows them. A tombstone covers only the instance deleted: GCE names its instances
	// after their dedicated node, so an instance created again after a deletion (a registration
	// timeout, a class coming back after its node was reaped) has the deleted one's ID, and
	// differs from it only by its creation time.
	deleted map[string]localChange
	synced  bool
	// listStart is when the last successful List started: a Node created before it and matching
	// no listed instance matches no instance at all.
	listStart time.Time
}

type localChange struct {
	seq  uint64
	at   time.Time
	inst cloudprovider.Instance
}

func newInstanceIndex() *instanceIndex {
	return &instanceIndex{
		byNode:  map[string][]cloudprovider.Instance{},
		created: map[string]localChange{},
		deleted: map[string]localChange{},
	}
}

// listToken is taken before a List and handed back with its result.
type listToken struct {
	seq   uint64
	start time.Time
}

func (x *instanceIndex) beginList(now time.Time) listToken {
	x.mu.Lock()
	defer x.mu.Unlock()
	return listToken{seq: x.seq, start: now}
}

// replace rebuilds the index from a List that started at tok, and returns the node names whose
// instances changed (including names that disappeared).
func (x *instanceIndex) replace(tok listToken, listed []cloudprovider.Instance, now time.Time) []string {
	x.mu.Lock()
	defer x.mu.Unlock()

	seen := make(map[string]bool, len(listed))
	byNode := map[string][]cloudprovider.Instance{}
	for _, inst := range listed {
		seen[inst.ID] = true
		if inst.CreatedAt.IsZero() {
			// The timeouts count from creation; without the cloud's time, count from when
			// the controller first saw the instance.
			inst.CreatedAt = x.firstSeen(inst, now)
		}
		if t, ok := x.deleted[inst.ID]; ok {
			switch {
			case recreated(t.inst, inst):
				// A new instance under the deleted one's ID: the deleted one is gone.
				delete(x.deleted, inst.ID)
			case now.Sub(t.at) < tombstoneTTL:
				inst.State = going(inst.State)
			default:
				delete(x.deleted, inst.ID)
			}
		}
		byNode[inst.NodeName] = append(byNode[inst.NodeName], inst)
	}
	for id, c := range x.created {
		switch {
		case seen[id]:
			delete(x.created, id)
		case c.seq > tok.seq:
			// Created while the List ran: the List could not show it yet.
			inst := c.inst
			if t, gone := x.deleted[id]; gone && t.seq > c.seq {
				// Deleted after it was created; a tombstone older than the creation is that
				// of an earlier instance under the same ID.
				inst.State = going(inst.State)
			}
			byNode[inst.NodeName] = append(byNode[inst.NodeName], inst)
		default:
			// A List that started after the creation does not show it. Believe the List: if
			// the instance exists after all, Create with the same idempotency key returns it.
			delete(x.created, id)
		}
	}
	for id, t := range x.deleted {
		if !seen[id] && t.seq <= tok.seq {
			delete(x.deleted, id) // gone
		}
	}
	for _, insts := range byNode {
		cloudprovider.SortInstances(insts)
	}

	var changed []string
	for name, insts := range byNode {
		if !sameInstances(x.byNode[name], insts) {
			changed = append(changed, name)
		}
	}
	for name := range x.byNode {
		if _, ok := byNode[name]; !ok {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	x.byNode = byNode
	x.synced = true
	x.listStart = tok.start
	return changed
}

// firstSeen returns the creation time the index already has for inst, or now.
func (x *instanceIndex) firstSeen(inst cloudprovider.Instance, now time.Time) time.Time {
	for _, i := range x.byNode[inst.NodeName] {
		if i.ID == inst.ID && !i.CreatedAt.IsZero() {
			return i.CreatedAt
		}
	}
	return now
}

// add records an instance that Create returned.
func (x *instanceIndex) add(inst cloudprovider.Instance, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t, ok := x.deleted[inst.ID]; ok && recreated(t.inst, inst) {
		delete(x.deleted, inst.ID)
	}
	x.seq++
	x.created[inst.ID] = localChange{seq: x.seq, at: now, inst: inst}
	insts := x.byNode[inst.NodeName]
	out := make([]cloudprovider.Instance, 0, len(insts)+1)
	for _, i := range insts {
		if i.ID != inst.ID {
			out = append(out, i)
		}
	}
	out = append(out, inst)
	cloudprovider.SortInstances(out)
	x.byNode[inst.NodeName] = out
}

// remove records that the controller deleted inst: it counts as going from now on.
func (x *instanceIndex) remove(inst cloudprovider.Instance, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.seq++
	x.deleted[inst.ID] = localChange{seq: x.seq, at: now, inst: inst}
	insts := x.byNode[inst.NodeName]
	out := make([]cloudprovider.Instance, len(insts))
	for i, in := range insts {
		if in.ID == inst.ID {
			in.State = going(in.State)
		}
		out[i] = in
	}
	x.byNode[inst.NodeName] = out
}

// get returns a copy of the instances of a dedicated node, oldest first.
func (x *instanceIndex) get(name string) []cloudprovider.Instance {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]cloudprovider.Instance(nil), x.byNode[name]...)
}

// liveInstances returns a copy of every live instance in the index.
func (x *instanceIndex) liveInstances() []cloudprovider.Instance {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []cloudprovider.Instance
	for _, insts := range x.byNode {
		for _, inst := range insts {
			if live(inst) {
				out = append(out, inst)
			}
		}
	}
	return out
}

// nodeNameOf returns the dedicated node name of the instance with providerID, if any.
func (x *instanceIndex) nodeNameOf(providerID string) (string, bool) {
	if providerID == "" {
		return "", false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for name, insts := range x.byNode {
		for _, inst := range insts {
			if inst.ProviderID == providerID {
				return name, true
			}
		}
	}
	return "", false
}

// ofJoinToken returns the live instance whose join token id is id, if any.
func (x *instanceIndex) ofJoinToken(id string) (cloudprovider.Instance, bool) {
	if id == "" {
		return cloudprovider.Instance{}, false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, insts := range x.byNode {
		for _, inst := range insts {
			if inst.JoinTokenID == id && live(inst) {
				return inst, true
			}
		}
	}
	return cloudprovider.Instance{}, false
}

// joinTokens returns the join token ids that the indexed instances carry, each mapped to
// whether a live instance carries it.
func (x *instanceIndex) joinTokens() map[string]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]bool{}
	for _, insts := range x.byNode {
		for _, inst := range insts {
			if inst.JoinTokenID != "" {
				out[inst.JoinTokenID] = out[inst.JoinTokenID] || live(inst)
			}
		}
	}
	return out
}

// deletedByController reports whether the controller deleted the instance with id and a List
// may not show that yet.
func (x *instanceIndex) deletedByController(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.deleted[id]
	return ok
}

// hasSynced reports whether a List has succeeded, and when the last one started.
func (x *instanceIndex) hasSynced() (bool, time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.synced, x.listStart
}

// recreated reports whether cur is another instance than old under the same ID: one created at
// another time. Without both creation times it cannot tell, and says no.
func recreated(old, cur cloudprovider.Instance) bool {
	return !old.CreatedAt.IsZero() && !cur.CreatedAt.IsZero() && !cur.CreatedAt.Equal(old.CreatedAt)
}

// live reports whether inst counts as the dedicated node's instance: it exists and is not being
// deleted. A stopped instance is live: it is ours, it blocks its name, and the timeouts apply.
func live(inst cloudprovider.Instance) bool {
	return inst.State != cloudprovider.StateStopping && inst.State != cloudprovider.StateTerminated
}

// going maps a state to Stopping unless it is already past that.
func going(s cloudprovider.InstanceState) cloudprovider.InstanceState {
	if s == cloudprovider.StateTerminated {
		return s
	}
	return cloudprovider.StateStopping
}

func sameInstances(a, b []cloudprovider.Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].State != b[i].State || a[i].ProviderID != b[i].ProviderID || !a[i].CreatedAt.Equal(b[i].CreatedAt) {
			return false
		}
	}
	return true
}
