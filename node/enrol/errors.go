package enrol

import "errors"

// The errors of an enrolment that users read; tests compare against these values.
var (
	// ErrRefused: the boot server refused the node's keys (another key enrolled the node first,
	// or the operator refused it).
	ErrRefused = errors.New("the boot server refused this node's keys")
	// ErrTimeout: the certificates were not signed in the time given.
	ErrTimeout = errors.New("no certificates before the enrolment's deadline")
	// ErrNoServer: no --server and no ignition.config.url on the kernel command line.
	ErrNoServer = errors.New("no boot server: give --server or boot with ignition.config.url")
	// ErrBadCert: a certificate the server returned does not chain to the cluster CA, is not
	// for this node or not for its key.
	ErrBadCert = errors.New("the boot server returned a certificate that does not fit")
)
