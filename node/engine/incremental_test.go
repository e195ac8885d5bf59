package engine

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

// twin applies the same events to two states: one planned as the engine plans (incrementally
// when it can), one planned in full every time. Each keeps its own writes.
type twin struct {
	t        *testing.T
	inc, ref *state
	rev      int64
	files    map[string]*unit.Unit // the templates
	// plans counts the incremental state's plans, and how many were incremental
	plans, incremental int
}

// templates of the random clusters: every rule, and globals and MachineOf (which the
// incremental plan hands to a full one) now and then.
var twinTemplates = map[string]string{
	"app@.service":   "Conflicts=app@*.service\n",
	"web@.service":   "MachineMetadata=region=east\nMachineMetadata=region=west\n",
	"db@.service":    "MachineMetadata=disk=ssd\nConflicts=db@*.service\n",
	"plain@.service": "",
	"pin@.service":   "MachineID=m%i\n",
	"solo@.service":  "Conflicts=plain@1.service\nConflicts=web@*\n",
	"edge@.service":  "Global=true\nMachineMetadata=region=west\nConflicts=solo@*\n",
	"side@.service":  "MachineOf=app@%i.service\n",
}

func newTwin(t *testing.T) *twin {
	tw := &twin{t: t, inc: newState(), ref: newState(), files: map[string]*unit.Unit{}}
	for name, xfleet := range twinTemplates {
		u, err := unit.Parse(name, []byte("[Service]\nExecStart=/bin/app %i\n\n[X-Fleet]\n"+xfleet))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tw.files[name] = u
	}
	return tw
}

func (tw *twin) put(key, val string, lease int64) {
	tw.rev++
	tw.inc.put(key, []byte(val), tw.rev, lease)
	tw.ref.put(key, []byte(val), tw.rev, lease)
}

func (tw *twin) del(key string) {
	tw.rev++
	tw.inc.del(key, tw.rev)
	tw.ref.del(key, tw.rev)
}

func (tw *twin) machine(id string, lease int64, md map[string]string) {
	raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: md})
	tw.put(keys.Machine(id), string(raw), lease)
}

// submit writes the template's file and the unit's record, as kiln ctl submit does.
func (tw *twin) submit(name, template string, state unit.State) {
	f := tw.files[template]
	tw.put(keys.UnitFile(f.Hash().String()), string(f.Bytes()), 0)
	raw, _ := json.Marshal(keys.Submitted{Name: name, Hash: f.Hash(), DesiredState: state})
	tw.put(keys.Unit(name), string(raw), 0)
}

func (tw *twin) report(machine, name, active string) {
	raw, _ := json.Marshal(keys.UnitReport{Unit: name, ActiveState: active})
	tw.put(keys.UnitState(machine, name), string(raw), 0)
}

// plan plans both states and applies their writes (both at the same revisions), then compares
// them.
func (tw *twin) plan(step string) {
	tw.t.Helper()
	first, second, sum := tw.inc.plan()
	tw.plans++
	if !sum.full {
		tw.incremental++
	}
	tw.ref.inc.full = true
	rfirst, rsecond, _ := tw.ref.plan()
	rev := tw.rev
	for _, o := range append(first, second...) {
		rev++
		tw.inc.applyWritten(written{op: o, rev: rev})
	}
	rrev := tw.rev
	for _, o := range append(rfirst, rsecond...) {
		rrev++
		tw.ref.applyWritten(written{op: o, rev: rrev})
	}
	tw.rev = max(rev, rrev)
	tw.compare(step, sum.full)
}

func (tw *twin) compare(step string, full bool) {
	tw.t.Helper()
	got, want := placementsOf(tw.inc), placementsOf(tw.ref)
	if !slices.Equal(got, want) {
		tw.t.Fatalf("after %s (full plan: %v): placements differ\n incremental %q\n        full %q", step, full, got, want)
	}
	gotU, wantU := reasonsOf(tw.inc), reasonsOf(tw.ref)
	if !slices.Equal(gotU, wantU) {
		tw.t.Fatalf("after %s (full plan: %v): unplaced differ\n incremental %q\n        full %q", step, full, gotU, wantU)
	}
	checkPlacements(tw.t, step, tw.inc)
}

// reasonsOf gives the units without a machine and why, without the units named as blocking
// (for a unit that fits nowhere and was not tried again, they may be named as the last plan
// found them, until the next full plan).
func reasonsOf(st *state) []string {
	var out []string
	for u, e := range st.unplaced {
		var r keys.UnplacedReason
		if err := json.Unmarshal([]byte(e.val), &r); err != nil {
			panic(err)
		}
		reason, _, _ := strings.Cut(r.Reason, " (")
		out = append(out, u+": "+reason)
	}
	slices.Sort(out)
	return out
}

func placementsOf(st *state) []string {
	var out []string
	for m, on := range st.placements {
		for u, e := range on {
			out = append(out, fmt.Sprintf("%s on %s (%s lease %d)", u, m, e.a.State, e.a.Lease))
		}
	}
	slices.Sort(out)
	return out
}

// checkPlacements checks the invariants of a plan once written: placed units are scheduled
// and on live machines that satisfy them, with the units they follow and apart from the units
// they conflict with, once each unless global.
func checkPlacements(t *testing.T, step string, st *state) {
	t.Helper()
	for m, on := range st.placements {
		me, live := st.machines[m]
		for a := range on {
			su := st.planned(a)
			switch {
			case su == nil:
				t.Fatalf("after %s: %s placed on %s, not planned", step, a, m)
			case !live:
				t.Fatalf("after %s: %s placed on gone machine %s", step, a, m)
			case !su.Fleet.Metadata.Match(me.meta):
				t.Fatalf("after %s: %s on %s breaks MachineMetadata", step, a, m)
			case !su.Fleet.Global && len(st.placedOn[a]) != 1:
				t.Fatalf("after %s: %s on %q", step, a, st.placedOn[a])
			case !su.Fleet.Global && su.Fleet.MachineID != "" && su.Fleet.MachineID != m:
				t.Fatalf("after %s: %s on %s breaks MachineID", step, a, m)
			}
			for _, peer := range su.Fleet.MachineOf {
				// (a peer that waits for another machine to stop it is not written yet, while
				// the unit that follows it is: the full plan does so too)
				if _, ok := on[peer]; !ok && st.inc.waiting[peer] == "" {
					t.Fatalf("after %s: %s on %s without MachineOf %s", step, a, m, peer)
				}
			}
			for b := range on {
				if sb := st.planned(b); a != b && sb != nil && (su.Fleet.ConflictsWith(b) || sb.Fleet.ConflictsWith(a)) {
					t.Fatalf("after %s: %s and %s share %s", step, a, b, m)
				}
			}
		}
	}
}

// TestIncrementalPlan: over random sequences of changes (units submitted, stopped, changed and
// destroyed; machines that come, die, come back or get a new lease; units still running
// elsewhere), the incremental plan writes the placements a full plan writes, keeps the
// invariants, and is incremental for most changes.
func TestIncrementalPlan(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	templates := slices.Sorted(maps.Keys(twinTemplates))
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			tw := newTwin(t)
			// seeds below 10 have no global unit and no MachineOf: nearly every plan is incremental
			simple := seed < 10
			regions := []string{"east", "west", "north"}
			lease := int64(100)
			md := func() map[string]string {
				m := map[string]string{"region": regions[r.IntN(3)]}
				if r.IntN(2) == 0 {
					m["disk"] = "ssd"
				}
				return m
			}
			for i := range 6 {
				lease++
				tw.machine(fmt.Sprintf("m%d", i), lease, md())
			}
			tw.plan("the first plan")
			running := map[string]string{} // unit → a machine that still reports it running
			for step := range 150 {
				var what string
				switch k := r.IntN(20); {
				case k < 10: // a new unit, or a new version of one
					tmpl := templates[r.IntN(len(templates))]
					if simple && (tmpl == "edge@.service" || tmpl == "side@.service") {
						tmpl = "plain@.service"
					}
					name := strings.TrimSuffix(tmpl, "@.service") + "@" + fmt.Sprint(r.IntN(12)) + ".service"
					state := []unit.State{unit.StateLaunched, unit.StateLaunched, unit.StateLoaded, unit.StateInactive}[r.IntN(4)]
					if r.IntN(4) == 0 { // a new version of the template, with other [X-Fleet]
						tmpl = templates[r.IntN(len(templates))]
						if simple && (tmpl == "edge@.service" || tmpl == "side@.service") {
							tmpl = "plain@.service"
						}
					}
					tw.submit(name, tmpl, state)
					what = "submit " + name + " " + string(state)
				case k < 11: // destroy a unit
					names := slices.Sorted(maps.Keys(tw.inc.units))
					if len(names) == 0 {
						continue
					}
					name := names[r.IntN(len(names))]
					tw.del(keys.Unit(name))
					what = "destroy " + name
				case k < 13: // a machine dies: its lease takes its registry entry and reports
					ids := slices.Sorted(maps.Keys(tw.inc.machines))
					if len(ids) == 0 {
						continue
					}
					id := ids[r.IntN(len(ids))]
					tw.del(keys.Machine(id))
					for u := range tw.inc.placements[id] {
						tw.del(keys.UnitState(id, u))
					}
					what = "machine " + id + " dies"
				case k < 15: // a machine comes (or comes back, perhaps with other metadata)
					lease++
					id := fmt.Sprintf("m%d", r.IntN(9))
					tw.machine(id, lease, md())
					what = "machine " + id + " comes"
				case k < 16: // a machine's new lease, same metadata
					ids := slices.Sorted(maps.Keys(tw.inc.machines))
					if len(ids) == 0 {
						continue
					}
					id := ids[r.IntN(len(ids))]
					lease++
					raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: tw.inc.machines[id].meta})
					tw.put(keys.Machine(id), string(raw), lease)
					what = "machine " + id + " new lease"
				case k < 18: // a unit is still stopping on a machine it left (or stopped now)
					if len(running) > 0 && r.IntN(2) == 0 {
						for _, u := range slices.Sorted(maps.Keys(running)) {
							tw.del(keys.UnitState(running[u], u))
							delete(running, u)
						}
						what = "units stopped"
						break
					}
					names := slices.Sorted(maps.Keys(tw.inc.placedOn))
					if len(names) == 0 {
						continue
					}
					name := names[r.IntN(len(names))]
					m := fmt.Sprintf("m%d", 10+r.IntN(3))
					tw.report(m, name, "deactivating")
					running[name] = m
					what = name + " still running on " + m
				case k < 19: // a placement deleted by another
					names := slices.Sorted(maps.Keys(tw.inc.placedOn))
					if len(names) == 0 {
						continue
					}
					name := names[r.IntN(len(names))]
					tw.del(keys.Placement(tw.inc.placedOn[name][0], name))
					what = "placement of " + name + " deleted"
				default:
					tw.inc.inc.full = true // the tick
					what = "tick"
				}
				tw.plan(fmt.Sprintf("step %d: %s", step, what))
			}
			if simple && tw.incremental < tw.plans/2 {
				t.Errorf("only %d of %d plans were incremental", tw.incremental, tw.plans)
			}
			t.Logf("%d of %d plans incremental, %d placements", tw.incremental, tw.plans, len(placementsOf(tw.inc)))
		})
	}
}
