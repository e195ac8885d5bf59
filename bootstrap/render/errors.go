package render

import "errors"

// The errors of rendering that users read; tests compare against these values.
var (
	// ErrSpec: the spec has errors; the report that comes with it says which.
	ErrSpec = errors.New("the spec has errors")
	// ErrInvalid: Butane or Ignition rejects a node's config; the report says where.
	ErrInvalid = errors.New("the generated config is invalid")
	// ErrNotOurs: the output folder holds something kiln did not write.
	ErrNotOurs = errors.New("the output folder exists and was not written by kiln render (no pki/ca.crt in it): choose another or remove it")
)
