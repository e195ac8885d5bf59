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

// The planner works on indexes: machines sorted by ID, units sorted by name. Conflicts and
// Replaces are kept per distinct glob (a group: the units it matches and the units that carry
// it) with a count of each side per machine, so that checking a machine costs a few array
// reads however many units a glob matches (Conflicts=my-app@*.service over 10,000 instances
// is one group, not 10,000² pairs).

// uState is the planner's view of one unit.
type uState struct {
	*Unit
	active bool
	global bool
	md     *eligibility
	cur    []int32 // the current machines that still exist, sorted

	ownC, inC []int32 // Conflicts groups the unit carries, and those whose glob matches it
	ownR, inR []int32 // the same for Replaces

	peers      []string
	peerIdx    []int32 // -1: no such unit
	dependents []int32
	depth      int
	cycle      string // the MachineOf cycle the unit is on

	placed []int32
	failed *Unplaced        // why the last attempt to place the unit failed
	gone   map[int32]string // why the unit left each machine it was on
}

func (u *uState) on(m int32) bool { return slices.Contains(u.placed, m) }

// group is one distinct Conflicts or Replaces glob.
type group struct {
	glob    string
	replace bool
	members []int32 // active units the glob matches
	owners  []int32 // active units that carry the glob
	onM     counter // placed members per machine
	ownM    counter // placed owners per machine
}

// counter counts per machine: a short list while few machines are concerned, an array after.
type counter struct {
	dense  []int32
	sparse []struct{ m, n int32 }
}

func (c *counter) get(m int32) int32 {
	if c.dense != nil {
		return c.dense[m]
	}
	for _, x := range c.sparse {
		if x.m == m {
			return x.n
		}
	}
	return 0
}

func (c *counter) add(m, d int32, machines int) {
	if c.dense == nil && len(c.sparse) >= 16 {
		c.dense = make([]int32, machines)
		for _, x := range c.sparse {
			c.dense[x.m] = x.n
		}
		c.sparse = nil
	}
	if c.dense != nil {
		c.dense[m] += d
		return
	}
	for k := range c.sparse {
		if c.sparse[k].m == m {
			c.sparse[k].n += d
			return
		}
	}
	c.sparse = append(c.sparse, struct{ m, n int32 }{m, d})
}

type eligibility struct {
	id   uint32
	ok   []bool
	list []int32
	// heap orders list by load (see loadheap.go), once heaped
	heap   loadHeap
	heaped bool
}

type planner struct {
	machines []Machine
	mIndex   map[string]int32
	units    []*uState
	uIndex   map[string]int32
	load     []int32
	onM      [][]int32 // units placed per machine
	curOn    [][]int32 // units currently (input) per machine
	elig     map[string]*eligibility
	groups   []*group
	groupIdx map[string]int32 // "c:" or "r:" and the glob

	// the least-loaded search (loadheap.go): the heaps that hold each machine, a scan's marks
	mHeaps [][]*eligibility
	seen   []uint32
	scan   uint32
	stash  []slot
	// failed are the conflict failures by signature, until a unit leaves a machine
	failed map[string]*Unplaced

	evicted bool
}

// maxRounds bounds the placement rounds that evictions (Replaces) cause.
const maxRounds = 8

// Place computes where every unit runs. See the package documentation for the rules.
func Place(machines []Machine, units []Unit) Plan {
	p := &planner{
		mIndex: map[string]int32{}, uIndex: map[string]int32{},
		elig: map[string]*eligibility{}, groupIdx: map[string]int32{},
	}
	var plan Plan

	// Machines sorted by ID, duplicates and empty IDs dropped.
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
	p.onM = make([][]int32, n)
	p.curOn = make([][]int32, n)
	p.mHeaps = make([][]*eligibility, n)
	p.seen = make([]uint32, n)
	p.failed = map[string]*Unplaced{}

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
		i := int32(len(p.units))
		p.uIndex[u.Name] = i
		s := &uState{Unit: u, active: u.State.Scheduled(), global: u.Fleet.Global}
		if !s.global {
			s.peers = u.Fleet.MachineOf
		}
		s.md = p.eligible(u.Fleet.Metadata)
		for _, id := range u.Machines {
			if m, ok := p.mIndex[id]; ok && !slices.Contains(s.cur, m) {
				s.cur = append(s.cur, m)
			}
		}
		slices.Sort(s.cur)
		if s.active {
			for _, m := range s.cur {
				p.curOn[m] = append(p.curOn[m], i)
			}
		}
		p.units = append(p.units, s)
	}

	p.relations()
	order := p.order()

	p.displace()
	for _, i := range order {
		p.keep(i)
	}
	// Place the others. A replacing unit may evict the units it replaces, which frees room
	// for units that failed before: go again until nothing moves (a few rounds at most; a
	// circle of replacements longer than two could go on, hence the bound).
	for round := 0; round < maxRounds; round++ {
		p.evicted = false
		for _, i := range order {
			p.place(i)
		}
		if !p.evicted {
			break
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

// group gives the group of a glob, matching it against the units' names the first time.
// Names are sorted, so only those that start with the glob's literal prefix are tried.
func (p *planner) group(kind, glob string) int32 {
	key := kind + glob
	if g, ok := p.groupIdx[key]; ok {
		return g
	}
	grp := &group{glob: glob, replace: kind == "r:"}
	prefix := literalPrefix(glob)
	lo := sort.Search(len(p.units), func(i int) bool { return p.units[i].Name >= prefix })
	for j := lo; j < len(p.units) && strings.HasPrefix(p.units[j].Name, prefix); j++ {
		if !p.units[j].active {
			continue
		}
		if ok, _ := path.Match(glob, p.units[j].Name); ok {
			grp.members = append(grp.members, int32(j))
		}
	}
	g := int32(len(p.groups))
	p.groups = append(p.groups, grp)
	p.groupIdx[key] = g
	return g
}

// relations resolves Conflicts, Replaces and MachineOf between the active units.
func (p *planner) relations() {
	for i, u := range p.units {
		if !u.active {
			continue
		}
		self := int32(i)
		for _, glob := range u.Fleet.Conflicts {
			g := p.group("c:", glob)
			if !slices.Contains(u.ownC, g) {
				u.ownC = append(u.ownC, g)
				p.groups[g].owners = append(p.groups[g].owners, self)
			}
		}
		if !u.global {
			for _, glob := range u.Fleet.Replaces {
				g := p.group("r:", glob)
				if !slices.Contains(u.ownR, g) {
					u.ownR = append(u.ownR, g)
					p.groups[g].owners = append(p.groups[g].owners, self)
				}
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
	for g, grp := range p.groups {
		for _, j := range grp.members {
			if grp.replace {
				p.units[j].inR = append(p.units[j].inR, int32(g))
			} else {
				p.units[j].inC = append(p.units[j].inC, int32(g))
			}
		}
	}
}

// order gives the active units in the order they are kept and placed: by MachineOf depth
// (peers before the units that follow them), units that are not global before global ones
// (a global unit yields to a conflicting unit, as in fleet), then by name.
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

// eligible gives the machines that satisfy a MachineMetadata, once per distinct rule set.
func (p *planner) eligible(md unit.Metadata) *eligibility {
	key := ""
	if len(md) > 0 {
		key = md.String()
	}
	if e, ok := p.elig[key]; ok {
		return e
	}
	e := &eligibility{id: uint32(len(p.elig)), ok: make([]bool, len(p.machines)), list: make([]int32, 0, len(p.machines))}
	for i, m := range p.machines {
		if md.Match(m.Metadata) {
			e.ok[i] = true
			e.list = append(e.list, int32(i))
		}
	}
	p.elig[key] = e
	return e
}

func (p *planner) count(u *uState, m, d int32) {
	n := len(p.machines)
	for _, g := range u.ownC {
		p.groups[g].ownM.add(m, d, n)
	}
	for _, g := range u.ownR {
		p.groups[g].ownM.add(m, d, n)
	}
	for _, g := range u.inC {
		p.groups[g].onM.add(m, d, n)
	}
	for _, g := range u.inR {
		p.groups[g].onM.add(m, d, n)
	}
}

func (p *planner) put(i, m int32) {
	u := p.units[i]
	u.placed = append(u.placed, m)
	p.load[m]++
	p.loadChanged(m)
	p.onM[m] = append(p.onM[m], i)
	p.count(u, m, 1)
	u.failed = nil
}

func (p *planner) remove(i, m int32, why string) {
	u := p.units[i]
	u.placed = slices.DeleteFunc(u.placed, func(x int32) bool { return x == m })
	p.onM[m] = slices.DeleteFunc(p.onM[m], func(x int32) bool { return x == i })
	p.load[m]--
	p.loadChanged(m)
	p.count(u, m, -1)
	clear(p.failed) // a machine has room again
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

// hardBlocked tells whether m holds a unit that u conflicts with (either way) or a unit that
// replaces u. u must not be on m.
func (p *planner) hardBlocked(u *uState, m int32) bool {
	for _, g := range u.ownC {
		if p.groups[g].onM.get(m) > 0 {
			return true
		}
	}
	for _, g := range u.inC {
		if p.groups[g].ownM.get(m) > 0 {
			return true
		}
	}
	for _, g := range u.inR {
		if p.groups[g].ownM.get(m) > 0 {
			return true
		}
	}
	return false
}

// blocked also counts the units that u replaces.
func (p *planner) blocked(u *uState, m int32) bool {
	if p.hardBlocked(u, m) {
		return true
	}
	for _, g := range u.ownR {
		if p.groups[g].onM.get(m) > 0 {
			return true
		}
	}
	return false
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// excludes tells whether a and b must not share a machine.
func excludes(a, b *Unit) bool {
	return matchAny(a.Fleet.Conflicts, b.Name) || matchAny(b.Fleet.Conflicts, a.Name) ||
		(!a.Fleet.Global && matchAny(a.Fleet.Replaces, b.Name)) || (!b.Fleet.Global && matchAny(b.Fleet.Replaces, a.Name))
}

// blocker names a unit on m that u must not share it with (for reasons; slow path).
func (p *planner) blocker(u *uState, m int32) string {
	for _, j := range p.onM[m] {
		if b := p.units[j]; b != u && excludes(u.Unit, b.Unit) {
			return b.Name
		}
	}
	return "?"
}

// displace marks the units that a replacing unit shares a machine with now: they are not
// kept there.
func (p *planner) displace() {
	for _, u := range p.units {
		if !u.active || u.global || len(u.Fleet.Replaces) == 0 {
			continue
		}
		for _, m := range u.cur {
			for _, j := range p.curOn[m] {
				if r := p.units[j]; r != u && !r.global && matchAny(u.Fleet.Replaces, r.Name) &&
					!matchAny(r.Fleet.Replaces, u.Name) {
					p.left(j, m, "replaced by "+u.Name)
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
	for _, m := range u.cur {
		if _, displaced := u.gone[m]; displaced {
			continue
		}
		mid := p.machines[m].ID
		switch {
		case !u.global && len(u.placed) > 0:
			p.left(i, m, "the unit is scheduled on more than one machine")
		case !u.md.ok[m]:
			p.left(i, m, fmt.Sprintf("machine %s no longer matches MachineMetadata %s", mid, u.Fleet.Metadata))
		case !u.global && u.Fleet.MachineID != "" && u.Fleet.MachineID != mid:
			p.left(i, m, fmt.Sprintf("MachineID is now %s", u.Fleet.MachineID))
		case !u.global && p.missingPeer(u, m) != "":
			p.left(i, m, fmt.Sprintf("MachineOf unit %s is not on %s", p.missingPeer(u, m), mid))
		case p.blocked(u, m):
			p.left(i, m, "conflicts with "+p.blocker(u, m))
		default:
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

// place finds a machine for a unit that has none (all matching machines for a global unit).
func (p *planner) place(i int32) {
	u := p.units[i]
	if !u.global && len(u.placed) > 0 {
		return
	}
	cands, all := p.candidates(i)
	if len(cands) == 0 {
		return
	}

	if u.global {
		blocked := 0
		for _, m := range cands {
			switch {
			case u.on(m):
			case p.blocked(u, m):
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

	// a unit with no Replaces that every candidate blocks alike, as one that failed before
	sig := ""
	if all && len(u.ownR) == 0 && len(p.failed) > 0 {
		sig = u.signature()
		if f, ok := p.failed[sig]; ok {
			u.failed = &Unplaced{Unit: u.Name, Err: f.Err, Reason: f.Reason}
			return
		}
	}
	best := int32(-1)
	if all {
		best = p.leastLoaded(u, u.md)
	} else {
		for _, m := range cands {
			if best >= 0 && p.load[m] >= p.load[best] {
				continue // only a less loaded machine can win: check it only then
			}
			if !p.blocked(u, m) {
				best = m
			}
		}
	}
	if best >= 0 {
		p.put(i, best)
		return
	}
	if len(u.ownR) > 0 && p.evict(i, cands) {
		return
	}
	p.failConflict(i, cands)
	if all && len(u.ownR) == 0 {
		if sig == "" {
			sig = u.signature()
		}
		p.failed[sig] = u.failed
	}
}

// evict gives a replacing unit the least-loaded machine where only units it replaces stand in
// its way, and sends those away. Global units and units that others follow with MachineOf
// are not moved.
func (p *planner) evict(i int32, cands []int32) bool {
	u := p.units[i]
	best := int32(-1)
	for _, m := range cands {
		if p.hardBlocked(u, m) || (best >= 0 && p.load[m] >= p.load[best]) {
			continue
		}
		movable := true
		for _, j := range p.onM[m] {
			r := p.units[j]
			if !matchAny(u.Fleet.Replaces, r.Name) {
				continue
			}
			if r.global {
				movable = false
			}
			for _, d := range r.dependents {
				if p.units[d].on(m) {
					movable = false
				}
			}
		}
		if movable {
			best = m
		}
	}
	if best < 0 {
		return false
	}
	for _, j := range slices.Clone(p.onM[best]) {
		if matchAny(u.Fleet.Replaces, p.units[j].Name) {
			p.remove(j, best, "replaced by "+u.Name)
			p.evicted = true
		}
	}
	p.put(i, best)
	return true
}

// failConflict records that every candidate machine holds a unit the unit must avoid.
func (p *planner) failConflict(i int32, cands []int32) {
	u := p.units[i]
	var parts []string
	for _, m := range cands {
		if len(parts) == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s on %s", p.blocker(u, m), p.machines[m].ID))
	}
	u.failed = conflicted(u.Name, len(cands), parts)
}

// conflicted is the failure of a unit whose n candidate machines all hold a unit it must avoid;
// parts name the first few ("unit on machine").
func conflicted(name string, n int, parts []string) *Unplaced {
	detail := strings.Join(parts, ", ")
	if n == 1 {
		return &Unplaced{Unit: name, Err: ErrConflict, Reason: fmt.Sprintf("the only matching machine runs a conflicting unit (%s)", detail)}
	}
	return &Unplaced{Unit: name, Err: ErrConflict, Reason: fmt.Sprintf("all %d matching machines run a conflicting unit (%s)", n, detail)}
}

// candidates gives the machines that satisfy the unit's MachineID, MachineMetadata and
// MachineOf, sorted by ID, or records why there are none; all tells that they are every
// machine matching its MachineMetadata (u.md.list).
func (p *planner) candidates(i int32) (cands []int32, all bool) {
	u := p.units[i]
	if len(p.machines) == 0 {
		p.fail(i, ErrNoMachines, "no machines in the cluster")
		return nil, false
	}
	md := u.md
	if u.global {
		if len(md.list) == 0 {
			p.fail(i, ErrMetadata, "no machine matches MachineMetadata %s", u.Fleet.Metadata)
		}
		return md.list, true
	}
	if u.cycle != "" {
		p.fail(i, ErrCycle, "MachineOf cycle: %s", u.cycle)
		return nil, false
	}

	restricted := false
	if id := u.Fleet.MachineID; id != "" {
		m, ok := p.mIndex[id]
		if !ok {
			p.fail(i, ErrMachineID, "no machine has MachineID %s", id)
			return nil, false
		}
		cands, restricted = []int32{m}, true
	}
	for k, j := range u.peerIdx {
		peer := u.peers[k]
		switch {
		case j < 0:
			p.fail(i, ErrMachineOf, "MachineOf unit %s does not exist", peer)
			return nil, false
		case !p.units[j].active:
			p.fail(i, ErrMachineOf, "MachineOf unit %s is not scheduled (desired state %s)", peer, p.units[j].State)
			return nil, false
		case len(p.units[j].placed) == 0:
			p.fail(i, ErrMachineOf, "MachineOf unit %s is not scheduled", peer)
			return nil, false
		}
		on := slices.Clone(p.units[j].placed)
		slices.Sort(on)
		if !restricted {
			cands, restricted = on, true
			continue
		}
		cands = slices.DeleteFunc(cands, func(m int32) bool { return !slices.Contains(on, m) })
		if len(cands) == 0 {
			u.failed = peersApart(u.Unit, k)
			return nil, false
		}
	}
	if !restricted {
		if len(md.list) == 0 {
			p.fail(i, ErrMetadata, "no machine matches MachineMetadata %s", u.Fleet.Metadata)
		}
		return md.list, true
	}
	out := cands[:0:0]
	for _, m := range cands {
		if md.ok[m] {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		u.failed = mismatch(u.Unit, len(cands), p.machines[cands[0]].ID)
	}
	return out, false
}

// The reasons of the units with a MachineID or MachineOf that get no machine, for Place and
// Index alike.

// peersApart: the units u follows up to MachineOf[k] share no machine (that MachineID allows).
func peersApart(u *Unit, k int) *Unplaced {
	if u.Fleet.MachineID != "" {
		return &Unplaced{Unit: u.Name, Err: ErrMachineOf, Reason: fmt.Sprintf("MachineOf unit %s is not on machine %s (MachineID)", u.Fleet.MachineOf[k], u.Fleet.MachineID)}
	}
	return &Unplaced{Unit: u.Name, Err: ErrMachineOf, Reason: fmt.Sprintf("MachineOf units %s are on different machines", strings.Join(u.Fleet.MachineOf[:k+1], ", "))}
}

// mismatch: none of the n machines that MachineID or MachineOf allow, the first of them first,
// matches u's MachineMetadata.
func mismatch(u *Unit, n int, first string) *Unplaced {
	via := "of MachineOf " + strings.Join(u.Fleet.MachineOf, ", ")
	if u.Fleet.MachineID != "" {
		via = "(MachineID)"
	}
	if n == 1 {
		return &Unplaced{Unit: u.Name, Err: ErrMetadata, Reason: fmt.Sprintf("machine %s %s does not match MachineMetadata %s", first, via, u.Fleet.Metadata)}
	}
	return &Unplaced{Unit: u.Name, Err: ErrMetadata, Reason: fmt.Sprintf("none of the %d machines %s matches MachineMetadata %s", n, via, u.Fleet.Metadata)}
}

// finish turns the planner's state into the plan.
func (p *planner) finish(plan *Plan) {
	if len(p.units) > 0 {
		plan.Placements = make([]Placement, 0, len(p.units))
	}
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
		var current []string
		for _, id := range u.Machines {
			if slices.Contains(current, id) {
				continue
			}
			current = append(current, id)
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
				if why == "" && u.failed != nil {
					why = u.failed.Reason
				}
				if why == "" {
					why = "no longer placed there"
				}
			}
			plan.Actions = append(plan.Actions, Action{Kind: Unschedule, Unit: u.Name, Machine: id, Reason: why})
		}
		for _, m := range u.placed {
			id := p.machines[m].ID
			if slices.Contains(current, id) {
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
	// (kind, unit, machine) is unique: an unstable sort gives the same order, in n log n
	slices.SortFunc(plan.Actions, func(a, b Action) int {
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
