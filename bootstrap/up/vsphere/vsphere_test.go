package vsphere

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config"
	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/bootstrap/up/internal/uptest"
	"github.com/kiln-cluster/kiln/bootstrap/userdata"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/internal/vspheretest"
)

// vcsim is govmomi's vCenter simulator on loopback with a template to clone from.
type vcsim struct {
	url    string
	client *govmomi.Client
	finder *find.Finder
}

func startSim(t *testing.T) *vcsim {
	s := vspheretest.Start(t)
	return &vcsim{url: s.URL, client: s.Client, finder: s.Finder}
}

// driver is a driver for the simulator configured through govc's variables, as users do.
func (s *vcsim) driver() *Driver {
	env := map[string]string{"GOVC_URL": s.url, "GOVC_INSECURE": "1"}
	d := &Driver{getenv: func(k string) string { return env[k] }}
	d.Template = "DC0_H0_VM0"
	d.Network = "VM Network"
	d.ResourcePool = "DC0_C0/Resources"
	return d
}

func testPlan(t *testing.T, cluster string) *up.Plan {
	return uptest.Plan(t, uptest.SpecText(cluster, "flatcar", "10.79.0.1", []uptest.Node{
		{Name: "n1", MAC: "00:50:56:3a:00:01", IP: "10.79.0.11/24"},
		{Name: "n2", MAC: "00:50:56:3a:00:02", IP: "10.79.0.12/24"},
		{Name: "n3", MAC: "00:50:56:3a:00:03", IP: "10.79.0.13/24"},
	}))
}

type vmView struct {
	vm      *object.VirtualMachine
	extra   map[string]string
	mac     string
	power   types.VirtualMachinePowerState
	network string
}

// view reads a VM's extraConfig, first NIC and power state; nil when there is no such VM.
func (s *vcsim) view(t *testing.T, name string) *vmView {
	t.Helper()
	ctx := context.Background()
	vm, err := s.finder.VirtualMachine(ctx, name)
	var nf *find.NotFoundError
	if errors.As(err, &nf) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var m mo.VirtualMachine
	if err := property.DefaultCollector(s.client.Client).RetrieveOne(ctx, vm.Reference(), []string{"config", "runtime.powerState"}, &m); err != nil {
		t.Fatal(err)
	}
	v := &vmView{vm: vm, extra: map[string]string{}, power: m.Runtime.PowerState}
	for _, o := range m.Config.ExtraConfig {
		ov := o.GetOptionValue()
		v.extra[ov.Key], _ = ov.Value.(string)
	}
	devices := object.VirtualDeviceList(m.Config.Hardware.Device)
	if nics := devices.SelectByType((*types.VirtualEthernetCard)(nil)); len(nics) > 0 {
		card := nics[0].(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		v.mac = card.MacAddress
		if b, ok := card.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
			v.network = b.DeviceName
		}
	}
	return v
}

// TestIntegrationVSphereUpConvergeDown clones three VMs from the template in the simulator: each has its node's
// MAC on the first NIC, in the chosen network, its extraConfig decodes to the node's rendered
// config, and it runs. A second up after powering one off powers it on and clones nothing; down
// (with only the state file and govc's variables) destroys the three and leaves the template.
func TestIntegrationVSphereUpConvergeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	ctx := context.Background()
	sim := startSim(t)
	p := testPlan(t, "vconv")
	d := sim.driver()
	r := &uptest.Reporter{T: t}
	if err := d.Up(ctx, p, r); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for i, n := range p.Compiled.Nodes {
		name := up.MachineName("vconv", n.Name)
		v := sim.view(t, name)
		if v == nil {
			t.Fatalf("no VM %s", name)
		}
		refs[name] = v.vm.Reference().Value
		if want := p.Compiled.Spec.Nodes[i].MAC; v.mac != want {
			t.Errorf("%s: MAC %s, want %s", name, v.mac, want)
		}
		if v.network != "VM Network" {
			t.Errorf("%s: NIC on %q", name, v.network)
		}
		if v.power != types.VirtualMachinePowerStatePoweredOn {
			t.Errorf("%s: %s", name, v.power)
		}
		if v.extra[userdata.GuestInfoEncoding] != "base64" {
			t.Errorf("%s: encoding %q", name, v.extra[userdata.GuestInfoEncoding])
		}
		raw, err := base64.StdEncoding.DecodeString(v.extra[userdata.GuestInfoData])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _, err := ignconfig.Parse(raw)
		if err != nil {
			t.Fatalf("%s: guestinfo does not hold an Ignition config: %v", name, err)
		}
		want, _, _ := ignconfig.Parse(n.Ignition)
		if !equalJSON(t, got, want) {
			t.Errorf("%s: guestinfo holds another config than the node's", name)
		}
	}

	// Converge: a powered-off VM is powered on, nothing is cloned again.
	v2 := sim.view(t, "kiln-vconv-n2")
	if task, err := v2.vm.PowerOff(ctx); err != nil || task.Wait(ctx) != nil {
		t.Fatal(err)
	}
	if err := d.Up(ctx, p, r); err != nil {
		t.Fatal(err)
	}
	for name, ref := range refs {
		v := sim.view(t, name)
		if v.vm.Reference().Value != ref || v.power != types.VirtualMachinePowerStatePoweredOn {
			t.Errorf("after a second up, %s is %s %s (was %s)", name, v.vm.Reference().Value, v.power, ref)
		}
	}

	down := sim.driver()
	down.Template, down.Network, down.ResourcePool = "", "", ""
	for range 2 {
		if err := down.Down(ctx, p, r); err != nil {
			t.Fatal(err)
		}
	}
	for name := range refs {
		if sim.view(t, name) != nil {
			t.Errorf("%s still there after down", name)
		}
	}
	if sim.view(t, "DC0_H0_VM0") == nil {
		t.Error("down removed the template")
	}
	if _, err := os.Stat(filepath.Join(p.StateDir, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left: %v", err)
	}
}

// TestIntegrationVSphereInterruptedAndForeign: an up cut off after the first clone leaves what a second up
// completes, and down removes it all; a VM of a kiln name without kiln's mark stops up and
// down leaves it.
func TestIntegrationVSphereInterruptedAndForeign(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	sim := startSim(t)
	p := testPlan(t, "vint")
	d := sim.driver()
	ctx, cancel := context.WithCancel(context.Background())
	r := &uptest.Reporter{T: t}
	if err := d.Up(ctx, p, &uptest.CancelAfter{Reporter: r, Node: "n1", Cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted up: %v", err)
	}
	if sim.view(t, "kiln-vint-n3") != nil {
		t.Fatal("n3 was cloned after the cancellation")
	}
	if err := d.Up(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if v := sim.view(t, "kiln-vint-"+n); v == nil || v.power != types.VirtualMachinePowerStatePoweredOn {
			t.Fatalf("%s not up after the second up", n)
		}
	}
	if err := d.Down(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if sim.view(t, "kiln-vint-"+n) != nil {
			t.Fatalf("%s left after down", n)
		}
	}

	// A foreign VM of n2's name: a clone of the template without kiln's mark.
	ctx = context.Background()
	tmpl := sim.view(t, "DC0_H0_VM0").vm
	folder, err := sim.finder.DefaultFolder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := sim.finder.ResourcePool(ctx, "DC0_C0/Resources")
	if err != nil {
		t.Fatal(err)
	}
	poolRef := pool.Reference()
	task, err := tmpl.Clone(ctx, folder, "kiln-vint-n2", types.VirtualMachineCloneSpec{Location: types.VirtualMachineRelocateSpec{Pool: &poolRef}})
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("foreign clone: %v", err)
	}
	if err := d.Up(ctx, p, r); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("up over a foreign VM: %v, want ErrNotOurs", err)
	}
	if err := d.Down(ctx, p, r); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("down: %v, want it to say it left the foreign VM", err)
	}
	if sim.view(t, "kiln-vint-n2") == nil {
		t.Fatal("down destroyed a VM kiln did not make")
	}
	if sim.view(t, "kiln-vint-n1") != nil {
		t.Fatal("down left n1")
	}
}

// TestIntegrationVSphereChoices: without a flag, a kind with several objects is an error that lists them; a
// missing URL says how to give one.
func TestIntegrationVSphereChoices(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	sim := startSim(t)
	p := testPlan(t, "vchoice")
	d := sim.driver()
	d.Network = ""
	err := d.Up(context.Background(), p, &uptest.Reporter{T: t})
	if !errors.Is(err, ErrChoose) || !errors.Is(err, up.ErrConfig) || !strings.Contains(err.Error(), "--vsphere-network") || !strings.Contains(err.Error(), "VM Network") {
		t.Fatalf("up with two networks and no --vsphere-network: %v", err)
	}
	// A flag that names an object that is not there is the user's error too.
	d = sim.driver()
	d.Template = "no-such-template"
	if err := d.Up(context.Background(), p, &uptest.Reporter{T: t}); !errors.Is(err, up.ErrConfig) || !strings.Contains(err.Error(), "no-such-template") {
		t.Fatalf("up with a missing template: %v", err)
	}
	d = &Driver{getenv: func(string) string { return "" }, Config: Config{Template: "x"}}
	if err := d.Up(context.Background(), p, &uptest.Reporter{T: t}); !errors.Is(err, ErrNoURL) {
		t.Fatalf("no URL: %v", err)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return strings.EqualFold(mustJSON(t, a), mustJSON(t, b))
}

// TestIntegrationVSphereLargeConfig: a config beyond guestinfo's 64 KiB goes in gzip inside a
// small config, as kiln userdata --platform vsphere gives it, and resolves to the node's config;
// one that does not fit even compressed fails before anything is cloned.
func TestIntegrationVSphereLargeConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	sim := startSim(t)
	// Units are plain text in Ignition and compress well; a file of random base64 Butane already
	// gzips, so it does not compress again.
	units := func(n int) string {
		var b strings.Builder
		b.WriteString("variant: flatcar\nversion: 1.1.0\nsystemd:\n  units:\n")
		for i := range n {
			fmt.Fprintf(&b, "    - name: pad-%05d.service\n      contents: |\n        [Unit]\n        Description=padding unit %d of a large kiln test config\n        [Service]\n        ExecStart=/usr/bin/echo padding %d\n", i, i, i)
		}
		return b.String()
	}
	random := func(text string) string {
		return "variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: /var/lib/pad\n      contents:\n        inline: " + strconv.Quote(text) + "\n"
	}
	spec := uptest.SpecText("vbig", "flatcar", "10.79.0.1", []uptest.Node{{Name: "n1", MAC: "00:50:56:3a:00:11", IP: "10.79.0.11/24"}}) + "snippets: [pad.bu]\n"

	p := uptest.PlanFiles(t, spec, map[string]string{"pad.bu": units(500)})
	if err := sim.driver().Up(context.Background(), p, &uptest.Reporter{T: t}); err != nil {
		t.Fatal(err)
	}
	v := sim.view(t, "kiln-vbig-n1")
	raw, err := base64.StdEncoding.DecodeString(v.extra[userdata.GuestInfoData])
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) >= len(p.Compiled.Nodes[0].Ignition) {
		t.Fatalf("guestinfo holds %d bytes, the node's config %d: not compressed", len(raw), len(p.Compiled.Nodes[0].Ignition))
	}
	var wrapper struct {
		Ignition struct {
			Config struct {
				Replace struct{ Source, Compression string }
			}
		}
	}
	if err := json.Unmarshal(raw, &wrapper); err != nil {
		t.Fatal(err)
	}
	rep := wrapper.Ignition.Config.Replace
	if !strings.HasPrefix(rep.Source, "data:") || rep.Compression != "gzip" {
		t.Fatalf("replace %q (%s): not a gzipped data URL", rep.Source[:min(60, len(rep.Source))], rep.Compression)
	}
	if full := testkit.DataURLContents(t, rep.Source, &rep.Compression); !bytes.Equal(full, p.Compiled.Nodes[0].Ignition) {
		t.Fatalf("the compressed config is not the node's")
	}

	noise := make([]byte, 96<<10)
	rand.Read(noise)
	p = uptest.PlanFiles(t, strings.ReplaceAll(spec, "vbig", "vhuge"), map[string]string{"pad.bu": random(base64.StdEncoding.EncodeToString(noise))})
	if err := sim.driver().Up(context.Background(), p, &uptest.Reporter{T: t}); !errors.Is(err, userdata.ErrTooLarge) {
		t.Fatalf("up with a config too large for guestinfo: %v, want ErrTooLarge", err)
	}
	if sim.view(t, "kiln-vhuge-n1") != nil {
		t.Fatal("a VM was cloned for a config that cannot be delivered")
	}
}
