package deliver

import "errors"

// The errors of delivery that users read; tests compare against these values.
var (
	// ErrReported: the spec's problems were printed to Options.Problems; nothing more to say.
	ErrReported = errors.New("the spec has problems (reported)")
	// ErrNoNode: a node the delivery was asked for is not in the spec.
	ErrNoNode = errors.New("no node")
)
