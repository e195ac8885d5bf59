package vsphere

import (
	"errors"

	"github.com/kiln-cluster/kiln/bootstrap/up"
)

// The errors of the vSphere driver that users read; tests compare against these values. Those
// marked with up.ConfigError are the user's flags at fault (kiln exits 1).
var (
	// ErrNoURL: neither --vsphere-url nor GOVC_URL says where vCenter or ESXi is.
	ErrNoURL = up.ConfigError(errors.New("no vSphere URL: give --vsphere-url or set GOVC_URL (user and password in it, or GOVC_USERNAME and GOVC_PASSWORD)"))
	// ErrNoTemplate: --vsphere-template is missing.
	ErrNoTemplate = up.ConfigError(errors.New("no template: give --vsphere-template NAME (a Flatcar or Fedora CoreOS VM template)"))
	// ErrChoose: several objects of a kind exist and no flag chose one.
	ErrChoose = up.ConfigError(errors.New("several to choose from"))
	// ErrNone: no object of a kind exists.
	ErrNone = errors.New("none found")
	// ErrNotOurs: a VM of a kiln name exists that kiln did not make; kiln leaves it alone.
	ErrNotOurs = errors.New("exists and was not made by kiln: remove or rename it, kiln will not touch it")
	// ErrNoNIC: the template has no network card to put the node's MAC on.
	ErrNoNIC = errors.New("the template has no network card")
)
