package engine

import (
	"context"
	"maps"
	"slices"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/etcdconn"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/schedule"
	"github.com/kiln-cluster/kiln/node/unit"
)

// state is the leader's view of the cluster: read once, then kept up to date from the watch
// and from its own writes.
type state struct {
	rev      int64
	units    map[string]*unitEntry
	files    map[string][]byte // by hash
	fileRevs map[string]int64  // the files' mod revisions
	// unitsRev is the newest revision of a unit record the engine has seen: a file no record
	// refers to is deleted only if no record was written since (a prefix compare).
	unitsRev   int64
	machines   map[string]machineEntry
	placements map[string]map[string]kvEntry // machine → unit
	placedOn   map[string][]string           // unit → the machines it is placed on
	reports    map[string]map[string]string  // unit → machine → ActiveState
	unplaced   map[string]kvEntry            // unit
	election   map[string]bool               // the election's keys
	templates  map[string]*unit.Unit         // parsed template files, by hash and name
	problems   map[string]bool               // units that cannot be planned (see unitEntry.problem)
	// dirty is set by every change that may change the plan (a report only when its unit
	// waits for a machine).
	dirty bool
	// what an incremental plan needs (incremental.go)
	inc incremental
	// own is set while the state takes the engine's own writes
	own bool
}

type unitEntry struct {
	rec    keys.Submitted
	parsed bool
	// problem is why the unit cannot be planned (its file is missing or invalid).
	problem string
	// sched is the unit as the scheduler sees it (its [X-Fleet] once parsed)
	sched schedule.Unit
}

type kvEntry struct {
	val string
	rev int64
	// a is the decoded placement (placements only); ok is false when the value is not one.
	a  keys.Assignment
	ok bool
}

type machineEntry struct {
	meta  map[string]string
	lease int64
}

func newState() *state {
	return &state{
		units: map[string]*unitEntry{}, files: map[string][]byte{}, fileRevs: map[string]int64{}, machines: map[string]machineEntry{},
		placements: map[string]map[string]kvEntry{}, placedOn: map[string][]string{}, reports: map[string]map[string]string{},
		unplaced: map[string]kvEntry{}, election: map[string]bool{}, templates: map[string]*unit.Unit{},
		problems: map[string]bool{}, inc: newIncremental(),
	}
}

// loadPage is how many keys load reads per request: a cluster of 100,000 units is some 300,000
// keys, which in one response would be a message of a hundred megabytes that etcd and the
// engine both hold at once.
const loadPage = 5000

// load reads every key under /kiln/ at one revision, a page at a time.
func load(ctx context.Context, kv clientv3.KV) (*state, error) {
	st := newState()
	err := etcdconn.Pages(ctx, kv, keys.Prefix, loadPage, func(rev int64, kvs []*mvccpb.KeyValue) bool {
		st.rev, st.unitsRev = rev, rev
		for _, kvp := range kvs {
			st.put(string(kvp.Key), kvp.Value, kvp.ModRevision, kvp.Lease)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// applyWatch takes one watch response; it asks for a resync when the watch broke and reports
// errDeposed when the leader's key is gone.
func (st *state) applyWatch(resp clientv3.WatchResponse, ok bool, leaderKey string) error {
	if !ok || resp.Err() != nil || resp.Canceled {
		return errResync
	}
	for _, ev := range resp.Events {
		k := string(ev.Kv.Key)
		switch ev.Type {
		case mvccpb.PUT:
			st.put(k, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.Lease)
		case mvccpb.DELETE:
			st.del(k, ev.Kv.ModRevision)
		}
	}
	if resp.Header.Revision > st.rev {
		st.rev = resp.Header.Revision
	}
	if !st.election[leaderKey] {
		return errDeposed
	}
	return nil
}

// applyWritten takes one of the leader's own writes.
func (st *state) applyWritten(w written) {
	st.own = true
	defer func() { st.own = false }()
	if w.op.del {
		st.del(w.op.key, w.rev)
	} else {
		st.put(w.op.key, []byte(w.op.val), w.rev, 0)
	}
}

// split cuts "<machine>/<unit>" after prefix.
func split(key, prefix string) (string, string, bool) { return keys.SplitMachineUnit(key, prefix) }

func (st *state) put(key string, val []byte, rev, lease int64) {
	if st.known(key, rev) {
		return // the echo of the engine's own write, or an older event
	}
	if id, ok := strings.CutPrefix(key, keys.Machines); ok {
		st.putMachine(id, val, lease)
		return
	}
	st.touch(key)
	switch {
	case strings.HasPrefix(key, keys.Units):
		st.unitsRev = max(st.unitsRev, rev)
		name := strings.TrimPrefix(key, keys.Units)
		rec, err := decode[keys.Submitted](val)
		if err != nil || rec.Name != name {
			rec = keys.Submitted{Name: name}
		}
		if cur, ok := st.units[name]; ok && cur.rec == rec {
			return
		}
		st.unitChanged(name)
		st.units[name] = &unitEntry{rec: rec}
		delete(st.problems, name)
	case strings.HasPrefix(key, keys.UnitFiles):
		h := strings.TrimPrefix(key, keys.UnitFiles)
		st.fileRevs[h] = rev
		if _, ok := st.files[h]; !ok {
			st.files[h] = val
			// the units that waited for this file (only those: a walk over every unit for
			// every new file would cost units × files)
			for name := range st.problems {
				if u := st.units[name]; u.rec.Hash.String() == h {
					st.unitChanged(name)
					u.parsed = false
					delete(st.problems, name)
				}
			}
		}
	case strings.HasPrefix(key, keys.Schedule):
		m, u, ok := split(key, keys.Schedule)
		if !ok {
			return
		}
		on := st.placements[m]
		if on == nil {
			on = map[string]kvEntry{}
			st.placements[m] = on
		}
		cur, ok := on[u]
		if ok && cur.rev > rev {
			return // an older event than our own write
		}
		if !ok {
			st.placedOn[u] = append(st.placedOn[u], m)
		}
		st.placementChanged(m, u, false)
		e := kvEntry{val: string(val), rev: rev}
		e.a, e.ok = decodeAssignment(val)
		on[u] = e
	case strings.HasPrefix(key, keys.States):
		m, u, ok := split(key, keys.States)
		if !ok {
			return
		}
		r, err := decode[keys.UnitReport](val)
		if err != nil {
			r.ActiveState = "unknown"
		}
		if st.reports[u] == nil {
			st.reports[u] = map[string]string{}
		}
		st.reports[u][m] = r.ActiveState
	case strings.HasPrefix(key, keys.Unplaced):
		u := strings.TrimPrefix(key, keys.Unplaced)
		if cur, ok := st.unplaced[u]; ok && cur.rev > rev {
			return
		}
		st.unplaced[u] = kvEntry{val: string(val), rev: rev}
	case strings.HasPrefix(key, keys.Election+"/"):
		st.election[key] = true
	}
}

// putMachine takes a registry entry. Only a new machine, or new metadata or lease, changes the
// plan: health and reboot status, which machines publish often, do not.
func (st *state) putMachine(id string, val []byte, lease int64) {
	m, err := decode[registry.Machine](val)
	if err != nil {
		m = registry.Machine{}
	}
	e := machineEntry{meta: m.Metadata, lease: lease}
	cur, ok := st.machines[id]
	if !ok || cur.lease != e.lease || !maps.Equal(cur.meta, e.meta) {
		st.dirty = true
	}
	switch {
	case !ok:
		st.inc.newM[id] = true
	case !maps.Equal(cur.meta, e.meta):
		st.inc.full, st.inc.reset = true, true
	case cur.lease != e.lease:
		st.inc.leaseM[id] = true
	}
	st.machines[id] = e
}

func (st *state) del(key string, rev int64) {
	if st.gone(key, rev) {
		return
	}
	st.touch(key)
	switch {
	case strings.HasPrefix(key, keys.Units):
		st.unitChanged(strings.TrimPrefix(key, keys.Units))
		delete(st.units, strings.TrimPrefix(key, keys.Units))
		delete(st.problems, strings.TrimPrefix(key, keys.Units))
	case strings.HasPrefix(key, keys.UnitFiles):
		delete(st.files, strings.TrimPrefix(key, keys.UnitFiles))
		delete(st.fileRevs, strings.TrimPrefix(key, keys.UnitFiles))
	case strings.HasPrefix(key, keys.Machines):
		delete(st.machines, strings.TrimPrefix(key, keys.Machines))
		st.inc.goneM[strings.TrimPrefix(key, keys.Machines)] = true
	case strings.HasPrefix(key, keys.Schedule):
		m, u, ok := split(key, keys.Schedule)
		if !ok {
			return
		}
		if cur, ok := st.placements[m][u]; ok && cur.rev <= rev {
			delete(st.placements[m], u)
			st.placedOn[u] = slices.DeleteFunc(st.placedOn[u], func(x string) bool { return x == m })
			if len(st.placedOn[u]) == 0 {
				delete(st.placedOn, u)
			}
			st.placementChanged(m, u, true)
			if len(st.placements[m]) == 0 {
				delete(st.placements, m)
			}
		}
	case strings.HasPrefix(key, keys.States):
		m, u, ok := split(key, keys.States)
		if !ok {
			return
		}
		delete(st.reports[u], m)
		if len(st.reports[u]) == 0 {
			delete(st.reports, u)
		}
	case strings.HasPrefix(key, keys.Unplaced):
		u := strings.TrimPrefix(key, keys.Unplaced)
		if cur, ok := st.unplaced[u]; ok && cur.rev <= rev {
			delete(st.unplaced, u)
		}
	case strings.HasPrefix(key, keys.Election+"/"):
		delete(st.election, key)
	}
}

// known tells whether a placement or unplaced reason is cached at rev or later.
func (st *state) known(key string, rev int64) bool {
	if m, u, ok := split(key, keys.Schedule); ok {
		cur, ok := st.placements[m][u]
		return ok && cur.rev >= rev
	}
	if u, ok := strings.CutPrefix(key, keys.Unplaced); ok {
		cur, ok := st.unplaced[u]
		return ok && cur.rev >= rev
	}
	return false
}

// gone tells whether a deleted placement or unplaced reason is already gone from the cache, or
// was written again after rev.
func (st *state) gone(key string, rev int64) bool {
	if m, u, ok := split(key, keys.Schedule); ok {
		cur, ok := st.placements[m][u]
		return !ok || cur.rev > rev
	}
	if u, ok := strings.CutPrefix(key, keys.Unplaced); ok {
		cur, ok := st.unplaced[u]
		return !ok || cur.rev > rev
	}
	return false
}

// touch marks the state dirty for a change of key. Only the keys the plan reads count (not
// reboot locks, journal requests or the election), and a report only for a scheduled unit
// placed nowhere: it may be waiting for another machine to stop it.
func (st *state) touch(key string) {
	if st.dirty {
		return
	}
	switch {
	case strings.HasPrefix(key, keys.States):
		_, u, ok := split(key, keys.States)
		if !ok {
			return
		}
		e, known := st.units[u]
		if !known || !e.rec.DesiredState.Scheduled() || len(st.placedOn[u]) > 0 {
			return
		}
	case strings.HasPrefix(key, keys.Units), strings.HasPrefix(key, keys.UnitFiles), strings.HasPrefix(key, keys.Machines),
		strings.HasPrefix(key, keys.Schedule), strings.HasPrefix(key, keys.Unplaced):
	default:
		return
	}
	st.dirty = true
}

func decodeAssignment(val []byte) (keys.Assignment, bool) {
	a, err := decode[keys.Assignment](val)
	return a, err == nil && a.Unit != ""
}

// op is one write: a put (or delete) of key, compared on its mod revision (0: absent), and on
// guard if set.
type op struct {
	key   string
	val   string
	rev   int64
	del   bool
	guard *clientv3.Cmp
}

// summary counts a plan's writes, and the units without a machine (reasons).
type summary struct {
	schedule, unschedule, update, unplaced, files, reasons int
	full                                                   bool // the whole cluster was planned
}

// running are the ActiveStates of a unit that may be running.
func running(active string) bool {
	switch active {
	case "inactive", "failed", "":
		return false
	}
	return true
}

// parse reads the unit's [X-Fleet] from its file, once.
func (st *state) parse(u *unitEntry) {
	if u.parsed {
		return
	}
	u.parsed = true
	u.problem = ""
	text, ok := st.files[u.rec.Hash.String()]
	if !ok {
		u.problem = "unit file " + u.rec.Hash.Short() + " is missing"
		st.problems[u.rec.Name] = true
		return
	}
	var parsed *unit.Unit
	var err error
	if n, nerr := unit.ParseName(u.rec.Name); nerr == nil && n.IsInstance() {
		// instances share their template's file: read it once, then only [X-Fleet] per instance
		key := u.rec.Hash.String() + " " + n.Template()
		tu, ok := st.templates[key]
		if !ok {
			tu, err = unit.Parse(n.Template(), text)
			if err != nil {
				u.problem = "unit file: " + err.Error()
				st.problems[u.rec.Name] = true
				return
			}
			st.templates[key] = tu
		}
		parsed, err = tu.Instantiate(n.Instance)
	} else {
		parsed, err = unit.Parse(u.rec.Name, text)
	}
	if err != nil {
		u.problem = "unit file: " + err.Error()
		st.problems[u.rec.Name] = true
		return
	}
	u.sched = schedule.Unit{Name: u.rec.Name, State: u.rec.DesiredState, Fleet: parsed.Fleet}
	st.inc.parsed(u)
}

// plan computes the writes that lead from the current placements to schedule.Place's, in two
// phases: first every unschedule (and unplaced-reason cleanup), then the rest; each phase
// sorted by key. It plans only what changed since the last plan when it can (incremental.go).
func (st *state) plan() ([]op, []op, summary) {
	if first, second, sum, ok := st.planIncremental(); ok {
		return first, second, sum
	}
	return st.planFull()
}

// planFull plans the whole cluster with schedule.Place.
func (st *state) planFull() ([]op, []op, summary) {
	sum := summary{full: true}
	machines := make([]schedule.Machine, 0, len(st.machines))
	for id, m := range st.machines {
		machines = append(machines, schedule.Machine{ID: id, Metadata: m.meta})
	}
	sort.Slice(machines, func(i, j int) bool { return machines[i].ID < machines[j].ID })
	current := map[string][]string{}
	for m, on := range st.placements {
		for u := range on {
			current[u] = append(current[u], m)
		}
	}
	units := make([]schedule.Unit, 0, len(st.units))
	reasons := map[string]string{}
	for name, u := range st.units {
		if !u.rec.DesiredState.Scheduled() {
			continue
		}
		st.parse(u)
		if u.problem != "" {
			reasons[name] = u.problem
			continue
		}
		ms := current[name]
		slices.Sort(ms)
		units = append(units, schedule.Unit{Name: name, State: u.rec.DesiredState, Fleet: u.sched.Fleet, Machines: ms})
	}
	sort.Slice(units, func(i, j int) bool { return units[i].Name < units[j].Name })
	p := schedule.Place(machines, units)
	for _, un := range p.Unplaced {
		reasons[un.Unit] = un.Reason
	}

	desired := map[string]map[string]keys.Assignment{}
	waiting := map[string]string{}
	for _, pl := range p.Placements {
		u := st.units[pl.Unit]
		if !u.sched.Fleet.Global && !slices.Contains(current[pl.Unit], pl.Machine) && st.runsElsewhere(pl.Unit, pl.Machine) {
			waiting[pl.Unit] = pl.Machine
			continue // wait until the other machine stopped it
		}
		a := keys.Assignment{Unit: pl.Unit, Hash: u.rec.Hash, State: u.rec.DesiredState, Lease: st.machines[pl.Machine].lease}
		if desired[pl.Machine] == nil {
			desired[pl.Machine] = map[string]keys.Assignment{}
		}
		desired[pl.Machine][pl.Unit] = a
	}
	var first, second []op
	for m, on := range st.placements {
		for u, cur := range on {
			want, ok := desired[m][u]
			switch {
			case !ok:
				first = append(first, op{key: keys.Placement(m, u), rev: cur.rev, del: true})
				sum.unschedule++
			case !cur.ok || want != cur.a:
				raw, _ := encode(want)
				second = append(second, op{key: keys.Placement(m, u), val: raw, rev: cur.rev})
				sum.update++
			}
		}
	}
	for m, on := range desired {
		for u, a := range on {
			if _, ok := st.placements[m][u]; !ok {
				raw, _ := encode(a)
				second = append(second, op{key: keys.Placement(m, u), val: raw})
				sum.schedule++
			}
		}
	}
	for u, cur := range st.unplaced {
		if _, ok := reasons[u]; !ok {
			first = append(first, op{key: keys.UnplacedUnit(u), rev: cur.rev, del: true})
		}
	}
	// unit files no record and no placement refers to (destroyed units'), kept while a record
	// written since the engine's view could refer to them
	used := map[string]bool{}
	for _, u := range st.units {
		used[u.rec.Hash.String()] = true
	}
	for _, on := range st.placements {
		for _, cur := range on {
			used[cur.a.Hash.String()] = true
		}
	}
	for h, rev := range st.fileRevs {
		if !used[h] {
			guard := clientv3.Compare(clientv3.ModRevision(keys.Units), "<", st.unitsRev+1).WithPrefix()
			first = append(first, op{key: keys.UnitFile(h), rev: rev, del: true, guard: &guard})
			sum.files++
		}
	}
	sum.reasons = len(reasons)
	for u, reason := range reasons {
		raw, _ := encode(keys.UnplacedReason{Unit: u, Reason: reason})
		cur, ok := st.unplaced[u]
		if ok && cur.val == raw {
			continue
		}
		second = append(second, op{key: keys.UnplacedUnit(u), val: raw, rev: cur.rev})
		sum.unplaced++
	}
	st.inc.planned(reasons, waiting)
	slices.SortFunc(first, byKey)
	slices.SortFunc(second, byKey)
	return first, second, sum
}

func byKey(a, b op) int { return strings.Compare(a.key, b.key) }

// runsElsewhere tells whether an agent other than machine's reports the unit as possibly
// running.
func (st *state) runsElsewhere(u, machine string) bool {
	for m, active := range st.reports[u] {
		if m != machine && running(active) {
			return true
		}
	}
	return false
}
