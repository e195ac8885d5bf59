package reboot

import "errors"

// Errors of reboot coordination.
var (
	// ErrUnhealthy: the machine came back but is not healthy yet; its slot stays held.
	ErrUnhealthy = errors.New("machine not healthy yet")
	// ErrUnknownStrategy: the strategy is not etcd-lock, fleetlock, reboot or off.
	ErrUnknownStrategy = errors.New("unknown reboot strategy: want etcd-lock, fleetlock, reboot or off")
	// ErrNoBootID: the boot ID could not be read.
	ErrNoBootID = errors.New("no boot id")
)
