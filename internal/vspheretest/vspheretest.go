// Package vspheretest runs govmomi's vCenter simulator in process, on loopback, for the tests of
// kiln up's vSphere driver: one datacenter (DC0), a cluster and a host, two networks, and the VM
// DC0_H0_VM0 made a template to clone from.
package vspheretest

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
)

// Template is the simulator's VM that Start marks as a template.
const Template = "DC0_H0_VM0"

// Sim is a running simulator and a client of it.
type Sim struct {
	// URL has the simulator's user and password in it, as GOVC_URL would.
	URL    string
	Client *govmomi.Client
	// Finder is set to the datacenter.
	Finder *find.Finder
}

// Start runs the simulator until the test ends.
func Start(t testing.TB) *Sim {
	t.Helper()
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)
	srv := model.Service.NewServer()
	t.Cleanup(func() { srv.Close(); model.Remove() })
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, srv.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Logout(ctx) })
	f := find.NewFinder(c.Client, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(ctx, Template)
	if err != nil {
		t.Fatal(err)
	}
	if task, err := vm.PowerOff(ctx); err != nil {
		t.Fatal(err)
	} else if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.MarkAsTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	return &Sim{URL: srv.URL.String(), Client: c, Finder: f}
}
