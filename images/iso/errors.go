package iso

import "errors"

// The errors a user reads from `kiln iso`; tests compare against these values.
var (
	// ErrNotImage means the path is neither a file nor a block device (a FIFO, a folder).
	ErrNotImage = errors.New("not an image: expected a regular file or a block device")
	// ErrNotLiveISO means the image has no Ignition embed area: not a CoreOS live ISO, or too old.
	ErrNotLiveISO = errors.New("no ignition embed area found: not a fedora coreos or flatcar live iso")
	// ErrNoConfig means show found no embedded Ignition config.
	ErrNoConfig = errors.New("no embedded ignition config")
	// ErrConfigExists means embed would replace a config without --force.
	ErrConfigExists = errors.New("the iso already has an embedded ignition config; use --force to replace it")
	// ErrTooLarge means the compressed archive does not fit in the embed area.
	ErrTooLarge = errors.New("ignition config too large for the iso's embed area")
	// ErrInvalidConfig means the config did not pass Ignition's own parser.
	ErrInvalidConfig = errors.New("invalid ignition config")
	// ErrNoKargs means the image has no kernel-argument embed areas.
	ErrNoKargs = errors.New("no kernel-argument embed areas found: old or corrupted live iso")
	// ErrKargsTooLarge means the kernel arguments do not fit in their embed areas.
	ErrKargsTooLarge = errors.New("kernel arguments too large for the iso's embed areas")
	// ErrKargsMismatch means the kernel-argument areas disagree with each other.
	ErrKargsMismatch = errors.New("kernel-argument embed areas differ from each other")
	// ErrBadReplace means a --replace argument is not KEY=OLD=NEW.
	ErrBadReplace = errors.New("replace argument must be KEY=OLD=NEW")
	// ErrBadArea means an embed area's description points outside the image or is malformed.
	ErrBadArea = errors.New("corrupt embed area description")
	// ErrBadInitrd means the embed area holds data that is not a cpio archive kiln can read.
	ErrBadInitrd = errors.New("embed area does not hold a readable initramfs")
)
