// Package up is what `kiln up` and `kiln down` share across drivers: the driver interface, the
// registry of drivers by name, the plan a driver is handed (every node's rendered Ignition) and
// the per-node progress it reports. Each driver (docker, libvirt, vsphere) lives in a package of
// its own below this one and registers itself by name.
//
// This file is the contract the drivers are written against; the docker driver's work (issue 8)
// owns the rest of the package (state directory, progress display, context).
package up

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/spf13/pflag"

	"github.com/kiln-cluster/kiln/bootstrap/render"
)

// MachineName is the name every driver gives a node's machine (container, domain or VM).
func MachineName(cluster, node string) string { return "kiln-" + cluster + "-" + node }

// Plan is what a driver is handed to bring a cluster up: the compiled spec (every node's
// rendered Ignition, unchanged) and a folder the driver may keep its own files in.
type Plan struct {
	// Compiled is the rendered cluster: Compiled.Spec, Compiled.Nodes[i].Ignition, Compiled.PKI.
	Compiled *render.Compiled
	// StateDir is the cluster's state folder (the render output); a driver keeps what it
	// made there (state.json) so that `kiln down` needs no flags.
	StateDir string
	// Wait: when false, Up returns once the machines run, without waiting for etcd and kiln-node.
	Wait bool
}

// Cluster is the cluster's name.
func (p *Plan) Cluster() string { return p.Compiled.Spec.Cluster.Name }

// Step is one stage of a node's way up, reported in order.
type Step string

// The steps that every driver reports; a driver may skip those that it has no part in.
const (
	StepImage      Step = "image"      // the OS or node image is there
	StepNetwork    Step = "network"    // the cluster's network exists
	StepMachine    Step = "machine"    // the container, domain or VM is defined and running
	StepIgnition   Step = "ignition"   // first boot applied the node's config
	StepEtcd       Step = "etcd"       // the etcd member is healthy
	StepRegistered Step = "registered" // kiln-node registered the machine
)

// Reporter receives progress, one call per node and step (node "" for cluster-wide steps).
// Calls may come from several goroutines.
type Reporter interface {
	Step(node string, step Step, detail string)
	// Failed says that node failed at step; log holds the node's last lines (journal, console).
	Failed(node string, step Step, err error, log string)
}

// Driver creates and removes a cluster's machines. Up converges: it creates what is missing,
// starts what is stopped and leaves the rest. Down removes only what the driver made and is
// idempotent.
type Driver interface {
	Name() string
	Up(ctx context.Context, p *Plan, r Reporter) error
	Down(ctx context.Context, p *Plan, r Reporter) error
}

// Flagger is implemented by a driver that takes flags of its own (--libvirt-uri,
// --vsphere-url, ...); `kiln up` and `kiln down` add every registered driver's flags, which are
// named after the driver so that they cannot clash.
type Flagger interface {
	AddFlags(fs *pflag.FlagSet)
}

var (
	mu      sync.Mutex
	drivers = map[string]func() Driver{}
)

// Register makes a driver known by name; drivers call it from init.
func Register(name string, new func() Driver) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("up: driver registered twice: " + name)
	}
	drivers[name] = new
}

// Lookup returns a new driver by name.
func Lookup(name string) (Driver, error) {
	mu.Lock()
	defer mu.Unlock()
	if f, ok := drivers[name]; ok {
		return f(), nil
	}
	return nil, fmt.Errorf("unknown driver %q (expected one of %v)", name, namesLocked())
}

// Names lists the registered drivers, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	return namesLocked()
}

func namesLocked() []string {
	n := make([]string, 0, len(drivers))
	for k := range drivers {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
