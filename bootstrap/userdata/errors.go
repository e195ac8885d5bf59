package userdata

import "errors"

// The errors of user-data delivery that users read; tests compare against these values.
var (
	// ErrUnknownPlatform: no platform of that name.
	ErrUnknownPlatform = errors.New("unknown platform")
	// ErrTooLarge: the config does not fit the platform's limit, even compressed, and no URL
	// to serve it from was given.
	ErrTooLarge = errors.New("the config is too large for the platform")
	// ErrNotConfig: the input is not an Ignition config (no ignition.version).
	ErrNotConfig = errors.New("not an Ignition config: no ignition.version")
	// ErrPointerURL: the pointer URL is not one Ignition can fetch.
	ErrPointerURL = errors.New("the pointer URL must be an absolute http, https, tftp, s3 or gs URL")
	// ErrOutputIsInput: an output names the spec, a file the spec names or a file of the PKI.
	ErrOutputIsInput = errors.New("refusing to overwrite an input of the delivery")
	// ErrSameOutput: two outputs name the same file.
	ErrSameOutput = errors.New("name the same file: give each output its own")
)
