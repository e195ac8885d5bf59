package docker

import (
	"errors"

	"github.com/kiln-cluster/kiln/bootstrap/up"
)

// The errors of the docker driver that users read; tests compare against these values. Those
// marked with up.ConfigError are the user's flags or spec at fault (kiln exits 1).
var (
	// ErrRemoteSource: a node's config fetches a file from outside the machine.
	ErrRemoteSource = up.ConfigError(errors.New("the config fetches a file that the node image does not hold (nodes of the docker driver fetch nothing from outside)"))
	// ErrIgnition: Ignition failed at the node's first boot (its log follows).
	ErrIgnition = errors.New("ignition failed at first boot")
	// ErrSubnetTaken: the nodes' subnet overlaps another Docker network.
	ErrSubnetTaken = up.ConfigError(errors.New("the nodes' subnet is taken by another Docker network: give the nodes addresses of a free subnet in the spec"))
	// ErrStopped: the container stopped while booting.
	ErrStopped = errors.New("the container stopped while booting")
	// ErrNoImage: --docker-image names an image that Docker does not have.
	ErrNoImage = up.ConfigError(errors.New("no such node image (build one with kiln images build-node, or leave --docker-image out)"))
)
