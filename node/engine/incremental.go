package engine

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/schedule"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Incremental planning. A full plan (schedule.Place over every unit) costs time in proportion
// to the cluster; after one unit is submitted or one machine dies, it gives every other unit
// the place it has. So the state notes what changed since the last plan, and the next plan
// looks only at the units concerned: the changed ones, those of machines that went or got a
// new lease, those waiting for a machine, the units that follow (MachineOf) any of these that
// moves or goes, and, when room was freed or a machine came, those that fit nowhere. They are
// placed after the units they follow, then in name order, each where Place would put it
// (schedule.Index), which gives Place's placements: Place keeps every unit that is placed and
// still satisfied, then places the others in that order.
//
// A full plan runs instead after a read of the cluster, on every tick (a safety net), and for
// the changes whose effects reach other units in ways the incremental plan does not follow: a
// machine's metadata, a placed unit's [X-Fleet], global units when room is freed or a machine
// comes, any unit with Replaces in the cluster, a MachineOf cycle, a placement written by
// another, more than maxRetry units to try again.

// maxRetry is how many units that fit nowhere an incremental plan tries again (after room was
// freed); with more, a full plan is cheaper (Place fails alike units at once).
const maxRetry = 256

// incremental is what the state notes between plans.
type incremental struct {
	// full asks for a full plan next; reset drops the index's machine sets then (metadata)
	full, reset bool
	// changed are the units whose record changed or went since the last plan, as they were
	changed map[string]prior
	// lost are units whose placement someone else deleted, and the machines
	lost map[string][]string
	// machines that came, went, or got a new lease since the last plan
	newM, goneM, leaseM map[string]bool
	// touched are machines whose placements changed: the index learns their load
	touched map[string]bool
	// failed are the units the last plans could not place (or plan), with the reason
	failed map[string]string
	// waiting are units placed but not written (and where): another machine still runs them
	waiting map[string]string
	// globals and replacing are the parsed, scheduled units that are global, and those with
	// Replaces; dependents are the units that follow each unit with MachineOf
	globals, replacing map[string]bool
	dependents         map[string]map[string]bool
	index              schedule.Index
}

// prior is a changed unit as the last plan saw it.
type prior struct {
	fleet   unit.Fleet
	counted bool // it was planned (scheduled, parsed without a problem)
}

func newIncremental() incremental {
	return incremental{
		full: true, changed: map[string]prior{}, lost: map[string][]string{},
		newM: map[string]bool{}, goneM: map[string]bool{}, leaseM: map[string]bool{}, touched: map[string]bool{},
		failed: map[string]string{}, waiting: map[string]string{}, globals: map[string]bool{}, replacing: map[string]bool{},
		dependents: map[string]map[string]bool{},
	}
}

// parsed notes what a unit's [X-Fleet] asks that the incremental plan must know.
func (in *incremental) parsed(u *unitEntry) {
	if !u.rec.DesiredState.Scheduled() {
		return
	}
	name := u.rec.Name
	if u.sched.Fleet.Global {
		in.globals[name] = true
		return // MachineOf and Replaces do not apply
	}
	if len(u.sched.Fleet.Replaces) > 0 {
		in.replacing[name] = true
	}
	for _, peer := range u.sched.Fleet.MachineOf {
		if in.dependents[peer] == nil {
			in.dependents[peer] = map[string]bool{}
		}
		in.dependents[peer][name] = true
	}
}

// planned notes the outcome of a full plan: nothing is pending any more.
func (in *incremental) planned(reasons map[string]string, waiting map[string]string) {
	in.failed = maps.Clone(reasons)
	in.waiting = waiting
	in.forget()
	if in.reset {
		in.index.Reset()
	}
	in.full, in.reset = false, false
}

// forget starts the notes of the next plan: the machines that came, went or got a new lease
// are touched (the index learns of them at the next incremental plan). The maps are new ones:
// a cleared map keeps its size, and walking it costs as much as when it was full (after a full
// plan's writes, one entry per machine).
func (in *incremental) forget() {
	for _, ms := range []map[string]bool{in.newM, in.goneM, in.leaseM} {
		for m := range ms {
			in.touched[m] = true
		}
	}
	in.changed, in.lost = map[string]prior{}, map[string][]string{}
	in.newM, in.goneM, in.leaseM = map[string]bool{}, map[string]bool{}, map[string]bool{}
}

// unitChanged notes that a unit's record is about to change or go.
func (st *state) unitChanged(name string) {
	e, known := st.units[name]
	// (a full plan comes next, after a read of the cluster among others: no need to note)
	if _, ok := st.inc.changed[name]; !ok && !st.inc.full {
		var p prior
		if known {
			p = prior{fleet: e.sched.Fleet, counted: e.parsed && e.problem == "" && e.rec.DesiredState.Scheduled()}
		}
		st.inc.changed[name] = p
	}
	delete(st.inc.globals, name)
	delete(st.inc.replacing, name)
	if known {
		for _, peer := range e.sched.Fleet.MachineOf {
			if delete(st.inc.dependents[peer], name); len(st.inc.dependents[peer]) == 0 {
				delete(st.inc.dependents, peer)
			}
		}
	}
}

// placementChanged notes a placement written or deleted: by the engine (own), or by another
// (a deletion makes the unit look for a machine; a write asks for a full plan).
func (st *state) placementChanged(m, u string, deleted bool) {
	st.inc.touched[m] = true
	switch {
	case st.own:
	case deleted:
		st.inc.lost[u] = append(st.inc.lost[u], m)
	default:
		st.inc.full = true
	}
}

// planned gives the unit as the scheduler sees it, or nil when it is not planned (unknown,
// not scheduled, or its file missing or invalid).
func (st *state) planned(name string) *schedule.Unit {
	e := st.units[name]
	if e == nil || !e.rec.DesiredState.Scheduled() {
		return nil
	}
	st.parse(e)
	if e.problem != "" {
		return nil
	}
	return &e.sched
}

// live gives how many live machines a unit is placed on.
func (st *state) live(name string) int {
	n := 0
	for _, m := range st.placedOn[name] {
		if _, ok := st.machines[m]; ok {
			n++
		}
	}
	return n
}

// planIncremental plans what changed since the last plan; ok is false when a full plan must
// run instead (nothing in the state changed then).
func (st *state) planIncremental() (first, second []op, sum summary, ok bool) {
	in := &st.inc
	if in.full {
		return nil, nil, sum, false
	}
	for name := range in.changed {
		st.planned(name) // parse: what the units ask decides
	}
	if len(in.replacing) > 0 {
		return nil, nil, sum, false
	}

	// The units this plan reviews; those among them it places (pending), and those it takes
	// off their machine to place again (unseated: they follow a unit that moves or goes).
	affected := map[string]bool{}
	pending := map[string]bool{}
	unseat := map[string]bool{}
	var moving []string // units that leave, or look for, a machine: their dependents follow
	homeless := false   // a global unit on no machine
	needs := func(name string) {
		affected[name] = true
		su := st.planned(name)
		switch {
		case su == nil || st.live(name) > 0 || pending[name]:
		case su.Fleet.Global:
			homeless = true
		default:
			pending[name] = true
			moving = append(moving, name)
		}
	}
	// the machines where room was freed, or that came: global units may fit there now
	freedOn := map[string]bool{}
	gone := false // a machine went: the reasons of the units that fit nowhere change
	freeing := func(name string) {
		for _, m := range st.placedOn[name] {
			if _, live := st.machines[m]; live {
				freedOn[m] = true
			}
		}
	}
	for name, pr := range in.changed {
		su := st.planned(name)
		live := st.live(name)
		if pr.fleet.Global || (su != nil && su.Fleet.Global) {
			return nil, nil, sum, false
		}
		switch {
		case su == nil:
			if pr.counted {
				freeing(name)
			}
			moving = append(moving, name)
		case live > 1 || (live == 1 && (!pr.counted || !reflect.DeepEqual(pr.fleet, su.Fleet))):
			return nil, nil, sum, false // whether it stays, and what it displaces, is Place's to say
		}
		needs(name)
	}
	for name, ms := range in.lost {
		if su := st.planned(name); su != nil && su.Fleet.Global {
			return nil, nil, sum, false
		}
		for _, m := range ms {
			if _, live := st.machines[m]; live {
				freedOn[m] = true
			}
		}
		moving = append(moving, name)
		needs(name)
	}
	for _, ms := range []map[string]bool{in.newM, in.goneM, in.leaseM} {
		for m := range ms {
			if _, exists := st.machines[m]; exists {
				if in.newM[m] {
					if len(st.placements[m]) > 0 {
						return nil, nil, sum, false // back under a new registration: does it still fit them?
					}
					freedOn[m] = true
				}
				for name := range st.placements[m] {
					affected[name] = true // their lease
				}
				continue
			}
			gone = true
			for name := range st.placements[m] {
				needs(name) // (a global unit stays on its other machines, and its dependents)
			}
		}
	}
	for name, m := range in.waiting {
		// placed by the last plan where they were not written: that place is free again
		if _, live := st.machines[m]; live {
			freedOn[m] = true
		}
		needs(name)
	}
	// the units that follow a moving unit move with it (Place keeps them only where it is):
	// they leave their machine, which frees room
	follow := func() {
		for k := 0; k < len(moving); k++ {
			for d := range in.dependents[moving[k]] {
				if st.planned(d) == nil || unseat[d] || pending[d] {
					continue
				}
				affected[d] = true
				if st.live(d) > 0 {
					unseat[d] = true
					freeing(d)
				} else {
					pending[d] = true
				}
				moving = append(moving, d)
			}
		}
	}
	follow()
	if len(freedOn) > 0 || gone {
		n := 0
		for name := range in.failed {
			if st.planned(name) != nil {
				n++
			}
		}
		if n > maxRetry {
			return nil, nil, sum, false
		}
		for name := range in.failed {
			needs(name)
		}
		follow()
	}
	if homeless {
		return nil, nil, sum, false // Place says why it fits nowhere
	}
	// Place's order: units after those they follow, then by name
	order := slices.Collect(maps.Keys(pending))
	order = append(order, slices.Collect(maps.Keys(unseat))...)
	depth := map[string]int{}
	for _, name := range order {
		if st.depth(name, depth, map[string]bool{}) < 0 {
			return nil, nil, sum, false // a MachineOf cycle: Place reports it
		}
	}
	slices.SortFunc(order, func(a, b string) int {
		if c := cmp.Compare(depth[a], depth[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})

	// place them where Place would: depth by depth, global units after the others of depth 0
	v := &view{st: st, unseat: unseat, added: map[string][]*schedule.Unit{}, placed: map[string][]string{}}
	for _, ms := range []map[string]bool{in.newM, in.goneM, in.leaseM, freedOn} {
		for m := range ms {
			in.touched[m] = true // their load may have dropped
		}
	}
	for name := range unseat {
		for _, m := range st.placedOn[name] {
			in.touched[m] = true
		}
	}
	for m := range in.touched {
		in.index.Touch(v, m)
	}
	in.touched = map[string]bool{}
	desired := map[string][]string{}
	put := func(name string, su *schedule.Unit, m string) {
		v.added[m] = append(v.added[m], su)
		v.placed[name] = append(v.placed[name], m)
		if !su.Fleet.Global && !slices.Contains(st.placedOn[name], m) && st.runsElsewhere(name, m) {
			in.waiting[name] = m
			in.touched[m] = true // not written: its load drops back
			return
		}
		desired[name] = append(desired[name], m)
	}
	globals := len(freedOn) == 0 // placed (on the freed machines), or nothing to do
	placeGlobals := func() {
		globals = true
		machines := slices.Sorted(maps.Keys(freedOn))
		for _, name := range slices.Sorted(maps.Keys(in.globals)) {
			su := st.planned(name)
			if su == nil {
				continue
			}
			_, on := v.Placed(name)
			for _, m := range machines {
				if !slices.Contains(on, m) && schedule.Fits(v, su, m) {
					affected[name] = true
					put(name, su, m)
				}
			}
		}
	}
	for _, name := range order {
		if depth[name] > 0 && !globals {
			placeGlobals()
		}
		su := st.planned(name)
		delete(in.waiting, name)
		m, un := in.index.PlaceOne(v, su)
		if un != nil {
			in.failed[name] = un.Reason
			continue
		}
		delete(in.failed, name)
		put(name, su, m)
	}
	if !globals {
		placeGlobals()
	}

	// the writes of the units reviewed
	for name := range affected {
		e, su := st.units[name], st.planned(name)
		switch {
		case su != nil && st.live(name) > 0 && !unseat[name]:
			delete(in.failed, name)
		case su == nil && e != nil && e.rec.DesiredState.Scheduled():
			in.failed[name] = e.problem
		case su == nil:
			delete(in.failed, name)
			delete(in.waiting, name)
		}
		want := desired[name]
		for _, m := range st.placedOn[name] {
			cur := st.placements[m][name]
			me, live := st.machines[m]
			if su == nil || !live || (unseat[name] && !slices.Contains(want, m)) {
				first = append(first, op{key: keys.Placement(m, name), rev: cur.rev, del: true})
				sum.unschedule++
				continue
			}
			want = slices.DeleteFunc(slices.Clone(want), func(x string) bool { return x == m }) // stays
			a := keys.Assignment{Unit: name, Hash: e.rec.Hash, State: e.rec.DesiredState, Lease: me.lease}
			if !cur.ok || a != cur.a {
				raw, _ := encode(a)
				second = append(second, op{key: keys.Placement(m, name), val: raw, rev: cur.rev})
				sum.update++
			}
		}
		for _, m := range want {
			raw, _ := encode(keys.Assignment{Unit: name, Hash: e.rec.Hash, State: e.rec.DesiredState, Lease: st.machines[m].lease})
			second = append(second, op{key: keys.Placement(m, name), val: raw})
			sum.schedule++
		}
		cur, recorded := st.unplaced[name]
		reason, failed := in.failed[name]
		switch {
		case failed:
			raw, _ := encode(keys.UnplacedReason{Unit: name, Reason: reason})
			if !recorded || cur.val != raw {
				second = append(second, op{key: keys.UnplacedUnit(name), val: raw, rev: cur.rev})
				sum.unplaced++
			}
		case recorded:
			first = append(first, op{key: keys.UnplacedUnit(name), rev: cur.rev, del: true})
		}
	}
	in.forget()
	sum.reasons = len(in.failed)
	slices.SortFunc(first, byKey)
	slices.SortFunc(second, byKey)
	return first, second, sum, true
}

// depth is a unit's MachineOf depth as Place orders units (its peers' depth and one), or -1
// on a cycle.
func (st *state) depth(name string, memo map[string]int, visiting map[string]bool) int {
	if d, ok := memo[name]; ok {
		return d
	}
	su := st.planned(name)
	if su == nil {
		return 0
	}
	if visiting[name] {
		return -1
	}
	visiting[name] = true
	d := 0
	for _, peer := range su.Fleet.MachineOf {
		if st.planned(peer) == nil {
			continue
		}
		pd := st.depth(peer, memo, visiting)
		if pd < 0 {
			return -1
		}
		d = max(d, pd+1)
	}
	delete(visiting, name)
	memo[name] = d
	return d
}

// view is the cluster as schedule.Index reads it: the state's placements of planned units, and
// those this plan made.
type view struct {
	st     *state
	unseat map[string]bool             // units that are not kept where they are
	added  map[string][]*schedule.Unit // by machine
	placed map[string][]string         // the machines each unit was put on
	buf    []*schedule.Unit
}

func (v *view) Machine(id string) (map[string]string, bool) {
	m, ok := v.st.machines[id]
	return m.meta, ok
}

func (v *view) Machines(f func(id string, md map[string]string)) {
	for id, m := range v.st.machines {
		f(id, m.meta)
	}
}

func (v *view) NumMachines() int { return len(v.st.machines) }

// On gives the machine's units in a buffer that the next call reuses.
func (v *view) On(id string) []*schedule.Unit {
	out := v.buf[:0]
	for name := range v.st.placements[id] {
		if su := v.st.planned(name); su != nil && !v.unseat[name] {
			out = append(out, su)
		}
	}
	schedule.SortKept(out)
	out = append(out, v.added[id]...)
	v.buf = out
	return out
}

func (v *view) Placed(name string) (*schedule.Unit, []string) {
	su := v.st.planned(name)
	if su == nil {
		return nil, nil
	}
	var on []string
	if !v.unseat[name] {
		for _, m := range v.st.placedOn[name] {
			if _, live := v.st.machines[m]; live {
				on = append(on, m)
			}
		}
	}
	for _, m := range v.placed[name] {
		if !slices.Contains(on, m) {
			on = append(on, m)
		}
	}
	slices.Sort(on)
	return su, on
}
