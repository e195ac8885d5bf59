package journal

import "errors"

// Errors users read.
var (
	ErrNoAnswer = errors.New("the machine did not answer (is its kiln-node running?)")
	ErrNoLog    = errors.New("no log for this unit on the machine")
)
