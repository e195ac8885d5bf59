package lock

import "errors"

// Errors of the reboot lock. Callers compare with errors.Is.
var (
	// ErrBusy: every slot of the group is held by other machines.
	ErrBusy = errors.New("reboot lock busy: every slot is held")
	// ErrOutsideWindow: the group's reboot window is closed now.
	ErrOutsideWindow = errors.New("outside the reboot window")
	// ErrUnknownGroup: the group has no policy on this server.
	ErrUnknownGroup = errors.New("unknown group")
	// ErrInvalidGroup: a group name must match [a-zA-Z0-9.-]+.
	ErrInvalidGroup = errors.New("invalid group name")
	// ErrInvalidID: a holder's id must not be empty.
	ErrInvalidID = errors.New("empty holder id")
	// ErrConflict: the semaphore changed under every compare-and-swap attempt.
	ErrConflict = errors.New("semaphore kept changing, try again")
	// ErrCorrupt: the semaphore's value is not locksmith's JSON.
	ErrCorrupt = errors.New("semaphore value is not valid")
	// ErrInvalidWindow: a reboot window could not be parsed.
	ErrInvalidWindow = errors.New("invalid reboot window")
)
