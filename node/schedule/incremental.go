package schedule

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kiln-cluster/kiln/node/unit"
)

// Incremental planning. Place plans the whole cluster; after a small change (a unit submitted,
// a machine gone) nearly all of that work gives the same answer again: every unit that is
// placed and still satisfied stays, and only the units without a machine are placed, in
// Place's order (after the units they follow, then by name), each on the least-loaded matching
// machine that holds no unit it must avoid (PlaceOne), global units where they fit (Fits). Index
// keeps between plans what that search needs, a heap of machines by (load, ID) per distinct
// MachineMetadata, so that placing one unit costs a few heap steps however large the cluster.
// The caller keeps the placements (Current) and tells the index which machines' loads may
// have dropped (Touch); rising loads are found when their stale entries come to the top.

// Current is the cluster as the caller keeps it between plans.
type Current interface {
	// Machine gives a machine's metadata; ok is false when it is gone.
	Machine(id string) (md map[string]string, ok bool)
	// Machines calls f for every machine (the index reads them once per MachineMetadata).
	Machines(f func(id string, md map[string]string))
	// NumMachines is the number of machines.
	NumMachines() int
	// On gives the units placed on a machine: its load is their number. The kept units come
	// first, by (global, name) as Place keeps them, then the units placed since, in order. The
	// slice is valid until the next call.
	On(id string) []*Unit
	// Placed gives a unit that is planned (nil when there is none) and the machines it is
	// placed on, sorted.
	Placed(name string) (*Unit, []string)
}

// Index finds the least-loaded machine for one unit at a time. The zero value is ready.
type Index struct {
	sets map[string]*machineSet // by MachineMetadata.String()
	seen map[string]bool        // a search's machines already looked at
}

// machineSet is the machines that match one MachineMetadata, sorted, and their heap.
type machineSet struct {
	md   unit.Metadata
	ids  []string
	heap minHeap[entry]
}

// entry is a machine and its load when the entry was pushed; entries whose load is no longer
// the machine's, or whose machine is gone or no longer matches, are stale.
type entry struct {
	load int
	id   string
}

func (a entry) less(b entry) bool { return a.load < b.load || (a.load == b.load && a.id < b.id) }

// Reset forgets every machine set (after machines' metadata changed).
func (x *Index) Reset() { x.sets = nil }

// Touch tells the index that a machine came, went, or that its load may have dropped.
func (x *Index) Touch(cur Current, id string) {
	md, exists := cur.Machine(id)
	for _, s := range x.sets {
		i, member := slices.BinarySearch(s.ids, id)
		match := exists && s.md.Match(md)
		switch {
		case match && !member:
			s.ids = slices.Insert(s.ids, i, id)
		case !match && member:
			s.ids = slices.Delete(s.ids, i, i+1)
		}
		if match {
			s.heap.push(entry{len(cur.On(id)), id})
			x.compact(cur, s)
		}
	}
}

// set gives the machine set of u's MachineMetadata, reading every machine the first time.
func (x *Index) set(cur Current, u *Unit) *machineSet {
	key := u.Fleet.Metadata.String()
	if s, ok := x.sets[key]; ok {
		return s
	}
	if x.sets == nil {
		x.sets = map[string]*machineSet{}
	}
	s := &machineSet{md: u.Fleet.Metadata}
	cur.Machines(func(id string, md map[string]string) {
		if u.Fleet.Metadata.Match(md) {
			s.ids = append(s.ids, id)
		}
	})
	slices.Sort(s.ids)
	s.heap = make(minHeap[entry], 0, len(s.ids))
	for _, id := range s.ids {
		s.heap.push(entry{len(cur.On(id)), id})
	}
	x.sets[key] = s
	return s
}

// compact drops the stale entries when they outnumber the machines.
func (x *Index) compact(cur Current, s *machineSet) {
	if len(s.heap) < 2*len(s.ids)+1024 {
		return
	}
	s.heap = s.heap[:0]
	for _, id := range s.ids {
		s.heap.push(entry{len(cur.On(id)), id})
	}
}

// blockedBy names the first of the units on a machine that u must not share it with, or "".
func blockedBy(on []*Unit, u *Unit) string {
	for _, b := range on {
		if b.Name != u.Name && excludes(u, b) {
			return b.Name
		}
	}
	return ""
}

// PlaceOne gives the machine Place would put u on, cur being the cluster with every other unit
// where it stays, or why there is none. u is on no machine now and is not global; the units
// it follows (MachineOf) are placed already, and no unit has Replaces (the caller plans those
// with Place). The caller puts u on the machine.
func (x *Index) PlaceOne(cur Current, u *Unit) (string, *Unplaced) {
	fail := func(err error, format string, args ...any) (string, *Unplaced) {
		return "", &Unplaced{Unit: u.Name, Err: err, Reason: fmt.Sprintf(format, args...)}
	}
	if cur.NumMachines() == 0 {
		return fail(ErrNoMachines, "no machines in the cluster")
	}
	if u.Fleet.MachineID != "" || len(u.Fleet.MachineOf) > 0 {
		return x.placeAmong(cur, u)
	}
	s := x.set(cur, u)
	if len(s.ids) == 0 {
		return fail(ErrMetadata, "no machine matches MachineMetadata %s", u.Fleet.Metadata)
	}
	if x.seen == nil {
		x.seen = map[string]bool{}
	}
	clear(x.seen)
	var stash []entry
	best := ""
	for len(s.heap) > 0 {
		e := s.heap.pop()
		if x.seen[e.id] {
			continue // a second entry of a machine already looked at
		}
		md, ok := cur.Machine(e.id)
		if !ok || !u.Fleet.Metadata.Match(md) {
			continue // gone, or no longer matching: Touch removed it from the set
		}
		on := cur.On(e.id)
		if len(on) != e.load {
			s.heap.push(entry{len(on), e.id}) // stale: its load rose since
			continue
		}
		x.seen[e.id] = true
		if blockedBy(on, u) != "" {
			stash = append(stash, e)
			continue
		}
		best = e.id
		s.heap.push(entry{e.load + 1, e.id}) // with u, which the caller puts there
		break
	}
	for _, e := range stash {
		s.heap.push(e)
	}
	if best != "" {
		return best, nil
	}
	// every matching machine holds a unit u must avoid: name the first few, by machine ID
	var parts []string
	for _, id := range s.ids {
		if len(parts) == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, blockedBy(cur.On(id), u)+" on "+id)
	}
	return "", conflicted(u.Name, len(s.ids), parts)
}

// placeAmong places a unit whose MachineID or MachineOf name its candidates, as Place does.
func (x *Index) placeAmong(cur Current, u *Unit) (string, *Unplaced) {
	fail := func(err error, format string, args ...any) (string, *Unplaced) {
		return "", &Unplaced{Unit: u.Name, Err: err, Reason: fmt.Sprintf(format, args...)}
	}
	var cands []string
	restricted := false
	if id := u.Fleet.MachineID; id != "" {
		if _, ok := cur.Machine(id); !ok {
			return fail(ErrMachineID, "no machine has MachineID %s", id)
		}
		cands, restricted = []string{id}, true
	}
	for k, peer := range u.Fleet.MachineOf {
		pu, on := cur.Placed(peer)
		switch {
		case pu == nil:
			return fail(ErrMachineOf, "MachineOf unit %s does not exist", peer)
		case len(on) == 0:
			return fail(ErrMachineOf, "MachineOf unit %s is not scheduled", peer)
		}
		if !restricted {
			cands, restricted = slices.Clone(on), true
			continue
		}
		cands = slices.DeleteFunc(cands, func(m string) bool { return !slices.Contains(on, m) })
		if len(cands) == 0 {
			return "", peersApart(u, k)
		}
	}
	matching := cands[:0:0]
	for _, id := range cands {
		if md, _ := cur.Machine(id); u.Fleet.Metadata.Match(md) {
			matching = append(matching, id)
		}
	}
	if len(matching) == 0 {
		return "", mismatch(u, len(cands), cands[0])
	}
	best, bestLoad := "", 0
	for _, id := range matching {
		on := cur.On(id)
		if best != "" && len(on) >= bestLoad {
			continue // only a less loaded machine can win
		}
		if blockedBy(on, u) == "" {
			best, bestLoad = id, len(on)
		}
	}
	if best != "" {
		return best, nil
	}
	var parts []string
	for _, id := range matching {
		if len(parts) == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, blockedBy(cur.On(id), u)+" on "+id)
	}
	return "", conflicted(u.Name, len(matching), parts)
}

// Fits tells whether a global unit may be put on a machine where it is not: the machine
// matches its MachineMetadata and holds no unit it must avoid.
func Fits(cur Current, u *Unit, id string) bool {
	md, ok := cur.Machine(id)
	return ok && u.Fleet.Metadata.Match(md) && blockedBy(cur.On(id), u) == ""
}

// keptOrder sorts units as Place keeps them: units that are not global first, then by name.
func keptOrder(a, b *Unit) int {
	if a.Fleet.Global != b.Fleet.Global {
		if a.Fleet.Global {
			return 1
		}
		return -1
	}
	return strings.Compare(a.Name, b.Name)
}

// SortKept sorts a machine's kept units in the order Current.On gives them.
func SortKept(units []*Unit) { slices.SortFunc(units, keptOrder) }
