// Package libvirt is the libvirt driver of `kiln up` and `kiln down` (--driver libvirt): per node
// a domain kiln-<cluster>-<node> with the node's MAC, a copy-on-write volume over the OS image and
// the node's Ignition config through QEMU's fw_cfg, on a network kiln-<cluster> that kiln defines
// with a DHCP host entry per node (or on a network the user names).
//
// It talks to libvirt through libvirt-go-module, which uses cgo: the driver is built with cgo and
// the libvirt_dlopen build tag (libvirt is loaded at run time, no headers are needed to build);
// without them, a stub says how to get it.
//
// The node's config reaches QEMU as a copy: a volume in the storage pool, mode 0600, owned by
// the user QEMU runs as (read from libvirt's DAC base label), so the config travels over the
// libvirt connection (remote URIs work) and no file mode is widened. libvirt 9 does not relabel
// fw_cfg files itself.
package libvirt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/bootstrap/up/internal/statefile"
	"github.com/kiln-cluster/kiln/images/cache"
	"github.com/kiln-cluster/kiln/images/catalog"
)

// Name is the driver's name in --driver.
const Name = "libvirt"

// Config is what the flags set.
type Config struct {
	URI     string
	Image   string
	Pool    string
	Network string
	// MemoryMiB and CPUs size every domain; DiskSize every node's disk ("" is the image's size).
	MemoryMiB int
	CPUs      int
	DiskSize  string
	// DomainType is kvm, qemu (TCG) or auto (kvm when the host offers it).
	DomainType string

	// isolated defines the cluster network without forwarding (tests: traffic stays on it).
	isolated bool
	// kernel, initrd and cmdline boot a kernel directly instead of the disk (tests).
	kernel, initrd, cmdline string
}

// Driver is the libvirt driver.
type Driver struct {
	Config
	// shared are the flags of the same name that another driver added first.
	shared map[string]*pflag.Flag
}

func init() {
	up.Register(Name, func() up.Driver { return New() })
}

// New returns a driver with the flags' defaults.
func New() *Driver {
	return &Driver{Config: Config{URI: "qemu:///system", Pool: "default", MemoryMiB: 2048, CPUs: 2, DomainType: "auto"}}
}

// Name is "libvirt".
func (d *Driver) Name() string { return Name }

// AddFlags adds the driver's flags. --image, --memory, --cpus and --disk-size are not named
// after the driver: when another driver has added one already, the two share it.
func (d *Driver) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&d.URI, "libvirt-uri", d.URI, "libvirt: connection URI (qemu:///system, qemu:///session, qemu+ssh://host/system)")
	fs.StringVar(&d.Pool, "libvirt-pool", d.Pool, "libvirt: storage pool of the volumes (a directory pool is created if missing)")
	fs.StringVar(&d.Network, "libvirt-network", d.Network, "libvirt: an existing network to attach the nodes to (default: kiln-<cluster>, defined by kiln with the spec's subnet and gateway)")
	fs.StringVar(&d.DomainType, "libvirt-domain-type", d.DomainType, "libvirt: kvm, qemu (TCG emulation) or auto (kvm when the host has it)")
	d.shared = map[string]*pflag.Flag{}
	for _, f := range []struct {
		name, usage string
		add         func()
	}{
		{"image", "libvirt: the OS disk image, qcow2 or raw (default: the cached image of the spec's OS and channel for the qemu platform)",
			func() { fs.StringVar(&d.Image, "image", d.Image, "") }},
		{"memory", "libvirt: memory of each node, MiB", func() { fs.IntVar(&d.MemoryMiB, "memory", d.MemoryMiB, "") }},
		{"cpus", "libvirt: virtual CPUs of each node", func() { fs.IntVar(&d.CPUs, "cpus", d.CPUs, "") }},
		{"disk-size", "libvirt: disk size of each node, e.g. 20G (default: the image's size)", func() { fs.StringVar(&d.DiskSize, "disk-size", d.DiskSize, "") }},
	} {
		if other := fs.Lookup(f.name); other != nil {
			d.shared[f.name] = other
			continue
		}
		f.add()
		fs.Lookup(f.name).Usage = f.usage
	}
}

// sharedFlags copies the values of the flags that another driver defined and the user set.
func (d *Driver) sharedFlags() error {
	for name, f := range d.shared {
		if !f.Changed {
			continue
		}
		v := f.Value.String()
		var err error
		switch name {
		case "image":
			d.Image = v
		case "disk-size":
			d.DiskSize = v
		case "memory":
			d.MemoryMiB, err = strconv.Atoi(v)
		case "cpus":
			d.CPUs, err = strconv.Atoi(v)
		}
		if err != nil {
			return up.ConfigError(fmt.Errorf("--%s: %w", name, err))
		}
	}
	return nil
}

// settings are the flags checked, in the form up needs them.
type settings struct {
	domType  string // kvm, qemu or auto
	diskSize uint64 // 0: the image's size
}

// check validates the flags before anything is made, in every build (the stub's too): its
// errors are up.ErrConfig.
func (d *Driver) check() (settings, error) {
	if err := d.sharedFlags(); err != nil {
		return settings{}, err
	}
	set := settings{domType: d.DomainType}
	switch d.DomainType {
	case "auto", "kvm", "qemu":
	case "tcg":
		set.domType = "qemu"
	default:
		return settings{}, fmt.Errorf("%w, not %q", ErrDomainType, d.DomainType)
	}
	if d.MemoryMiB < 64 || d.CPUs < 1 {
		return settings{}, fmt.Errorf("%w, not %d and %d", ErrResources, d.MemoryMiB, d.CPUs)
	}
	var err error
	set.diskSize, err = parseSize(d.DiskSize)
	return set, err
}

// Up creates what is missing of the cluster's network, volumes and domains, and starts the
// domains that are not running.
func (d *Driver) Up(ctx context.Context, p *up.Plan, r up.Reporter) error {
	set, err := d.check()
	if err != nil {
		return err
	}
	return d.up(ctx, p, r, set)
}

// Down destroys and undefines the cluster's domains and deletes their volumes and the network
// kiln defined; nothing else. The base image volume stays for the next cluster.
func (d *Driver) Down(ctx context.Context, p *up.Plan, r up.Reporter) error { return d.down(ctx, p, r) }

// Journal implements up.Journaler: the last lines of the node's serial console (local
// connections only; on a remote host the log is in libvirt's log folder there).
func (d *Driver) Journal(_ context.Context, p *up.Plan, node string, lines int) string {
	return tail(consoleLog(p, node), lines)
}

// consoleLog is where a local connection's domain writes its serial console: the state folder
// (libvirt opens the file and hands QEMU the descriptor, so the folder may be private).
func consoleLog(p *up.Plan, node string) string {
	dir, err := filepath.Abs(filepath.Join(p.StateDir, "libvirt"))
	if err != nil {
		return ""
	}
	return filepath.Join(dir, up.MachineName(p.Cluster(), node)+".console.log")
}

// tail is the last lines of a file, for a failure report; "" when it cannot be read.
func tail(path string, lines int) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// imagePath is --image, or the cached disk image of the spec's OS and channel for QEMU.
func (d *Driver) imagePath(p *up.Plan) (string, error) {
	if d.Image != "" {
		return d.Image, nil
	}
	c := p.Compiled.Spec.Cluster
	files, err := cache.Lookup(c.OS, c.Channel, "qemu")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	if path := files[catalog.Disk]; path != "" {
		return path, nil
	}
	return "", ErrNoImage
}

// state is what the driver made, kept in the state folder so that `kiln down` needs no flags.
// Names are recorded before the objects are made, so that a failure half-way leaves nothing
// that down cannot find.
type state struct {
	URI  string `json:"uri"`
	Pool string `json:"pool"`
	// Network is the network the domains are on; MadeNetwork the one kiln defined (the same,
	// or a network of an earlier up that down still removes), "" when none.
	Network     string   `json:"network"`
	MadeNetwork string   `json:"madeNetwork,omitempty"`
	Domains     []string `json:"domains,omitempty"`
	Volumes     []string `json:"volumes,omitempty"`
}

const stateFile = "libvirt.json"

func loadState(dir string) (*state, error) { return statefile.Load[state](dir, stateFile) }

func (s *state) save(dir string) error { return statefile.Save(dir, stateFile, s) }

func (s *state) remove(dir string) error { return statefile.Remove(dir, stateFile) }

func addName(list *[]string, name string) bool {
	for _, n := range *list {
		if n == name {
			return false
		}
	}
	*list = append(*list, name)
	return true
}
