package keys

import "strings"

// The scheduler's keys (the engine writes desired state; every machine's agent reports actual
// state under its own lease):
//
//	/kiln/units/<unit-name>                   a submitted unit (JSON Submitted)
//	/kiln/unit-files/<hash>                   a unit file's text, by the hash of its canonical form
//	/kiln/schedule/<machine-id>/<unit-name>   the engine's placement of a unit on a machine (JSON Assignment)
//	/kiln/states/<machine-id>/<unit-name>     what the machine's agent reports of the unit (JSON UnitReport, leased)
//	/kiln/engine/election                     the engine leader election (concurrency.Election prefix;
//	                                          the candidates' keys are under the machines' leases)
//
// See submitted.go for the unplaced reasons and the journal requests.
const (
	Units     = Prefix + "units/"
	UnitFiles = Prefix + "unit-files/"
	Schedule  = Prefix + "schedule/"
	States    = Prefix + "states/"
	Election  = Prefix + "engine/election"
)

// Unit is the key of a submitted unit.
func Unit(name string) string { return Units + name }

// UnitFile is the key of a unit file's text.
func UnitFile(hash string) string { return UnitFiles + hash }

// MachineSchedule is the prefix of every placement on a machine.
func MachineSchedule(machine string) string { return Schedule + machine + "/" }

// Placement is the key of a unit's placement on a machine.
func Placement(machine, unit string) string { return MachineSchedule(machine) + unit }

// MachineStates is the prefix of every unit state a machine reports.
func MachineStates(machine string) string { return States + machine + "/" }

// UnitState is the key of a unit's state as its machine reports it.
func UnitState(machine, unit string) string { return MachineStates(machine) + unit }

// SplitMachineUnit cuts a key of Schedule or States (prefix) into its machine and unit.
func SplitMachineUnit(key, prefix string) (machine, unit string, ok bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", "", false
	}
	machine, unit, ok = strings.Cut(rest, "/")
	return machine, unit, ok && machine != "" && unit != ""
}
