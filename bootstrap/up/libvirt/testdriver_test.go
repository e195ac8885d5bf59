//go:build cgo && libvirt_dlopen

package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	virt "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/bootstrap/up/internal/uptest"
)

// testURI is libvirt's test driver: in-process, no daemon, one state per process.
const testURI = "test:///default"

// uploads records what the driver uploaded, by volume path: the test driver cannot upload.
type uploads struct {
	mu    sync.Mutex
	files map[string][]byte
}

func recordUploads(t *testing.T) *uploads {
	u := &uploads{files: map[string][]byte{}}
	prev := uploadFunc
	uploadFunc = func(_ context.Context, _ *virt.Connect, vol *virt.StorageVol, r io.Reader, size uint64) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if uint64(len(b)) != size {
			return fmt.Errorf("read %d bytes, announced %d", len(b), size)
		}
		path, err := vol.GetPath()
		if err != nil {
			return err
		}
		u.mu.Lock()
		u.files[path] = b
		u.mu.Unlock()
		return nil
	}
	t.Cleanup(func() { uploadFunc = prev })
	return u
}

func testConn(t *testing.T) *virt.Connect {
	t.Helper()
	conn, err := virt.NewConnect(testURI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testImage is a small raw image.
func testImage(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "os.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xeb}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testPlan(t *testing.T, cluster string) *up.Plan {
	return uptest.Plan(t, uptest.SpecText(cluster, "flatcar", "10.77.0.1", []uptest.Node{
		{Name: "n1", MAC: "52:54:00:77:00:01", IP: "10.77.0.11/24"},
		{Name: "n2", MAC: "52:54:00:77:00:02", IP: "10.77.0.12/24"},
		{Name: "n3", MAC: "52:54:00:77:00:03", IP: "10.77.0.13/24"},
	}))
}

func testDriver(t *testing.T, pool string) *Driver {
	d := New()
	d.URI, d.Image, d.Pool = testURI, testImage(t), pool
	return d
}

func domainDef(t *testing.T, conn *virt.Connect, name string) (*libvirtxml.Domain, bool) {
	t.Helper()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatalf("domain %s: %v", name, err)
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		t.Fatal(err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	active, err := dom.IsActive()
	if err != nil {
		t.Fatal(err)
	}
	return &def, active
}

func exists(conn *virt.Connect, kind, name string) bool {
	var err error
	switch kind {
	case "domain":
		var d *virt.Domain
		if d, err = conn.LookupDomainByName(name); err == nil {
			d.Free()
		}
	case "network":
		var n *virt.Network
		if n, err = conn.LookupNetworkByName(name); err == nil {
			n.Free()
		}
	case "volume":
		var v *virt.StorageVol
		if v, err = conn.LookupStorageVolByPath(name); err == nil {
			v.Free()
		}
	}
	return err == nil
}

// TestIntegrationLibvirtUpConvergeDown brings a three-node cluster up on the test driver (creating the pool,
// uploading the image once, defining the network with each node's DHCP entry, a volume pair
// and a domain per node), stops a domain and runs up again (it runs again, nothing else made
// twice), then runs down twice: the domains, their volumes and the network are gone, the base
// image stays.
func TestIntegrationLibvirtUpConvergeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	ctx := context.Background()
	u := recordUploads(t)
	conn := testConn(t)
	p := testPlan(t, "tconv")
	d := testDriver(t, "kiln-test-conv")
	r := &uptest.Reporter{T: t}
	if err := d.Up(ctx, p, r); err != nil {
		t.Fatal(err)
	}

	pool, err := conn.LookupStoragePoolByName("kiln-test-conv")
	if err != nil {
		t.Fatalf("the pool was not created: %v", err)
	}
	defer pool.Free()
	img, err := inspectImage(d.Image)
	if err != nil {
		t.Fatal(err)
	}
	baseVol, err := pool.LookupStorageVolByName(img.baseVolumeName())
	if err != nil {
		t.Fatalf("no base volume: %v", err)
	}
	basePath, _ := baseVol.GetPath()
	baseVol.Free()
	if want, _ := os.ReadFile(d.Image); !bytes.Equal(u.files[basePath], want) {
		t.Errorf("the base volume did not receive the image (%d bytes)", len(u.files[basePath]))
	}

	net, err := conn.LookupNetworkByName("kiln-tconv")
	if err != nil {
		t.Fatalf("no network kiln-tconv: %v", err)
	}
	nx, _ := net.GetXMLDesc(0)
	net.Free()
	var ndef libvirtxml.Network
	if err := ndef.Unmarshal(nx); err != nil {
		t.Fatal(err)
	}
	if len(ndef.IPs) != 1 || ndef.IPs[0].Address != "10.77.0.1" || ndef.IPs[0].Prefix != 24 || ndef.IPs[0].DHCP == nil {
		t.Fatalf("network address: %s", nx)
	}
	hosts := map[string]string{}
	for _, h := range ndef.IPs[0].DHCP.Hosts {
		hosts[h.MAC] = h.IP
	}

	uuids := map[string]string{}
	for i, n := range p.Compiled.Nodes {
		sn := p.Compiled.Spec.Nodes[i]
		name := up.MachineName("tconv", n.Name)
		def, active := domainDef(t, conn, name)
		if !active {
			t.Errorf("%s is not running", name)
		}
		uuids[name] = def.UUID
		if got := def.Devices.Interfaces[0].MAC.Address; got != sn.MAC {
			t.Errorf("%s: MAC %s, want %s", name, got, sn.MAC)
		}
		if got := def.Devices.Interfaces[0].Source.Network.Network; got != "kiln-tconv" {
			t.Errorf("%s: on network %s", name, got)
		}
		if hosts[sn.MAC]+"/24" != sn.IP {
			t.Errorf("%s: DHCP entry %q for %s, want %s", name, hosts[sn.MAC], sn.MAC, sn.IP)
		}
		fw := def.SysInfo[0].FWCfg.Entry[0]
		if fw.Name != "opt/org.flatcar-linux/config" {
			t.Errorf("%s: fw_cfg name %s", name, fw.Name)
		}
		if !bytes.Equal(u.files[fw.File], n.Ignition) {
			t.Errorf("%s: the fw_cfg file %s does not hold the node's config", name, fw.File)
		}
		disk := def.Devices.Disks[0]
		if disk.Target.Bus != "virtio" || def.Devices.Interfaces[0].Model.Type != "virtio" {
			t.Errorf("%s: disk on %s, NIC %s; want virtio", name, disk.Target.Bus, def.Devices.Interfaces[0].Model.Type)
		}
		vol, err := conn.LookupStorageVolByPath(disk.Source.File.File)
		if err != nil {
			t.Fatalf("%s: disk %s is no volume: %v", name, disk.Source.File.File, err)
		}
		vx, _ := vol.GetXMLDesc(0)
		vol.Free()
		var vdef libvirtxml.StorageVolume
		vdef.Unmarshal(vx)
		if vdef.BackingStore == nil || vdef.BackingStore.Path != basePath {
			t.Errorf("%s: the disk is not over the base image: %s", name, vx)
		}
		if s := def.Devices.Serials; len(s) != 1 || s[0].Source.File == nil || filepath.Dir(s[0].Source.File.Path) != filepath.Join(p.StateDir, "libvirt") {
			t.Errorf("%s: serial console not logged to the state folder", name)
		}
	}

	// Converge: a stopped domain starts again; nothing is made twice.
	dom, _ := conn.LookupDomainByName("kiln-tconv-n2")
	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}
	dom.Free()
	before := len(u.files)
	if err := d.Up(ctx, p, r); err != nil {
		t.Fatal(err)
	}
	for name, uuid := range uuids {
		def, active := domainDef(t, conn, name)
		if !active || def.UUID != uuid {
			t.Errorf("after a second up, %s: running %v, uuid %s (was %s)", name, active, def.UUID, uuid)
		}
	}
	if got := len(u.files); got != before {
		t.Errorf("second up uploaded into %d new paths", got-before)
	}

	// Down, with only the plan (a fresh driver, no flags): the state file says where.
	var volPaths []string
	for name := range uuids {
		def, _ := domainDef(t, conn, name)
		volPaths = append(volPaths, def.Devices.Disks[0].Source.File.File, def.SysInfo[0].FWCfg.Entry[0].File)
	}
	for range 2 {
		if err := New().Down(ctx, p, r); err != nil {
			t.Fatal(err)
		}
	}
	for name := range uuids {
		if exists(conn, "domain", name) {
			t.Errorf("%s still defined after down", name)
		}
	}
	for _, path := range volPaths {
		if exists(conn, "volume", path) {
			t.Errorf("volume %s still there after down", path)
		}
	}
	if exists(conn, "network", "kiln-tconv") {
		t.Error("network kiln-tconv still there after down")
	}
	if !exists(conn, "volume", basePath) {
		t.Error("down deleted the base image volume, which other clusters share")
	}
	if _, err := os.Stat(filepath.Join(p.StateDir, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after down: %v", err)
	}
}

// TestIntegrationLibvirtForeignObjects: a domain or network of a kiln name that kiln did not make stops up at
// that node, and neither up nor down touches it; down removes what up made before it; once the
// foreign domain is gone, up converges.
func TestIntegrationLibvirtForeignObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	ctx := context.Background()
	recordUploads(t)
	conn := testConn(t)
	p := testPlan(t, "tforeign")
	d := testDriver(t, "default-pool")
	r := &uptest.Reporter{T: t}

	foreign := `<domain type='test'><name>kiln-tforeign-n2</name><memory>65536</memory><os><type>hvm</type></os></domain>`
	dom, err := conn.DomainDefineXML(foreign)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dom.Undefine(); dom.Free() })
	err = d.Up(ctx, p, r)
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("up over a foreign domain: %v, want ErrNotOurs", err)
	}
	if !r.Reached("n1", up.StepMachine) || r.Reached("n2", up.StepMachine) {
		t.Fatalf("n1 should be up and n2 failed: %+v", r.Events)
	}
	var failed bool
	for _, e := range r.Events {
		failed = failed || e.Node == "n2" && e.Err != nil
	}
	if !failed {
		t.Error("n2's failure was not reported")
	}

	if err := New().Down(ctx, p, r); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("down: %v, want it to say it left the foreign domain", err)
	}
	if !exists(conn, "domain", "kiln-tforeign-n2") {
		t.Fatal("down removed a domain kiln did not make")
	}
	if exists(conn, "domain", "kiln-tforeign-n1") || exists(conn, "network", "kiln-tforeign") {
		t.Fatal("down left what up made")
	}

	// The operator removes the foreign domain: up converges, down cleans.
	if err := dom.Undefine(); err != nil {
		t.Fatal(err)
	}
	if err := d.Up(ctx, p, r); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if _, active := domainDef(t, conn, up.MachineName("tforeign", n)); !active {
			t.Errorf("%s not running", n)
		}
	}
	if err := New().Down(ctx, p, r); err != nil {
		t.Fatal(err)
	}

	// A network named kiln-<cluster> that kiln did not define is refused.
	net, err := conn.NetworkDefineXML(`<network><name>kiln-tforeign</name><ip address='10.78.0.1' prefix='24'/></network>`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Undefine(); net.Free() })
	if err := d.Up(ctx, p, r); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("up over a foreign network: %v, want ErrNotOurs", err)
	}
	if err := New().Down(ctx, p, r); err != nil {
		t.Fatal(err)
	}
	if !exists(conn, "network", "kiln-tforeign") {
		t.Fatal("down removed a network kiln did not define")
	}
}

// TestIntegrationLibvirtInterrupted: an up cut off after the first node leaves what a second
// up completes (nothing made twice) and a down removes entirely.
func TestIntegrationLibvirtInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	recordUploads(t)
	conn := testConn(t)
	p := testPlan(t, "tint")
	d := testDriver(t, "default-pool")
	r := &uptest.Reporter{T: t}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Up(ctx, p, &uptest.CancelAfter{Reporter: r, Node: "n1", Cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted up: %v", err)
	}
	if !exists(conn, "domain", "kiln-tint-n1") || exists(conn, "domain", "kiln-tint-n2") {
		t.Fatal("the interrupted up should have made n1 only")
	}
	uuid, _ := domainDef(t, conn, "kiln-tint-n1")
	if err := d.Up(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if _, active := domainDef(t, conn, "kiln-tint-"+n); !active {
			t.Errorf("%s not running after the second up", n)
		}
	}
	if again, _ := domainDef(t, conn, "kiln-tint-n1"); again.UUID != uuid.UUID {
		t.Error("the second up made n1 again")
	}
	if err := New().Down(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if exists(conn, "domain", "kiln-tint-"+n) {
			t.Errorf("%s left after down", n)
		}
	}
	if exists(conn, "network", "kiln-tint") {
		t.Error("network left after down")
	}
}

// TestIntegrationLibvirtUserNetwork: a network named with --libvirt-network is used and never
// removed, even after an earlier up made kiln's own network (which down does remove).
func TestIntegrationLibvirtUserNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	recordUploads(t)
	conn := testConn(t)
	p := testPlan(t, "tuser")
	r := &uptest.Reporter{T: t}
	d := testDriver(t, "default-pool")
	if err := d.Up(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	net, err := conn.NetworkDefineXML(`<network><name>users-own</name><ip address='10.79.9.1' prefix='24'/></network>`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Destroy(); net.Undefine(); net.Free() })
	d.Network = "users-own"
	if err := d.Up(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	if err := New().Down(context.Background(), p, r); err != nil {
		t.Fatal(err)
	}
	if !exists(conn, "network", "users-own") {
		t.Fatal("down removed the user's network")
	}
	if exists(conn, "network", "kiln-tuser") {
		t.Fatal("down left the network kiln made")
	}
}
