//go:build cgo && libvirt_dlopen

package libvirt

import (
	"bytes"
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	virt "libvirt.org/go/libvirt"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/bootstrap/up/internal/uptest"
	"github.com/kiln-cluster/kiln/internal/libvirttest"
	"github.com/kiln-cluster/kiln/internal/testboot"
)

// e2eSetup is a cluster of three nodes whose domains boot the test kernel and an initramfs
// that prints the node's fw_cfg config and its NIC's MAC, on a private pool and a network of a
// random private subnet, both removed when the test ends.
type e2eSetup struct {
	conn *virt.Connect
	plan *up.Plan
	drv  *Driver
}

func setupE2E(t testing.TB) *e2eSetup {
	t.Helper()
	kit := testboot.Require(t)
	conn := libvirttest.Require(t)
	id := libvirttest.ID(t, 3)
	// Files QEMU reads (the kernel, the initramfs) must be reachable by its user.
	dir := libvirttest.Dir(t)
	init := testboot.Init{
		Modules: append(append([]string{}, testboot.FwCfgModules...), testboot.NetModules...),
		Script: `
f=/sys/firmware/qemu_fw_cfg/by_name/opt/org.flatcar-linux/config/raw
i=0
while [ ! -e "$f" ] || [ ! -e /sys/class/net/eth0/address ]; do
	i=$((i+1)); [ $i -gt 100 ] && fail "no fw_cfg entry or no eth0"; sleep 0.1
done
{ cat /sys/class/net/eth0/address; cat "$f"; } >/tmp/out
emit /tmp/out
finish
`,
	}
	initrd := filepath.Join(dir, "initramfs.img")
	if err := kit.WriteInitramfs(initrd, init, nil); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	if b, err := os.ReadFile(kit.Kernel.Vmlinuz); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(kernel, b, 0o644); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, "os.img")
	if err := os.WriteFile(image, append([]byte("kiln e2e "+id), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}

	poolName := libvirttest.Pool(t, conn)

	cluster := "e2e" + id
	sub := libvirttest.Subnet(t)
	p := uptest.Plan(t, uptest.SpecText(cluster, "flatcar", sub+".1", []uptest.Node{
		{Name: "n1", MAC: "52:54:00:" + id[0:2] + ":" + id[2:4] + ":01", IP: sub + ".11/24"},
		{Name: "n2", MAC: "52:54:00:" + id[0:2] + ":" + id[2:4] + ":02", IP: sub + ".12/24"},
		{Name: "n3", MAC: "52:54:00:" + id[0:2] + ":" + id[2:4] + ":03", IP: sub + ".13/24"},
	}))
	d := New()
	d.URI, d.Image, d.Pool = libvirttest.URI, image, poolName
	d.DomainType, d.MemoryMiB, d.CPUs = "qemu", 256, 1
	d.isolated = true
	d.kernel, d.initrd, d.cmdline = kernel, initrd, testboot.DefaultAppend
	t.Cleanup(func() {
		// A failed test leaves nothing: down removes what the state file names.
		if err := d.Down(context.Background(), p, &uptest.Reporter{T: t}); err != nil {
			t.Errorf("cleanup down: %v", err)
		}
	})
	return &e2eSetup{conn: conn, plan: p, drv: d}
}

// waitConsoles waits until every node's console shows what its guest printed, and returns it
// by node.
func (e *e2eSetup) waitConsoles(t testing.TB, timeout time.Duration) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	deadline := time.Now().Add(timeout)
	for len(got) < len(e.plan.Compiled.Nodes) {
		for _, n := range e.plan.Compiled.Nodes {
			if got[n.Name] != nil {
				continue
			}
			log := filepath.Join(e.plan.StateDir, "libvirt", up.MachineName(e.plan.Cluster(), n.Name)+".console.log")
			b, _ := os.ReadFile(log)
			if !bytes.Contains(b, []byte(testboot.EndMarker)) && !bytes.Contains(b, []byte(testboot.ErrorPrefix)) {
				continue
			}
			payload, err := (&testboot.Result{Serial: string(b)}).Payload()
			if err != nil {
				t.Fatalf("%s: %v\n%s", n.Name, err, b)
			}
			got[n.Name] = payload
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, only %d of %d consoles printed their config", timeout, len(got), len(e.plan.Compiled.Nodes))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return got
}

// TestE2ELibvirt brings three TCG domains up on a real libvirtd: each guest reads its own
// node's config from fw_cfg and has its node's MAC; the config volume is 0600 and owned by
// QEMU's user; up again starts the domains that powered off; down removes domains, volumes and
// network.
func TestE2ELibvirt(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU domains under a real libvirtd")
	}
	e := setupE2E(t)
	ctx := context.Background()
	r := &uptest.Reporter{T: t}
	start := time.Now()
	if err := e.drv.Up(ctx, e.plan, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("up of three TCG domains returned after %s", time.Since(start).Round(time.Millisecond))
	got := e.waitConsoles(t, 3*time.Minute)
	t.Logf("all three consoles printed their node's config %s after up began", time.Since(start).Round(time.Millisecond))
	check := func(got map[string][]byte) {
		t.Helper()
		for i, n := range e.plan.Compiled.Nodes {
			mac, cfg, _ := bytes.Cut(got[n.Name], []byte("\n"))
			if want := e.plan.Compiled.Spec.Nodes[i].MAC; string(mac) != want {
				t.Errorf("%s: the guest's MAC is %s, want %s", n.Name, mac, want)
			}
			if !bytes.Equal(cfg, n.Ignition) {
				t.Errorf("%s: the guest read %d bytes from fw_cfg, not its node's config (%d bytes)", n.Name, len(cfg), len(n.Ignition))
			}
		}
	}
	check(got)

	// The config reaches QEMU as a 0600 file owned by its user.
	qemuUser, err := user.Lookup("libvirt-qemu")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := domainDef(t, e.conn, up.MachineName(e.plan.Cluster(), "n1"))
	cfgFile := def.SysInfo[0].FWCfg.Entry[0].File
	fi, err := os.Stat(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; fi.Mode().Perm() != 0o600 || strconv.Itoa(int(uid)) != qemuUser.Uid {
		t.Errorf("config volume %s: mode %v, owner %d; want 0600 owned by libvirt-qemu (%s)", cfgFile, fi.Mode().Perm(), uid, qemuUser.Uid)
	}

	// The guests powered off; up starts them again and they read their configs again.
	for _, n := range e.plan.Compiled.Nodes {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			dom, err := e.conn.LookupDomainByName(up.MachineName(e.plan.Cluster(), n.Name))
			if err != nil {
				t.Fatal(err)
			}
			active, _ := dom.IsActive()
			dom.Free()
			if !active {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still running a minute after its guest powered off", n.Name)
			}
		}
		os.Truncate(filepath.Join(e.plan.StateDir, "libvirt", up.MachineName(e.plan.Cluster(), n.Name)+".console.log"), 0)
	}
	if err := e.drv.Up(ctx, e.plan, r); err != nil {
		t.Fatal(err)
	}
	check(e.waitConsoles(t, 3*time.Minute))

	if err := New().Down(ctx, e.plan, r); err != nil {
		t.Fatal(err)
	}
	for _, n := range e.plan.Compiled.Nodes {
		if exists(e.conn, "domain", up.MachineName(e.plan.Cluster(), n.Name)) {
			t.Errorf("%s still defined", n.Name)
		}
	}
	if exists(e.conn, "network", "kiln-"+e.plan.Cluster()) || exists(e.conn, "volume", cfgFile) {
		t.Error("down left the network or a volume")
	}
	if _, err := os.Stat(cfgFile); err == nil || !strings.Contains(cfgFile, "kiln-e2e") {
		t.Errorf("config file %s still there", cfgFile)
	}
}

// BenchmarkE2ELibvirtUp3 measures kiln up of three TCG domains on a real libvirtd: up-s is up
// itself (upload, network, volumes, definitions, starts), boot-s until every guest has printed
// its config from fw_cfg. Each iteration ends with down.
func BenchmarkE2ELibvirtUp3(b *testing.B) {
	e := setupE2E(b)
	ctx := context.Background()
	var upTotal, bootTotal time.Duration
	for b.Loop() {
		r := &uptest.Reporter{T: b}
		start := time.Now()
		if err := e.drv.Up(ctx, e.plan, r); err != nil {
			b.Fatal(err)
		}
		upTotal += time.Since(start)
		e.waitConsoles(b, 5*time.Minute)
		bootTotal += time.Since(start)
		b.StopTimer()
		if err := New().Down(ctx, e.plan, r); err != nil {
			b.Fatal(err)
		}
		for _, n := range e.plan.Compiled.Nodes {
			os.Remove(filepath.Join(e.plan.StateDir, "libvirt", up.MachineName(e.plan.Cluster(), n.Name)+".console.log"))
		}
		b.StartTimer()
	}
	b.ReportMetric(upTotal.Seconds()/float64(b.N), "up-s")
	b.ReportMetric(bootTotal.Seconds()/float64(b.N), "boot-s")
}
