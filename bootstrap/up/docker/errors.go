package docker

import "errors"

var (
	// ErrRemoteSource: a node's config fetches a file from outside the machine.
	ErrRemoteSource = errors.New("the config fetches a file that the node image does not hold (nodes of the docker driver fetch nothing from outside)")
	// ErrIgnition: Ignition failed at the node's first boot (its log follows).
	ErrIgnition = errors.New("ignition failed at first boot")
	// ErrStopped: the container stopped while booting.
	ErrStopped = errors.New("the container stopped while booting")
)
