package up

import "errors"

var (
	// ErrNoState: kiln up made nothing in this state folder.
	ErrNoState = errors.New("no cluster made by kiln up")
	// ErrTimeout: the cluster was not up (etcd healthy, every kiln-node registered) in time.
	ErrTimeout = errors.New("cluster not up in time")
)
