package ctl

import (
	"errors"

	"github.com/kiln-cluster/kiln/node/submit"
)

// Errors kiln ctl's users read (exit code 1); tests compare against these values.
var (
	ErrUnknownMachine = errors.New("no such machine in the registry")
	ErrNotHolder      = errors.New("machine holds no reboot slot")
	// ErrNotPlaced: the unit runs on no machine (or not on the one asked for).
	ErrNotPlaced = errors.New("unit is not placed")
	// ErrStuck: a unit waited for cannot get to its desired state now (no machine fits, or
	// its machine reports it failed).
	ErrStuck = errors.New("unit cannot get to its desired state")
	// ErrNotReached: the wait ended before the machines reported the units as asked.
	ErrNotReached = errors.New("units not reported as asked")
)

// IsUserError tells whether err is the user's to fix (a bad name, file, machine or state), as
// opposed to a failure of etcd or of kiln.
func IsUserError(err error) bool {
	for _, s := range []error{ErrUnknownMachine, ErrNotHolder, ErrNotPlaced, ErrStuck, ErrNotReached} {
		if errors.Is(err, s) {
			return true
		}
	}
	return submit.IsUserError(err)
}
