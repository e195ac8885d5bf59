//go:build !(cgo && libvirt_dlopen)

package libvirt

import (
	"context"

	"github.com/kiln-cluster/kiln/bootstrap/up"
)

func (d *Driver) up(context.Context, *up.Plan, up.Reporter, settings) error { return ErrNotBuilt }
func (d *Driver) down(context.Context, *up.Plan, up.Reporter) error         { return ErrNotBuilt }
