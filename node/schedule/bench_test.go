package schedule

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-cluster/kiln/node/unit"
)

// cluster generates a cluster of nm machines and about nu units that uses every rule:
// template instances that conflict with their siblings, metadata filters (with OR and
// negation), sidekicks (MachineOf), pinned units and global units; about a third of the units
// are already on a machine, some of them on machines that are gone.
func cluster(t testing.TB, nm, nu int) ([]Machine, []Unit) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	regions := []string{"east", "west", "north"}
	machines := make([]Machine, nm)
	for i := range machines {
		md := map[string]string{"region": regions[i%3]}
		if i%4 == 0 {
			md["disk"] = "ssd"
		}
		if i%10 == 0 {
			md["role"] = "edge"
		}
		machines[i] = Machine{ID: fmt.Sprintf("%032x", i*7919+1), Metadata: md}
	}
	templates := map[string]*unit.Unit{}
	instance := func(tmpl, xfleet, inst string) Unit {
		tu, ok := templates[tmpl]
		if !ok {
			var err error
			tu, err = unit.Parse(tmpl, []byte("[Service]\nExecStart=/usr/bin/app %i\n\n[X-Fleet]\n"+xfleet))
			if err != nil {
				t.Fatalf("%s: %v", tmpl, err)
			}
			templates[tmpl] = tu
		}
		iu, err := tu.Instantiate(inst)
		if err != nil {
			t.Fatal(err)
		}
		x := Unit{Name: iu.Name, State: unit.StateLaunched, Fleet: iu.Fleet}
		switch r.IntN(6) {
		case 0, 1:
			x.Machines = []string{machines[r.IntN(nm)].ID}
		case 2:
			if r.IntN(10) == 0 {
				x.Machines = []string{"gone-machine"}
			}
		}
		return x
	}

	var units []Unit
	for g := 0; len(units) < nu; g++ {
		switch g % 8 {
		case 0, 1, 2: // a web tier: 10 instances kept apart, each with a sidekick
			tmpl := fmt.Sprintf("web%d@.service", g)
			side := fmt.Sprintf("web%d-side@.service", g)
			for i := 0; i < 10; i++ {
				units = append(units, instance(tmpl, fmt.Sprintf("Conflicts=web%d@*.service\n", g), fmt.Sprint(i)))
				units = append(units, instance(side, fmt.Sprintf("MachineOf=web%d@%%i.service\n", g), fmt.Sprint(i)))
			}
		case 3: // workers in two regions
			tmpl := fmt.Sprintf("worker%d@.service", g)
			for i := 0; i < 20; i++ {
				units = append(units, instance(tmpl, "MachineMetadata=region=east\nMachineMetadata=region=west\n", fmt.Sprint(i)))
			}
		case 4: // databases on SSDs away from edge machines
			tmpl := fmt.Sprintf("db%d@.service", g)
			for i := 0; i < 5; i++ {
				units = append(units, instance(tmpl, "MachineMetadata=disk=ssd\nMachineMetadata=!role=edge\nConflicts=db*\n", fmt.Sprint(i)))
			}
		case 5: // plain batch jobs
			tmpl := fmt.Sprintf("batch%d@.service", g)
			for i := 0; i < 20; i++ {
				units = append(units, instance(tmpl, "", fmt.Sprint(i)))
			}
		case 6: // a pinned unit
			units = append(units, instance(fmt.Sprintf("pinned%d@.service", g), "MachineID="+machines[g%nm].ID+"\n", "0"))
		case 7: // a global unit on edge machines, now and then
			if g%64 == 7 {
				units = append(units, instance(fmt.Sprintf("edge%d@.service", g), "Global=true\nMachineMetadata=role=edge\n", "0"))
			} else {
				units = append(units, instance(fmt.Sprintf("misc%d@.service", g), "", "0"))
			}
		}
	}
	return machines, units
}

// BenchmarkPlan10kUnits1kMachines is the goal: 10,000 units on 1,000 machines in well
// under a second.
func BenchmarkPlan10kUnits1kMachines(b *testing.B) {
	machines, units := cluster(b, 1000, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	var p Plan
	for b.Loop() {
		p = Place(machines, units)
	}
	b.StopTimer()
	b.ReportMetric(float64(len(p.Placements)), "placements")
	b.ReportMetric(float64(len(p.Unplaced)), "unplaced")
}

// BenchmarkPlanStable is the steady state: every unit already where the plan puts it.
func BenchmarkPlanStable10kUnits1kMachines(b *testing.B) {
	machines, units := cluster(b, 1000, 10000)
	first := Place(machines, units)
	for i := range units {
		units[i].Machines = first.MachinesOf(units[i].Name)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Place(machines, units)
	}
}

// BenchmarkPlanOneTemplate10kInstances is the worst case of the talk's example: 10,000
// instances of my-app@.service, each conflicting with all the others, on 1,000 machines (a
// thousand fit, nine thousand are reported).
func BenchmarkPlanOneTemplate10kInstances(b *testing.B) {
	tmpl, err := unit.Parse("my-app@.service", []byte("[Service]\nExecStart=/bin/app\n[X-Fleet]\nConflicts=my-app@*.service\n"))
	if err != nil {
		b.Fatal(err)
	}
	machines := make([]Machine, 1000)
	for i := range machines {
		machines[i] = Machine{ID: fmt.Sprintf("m%04d", i)}
	}
	units := make([]Unit, 10000)
	for i := range units {
		inst, err := tmpl.Instantiate(fmt.Sprint(i))
		if err != nil {
			b.Fatal(err)
		}
		units[i] = Unit{Name: inst.Name, State: unit.StateLaunched, Fleet: inst.Fleet}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var p Plan
	for b.Loop() {
		p = Place(machines, units)
	}
	b.StopTimer()
	if len(p.Placements) != 1000 || len(p.Unplaced) != 9000 {
		b.Fatalf("%d placements, %d unplaced", len(p.Placements), len(p.Unplaced))
	}
}

// BenchmarkPlace plans clusters of growing size with the same shape (cluster: every rule, ten
// units per machine, a third of them already placed): the cost per unit (ns/unit) must stay
// flat from 1,000 to 10,000 machines. Each run is the engine's first plan after it takes the
// lead.
func BenchmarkPlace(b *testing.B) {
	for _, nm := range []int{1000, 3000, 10000} {
		b.Run(fmt.Sprintf("machines=%d/units=%d", nm, 10*nm), func(b *testing.B) {
			machines, units := cluster(b, nm, 10*nm)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				Place(machines, units)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(units)), "ns/unit")
		})
	}
}
