package ctl

import (
	"testing"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

func TestReached(t *testing.T) {
	active := &keys.UnitReport{LoadState: "loaded", ActiveState: "active", SubState: "running"}
	loaded := &keys.UnitReport{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
	failed := &keys.UnitReport{LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
	on := func(state unit.State, r *keys.UnitReport) []Placement {
		return []Placement{{Machine: "m1", State: state, Report: r}}
	}
	cases := []struct {
		name    string
		u       UnitStatus
		done    bool
		problem bool
	}{
		{"launched and active", UnitStatus{DesiredState: unit.StateLaunched, Placements: on(unit.StateLaunched, active)}, true, false},
		{"launched, no report yet", UnitStatus{DesiredState: unit.StateLaunched, Placements: on(unit.StateLaunched, nil)}, false, false},
		{"launched, placement still loaded", UnitStatus{DesiredState: unit.StateLaunched, Placements: on(unit.StateLoaded, loaded)}, false, false},
		{"launched but failed", UnitStatus{DesiredState: unit.StateLaunched, Placements: on(unit.StateLaunched, failed)}, false, true},
		{"launched, not placed yet", UnitStatus{DesiredState: unit.StateLaunched}, false, false},
		{"unplaced", UnitStatus{DesiredState: unit.StateLaunched, Unplaced: "no machine"}, false, true},
		{"loaded", UnitStatus{DesiredState: unit.StateLoaded, Placements: on(unit.StateLoaded, loaded)}, true, false},
		{"loaded, still stopping", UnitStatus{DesiredState: unit.StateLoaded, Placements: on(unit.StateLoaded, active)}, false, false},
		{"inactive, still placed", UnitStatus{DesiredState: unit.StateInactive, Placements: on(unit.StateLaunched, active)}, false, false},
		{"inactive", UnitStatus{DesiredState: unit.StateInactive}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done, problem := Reached(tc.u)
			if done != tc.done || (problem != "") != tc.problem {
				t.Fatalf("Reached = %v, %q; want %v, problem %v", done, problem, tc.done, tc.problem)
			}
		})
	}
}
