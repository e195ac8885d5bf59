package catalog

import "errors"

// Errors a user reads.
var (
	ErrUnknownOS       = errors.New("unknown os")
	ErrUnknownChannel  = errors.New("unknown channel")
	ErrUnknownPlatform = errors.New("unknown platform")
)
