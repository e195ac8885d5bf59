// Package vsphere is the vSphere driver of `kiln up` and `kiln down` (--driver vsphere): it
// clones each node from a VM template as kiln-<cluster>-<node>, with the node's MAC on the first
// network card and the node's Ignition config in the guestinfo properties that Ignition's VMware
// provider reads (as `kiln userdata --platform vsphere` makes them, within their size limit),
// then powers it on. Down powers off and destroys those VMs only: kiln marks each VM it clones
// in its extraConfig.
//
// It talks to vCenter or ESXi with govmomi and takes its connection the way govc users know:
// GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD, GOVC_INSECURE, or the flags.
package vsphere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/bootstrap/up/internal/statefile"
	"github.com/kiln-cluster/kiln/bootstrap/userdata"
)

// Name is the driver's name in --driver.
const Name = "vsphere"

// The extraConfig keys that mark a VM as kiln's, and whose node it is.
const (
	MarkCluster = "kiln.cluster"
	MarkNode    = "kiln.node"
)

// Config is what the flags (or govc's variables) set.
type Config struct {
	URL          string
	Insecure     bool
	Datacenter   string
	Datastore    string
	Network      string
	Folder       string
	ResourcePool string
	Template     string
}

// Driver is the vSphere driver.
type Driver struct {
	Config
	// getenv reads govc's variables (os.Getenv; tests set their own).
	getenv func(string) string
}

func init() {
	up.Register(Name, func() up.Driver { return New() })
}

// New returns a driver that reads govc's variables.
func New() *Driver { return &Driver{getenv: os.Getenv} }

// Name is "vsphere".
func (d *Driver) Name() string { return Name }

// AddFlags adds the driver's flags.
func (d *Driver) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&d.URL, "vsphere-url", "", "vsphere: vCenter or ESXi URL, user:password@host (default $GOVC_URL; $GOVC_USERNAME and $GOVC_PASSWORD fill in the user)")
	fs.BoolVar(&d.Insecure, "vsphere-insecure", false, "vsphere: skip the server certificate's verification (default $GOVC_INSECURE=1)")
	fs.StringVar(&d.Datacenter, "vsphere-datacenter", "", "vsphere: datacenter (default: the only one)")
	fs.StringVar(&d.Datastore, "vsphere-datastore", "", "vsphere: datastore of the clones (default: the only one)")
	fs.StringVar(&d.Network, "vsphere-network", "", "vsphere: network of the first NIC (default: the only one)")
	fs.StringVar(&d.Folder, "vsphere-folder", "", "vsphere: VM folder of the clones (default: the datacenter's VM folder)")
	fs.StringVar(&d.ResourcePool, "vsphere-resource-pool", "", "vsphere: resource pool of the clones (default: the only one)")
	fs.StringVar(&d.Template, "vsphere-template", "", "vsphere: the VM template each node is cloned from")
}

// url is the server's URL with the user from GOVC_USERNAME and GOVC_PASSWORD when it has none.
func (d *Driver) url() (*url.URL, bool, error) {
	raw := cmp.Or(d.URL, d.getenv("GOVC_URL"))
	if raw == "" {
		return nil, false, ErrNoURL
	}
	u, err := soap.ParseURL(raw)
	if err != nil {
		return nil, false, up.ConfigError(fmt.Errorf("vSphere URL %q: %w", raw, err))
	}
	if u.User == nil || u.User.Username() == "" {
		u.User = url.UserPassword(d.getenv("GOVC_USERNAME"), d.getenv("GOVC_PASSWORD"))
	} else if _, set := u.User.Password(); !set {
		u.User = url.UserPassword(u.User.Username(), d.getenv("GOVC_PASSWORD"))
	}
	insecure := d.Insecure
	if !insecure {
		insecure, _ = strconv.ParseBool(d.getenv("GOVC_INSECURE"))
	}
	return u, insecure, nil
}

// session is a login and the objects the flags chose.
type session struct {
	client *govmomi.Client
	finder *find.Finder
	dc     *object.Datacenter
	folder *object.Folder
}

func (d *Driver) login(ctx context.Context) (*session, error) {
	u, insecure, err := d.url()
	if err != nil {
		return nil, err
	}
	c, err := govmomi.NewClient(ctx, u, insecure)
	if err != nil {
		return nil, fmt.Errorf("log in to %s: %w", u.Redacted(), err)
	}
	s := &session{client: c, finder: find.NewFinder(c.Client, true)}
	if s.dc, err = choose(ctx, "datacenter", "--vsphere-datacenter", d.Datacenter, s.finder.Datacenter, s.finder.DatacenterList); err != nil {
		s.close()
		return nil, err
	}
	s.finder.SetDatacenter(s.dc)
	if d.Folder != "" {
		s.folder, err = s.finder.Folder(ctx, d.Folder)
		err = notFound(err)
	} else {
		s.folder, err = s.finder.DefaultFolder(ctx)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("VM folder: %w", err)
	}
	return s, nil
}

func (s *session) close() { s.client.Logout(context.Background()) }

// named is an inventory object.
type named interface{ Name() string }

// choose returns the object of that name, or the only one there is; several without a name
// is an error that lists them.
func choose[T any](ctx context.Context, kind, flag, name string, one func(context.Context, string) (T, error), list func(context.Context, string) ([]T, error)) (T, error) {
	var zero T
	if name != "" {
		v, err := one(ctx, name)
		if err != nil {
			return zero, notFound(fmt.Errorf("%s %q: %w", kind, name, err))
		}
		return v, nil
	}
	all, err := list(ctx, "*")
	var nf *find.NotFoundError
	if errors.As(err, &nf) || err == nil && len(all) == 0 {
		return zero, fmt.Errorf("%s: %w", kind, ErrNone)
	} else if err != nil {
		return zero, fmt.Errorf("%s: %w", kind, err)
	}
	if len(all) == 1 {
		return all[0], nil
	}
	var names []string
	for _, v := range all {
		if n, ok := any(v).(named); ok {
			names = append(names, n.Name())
		}
	}
	slices.Sort(names)
	return zero, fmt.Errorf("%s: %w: give %s, one of %s", kind, ErrChoose, flag, strings.Join(names, ", "))
}

// notFound marks err as a configuration error when a flag named an object that is not there.
func notFound(err error) error {
	var nf *find.NotFoundError
	if errors.As(err, &nf) {
		return up.ConfigError(err)
	}
	return err
}

// state is what `kiln down` needs without flags (the URL without its password).
type state struct {
	URL        string   `json:"url"`
	Insecure   bool     `json:"insecure,omitempty"`
	Datacenter string   `json:"datacenter"`
	Folder     string   `json:"folder"`
	VMs        []string `json:"vms,omitempty"`
}

const stateFile = "vsphere.json"

func loadState(dir string) (*state, error) { return statefile.Load[state](dir, stateFile) }

func (s *state) save(dir string) error { return statefile.Save(dir, stateFile, s) }

// Up clones what is missing and powers on what is off; VMs already there are left as they are.
func (d *Driver) Up(ctx context.Context, p *up.Plan, r up.Reporter) error {
	if d.Template == "" {
		return ErrNoTemplate
	}
	platform, err := userdata.Lookup("vsphere")
	if err != nil {
		return err
	}
	// Every node's properties first: a config too large fails before anything is made.
	props := make([][]types.BaseOptionValue, len(p.Compiled.Nodes))
	for i, n := range p.Compiled.Nodes {
		dl, err := platform.Deliver(n.Ignition, userdata.Options{})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		for _, kv := range dl.Properties() {
			props[i] = append(props[i], &types.OptionValue{Key: kv.Key, Value: kv.Value})
		}
		props[i] = append(props[i],
			&types.OptionValue{Key: MarkCluster, Value: p.Cluster()},
			&types.OptionValue{Key: MarkNode, Value: n.Name})
	}
	s, err := d.login(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	f := s.finder
	template, err := f.VirtualMachine(ctx, d.Template)
	if err != nil {
		return notFound(fmt.Errorf("template %q: %w", d.Template, err))
	}
	r.Step("", up.StepImage, "template "+template.InventoryPath)
	ds, err := choose(ctx, "datastore", "--vsphere-datastore", d.Datastore, f.Datastore, f.DatastoreList)
	if err != nil {
		return err
	}
	network, err := choose(ctx, "network", "--vsphere-network", d.Network, f.Network, f.NetworkList)
	if err != nil {
		return err
	}
	pool, err := choose(ctx, "resource pool", "--vsphere-resource-pool", d.ResourcePool, f.ResourcePool,
		func(ctx context.Context, _ string) ([]*object.ResourcePool, error) {
			return f.ResourcePoolList(ctx, "*/Resources")
		})
	if err != nil {
		return err
	}
	backing, err := network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return fmt.Errorf("network %s: %w", d.Network, err)
	}
	r.Step("", up.StepNetwork, networkPath(network))
	devices, err := template.Device(ctx)
	if err != nil {
		return err
	}
	nics := devices.SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) == 0 {
		return fmt.Errorf("template %s: %w", d.Template, ErrNoNIC)
	}

	u, insecure, _ := d.url()
	u.User = url.User(u.User.Username())
	st := &state{URL: u.String(), Insecure: insecure, Datacenter: s.dc.InventoryPath, Folder: s.folder.InventoryPath}
	if old, err := loadState(p.StateDir); err == nil && old != nil {
		st.VMs = old.VMs
	}
	for i, n := range p.Compiled.Nodes {
		name := up.MachineName(p.Cluster(), n.Name)
		if slices.Index(st.VMs, name) < 0 {
			st.VMs = append(st.VMs, name)
		}
		if err := st.save(p.StateDir); err != nil {
			return err
		}
		mac := p.Compiled.Spec.Nodes[i].MAC
		if err := s.node(ctx, template, name, p.Cluster(), n.Name, mac, nics[0], backing, props[i], ds, pool); err != nil {
			err = fmt.Errorf("node %s: %w", n.Name, err)
			r.Failed(n.Name, up.StepMachine, err, "")
			return err
		}
		r.Step(n.Name, up.StepMachine, name+" powered on")
	}
	return nil
}

// networkPath names a network for the progress display.
func networkPath(n object.NetworkReference) string {
	if v, ok := n.(named); ok {
		return v.Name()
	}
	return n.Reference().Value
}

// node converges one node's VM: cloned when missing, powered on when off.
func (s *session) node(ctx context.Context, template *object.VirtualMachine, name, cluster, node, mac string,
	nic types.BaseVirtualDevice, backing types.BaseVirtualDeviceBackingInfo, props []types.BaseOptionValue,
	ds *object.Datastore, pool *object.ResourcePool) error {
	vm, err := s.ours(ctx, name, cluster, node)
	if err != nil {
		return err
	}
	if vm == nil {
		card := *nic.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		card.AddressType = string(types.VirtualEthernetCardMacTypeManual)
		card.MacAddress = mac
		card.Backing = backing
		edited := nic
		// The card keeps its own type (vmxnet3, e1000...): set the copy into a value of it.
		if err := setCard(edited, card); err != nil {
			return err
		}
		dsRef, poolRef := ds.Reference(), pool.Reference()
		spec := types.VirtualMachineCloneSpec{
			Location: types.VirtualMachineRelocateSpec{Datastore: &dsRef, Pool: &poolRef},
			Config: &types.VirtualMachineConfigSpec{
				ExtraConfig:  props,
				DeviceChange: []types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: edited}},
			},
		}
		task, err := template.Clone(ctx, s.folder, name, spec)
		if err != nil {
			return fmt.Errorf("clone %s: %w", name, err)
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("clone %s: %w", name, err)
		}
		if vm, err = s.ours(ctx, name, cluster, node); err != nil {
			return err
		} else if vm == nil {
			return fmt.Errorf("clone %s: the clone is not in %s", name, s.folder.InventoryPath)
		}
	}
	ps, err := vm.PowerState(ctx)
	if err != nil {
		return err
	}
	if ps != types.VirtualMachinePowerStatePoweredOn {
		task, err := vm.PowerOn(ctx)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("power on %s: %w", name, err)
		}
	}
	return nil
}

// setCard copies card into the device's own value (a VirtualVmxnet3, VirtualE1000, ...).
func setCard(dev types.BaseVirtualDevice, card types.VirtualEthernetCard) error {
	c, ok := dev.(types.BaseVirtualEthernetCard)
	if !ok {
		return ErrNoNIC
	}
	*c.GetVirtualEthernetCard() = card
	return nil
}

// ours returns the folder's VM of that name when kiln marked it for this node, nil when there
// is none, and ErrNotOurs when one is there without the mark.
func (s *session) ours(ctx context.Context, name, cluster, node string) (*object.VirtualMachine, error) {
	vm, err := s.finder.VirtualMachine(ctx, s.folder.InventoryPath+"/"+name)
	var nf *find.NotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var m mo.VirtualMachine
	if err := property.DefaultCollector(s.client.Client).RetrieveOne(ctx, vm.Reference(), []string{"config.extraConfig"}, &m); err != nil {
		return nil, err
	}
	marks := map[string]string{}
	if m.Config != nil {
		for _, o := range m.Config.ExtraConfig {
			if v := o.GetOptionValue(); v.Key == MarkCluster || v.Key == MarkNode {
				marks[v.Key], _ = v.Value.(string)
			}
		}
	}
	if marks[MarkCluster] != cluster || marks[MarkNode] != node {
		return nil, fmt.Errorf("VM %s %w", vm.InventoryPath, ErrNotOurs)
	}
	return vm, nil
}

// Down powers off and destroys the cluster's VMs that carry kiln's mark; others are left.
func (d *Driver) Down(ctx context.Context, p *up.Plan, r up.Reporter) error {
	st, err := loadState(p.StateDir)
	if err != nil {
		return err
	}
	if st == nil {
		// Up records what it is about to make before making it: no record, nothing made.
		return nil
	}
	// The state says where; flags and govc's variables still give the credentials.
	if d.URL == "" && d.getenv("GOVC_URL") == "" {
		d.URL = st.URL
	}
	d.Insecure = d.Insecure || st.Insecure
	d.Datacenter = cmp.Or(d.Datacenter, st.Datacenter)
	d.Folder = cmp.Or(d.Folder, st.Folder)
	s, err := d.login(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	var errs []error
	for _, n := range p.Compiled.Nodes {
		name := up.MachineName(p.Cluster(), n.Name)
		vm, err := s.ours(ctx, name, p.Cluster(), n.Name)
		if err != nil {
			r.Failed(n.Name, up.StepMachine, err, "")
			errs = append(errs, err)
			continue
		}
		if vm == nil {
			continue
		}
		if err := destroy(ctx, vm); err != nil {
			err = fmt.Errorf("node %s: %w", n.Name, err)
			r.Failed(n.Name, up.StepMachine, err, "")
			errs = append(errs, err)
			continue
		}
		r.Step(n.Name, up.StepMachine, name+" destroyed")
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return statefile.Remove(p.StateDir, stateFile)
}

func destroy(ctx context.Context, vm *object.VirtualMachine) error {
	ps, err := vm.PowerState(ctx)
	if err != nil {
		return err
	}
	if ps == types.VirtualMachinePowerStatePoweredOn || ps == types.VirtualMachinePowerStateSuspended {
		task, err := vm.PowerOff(ctx)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("power off %s: %w", vm.InventoryPath, err)
		}
	}
	task, err := vm.Destroy(ctx)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", vm.InventoryPath, err)
	}
	return nil
}
