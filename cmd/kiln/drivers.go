package main

// The drivers of kiln up and kiln down that live in their own packages register themselves
// (bootstrap/up.Register) when linked in.
import (
	_ "github.com/kiln-cluster/kiln/bootstrap/up/libvirt"
	_ "github.com/kiln-cluster/kiln/bootstrap/up/vsphere"
)
