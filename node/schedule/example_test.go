package schedule_test

import (
	"fmt"

	"github.com/kiln-cluster/kiln/node/schedule"
	"github.com/kiln-cluster/kiln/node/unit"
)

func ExamplePlace() {
	tmpl, err := unit.Parse("my-app@.service", []byte("[Service]\nExecStart=/usr/bin/app %i\n\n[X-Fleet]\nConflicts=my-app@*.service\n"))
	if err != nil {
		panic(err)
	}
	var units []schedule.Unit
	for _, i := range []string{"1", "2", "3"} {
		inst, _ := tmpl.Instantiate(i)
		units = append(units, schedule.Unit{Name: inst.Name, State: unit.StateLaunched, Fleet: inst.Fleet})
	}
	units[0].Machines = []string{"m-gone"} // its machine left the cluster

	plan := schedule.Place([]schedule.Machine{{ID: "m1"}, {ID: "m2"}}, units)
	for _, a := range plan.Actions {
		fmt.Println(a)
	}
	for _, u := range plan.Unplaced {
		fmt.Println("unplaced:", u)
	}
	// Output:
	// unschedule my-app@1.service on m-gone: machine m-gone is gone
	// schedule my-app@1.service on m1: moved, least-loaded matching machine
	// schedule my-app@2.service on m2: least-loaded matching machine
	// unplaced: my-app@3.service: all 2 matching machines run a conflicting unit (my-app@1.service on m1, my-app@2.service on m2)
}
