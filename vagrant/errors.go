package vagrant

import "errors"

// The errors of Vagrant generation that users read; tests compare against these values.
var (
	// ErrNoMAC: nodes without a MAC; the message lists them.
	ErrNoMAC = errors.New("every node needs a mac for Vagrant (its config finds its interface by it); nodes without one")
	// ErrNotOurs: the output folder holds something kiln vagrant did not write.
	ErrNotOurs = errors.New("the output folder is not empty and holds no Vagrantfile written by kiln vagrant: choose another or remove it")
)
