package schedule

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kiln-cluster/kiln/node/unit"
)

// randomCluster builds a small cluster from fuzz bytes: up to 6 machines with metadata, up to
// 12 units with every kind of requirement and current machines (some gone).
func randomCluster(data []byte) ([]Machine, []Unit) {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := int(data[0])
		data = data[1:]
		return b
	}
	nm := next() % 7
	machines := make([]Machine, nm)
	for i := range machines {
		md := map[string]string{}
		if v := next() % 3; v > 0 {
			md["region"] = []string{"", "east", "west"}[v]
		}
		if next()%2 == 0 {
			md["disk"] = "ssd"
		}
		md["memory"] = fmt.Sprint(next() % 64)
		machines[i] = Machine{ID: fmt.Sprintf("m%d", i), Metadata: md}
	}
	nu := next() % 13
	names := make([]string, nu)
	for i := range names {
		names[i] = fmt.Sprintf("%c%d.service", 'a'+next()%3, i)
	}
	units := make([]Unit, nu)
	for i := range units {
		var f unit.Fleet
		switch next() % 9 {
		case 0:
			f.Conflicts = []string{fmt.Sprintf("%c*", 'a'+next()%3)}
		case 1:
			f.MachineOf = []string{names[next()%nu]}
		case 2:
			f.Metadata = unit.Metadata{{Key: "region", Value: "east"}}
		case 3:
			f.Metadata = unit.Metadata{{Key: "region", Op: unit.OpNotEqual, Value: "east"}}
		case 4:
			f.Global = true
			if next()%2 == 0 {
				f.Conflicts = []string{names[next()%nu]}
			}
		case 5:
			f.Replaces = []string{names[next()%nu]}
		case 6:
			f.MachineID = fmt.Sprintf("m%d", next()%8)
		case 7:
			f.Conflicts = []string{names[next()%nu]}
			f.Metadata = unit.Metadata{{Key: "disk", Value: "ssd"}}
		case 8:
			f.Metadata = unit.Metadata{{Key: "memory", Op: unit.OpGreaterEqual, Value: "32"}}
		}
		state := unit.StateLaunched
		if next()%5 == 0 {
			state = unit.StateInactive
		}
		var on []string
		for k := next() % 3; k > 0; k-- {
			on = append(on, fmt.Sprintf("m%d", next()%8))
		}
		units[i] = Unit{Name: names[i], State: state, Fleet: f, Machines: on}
	}
	return machines, units
}

// FuzzPlace checks on random small clusters that Place never panics, that every placement
// honours its unit's requirements and conflicts, and that applying a plan and planning again
// changes nothing.
func FuzzPlace(f *testing.F) {
	f.Add([]byte{3, 1, 0, 2, 1, 0, 0, 5, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4})
	f.Add([]byte{5, 0, 0, 1, 1, 2, 0, 0, 1, 1, 0, 8, 0, 0, 0, 0, 0, 1, 1, 0, 1, 2, 0, 4, 1})
	f.Add([]byte{2, 1, 1, 2, 0, 6, 1, 5, 0, 1, 1, 5, 1, 0, 1, 4, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		machines, units := randomCluster(data)
		p := Place(machines, units)
		check(t, machines, units, p)

		applied := slices.Clone(units)
		for i := range applied {
			applied[i].Machines = p.MachinesOf(applied[i].Name)
		}
		again := Place(machines, applied)
		if len(again.Actions) != 0 {
			t.Fatalf("planning again moves units: %v\nfirst plan %v", again.Actions, p.Actions)
		}
	})
}

func check(t *testing.T, machines []Machine, units []Unit, p Plan) {
	t.Helper()
	byName := map[string]Unit{}
	for _, x := range units {
		if _, dup := byName[x.Name]; !dup {
			byName[x.Name] = x
		}
	}
	mByID := map[string]Machine{}
	for _, m := range machines {
		mByID[m.ID] = m
	}
	on := map[string][]string{}
	for _, pl := range p.Placements {
		x := byName[pl.Unit]
		if !x.State.Scheduled() {
			t.Fatalf("inactive %s placed", pl.Unit)
		}
		m, ok := mByID[pl.Machine]
		if !ok {
			t.Fatalf("%s placed on unknown machine %s", pl.Unit, pl.Machine)
		}
		if !x.Fleet.Metadata.Match(m.Metadata) {
			t.Fatalf("%s on %s breaks MachineMetadata", pl.Unit, pl.Machine)
		}
		if !x.Fleet.Global {
			if x.Fleet.MachineID != "" && x.Fleet.MachineID != pl.Machine {
				t.Fatalf("%s on %s breaks MachineID %s", pl.Unit, pl.Machine, x.Fleet.MachineID)
			}
			for _, peer := range x.Fleet.MachineOf {
				if !slices.Contains(p.MachinesOf(peer), pl.Machine) {
					t.Fatalf("%s on %s without MachineOf %s", pl.Unit, pl.Machine, peer)
				}
			}
			if n := len(p.MachinesOf(pl.Unit)); n != 1 {
				t.Fatalf("%s on %d machines", pl.Unit, n)
			}
		}
		on[pl.Machine] = append(on[pl.Machine], pl.Unit)
	}
	for m, names := range on {
		for i, a := range names {
			for _, b := range names[i+1:] {
				ua, ub := byName[a], byName[b]
				if ua.Fleet.ConflictsWith(b) || ub.Fleet.ConflictsWith(a) ||
					(!ua.Fleet.Global && ua.Fleet.ReplacesUnit(b)) || (!ub.Fleet.Global && ub.Fleet.ReplacesUnit(a)) {
					t.Fatalf("%s and %s share %s", a, b, m)
				}
			}
		}
	}
	placed := map[string]bool{}
	for _, pl := range p.Placements {
		placed[pl.Unit] = true
	}
	for name, x := range byName {
		if x.State.Scheduled() && !placed[name] {
			found := false
			for _, up := range p.Unplaced {
				found = found || up.Unit == name
			}
			if !found {
				t.Fatalf("%s neither placed nor reported", name)
			}
		}
	}
}
