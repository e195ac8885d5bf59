package libvirt

import (
	"errors"

	"github.com/kiln-cluster/kiln/bootstrap/up"
)

// The errors of the libvirt driver that users read; tests compare against these values. Those
// marked with up.ConfigError are the user's flags or spec at fault (kiln exits 1).
var (
	// ErrNotBuilt: this kiln was built without the libvirt driver (no cgo or no libvirt_dlopen tag).
	ErrNotBuilt = errors.New("this kiln was built without the libvirt driver: build it with `make build` (cgo and -tags libvirt_dlopen; needs a C compiler, not libvirt's headers)")
	// ErrNoLibrary: libvirt's client library is not installed (it is loaded at run time).
	ErrNoLibrary = errors.New("libvirt's client library (libvirt.so.0) is not installed: Debian and Ubuntu package libvirt0, Fedora libvirt-libs")
	// ErrNoImage: no OS disk image was given and none is cached for the spec's OS and channel.
	ErrNoImage = up.ConfigError(errors.New("no OS disk image: give one with --image FILE (qcow2 or raw), or pull the spec's with kiln images pull --platform qemu"))
	// ErrImageFormat: the image is neither qcow2 nor raw.
	ErrImageFormat = up.ConfigError(errors.New("the image is neither qcow2 nor raw"))
	// ErrNotOurs: an object with a kiln name exists that kiln did not make; kiln leaves it alone.
	ErrNotOurs = errors.New("exists and was not made by kiln: remove or rename it, kiln will not touch it")
	// ErrNoNetwork: the network named with --libvirt-network does not exist.
	ErrNoNetwork = up.ConfigError(errors.New("no such libvirt network"))
	// ErrSubnet: the nodes' addresses do not make one subnet kiln can define a network for.
	ErrSubnet = up.ConfigError(errors.New("the nodes' addresses are not in one IPv4 subnet"))
	// ErrDiskSize: --disk-size is not a size.
	ErrDiskSize = up.ConfigError(errors.New("--disk-size must be a size such as 20G, 20GiB or 21474836480"))
	// ErrDomainType: --libvirt-domain-type is not auto, kvm or qemu.
	ErrDomainType = up.ConfigError(errors.New("--libvirt-domain-type must be auto, kvm or qemu"))
	// ErrResources: --memory or --cpus is too small.
	ErrResources = up.ConfigError(errors.New("--memory (MiB) must be at least 64 and --cpus at least 1"))
)
