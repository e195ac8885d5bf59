package pxe

import "errors"

// The errors of the boot server that users read; tests compare against these values.
var (
	// ErrNoAssets: the assets folder cannot be opened.
	ErrNoAssets = errors.New("the assets folder cannot be opened")
	// ErrKernelArgs: a node's kernel arguments would break the boot script they are written into.
	ErrKernelArgs = errors.New("kernel argument with a line break or control character")
	// ErrBaseURL: the --base-url is not an http or https URL without query.
	ErrBaseURL = errors.New("the base URL must be http:// or https:// with a host and no query")
	// ErrTokenSecret: the token secret file is unreadable or too short.
	ErrTokenSecret = errors.New("the token secret must hold at least 32 bytes")
	// ErrTLS: only one of the certificate and the key was given.
	ErrTLS = errors.New("TLS needs a certificate and its key, both readable PEM")
)

// The errors of enrolments that users read.
var (
	// ErrEnrolPolicy: --enrol is not a known policy.
	ErrEnrolPolicy = errors.New("the enrolment policy must be approve or first")
	// ErrEnrolNode: a node name that is not one plain name.
	ErrEnrolNode = errors.New("not a node name")
	// ErrNoPending: kiln pxe approve without --fingerprint for a node with nothing pending.
	ErrNoPending = errors.New("no pending enrolment")
	// ErrNoEnrolment: no enrolment has the fingerprint given.
	ErrNoEnrolment = errors.New("no enrolment with that fingerprint")
	// ErrAmbiguous: several enrolments match.
	ErrAmbiguous = errors.New("several enrolments match")
)
