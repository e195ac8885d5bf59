// Package schedule decides where fleet-style units run: given the machines and the units
// (their [X-Fleet] requirements, desired state and current machine), Place computes every
// placement and the sorted actions that lead there. It is pure: no etcd, no clock, the same
// input always gives the same plan. The scheduler engine reads the cluster, calls Place and
// applies the actions with compare-and-swap.
//
// The rules are fleet's (engine/scheduler.go, agent/state.go), made deterministic:
//   - a unit stays where it is while its machine exists and still satisfies it;
//   - otherwise it goes to the matching machine with the fewest units, ties broken by the
//     smallest machine ID;
//   - MachineID pins, MachineMetadata filters (one key ORed, keys ANDed, !key=value excludes),
//     MachineOf follows the named units (in chains, peers first), Conflicts keeps apart
//     (either side's glob is enough), Global runs on every matching machine without a
//     conflicting unit, and Replaces keeps apart with priority: the replaced unit moves.
package schedule

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/kiln-cluster/kiln/node/unit"
)

// Machine is a machine of the cluster as the scheduler sees it.
type Machine struct {
	ID       string
	Metadata map[string]string
}

// Unit is a unit as the scheduler sees it.
type Unit struct {
	Name string
	// State is the desired state; only loaded and launched units get a machine.
	State unit.State
	// Fleet is the unit's [X-Fleet] section (unit.Unit.Fleet). For a global unit, MachineID,
	// MachineOf and Replaces are ignored (unit.Parse refuses them).
	Fleet unit.Fleet
	// Machines are the machines the unit is scheduled on now: none or one for a unit that is
	// not global, any number for a global one.
	Machines []string
}

// Placement is one unit on one machine.
type Placement struct {
	Unit    string
	Machine string
}

// ActionKind says what an action does.
type ActionKind string

const (
	// Unschedule takes a unit off a machine.
	Unschedule ActionKind = "unschedule"
	// Schedule puts a unit on a machine.
	Schedule ActionKind = "schedule"
)

// Action is one change from the current placements to the planned ones.
type Action struct {
	Kind    ActionKind
	Unit    string
	Machine string
	Reason  string
}

func (a Action) String() string {
	return fmt.Sprintf("%s %s on %s: %s", a.Kind, a.Unit, a.Machine, a.Reason)
}

// Unplaced is a unit that wants a machine and got none, with the reason.
type Unplaced struct {
	Unit   string
	Reason string
	// Err is one of the package's sentinel errors.
	Err error
}

// Error makes an Unplaced usable as an error: "unit: reason".
func (u Unplaced) Error() string { return u.Unit + ": " + u.Reason }

// Unwrap gives the sentinel.
func (u Unplaced) Unwrap() error { return u.Err }

// Plan is the outcome of Place.
type Plan struct {
	// Placements are every unit on every machine it should run on, sorted by unit, then
	// machine.
	Placements []Placement
	// Actions lead from the current placements to Placements: all unschedules first, then
	// the schedules, each sorted by unit, then machine.
	Actions []Action
	// Unplaced are the units that want a machine and fit nowhere, sorted by name.
	Unplaced []Unplaced
}

// UnitsOn gives the units planned on a machine, sorted.
func (p *Plan) UnitsOn(machineID string) []string {
	var out []string
	for _, pl := range p.Placements {
		if pl.Machine == machineID {
			out = append(out, pl.Unit)
		}
	}
	return out
}

// MachinesOf gives the machines a unit is planned on, sorted.
func (p *Plan) MachinesOf(unitName string) []string {
	i := sort.Search(len(p.Placements), func(i int) bool { return p.Placements[i].Unit >= unitName })
	var out []string
	for ; i < len(p.Placements) && p.Placements[i].Unit == unitName; i++ {
		out = append(out, p.Placements[i].Machine)
	}
	return out
}

// uState is the planner's view of one unit.
type uState struct {
	*Unit
	active bool
	global bool
	// excl are the units this one must not share a machine with (Conflicts either way,
	// Replaces either way), sorted; replaces and replacedBy are the Replaces relation
	// (circular replacements count as plain conflicts).
	excl       []int32
	conflicts  []int32
	replaces   []int32
	replacedBy []int32
	peers      []string
	peerIdx    []int32 // -1: no such unit
	dependents []int32
	depth      int
	cycle      string // the MachineOf cycle the unit is on
	placed     []int32
	// failed records why the unit was not placed (the last attempt).
	failed *Unplaced
	// gone says why the unit left each machine it was on (for the actions' reasons).
	gone map[int32]string
}

func (u *uState) on(m int32) bool { return slices.Contains(u.placed, m) }

type eligibility struct {
	ok   []bool
	list []int32
}

type planner struct {
	machines []Machine
	mIndex   map[string]int32
	units    []*uState
	uIndex   map[string]int32
	load     []int32
	elig     map[string]*eligibility

	gen     int32
	stamp   []int32 // stamp[m] == gen: machine m holds an excluded unit, stampBy[m]
	stampBy []int32

	allowEvict bool
	requeue    []int32
}

// Place computes where every unit runs. See the package documentation for the rules.
func Place(machines []Machine, units []Unit) Plan {
	p := &planner{mIndex: map[string]int32{}, uIndex: map[string]int32{}, elig: map[string]*eligibility{}}
	var plan Plan

	// Machines sorted by ID, duplicates dropped (the first wins).
	ms := slices.Clone(machines)
	slices.SortStableFunc(ms, func(a, b Machine) int { return strings.Compare(a.ID, b.ID) })
	for _, m := range ms {
		if _, dup := p.mIndex[m.ID]; dup || m.ID == "" {
			continue
		}
		p.mIndex[m.ID] = int32(len(p.machines))
		p.machines = append(p.machines, m)
	}
	n := len(p.machines)
	p.load = make([]int32, n)
	p.stamp = make([]int32, n)
	p.stampBy = make([]int32, n)

	// Units sorted by name, duplicates reported.
	us := make([]*Unit, len(units))
	for i := range units {
		us[i] = &units[i]
	}
	slices.SortStableFunc(us, func(a, b *Unit) int { return strings.Compare(a.Name, b.Name) })
	for _, u := range us {
		if _, dup := p.uIndex[u.Name]; dup {
			plan.Unplaced = append(plan.Unplaced, Unplaced{Unit: u.Name, Err: ErrDuplicate,
				Reason: "the unit is listed more than once; only the first is placed"})
			continue
		}
		p.uIndex[u.Name] = int32(len(p.units))
		s := &uState{Unit: u, active: u.State.Scheduled(), global: u.Fleet.Global}
		if !s.global {
			s.peers = u.Fleet.MachineOf
		}
		p.units = append(p.units, s)
	}

	p.relations()
	order := p.order()

	p.displace()
	for _, i := range order {
		p.keep(i)
	}
	p.allowEvict = true
	for _, i := range order {
		p.place(i)
	}
	p.allowEvict = false
	for len(p.requeue) > 0 {
		q := p.requeue
		p.requeue = nil
		slices.Sort(q)
		for _, i := range slices.Compact(q) {
			p.place(i)
		}
	}

	p.finish(&plan)
	return plan
}

// literalPrefix is the part of a glob before its first special character.
func literalPrefix(glob string) string {
	if i := strings.IndexAny(glob, `*?[\`); i >= 0 {
		return glob[:i]
	}
	return glob
}

// matching gives the indexes of the active units whose names match glob, other than self.
// Names are sorted, so only those that start with the glob's literal prefix are tried.
func (p *planner) matching(glob string, self int32, out []int32) []int32 {
	prefix := literalPrefix(glob)
	lo := sort.Search(len(p.units), func(i int) bool { return p.units[i].Name >= prefix })
	for j := lo; j < len(p.units) && strings.HasPrefix(p.units[j].Name, prefix); j++ {
		if int32(j) == self || !p.units[j].active {
			continue
		}
		if ok, _ := path.Match(glob, p.units[j].Name); ok {
			out = append(out, int32(j))
		}
	}
	return out
}

func sortedUnique(s []int32) []int32 {
	slices.Sort(s)
	return slices.Compact(s)
}

// relations resolves Conflicts, Replaces and MachineOf between the active units.
func (p *planner) relations() {
	for i, u := range p.units {
		if !u.active {
			continue
		}
		self := int32(i)
		for _, g := range u.Fleet.Conflicts {
			for _, j := range p.matching(g, self, nil) {
				u.conflicts = append(u.conflicts, j)
				p.units[j].conflicts = append(p.units[j].conflicts, self)
			}
		}
		if !u.global {
			for _, g := range u.Fleet.Replaces {
				u.replaces = p.matching(g, self, u.replaces)
			}
		}
		for _, peer := range u.peers {
			j, ok := p.uIndex[peer]
			if !ok {
				u.peerIdx = append(u.peerIdx, -1)
				continue
			}
			u.peerIdx = append(u.peerIdx, j)
			p.units[j].dependents = append(p.units[j].dependents, self)
		}
	}
	for _, u := range p.units {
		u.replaces = sortedUnique(u.replaces)
	}
	for i, u := range p.units {
		var direct []int32
		for _, j := range u.replaces {
			if slices.Contains(p.units[j].replaces, int32(i)) {
				// A circular replacement: fleet ignores it; kiln keeps the two apart.
				u.conflicts = append(u.conflicts, j)
				continue
			}
			direct = append(direct, j)
			p.units[j].replacedBy = append(p.units[j].replacedBy, int32(i))
		}
		u.replaces = direct
	}
	for _, u := range p.units {
		u.conflicts = sortedUnique(u.conflicts)
		u.replacedBy = sortedUnique(u.replacedBy)
		u.excl = sortedUnique(slices.Concat(u.conflicts, u.replaces, u.replacedBy))
	}
}

// order gives the active units in the order they are kept and placed: by MachineOf depth
// (peers before the units that follow them), units already running before global units (a
// global unit yields to a conflicting unit, as in fleet), then by name.
func (p *planner) order() []int32 {
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]uint8, len(p.units))
	var stack []int32
	var visit func(i int32) int
	visit = func(i int32) int {
		u := p.units[i]
		switch state[i] {
		case done:
			return u.depth
		case visiting:
			// A cycle: every unit from i's place on the stack is on it.
			at := slices.Index(stack, i)
			names := make([]string, 0, len(stack)-at+1)
			for _, j := range stack[at:] {
				names = append(names, p.units[j].Name)
			}
			names = append(names, u.Name)
			c := strings.Join(names, " -> ")
			for _, j := range stack[at:] {
				p.units[j].cycle = c
			}
			return 0
		}
		state[i] = visiting
		stack = append(stack, i)
		d := 0
		for _, j := range u.peerIdx {
			if j >= 0 && p.units[j].active {
				d = max(d, visit(j)+1)
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
		u.depth = d
		return d
	}
	var order []int32
	for i, u := range p.units {
		if u.active {
			visit(int32(i))
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int {
		ua, ub := p.units[a], p.units[b]
		if c := cmp.Compare(ua.depth, ub.depth); c != 0 {
			return c
		}
		if ua.global != ub.global {
			if ua.global {
				return 1
			}
			return -1
		}
		return cmp.Compare(a, b)
	})
	return order
}

// eligible gives the machines that satisfy a MachineMetadata, cached per distinct rule set
// (instances of a template share one).
func (p *planner) eligible(md unit.Metadata) *eligibility {
	key := md.String()
	if e, ok := p.elig[key]; ok {
		return e
	}
	e := &eligibility{ok: make([]bool, len(p.machines))}
	for i, m := range p.machines {
		if md.Match(m.Metadata) {
			e.ok[i] = true
			e.list = append(e.list, int32(i))
		}
	}
	p.elig[key] = e
	return e
}

func (p *planner) put(i, m int32) {
	u := p.units[i]
	u.placed = append(u.placed, m)
	p.load[m]++
	u.failed = nil
}

func (p *planner) remove(i, m int32, why string) {
	u := p.units[i]
	u.placed = slices.DeleteFunc(u.placed, func(x int32) bool { return x == m })
	p.load[m]--
	p.left(i, m, why)
}

func (p *planner) left(i, m int32, why string) {
	u := p.units[i]
	if u.gone == nil {
		u.gone = map[int32]string{}
	}
	if _, ok := u.gone[m]; !ok {
		u.gone[m] = why
	}
}

// blocker gives a unit among those excluded from sharing a machine with u that is on m, or -1.
func (p *planner) blocker(u *uState, m int32, among []int32) int32 {
	for _, j := range among {
		if p.units[j].on(m) {
			return j
		}
	}
	return -1
}

// current gives the unit's current machines that exist, sorted; the others are recorded as
// gone.
func (p *planner) current(i int32) []int32 {
	u := p.units[i]
	var out []int32
	for _, id := range u.Machines {
		m, ok := p.mIndex[id]
		if !ok {
			continue // the machine is gone: reported in finish
		}
		out = append(out, m)
	}
	return sortedUnique(out)
}

// displace marks the units that a replacing unit shares a machine with now: they are not
// kept there.
func (p *planner) displace() {
	for i, u := range p.units {
		if !u.active {
			continue
		}
		for _, m := range p.current(int32(i)) {
			for _, j := range u.replaces {
				if !p.units[j].global && slices.Contains(p.current(j), m) {
					p.left(j, m, fmt.Sprintf("replaced by %s", u.Name))
				}
			}
		}
	}
}

// keep leaves a unit where it is when that machine still satisfies it.
func (p *planner) keep(i int32) {
	u := p.units[i]
	if u.cycle != "" {
		return
	}
	md := p.eligible(u.Fleet.Metadata)
	for _, m := range p.current(i) {
		if _, displaced := u.gone[m]; displaced {
			continue
		}
		mid := p.machines[m].ID
		switch {
		case !u.global && len(u.placed) > 0:
			p.left(i, m, "the unit is scheduled on more than one machine")
		case !md.ok[m]:
			p.left(i, m, fmt.Sprintf("machine %s no longer matches MachineMetadata %s", mid, u.Fleet.Metadata))
		case !u.global && u.Fleet.MachineID != "" && u.Fleet.MachineID != mid:
			p.left(i, m, fmt.Sprintf("MachineID is now %s", u.Fleet.MachineID))
		default:
			if !u.global {
				if peer := p.missingPeer(u, m); peer != "" {
					p.left(i, m, fmt.Sprintf("MachineOf unit %s is not on %s", peer, mid))
					continue
				}
			}
			if b := p.blocker(u, m, u.excl); b >= 0 {
				p.left(i, m, fmt.Sprintf("conflicts with %s", p.units[b].Name))
				continue
			}
			p.put(i, m)
		}
	}
}

// missingPeer gives the first MachineOf unit that is not on m, or "".
func (p *planner) missingPeer(u *uState, m int32) string {
	for k, j := range u.peerIdx {
		if j < 0 || !p.units[j].on(m) {
			return u.peers[k]
		}
	}
	return ""
}

func (p *planner) fail(i int32, err error, format string, args ...any) {
	u := p.units[i]
	u.failed = &Unplaced{Unit: u.Name, Err: err, Reason: fmt.Sprintf(format, args...)}
}

// candidates gives the machines that satisfy the unit's MachineID, MachineMetadata and
// MachineOf, sorted by ID, or records why there are none.
func (p *planner) candidates(i int32) []int32 {
	u := p.units[i]
	if len(p.machines) == 0 {
		p.fail(i, ErrNoMachines, "no machines in the cluster")
		return nil
	}
	md := p.eligible(u.Fleet.Metadata)
	if u.global {
		if len(md.list) == 0 {
			p.fail(i, ErrMetadata, "no machine matches MachineMetadata %s", u.Fleet.Metadata)
		}
		return md.list
	}
	if u.cycle != "" {
		p.fail(i, ErrCycle, "MachineOf cycle: %s", u.cycle)
		return nil
	}

	var cands []int32
	restricted := false
	if id := u.Fleet.MachineID; id != "" {
		m, ok := p.mIndex[id]
		if !ok {
			p.fail(i, ErrMachineID, "no machine has MachineID %s", id)
			return nil
		}
		cands, restricted = []int32{m}, true
	}
	for k, j := range u.peerIdx {
		peer := u.peers[k]
		switch {
		case j < 0:
			p.fail(i, ErrMachineOf, "MachineOf unit %s does not exist", peer)
			return nil
		case !p.units[j].active:
			p.fail(i, ErrMachineOf, "MachineOf unit %s is not scheduled (desired state %s)", peer, p.units[j].State)
			return nil
		case len(p.units[j].placed) == 0:
			p.fail(i, ErrMachineOf, "MachineOf unit %s is not scheduled", peer)
			return nil
		}
		on := sortedUnique(slices.Clone(p.units[j].placed))
		if !restricted {
			cands, restricted = on, true
			continue
		}
		cands = slices.DeleteFunc(cands, func(m int32) bool { return !slices.Contains(on, m) })
		if len(cands) == 0 {
			if u.Fleet.MachineID != "" {
				p.fail(i, ErrMachineOf, "MachineOf unit %s is not on machine %s (MachineID)", peer, u.Fleet.MachineID)
			} else {
				p.fail(i, ErrMachineOf, "MachineOf units %s are on different machines", strings.Join(u.peers[:k+1], ", "))
			}
			return nil
		}
	}
	if !restricted {
		if len(md.list) == 0 {
			p.fail(i, ErrMetadata, "no machine matches MachineMetadata %s", u.Fleet.Metadata)
		}
		return md.list
	}
	out := cands[:0:0]
	for _, m := range cands {
		if md.ok[m] {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		via := "of MachineOf " + strings.Join(u.peers, ", ")
		if u.Fleet.MachineID != "" {
			via = "(MachineID)"
		}
		if len(cands) == 1 {
			p.fail(i, ErrMetadata, "machine %s %s does not match MachineMetadata %s", p.machines[cands[0]].ID, via, u.Fleet.Metadata)
		} else {
			p.fail(i, ErrMetadata, "none of the %d machines %s matches MachineMetadata %s", len(cands), via, u.Fleet.Metadata)
		}
	}
	return out
}

// mark stamps the machines that hold one of the given units.
func (p *planner) mark(among []int32) {
	p.gen++
	for _, j := range among {
		for _, m := range p.units[j].placed {
			if p.stamp[m] != p.gen {
				p.stamp[m], p.stampBy[m] = p.gen, j
			}
		}
	}
}

// place finds a machine for a unit that has none (all matching machines for a global unit).
func (p *planner) place(i int32) {
	u := p.units[i]
	if !u.global && len(u.placed) > 0 {
		return
	}
	cands := p.candidates(i)
	if len(cands) == 0 {
		return
	}
	p.mark(u.excl)

	if u.global {
		blocked := 0
		for _, m := range cands {
			switch {
			case u.on(m):
			case p.stamp[m] == p.gen:
				blocked++
			default:
				p.put(i, m)
			}
		}
		if len(u.placed) == 0 && blocked > 0 {
			p.failConflict(i, cands)
		}
		return
	}

	best := int32(-1)
	for _, m := range cands {
		if p.stamp[m] == p.gen {
			continue
		}
		if best < 0 || p.load[m] < p.load[best] {
			best = m
		}
	}
	if best >= 0 {
		p.put(i, best)
		return
	}
	if p.allowEvict && len(u.replaces) > 0 && p.evict(i, cands) {
		return
	}
	p.failConflict(i, cands)
}

// evict gives a replacing unit the least-loaded machine where only units it replaces stand in
// its way, and sends those away. Units that others follow with MachineOf are not moved.
func (p *planner) evict(i int32, cands []int32) bool {
	u := p.units[i]
	hard := slices.Concat(u.conflicts, u.replacedBy)
	p.mark(hard)
	best := int32(-1)
	for _, m := range cands {
		if p.stamp[m] == p.gen {
			continue
		}
		movable := true
		for _, j := range u.replaces {
			r := p.units[j]
			if !r.on(m) {
				continue
			}
			if r.global {
				movable = false
				break
			}
			for _, d := range r.dependents {
				if p.units[d].on(m) {
					movable = false
					break
				}
			}
		}
		if movable && (best < 0 || p.load[m] < p.load[best]) {
			best = m
		}
	}
	if best < 0 {
		p.mark(u.excl) // restore the stamps failConflict reads
		return false
	}
	for _, j := range u.replaces {
		if p.units[j].on(best) {
			p.remove(j, best, fmt.Sprintf("replaced by %s", u.Name))
			p.requeue = append(p.requeue, j)
		}
	}
	p.put(i, best)
	return true
}

// failConflict records that every candidate machine holds a conflicting unit (stamps of the
// current generation).
func (p *planner) failConflict(i int32, cands []int32) {
	var parts []string
	for _, m := range cands {
		if len(parts) == 3 {
			parts = append(parts, "...")
			break
		}
		if p.stamp[m] == p.gen {
			parts = append(parts, fmt.Sprintf("%s on %s", p.units[p.stampBy[m]].Name, p.machines[m].ID))
		}
	}
	detail := strings.Join(parts, ", ")
	if len(cands) == 1 {
		p.fail(i, ErrConflict, "the only matching machine runs a conflicting unit (%s)", detail)
		return
	}
	p.fail(i, ErrConflict, "all %d matching machines run a conflicting unit (%s)", len(cands), detail)
}

// finish turns the planner's state into the plan.
func (p *planner) finish(plan *Plan) {
	for _, u := range p.units {
		slices.Sort(u.placed)
		for _, m := range u.placed {
			plan.Placements = append(plan.Placements, Placement{Unit: u.Name, Machine: p.machines[m].ID})
		}
		if u.active && len(u.placed) == 0 {
			f := u.failed
			if f == nil {
				f = &Unplaced{Unit: u.Name, Err: ErrConflict, Reason: "no machine could take the unit"}
			}
			plan.Unplaced = append(plan.Unplaced, *f)
		}

		// Unschedule from the machines the unit was on and will not be.
		current := map[string]bool{}
		for _, id := range u.Machines {
			if current[id] {
				continue
			}
			current[id] = true
			m, exists := p.mIndex[id]
			if exists && u.on(m) {
				continue
			}
			why := ""
			switch {
			case !exists:
				why = fmt.Sprintf("machine %s is gone", id)
			case !u.active:
				why = fmt.Sprintf("desired state is %s", u.State)
			default:
				why = u.gone[m]
				if why == "" {
					why = "no longer placed there"
				}
			}
			plan.Actions = append(plan.Actions, Action{Kind: Unschedule, Unit: u.Name, Machine: id, Reason: why})
		}
		for _, m := range u.placed {
			id := p.machines[m].ID
			if current[id] {
				continue
			}
			why := "not scheduled yet"
			switch {
			case u.global:
				why = "global unit on every matching machine"
			case len(u.peers) > 0:
				why = "follows MachineOf " + strings.Join(u.peers, ", ")
			case u.Fleet.MachineID != "":
				why = "MachineID"
			default:
				if len(u.Machines) > 0 {
					why = "moved, least-loaded matching machine"
				} else {
					why = "least-loaded matching machine"
				}
			}
			plan.Actions = append(plan.Actions, Action{Kind: Schedule, Unit: u.Name, Machine: id, Reason: why})
		}
	}
	slices.SortStableFunc(plan.Actions, func(a, b Action) int {
		if a.Kind != b.Kind {
			if a.Kind == Unschedule {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Unit, b.Unit); c != 0 {
			return c
		}
		return strings.Compare(a.Machine, b.Machine)
	})
	slices.SortStableFunc(plan.Unplaced, func(a, b Unplaced) int { return strings.Compare(a.Unit, b.Unit) })
}
