package nodeimage

import "errors"

var (
	// ErrNoBinary: a binary the image holds (etcd, ignition, kiln-node) was not found.
	ErrNoBinary = errors.New("a binary of the node image is missing (build it with make build tools, or set KILN_ETCD_BIN, KILN_IGNITION_BIN, KILN_NODE_BIN)")
	// ErrRootFS: the root filesystem could not be made.
	ErrRootFS = errors.New("making the node image's root filesystem failed")
)
