package executor

import "errors"

// Sentinel errors: every error the executors return about a unit wraps one of these.
var (
	ErrNotFound    = errors.New("unit not found")
	ErrName        = errors.New("invalid unit name")
	ErrUnsupported = errors.New("not supported by the exec executor")
	ErrBadSetting  = errors.New("bad setting")
	ErrSpecifier   = errors.New("unknown specifier")
	ErrCommand     = errors.New("invalid command line")
	ErrEnvironment = errors.New("invalid environment assignment")
	ErrTimeSpan    = errors.New("invalid time span")
	ErrJobFailed   = errors.New("job failed")
	ErrNotOwned    = errors.New("unit file not written by kiln-node")
)
