package submit

import "errors"

// Errors users read (kiln ctl prints them; exit code 1).
var (
	ErrNotFound      = errors.New("unit not found (submit it first)")
	ErrChanged       = errors.New("unit already submitted with other contents (destroy it first)")
	ErrTemplateState = errors.New("a template unit cannot be loaded or launched (start one of its instances)")
	ErrNoText        = errors.New("unit has no file: give its path")
	ErrManifest      = errors.New("invalid units manifest")
	ErrRaced         = errors.New("unit changed while being written (try again)")
	ErrMissingFile   = errors.New("unit file missing in etcd")
)
