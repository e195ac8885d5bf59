// Package schedule decides where fleet-style units run: given the machines and the units
// (their [X-Fleet] requirements, desired state and current machines), Place computes every
// placement and the sorted actions that lead there. It is pure: no etcd, no clock, the same
// input always gives the same plan, and planning again after applying a plan changes
// nothing. The scheduler engine reads the cluster, calls Place and applies the actions with
// compare-and-swap; after a small change it places only the units concerned with an Index,
// which puts each where Place would.
//
// The rules are fleet's (engine/scheduler.go, agent/state.go), made deterministic:
//   - a unit stays where it is while its machine exists and still satisfies it;
//   - otherwise it goes to the matching machine with the fewest units (global units count),
//     ties broken by the smallest machine ID;
//   - MachineID pins; MachineMetadata filters (key=value rules of one key ORed, keys ANDed;
//     kiln adds key!=value and numeric <, <=, >, >=, ANDed);
//   - MachineOf follows the named units, in chains (peers are placed first; a cycle is
//     reported);
//   - Conflicts keeps two units apart when either one's glob matches the other's name;
//   - Global runs a unit on every machine that matches its metadata and holds no conflicting
//     unit; a global unit yields to an ordinary unit it conflicts with;
//   - Replaces keeps two units apart with priority: a replacing unit avoids the units it
//     replaces when it can, and when it cannot (or when they share a machine now), the
//     replaced unit moves; global units and units that others follow are never moved.
package schedule

import (
	"fmt"
	"sort"

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
