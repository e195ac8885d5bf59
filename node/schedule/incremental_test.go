package schedule

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// current is a Current over a plan's placements.
type current struct {
	machines    map[string]map[string]string
	kept, added map[string][]*Unit
}

func newCurrent(machines []Machine, units []Unit, p Plan) *current {
	c := &current{machines: map[string]map[string]string{}, kept: map[string][]*Unit{}, added: map[string][]*Unit{}}
	for _, m := range machines {
		c.machines[m.ID] = m.Metadata
	}
	byName := map[string]*Unit{}
	for i := range units {
		byName[units[i].Name] = &units[i]
	}
	for _, pl := range p.Placements {
		c.kept[pl.Machine] = append(c.kept[pl.Machine], byName[pl.Unit])
	}
	for _, on := range c.kept {
		SortKept(on)
	}
	return c
}

func (c *current) Machine(id string) (map[string]string, bool) {
	md, ok := c.machines[id]
	return md, ok
}
func (c *current) NumMachines() int { return len(c.machines) }
func (c *current) Machines(f func(string, map[string]string)) {
	for id, md := range c.machines {
		f(id, md)
	}
}

// Placed is not called: the clusters have no MachineOf.
func (c *current) Placed(name string) (*Unit, []string) {
	var found *Unit
	var on []string
	for id := range c.machines {
		for _, u := range c.On(id) {
			if u.Name == name {
				found, on = u, append(on, id)
			}
		}
	}
	slices.Sort(on)
	return found, on
}
func (c *current) On(id string) []*Unit {
	return append(slices.Clone(c.kept[id]), c.added[id]...)
}

// TestIndexAgreesWithPlace: after a machine dies, or units are added, placing the units
// without a machine one by one in name order with an Index gives Place's placements. The
// clusters are FuzzPlace's, without MachineOf and Replaces (which the engine plans in full).
func TestIndexAgreesWithPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	compared := 0
	for round := range 3000 {
		data := make([]byte, 64)
		for i := range data {
			data[i] = byte(r.IntN(256))
		}
		machines, units := randomCluster(data)
		units = slices.DeleteFunc(units, func(u Unit) bool { return len(u.Fleet.MachineOf) > 0 || len(u.Fleet.Replaces) > 0 })
		seen := map[string]bool{}
		units = slices.DeleteFunc(units, func(u Unit) bool { dup := seen[u.Name]; seen[u.Name] = true; return dup })
		if len(machines) == 0 || len(units) == 0 {
			continue
		}
		before := Place(machines, units)
		for i := range units {
			units[i].Machines = before.MachinesOf(units[i].Name)
		}
		var moved []string // units without a machine after the change
		after := machines
		if round%2 == 0 { // a machine dies
			dead := machines[r.IntN(len(machines))].ID
			after = slices.DeleteFunc(slices.Clone(machines), func(m Machine) bool { return m.ID == dead })
			for i, u := range units {
				if slices.Contains(u.Machines, dead) {
					units[i].Machines = slices.DeleteFunc(slices.Clone(u.Machines), func(m string) bool { return m == dead })
					if !u.Fleet.Global {
						moved = append(moved, u.Name)
					}
				}
			}
		} else { // units are added
			for k := range 1 + r.IntN(3) {
				u := units[r.IntN(len(units))]
				if u.Fleet.Global || !u.State.Scheduled() {
					continue
				}
				u.Name = fmt.Sprintf("new%d-%s", k, u.Name)
				u.Machines = nil
				units = append(units, u)
				moved = append(moved, u.Name)
			}
		}
		if slices.ContainsFunc(units, func(u Unit) bool {
			return u.State.Scheduled() && !u.Fleet.Global && len(u.Machines) == 0 && !slices.Contains(moved, u.Name) && !isUnplaced(before, u.Name)
		}) {
			t.Fatalf("round %d: a unit is neither placed, moved nor unplaced", round)
		}
		want := Place(after, units)

		cur := newCurrent(after, units, Plan{Placements: slices.DeleteFunc(slices.Clone(before.Placements), func(p Placement) bool {
			return !slices.ContainsFunc(after, func(m Machine) bool { return m.ID == p.Machine }) || slices.Contains(moved, p.Unit)
		})})
		var x Index
		slices.Sort(moved)
		got := map[string]string{}
		for _, name := range moved {
			u := &units[slices.IndexFunc(units, func(u Unit) bool { return u.Name == name })]
			m, un := x.PlaceOne(cur, u)
			if un != nil {
				if !isUnplaced(want, name) {
					t.Fatalf("round %d: %s unplaced (%s), Place put it on %v", round, name, un.Reason, want.MachinesOf(name))
				}
				if i := slices.IndexFunc(want.Unplaced, func(w Unplaced) bool { return w.Unit == name }); want.Unplaced[i] != *un {
					t.Errorf("round %d: %s unplaced: %v, Place says %v", round, name, *un, want.Unplaced[i])
				}
				continue
			}
			got[name] = m
			cur.added[m] = append(cur.added[m], u)
		}
		for _, name := range moved {
			if w := want.MachinesOf(name); len(w) > 0 && (len(w) != 1 || got[name] != w[0]) {
				t.Fatalf("round %d: %s on %q, Place put it on %v", round, name, got[name], w)
			}
			compared++
		}
		// the other units stay where they were
		for _, u := range units {
			if !slices.Contains(moved, u.Name) && !slices.Equal(want.MachinesOf(u.Name), u.Machines) && !isUnplaced(before, u.Name) {
				t.Fatalf("round %d: Place moved %s from %v to %v", round, u.Name, u.Machines, want.MachinesOf(u.Name))
			}
		}
	}
	if compared < 1000 {
		t.Fatalf("only %d units compared", compared)
	}
}

func isUnplaced(p Plan, name string) bool {
	return slices.ContainsFunc(p.Unplaced, func(u Unplaced) bool { return u.Unit == name })
}
