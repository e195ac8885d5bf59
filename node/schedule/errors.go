package schedule

import "errors"

// Why a unit could not be placed: Unplaced.Err is one of these.
var (
	ErrNoMachines = errors.New("no machines in the cluster")
	ErrMachineID  = errors.New("no machine has the unit's MachineID")
	ErrMetadata   = errors.New("no machine matches the unit's MachineMetadata")
	ErrMachineOf  = errors.New("MachineOf unit is not scheduled")
	ErrCycle      = errors.New("MachineOf cycle")
	ErrConflict   = errors.New("every matching machine runs a conflicting unit")
	ErrDuplicate  = errors.New("unit listed twice")
)
