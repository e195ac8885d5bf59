package schedule

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/node/unit"
)

// u builds a launched unit from its [X-Fleet] lines, parsed by the real parser; on lists its
// current machines.
func u(t testing.TB, name, xfleet string, on ...string) Unit {
	t.Helper()
	parsed, err := unit.Parse(name, []byte("[Service]\nExecStart=/bin/true\n[X-Fleet]\n"+xfleet))
	if err != nil {
		t.Fatalf("unit %s: %v", name, err)
	}
	return Unit{Name: name, State: unit.StateLaunched, Fleet: parsed.Fleet, Machines: on}
}

func inactive(x Unit) Unit { x.State = unit.StateInactive; return x }
func loaded(x Unit) Unit   { x.State = unit.StateLoaded; return x }

func ms(ids ...string) []Machine {
	out := make([]Machine, len(ids))
	for i, id := range ids {
		out[i] = Machine{ID: id}
	}
	return out
}

// mm builds a machine with metadata "k=v,k=v".
func mm(id, md string) Machine {
	m := Machine{ID: id, Metadata: map[string]string{}}
	for _, kv := range strings.Split(md, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m.Metadata[k] = v
		}
	}
	return m
}

// where gives "unit=machine[,machine]" for every placed unit, sorted.
func where(p Plan) string {
	var parts []string
	for _, pl := range p.Placements {
		if n := len(parts); n > 0 && strings.HasPrefix(parts[n-1], pl.Unit+"=") {
			parts[n-1] += "," + pl.Machine
			continue
		}
		parts = append(parts, pl.Unit+"="+pl.Machine)
	}
	return strings.Join(parts, " ")
}

func actions(p Plan) string {
	var parts []string
	for _, a := range p.Actions {
		parts = append(parts, fmt.Sprintf("%s %s@%s", a.Kind, a.Unit, a.Machine))
	}
	return strings.Join(parts, "; ")
}

func unplaced(t *testing.T, p Plan, name string, sentinel error, reason string) {
	t.Helper()
	for _, x := range p.Unplaced {
		if x.Unit != name {
			continue
		}
		if !errors.Is(x, sentinel) || !strings.Contains(x.Reason, reason) {
			t.Fatalf("%s unplaced with %v %q, want %v containing %q", name, x.Err, x.Reason, sentinel, reason)
		}
		return
	}
	t.Fatalf("%s is not unplaced; placements %s; unplaced %v", name, where(p), p.Unplaced)
}

func noUnplaced(t *testing.T, p Plan) {
	t.Helper()
	if len(p.Unplaced) > 0 {
		t.Fatalf("unexpected unplaced units: %v", p.Unplaced)
	}
}

func TestPlacement(t *testing.T) {
	tests := []struct {
		name     string
		machines []Machine
		units    func(t testing.TB) []Unit
		want     string // where(plan)
	}{
		{
			name:     "spread: fewest units first, ties by machine ID",
			machines: ms("m3", "m1", "m2"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", ""), u(t, "b.service", ""), u(t, "c.service", ""), u(t, "d.service", ""), u(t, "e.service", "")}
			},
			want: "a.service=m1 b.service=m2 c.service=m3 d.service=m1 e.service=m2",
		},
		{
			name:     "current units count as load and stay",
			machines: ms("m1", "m2", "m3"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "", "m1"), u(t, "b.service", "", "m1"), u(t, "c.service", ""), u(t, "d.service", "")}
			},
			want: "a.service=m1 b.service=m1 c.service=m2 d.service=m3",
		},
		{
			name:     "inactive units take no machine and no load",
			machines: ms("m1", "m2"),
			units: func(t testing.TB) []Unit {
				return []Unit{inactive(u(t, "a.service", "")), u(t, "b.service", ""), loaded(u(t, "c.service", ""))}
			},
			want: "b.service=m1 c.service=m2",
		},
		{
			name:     "MachineID pins",
			machines: ms("m1", "m2", "m3"),
			units:    func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "MachineID=m3\n")} },
			want:     "a.service=m3",
		},
		{
			name:     "MachineMetadata filters",
			machines: []Machine{mm("m1", "region=west"), mm("m2", "region=east"), mm("m3", "region=east,disk=ssd")},
			units: func(t testing.TB) []Unit {
				return []Unit{
					u(t, "any-east.service", "MachineMetadata=region=east\n"),
					u(t, "east-ssd.service", `MachineMetadata="region=east" "disk=ssd"`+"\n"),
					u(t, "east-or-west.service", "MachineMetadata=region=east\nMachineMetadata=region=west\n"),
					u(t, "not-east.service", "MachineMetadata=!region=east\n"),
				}
			},
			want: "any-east.service=m2 east-or-west.service=m1 east-ssd.service=m3 not-east.service=m1",
		},
		{
			name:     "MachineMetadata comparisons (kiln's extension)",
			machines: []Machine{mm("m1", "memory=8"), mm("m2", "memory=32"), mm("m3", "memory=128"), mm("m4", "")},
			units: func(t testing.TB) []Unit {
				return []Unit{
					u(t, "big.service", "MachineMetadata=memory>=64\n"),
					u(t, "mid.service", `MachineMetadata="memory>=16" "memory<64"`+"\n"),
					u(t, "small.service", "MachineMetadata=memory<16\n"),
				}
			},
			want: "big.service=m3 mid.service=m2 small.service=m1",
		},
		{
			name:     "MachineOf chain follows the first unit",
			machines: ms("m1", "m2", "m3"),
			units: func(t testing.TB) []Unit {
				return []Unit{
					u(t, "filler.service", ""),
					u(t, "a-sidekick.service", "MachineOf=z-app.service\n"),
					u(t, "b-sidekick.service", "MachineOf=a-sidekick.service\n"),
					u(t, "z-app.service", ""),
				}
			},
			want: "a-sidekick.service=m2 b-sidekick.service=m2 filler.service=m1 z-app.service=m2",
		},
		{
			name:     "MachineOf with metadata: the peer's machine must match too",
			machines: []Machine{mm("m1", "disk=ssd"), mm("m2", "disk=hdd")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "app.service", "MachineID=m2\n"), u(t, "side.service", "MachineOf=app.service\nMachineMetadata=disk=hdd\n")}
			},
			want: "app.service=m2 side.service=m2",
		},
		{
			name:     "Global on every matching machine",
			machines: []Machine{mm("m1", "role=edge"), mm("m2", "role=db"), mm("m3", "role=edge")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "everywhere.service", "Global=true\n"), u(t, "edge.service", "Global=true\nMachineMetadata=role=edge\n")}
			},
			want: "edge.service=m1,m3 everywhere.service=m1,m2,m3",
		},
		{
			name:     "Global skips machines with a conflicting unit",
			machines: ms("m1", "m2", "m3"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "db.service", "", "m2"), u(t, "agent.service", "Global=true\nConflicts=db.service\n")}
			},
			want: "agent.service=m1,m3 db.service=m2",
		},
		{
			name:     "a unit avoids machines where a global unit conflicts with it",
			machines: ms("m1", "m2", "m3"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "agent.service", "Global=true\nMachineMetadata=!role=db\n", "m1", "m2"), u(t, "db.service", "Conflicts=agent.service\n")}
			},
			want: "agent.service=m1,m2 db.service=m3",
		},
		{
			name:     "global units count as load",
			machines: []Machine{mm("m1", "edge=1"), mm("m2", "")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "edge.service", "Global=true\nMachineMetadata=edge=1\n", "m1"), u(t, "x.service", "")}
			},
			want: "edge.service=m1 x.service=m2",
		},
		{
			name:     "MachineOf a global unit: any machine it runs on",
			machines: []Machine{mm("m1", ""), mm("m2", "edge=1"), mm("m3", "edge=1")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "edge.service", "Global=true\nMachineMetadata=edge=1\n"), u(t, "side.service", "MachineOf=edge.service\n")}
			},
			want: "edge.service=m2,m3 side.service=m2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Place(tt.machines, tt.units(t))
			noUnplaced(t, p)
			if got := where(p); got != tt.want {
				t.Fatalf("placements\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestConflictsSymmetric(t *testing.T) {
	// Only one side names the other; either way they land apart.
	for _, units := range [][]Unit{
		{u(t, "a.service", "Conflicts=b.service\n", "m1"), u(t, "b.service", "")},
		{u(t, "a.service", "", "m1"), u(t, "b.service", "Conflicts=a.service\n")},
		{u(t, "a.service", "Conflicts=b*\n", "m1"), u(t, "b.service", "")},
	} {
		// m1 is the least loaded for b only if a's conflict were ignored: give m2 more load.
		units = append(units, u(t, "c.service", "", "m2"))
		p := Place(ms("m1", "m2", "m3"), units)
		noUnplaced(t, p)
		if got := p.MachinesOf("b.service"); !reflect.DeepEqual(got, []string{"m3"}) {
			t.Errorf("b on %v, want m3 (%s)", got, where(p))
		}
	}
	// One machine: the second unit cannot go anywhere, whichever names the other.
	p := Place(ms("m1"), []Unit{u(t, "a.service", "", "m1"), u(t, "b.service", "Conflicts=a.service\n")})
	unplaced(t, p, "b.service", ErrConflict, "the only matching machine runs a conflicting unit (a.service on m1)")
	p = Place(ms("m1"), []Unit{u(t, "a.service", "Conflicts=b.service\n", "m1"), u(t, "b.service", "")})
	unplaced(t, p, "b.service", ErrConflict, "the only matching machine runs a conflicting unit")
}

// The talk's example: a template with Conflicts=my-app@*.service and two instances on five
// machines land on two distinct machines.
func TestTalkExample(t *testing.T) {
	tmpl, err := unit.Parse("my-app@.service", []byte("[Unit]\nDescription=My app %i\n\n[Service]\nExecStart=/usr/bin/docker run --rm --name my-app-%i nginx\n\n[X-Fleet]\nConflicts=my-app@*.service\n"))
	if err != nil {
		t.Fatal(err)
	}
	var units []Unit
	for _, i := range []string{"1", "2"} {
		inst, err := tmpl.Instantiate(i)
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, Unit{Name: inst.Name, State: unit.StateLaunched, Fleet: inst.Fleet})
	}
	p := Place(ms("m1", "m2", "m3", "m4", "m5"), units)
	noUnplaced(t, p)
	a, b := p.MachinesOf("my-app@1.service"), p.MachinesOf("my-app@2.service")
	if len(a) != 1 || len(b) != 1 || a[0] == b[0] {
		t.Fatalf("instances on %v and %v, want two distinct machines", a, b)
	}
	if got := where(p); got != "my-app@1.service=m1 my-app@2.service=m2" {
		t.Errorf("placements %s", got)
	}

	// Even where the conflict-free choice is not the least loaded one.
	busy := append(units[:2:2], u(t, "x.service", "", "m2"), u(t, "y.service", "", "m3"), u(t, "z.service", "", "m4"), u(t, "w.service", "", "m5"))
	p = Place(ms("m1", "m2", "m3", "m4", "m5"), busy)
	if got := where(p); !strings.HasPrefix(got, "my-app@1.service=m1 my-app@2.service=m2") {
		t.Errorf("placements %s", got)
	}

	// Three instances on two machines: the third fits nowhere.
	inst3, _ := tmpl.Instantiate("3")
	units = append(units, Unit{Name: inst3.Name, State: unit.StateLaunched, Fleet: inst3.Fleet})
	p = Place(ms("m1", "m2"), units)
	unplaced(t, p, "my-app@3.service", ErrConflict, "all 2 matching machines run a conflicting unit (my-app@1.service on m1, my-app@2.service on m2)")
}

func TestUnplaceable(t *testing.T) {
	tests := []struct {
		name     string
		machines []Machine
		units    func(t testing.TB) []Unit
		unit     string
		sentinel error
		reason   string
	}{
		{"no machines", nil, func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "")} }, "a.service", ErrNoMachines, "no machines in the cluster"},
		{"metadata matches nothing", []Machine{mm("m1", "region=west"), mm("m2", "")},
			func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "MachineMetadata=region=east\n")} },
			"a.service", ErrMetadata, "no machine matches MachineMetadata region=east"},
		{"metadata keys ANDed", []Machine{mm("m1", "region=east"), mm("m2", "disk=ssd")},
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", `MachineMetadata="region=east" "disk=ssd"`+"\n")}
			},
			"a.service", ErrMetadata, "no machine matches MachineMetadata disk=ssd region=east"},
		{"global matches nothing", []Machine{mm("m1", "")},
			func(t testing.TB) []Unit {
				return []Unit{u(t, "g.service", "Global=true\nMachineMetadata=role=edge\n")}
			},
			"g.service", ErrMetadata, "no machine matches MachineMetadata role=edge"},
		{"global blocked everywhere", ms("m1", "m2"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "db.service", "", "m1"), u(t, "db2.service", "", "m2"), u(t, "g.service", "Global=true\nConflicts=db*\n")}
			},
			"g.service", ErrConflict, "all 2 matching machines run a conflicting unit"},
		{"no machine with the MachineID", ms("m1"),
			func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "MachineID=m9\n")} },
			"a.service", ErrMachineID, "no machine has MachineID m9"},
		{"MachineID machine does not match metadata", []Machine{mm("m1", "region=west")},
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineID=m1\nMachineMetadata=region=east\n")}
			},
			"a.service", ErrMetadata, "machine m1 (MachineID) does not match MachineMetadata region=east"},
		{"MachineOf unit missing", ms("m1"),
			func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "MachineOf=b.service\n")} },
			"a.service", ErrMachineOf, "MachineOf unit b.service does not exist"},
		{"MachineOf unit inactive", ms("m1"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\n"), inactive(u(t, "b.service", ""))}
			},
			"a.service", ErrMachineOf, "MachineOf unit b.service is not scheduled (desired state inactive)"},
		{"MachineOf unit unplaced", ms("m1"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\n"), u(t, "b.service", "MachineID=zz\n")}
			},
			"a.service", ErrMachineOf, "MachineOf unit b.service is not scheduled"},
		{"MachineOf units apart", ms("m1", "m2"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\nMachineOf=c.service\n"), u(t, "b.service", "", "m1"), u(t, "c.service", "", "m2")}
			},
			"a.service", ErrMachineOf, "MachineOf units b.service, c.service are on different machines"},
		{"MachineOf peer's machine does not match metadata", []Machine{mm("m1", "disk=hdd"), mm("m2", "disk=ssd")},
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\nMachineMetadata=disk=ssd\n"), u(t, "b.service", "", "m1")}
			},
			"a.service", ErrMetadata, "machine m1 of MachineOf b.service does not match MachineMetadata disk=ssd"},
		{"MachineOf peer's machine runs a conflicting unit", ms("m1", "m2"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\nConflicts=c.service\n"), u(t, "b.service", "", "m1"), u(t, "c.service", "", "m1")}
			},
			"a.service", ErrConflict, "the only matching machine runs a conflicting unit (c.service on m1)"},
		{"MachineOf cycle", ms("m1"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\n"), u(t, "b.service", "MachineOf=c.service\n"), u(t, "c.service", "MachineOf=a.service\n")}
			},
			"b.service", ErrCycle, "MachineOf cycle: a.service -> b.service -> c.service -> a.service"},
		{"follower of a cycle", ms("m1"),
			func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineOf=b.service\n"), u(t, "b.service", "MachineOf=a.service\n"), u(t, "d.service", "MachineOf=a.service\n")}
			},
			"d.service", ErrMachineOf, "MachineOf unit a.service is not scheduled"},
		{"duplicate names", ms("m1"),
			func(t testing.TB) []Unit { return []Unit{u(t, "a.service", ""), u(t, "a.service", "")} },
			"a.service", ErrDuplicate, "listed more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unplaced(t, Place(tt.machines, tt.units(t)), tt.unit, tt.sentinel, tt.reason)
		})
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name     string
		machines []Machine
		units    func(t testing.TB) []Unit
		want     string
		reasons  []string // substrings of the actions' reasons, in order
	}{
		{
			name:     "nothing to do",
			machines: ms("m1", "m2"),
			units:    func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "", "m2")} },
			want:     "",
		},
		{
			name:     "new unit",
			machines: ms("m1"),
			units:    func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "")} },
			want:     "schedule a.service@m1",
			reasons:  []string{"least-loaded matching machine"},
		},
		{
			name:     "machine gone: the unit is placed again",
			machines: ms("m2", "m3"),
			units:    func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "", "m1"), u(t, "b.service", "", "m2")} },
			want:     "unschedule a.service@m1; schedule a.service@m3",
			reasons:  []string{"machine m1 is gone", "moved"},
		},
		{
			name:     "desired state inactive",
			machines: ms("m1"),
			units:    func(t testing.TB) []Unit { return []Unit{inactive(u(t, "a.service", "", "m1"))} },
			want:     "unschedule a.service@m1",
			reasons:  []string{"desired state is inactive"},
		},
		{
			name:     "metadata changed: the unit moves",
			machines: []Machine{mm("m1", "region=west"), mm("m2", "region=east")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "MachineMetadata=region=east\n", "m1")}
			},
			want:    "unschedule a.service@m1; schedule a.service@m2",
			reasons: []string{"machine m1 no longer matches MachineMetadata region=east", ""},
		},
		{
			name:     "conflict found on one machine: the first by name stays",
			machines: ms("m1", "m2"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "a.service", "", "m1"), u(t, "b.service", "Conflicts=a.service\n", "m1")}
			},
			want:    "unschedule b.service@m1; schedule b.service@m2",
			reasons: []string{"conflicts with a.service", ""},
		},
		{
			name:     "MachineOf peer moved: the follower moves with it",
			machines: ms("m2", "m3"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "app.service", "", "m1"), u(t, "side.service", "MachineOf=app.service\n", "m3"), u(t, "x.service", "", "m3")}
			},
			want:    "unschedule app.service@m1; unschedule side.service@m3; schedule app.service@m2; schedule side.service@m2",
			reasons: []string{"gone", "MachineOf unit app.service is not on m3", "", "follows MachineOf app.service"},
		},
		{
			name:     "global unit: new machine and a machine that no longer matches",
			machines: []Machine{mm("m1", "edge=1"), mm("m2", ""), mm("m3", "edge=1")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "g.service", "Global=true\nMachineMetadata=edge=1\n", "m1", "m2")}
			},
			want:    "unschedule g.service@m2; schedule g.service@m3",
			reasons: []string{"no longer matches", "global unit"},
		},
		{
			name:     "a unit on two machines keeps the first",
			machines: ms("m1", "m2"),
			units:    func(t testing.TB) []Unit { return []Unit{u(t, "a.service", "", "m2", "m1")} },
			want:     "unschedule a.service@m2",
			reasons:  []string{"more than one machine"},
		},
		{
			name:     "Replaces: the replaced unit moves off the replacing unit's machine",
			machines: ms("m1", "m2"),
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "new.service", "Replaces=old.service\n", "m1"), u(t, "old.service", "", "m1")}
			},
			want:    "unschedule old.service@m1; schedule old.service@m2",
			reasons: []string{"replaced by new.service", ""},
		},
		{
			name:     "Replaces: a new unit takes the only machine it can use; the replaced unit goes elsewhere",
			machines: []Machine{mm("m1", "gpu=1"), mm("m2", "")},
			units: func(t testing.TB) []Unit {
				return []Unit{u(t, "new.service", "Replaces=old.service\nMachineMetadata=gpu=1\n"), u(t, "old.service", "", "m1")}
			},
			want:    "unschedule old.service@m1; schedule new.service@m1; schedule old.service@m2",
			reasons: []string{"replaced by new.service", "", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Place(tt.machines, tt.units(t))
			noUnplaced(t, p)
			if got := actions(p); got != tt.want {
				t.Fatalf("actions\n got %s\nwant %s\n%v", got, tt.want, p.Actions)
			}
			for i, r := range tt.reasons {
				if !strings.Contains(p.Actions[i].Reason, r) {
					t.Errorf("action %d reason %q, want %q", i, p.Actions[i].Reason, r)
				}
			}
		})
	}
}

func TestReplacesAvoidsWhenItCan(t *testing.T) {
	// With a free machine, a replacing unit does not disturb the unit it replaces.
	p := Place(ms("m1", "m2", "m3"), []Unit{
		u(t, "new.service", "Replaces=old.service\n"), u(t, "old.service", "", "m1"), u(t, "x.service", "", "m2"),
	})
	if got := actions(p); got != "schedule new.service@m3" {
		t.Fatalf("actions %s", got)
	}
	// The replaced unit is not moved when another unit follows it.
	p = Place([]Machine{mm("m1", "gpu=1"), mm("m2", "")}, []Unit{
		u(t, "new.service", "Replaces=old.service\nMachineMetadata=gpu=1\n"), u(t, "old.service", "", "m1"),
		u(t, "side.service", "MachineOf=old.service\n", "m1"),
	})
	unplaced(t, p, "new.service", ErrConflict, "old.service on m1")
}

func TestDeterministic(t *testing.T) {
	machines, units := cluster(t, 50, 400)
	want := Place(machines, units)
	for i := 0; i < 5; i++ {
		m2 := append([]Machine(nil), machines...)
		u2 := append([]Unit(nil), units...)
		r := rand.New(rand.NewPCG(uint64(i), 7))
		r.Shuffle(len(m2), func(a, b int) { m2[a], m2[b] = m2[b], m2[a] })
		r.Shuffle(len(u2), func(a, b int) { u2[a], u2[b] = u2[b], u2[a] })
		if got := Place(m2, u2); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffled input %d gives another plan", i)
		}
	}
	// Applying the plan and planning again changes nothing.
	applied := append([]Unit(nil), units...)
	for i := range applied {
		applied[i].Machines = want.MachinesOf(applied[i].Name)
	}
	if again := Place(machines, applied); len(again.Actions) != 0 {
		t.Fatalf("a second plan is not empty: %v", again.Actions[:min(5, len(again.Actions))])
	}
}

// TestInvariants checks a generated cluster: every placement satisfies its unit, no two
// conflicting units share a machine, load is spread.
func TestInvariants(t *testing.T) {
	machines, units := cluster(t, 100, 2000)
	p := Place(machines, units)
	byName := map[string]Unit{}
	for _, x := range units {
		byName[x.Name] = x
	}
	mByID := map[string]Machine{}
	for _, m := range machines {
		mByID[m.ID] = m
	}
	on := map[string][]string{}
	for _, pl := range p.Placements {
		on[pl.Machine] = append(on[pl.Machine], pl.Unit)
		x := byName[pl.Unit]
		if !x.Fleet.Metadata.Match(mByID[pl.Machine].Metadata) {
			t.Errorf("%s on %s breaks MachineMetadata %s", pl.Unit, pl.Machine, x.Fleet.Metadata)
		}
		for _, peer := range x.Fleet.MachineOf {
			if !contains(p.MachinesOf(peer), pl.Machine) {
				t.Errorf("%s on %s without its MachineOf %s", pl.Unit, pl.Machine, peer)
			}
		}
	}
	for m, names := range on {
		for i, a := range names {
			for _, b := range names[i+1:] {
				fa, fb := byName[a].Fleet, byName[b].Fleet
				if fa.ConflictsWith(b) || fb.ConflictsWith(a) {
					t.Errorf("%s and %s conflict and share %s", a, b, m)
				}
			}
		}
	}
	lo, hi := len(p.Placements), 0
	for _, m := range machines {
		lo, hi = min(lo, len(on[m.ID])), max(hi, len(on[m.ID]))
	}
	if hi-lo > 25 {
		t.Errorf("load from %d to %d units a machine: not spread", lo, hi)
	}
	t.Logf("%d placements, %d unplaced, load %d..%d", len(p.Placements), len(p.Unplaced), lo, hi)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestReplacesRules(t *testing.T) {
	// A replaced unit avoids the machine of the unit that replaces it.
	p := Place(ms("m1", "m2"), []Unit{u(t, "new.service", "Replaces=old.service\n", "m1"), u(t, "old.service", "")})
	if got := where(p); got != "new.service=m1 old.service=m2" {
		t.Errorf("placements %s", got)
	}
	// Circular replacement: kept apart, nobody evicted.
	p = Place(ms("m1"), []Unit{u(t, "a.service", "Replaces=b.service\n", "m1"), u(t, "b.service", "Replaces=a.service\n")})
	unplaced(t, p, "b.service", ErrConflict, "a.service on m1")
	if got := actions(p); got != "" {
		t.Errorf("actions %s", got)
	}
	// A global unit is never evicted by a replacing unit.
	p = Place([]Machine{mm("m1", "gpu=1"), mm("m2", "")}, []Unit{
		u(t, "g.service", "Global=true\n", "m1", "m2"), u(t, "new.service", "Replaces=g.service\nMachineMetadata=gpu=1\n"),
	})
	unplaced(t, p, "new.service", ErrConflict, "g.service on m1")
}

func TestGlobalYieldsToRunningUnit(t *testing.T) {
	// Both on m1 and in conflict: the unit that is not global stays, the global unit leaves m1.
	p := Place(ms("m1", "m2"), []Unit{
		u(t, "agent.service", "Global=true\nConflicts=db.service\n", "m1", "m2"), u(t, "db.service", "", "m1"),
	})
	if got := actions(p); got != "unschedule agent.service@m1" {
		t.Fatalf("actions %s", got)
	}
	if got := p.UnitsOn("m1"); !reflect.DeepEqual(got, []string{"db.service"}) {
		t.Errorf("UnitsOn(m1) = %v", got)
	}
	if got := p.Actions[0].Reason; got != "conflicts with db.service" {
		t.Errorf("reason %q", got)
	}
	// New units of both kinds: the ordinary unit is placed first, the global unit fills the
	// rest.
	p = Place(ms("m1", "m2", "m3"), []Unit{u(t, "agent.service", "Global=true\nConflicts=db.service\n"), u(t, "db.service", "")})
	if got := where(p); got != "agent.service=m2,m3 db.service=m1" {
		t.Errorf("placements %s", got)
	}
}

func TestUnplacedIsAnError(t *testing.T) {
	p := Place(nil, []Unit{u(t, "a.service", "")})
	var err error = p.Unplaced[0]
	if !errors.Is(err, ErrNoMachines) || err.Error() != "a.service: no machines in the cluster" {
		t.Fatalf("error %q", err)
	}
}

// replan applies a plan and plans again: nothing may move.
func replan(t *testing.T, machines []Machine, units []Unit, p Plan) {
	t.Helper()
	applied := append([]Unit(nil), units...)
	for i := range applied {
		applied[i].Machines = p.MachinesOf(applied[i].Name)
	}
	if again := Place(machines, applied); len(again.Actions) != 0 {
		t.Fatalf("a second plan moves units: %v", again.Actions)
	}
}

// Found by FuzzPlace: an eviction frees room that a unit placed earlier in the round wanted.
func TestEvictionFreesRoom(t *testing.T) {
	units := []Unit{
		u(t, "a0.service", "Conflicts=c*\n"),
		u(t, "a3.service", "Replaces=c1.service\n"),
		u(t, "c1.service", "", "m0"),
	}
	p := Place(ms("m0"), units)
	if got := where(p); got != "a0.service=m0 a3.service=m0" {
		t.Fatalf("placements %s", got)
	}
	unplaced(t, p, "c1.service", ErrConflict, "a3.service on m0")
	replan(t, ms("m0"), units, p)

	// A chain of replacements: b0 replaces a1, a1 replaces a4, a4 replaces a3.
	units = []Unit{
		u(t, "b0.service", "Replaces=a1.service\n"),
		u(t, "a1.service", "Replaces=a4.service\n"),
		u(t, "a3.service", ""),
		u(t, "a4.service", "Replaces=a3.service\n"),
	}
	p = Place(ms("m0"), units)
	replan(t, ms("m0"), units, p)
	if got := where(p); got != "a4.service=m0 b0.service=m0" {
		t.Fatalf("placements %s", got)
	}
}
