package pxe

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/testboot"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// TestE2EPXEBoot boots three QEMU machines at once through the iPXE ROM of Debian's ipxe-qemu,
// on user-mode networks whose DHCP hands out http://10.0.2.2:PORT/boot.ipxe (the host's
// loopback, where the server listens). Each machine gets the server's Flatcar boot files (here
// Debian's kernel and a test initramfs whose /init fetches ignition.config.url from the kernel
// command line) and must print its own node's Ignition config, token and all.
func TestE2EPXEBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU machines")
	}
	bootCluster(t, "flatcar", "stable", []string{"52:54:00:e2:e0:01", "52:54:00:e2:e0:02", "52:54:00:e2:e0:03"})
}

// TestE2EPXEBootFCOS boots a machine of a Fedora CoreOS cluster the same way: its script names
// the initramfs (initrd --name main, initrd=main) as Fedora CoreOS's live PXE boot does.
func TestE2EPXEBootFCOS(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a QEMU machine")
	}
	bootCluster(t, "fcos", "testing", []string{"52:54:00:e2:e3:01"})
}

// bootCluster serves a cluster of os and channel with one node per MAC, boots a machine per MAC
// at once, and checks that each printed its own node's config.
func bootCluster(t *testing.T, osName, channel string, macs []string) {
	kit := testboot.Require(t)
	nodes := "nodes:\n"
	for i, mac := range macs {
		nodes += fmt.Sprintf("  - {name: n%d, mac: %q, kernelArgs: [panic=-1, quiet]}\n", i+1, mac)
	}
	f := newFixture(t, specText(osName, channel, nodes))
	a := AssetPaths(osName, channel)
	testkit.CopyFile(t, kit.Kernel.Vmlinuz, filepath.Join(f.assets, a.Kernel))
	if err := os.MkdirAll(filepath.Dir(filepath.Join(f.assets, a.Initrd)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := kit.WriteInitramfs(filepath.Join(f.assets, a.Initrd), testboot.FetchInit, nil); err != nil {
		t.Fatal(err)
	}

	log, lb := newLogger()
	cfg := f.config(log)
	cfg.TokenSecret = bytes.Repeat([]byte("k"), 32)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, cfg, ln, lb)
	port := ln.Addr().(*net.TCPAddr).Port
	want := f.compiled(t)

	start := time.Now()
	var wg sync.WaitGroup
	for i, mac := range macs {
		name := fmt.Sprintf("n%d", i+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := kit.Run(t.Context(), testboot.Machine{
				Boot: "n",
				NIC:  &testboot.NIC{MAC: mac, BootFile: fmt.Sprintf("http://10.0.2.2:%d/boot.ipxe", port)},
				// The initramfs (busybox and the virtio modules) unpacks in RAM.
				MemoryMiB: 256,
				Timeout:   4 * time.Minute,
			})
			if err != nil {
				if res != nil {
					t.Logf("%s serial console:\n%s", name, res.Serial)
				}
				t.Errorf("%s: %v", name, err)
				return
			}
			got, err := res.Payload()
			if err != nil {
				t.Errorf("%s: %v\nserial console:\n%s", name, err, res.Serial)
				return
			}
			if !bytes.Equal(got, want.Node(name).Ignition) {
				t.Errorf("%s (MAC %s) printed %d bytes that are not its config (%d bytes): %.300s", name, mac, len(got), len(want.Node(name).Ignition), got)
				return
			}
			t.Logf("%s (MAC %s) booted over iPXE and printed its %d-byte config in %v", name, mac, len(got), res.Elapsed.Round(time.Millisecond))
		}()
	}
	wg.Wait()
	t.Logf("all %d booted in %v", len(macs), time.Since(start).Round(time.Millisecond))

	// Each machine went the whole way: boot.ipxe, its own script, the kernel and initrd, and its
	// own config with its token.
	log2 := lb.String()
	for i := range macs {
		name := fmt.Sprintf("n%d", i+1)
		for _, path := range []string{"/ipxe", "/ignition"} {
			if !hasRequest(log2, path, name) {
				t.Errorf("no 200 for %s of %s in the server's log", path, name)
			}
		}
	}
	for _, path := range []string{"/boot.ipxe", "/assets/" + a.Kernel, "/assets/" + a.Initrd} {
		if n := strings.Count(log2, "path="+path+" query=\"\" status=200"); n < len(macs) {
			t.Errorf("%d answers 200 to %s in the server's log, want %d", n, path, len(macs))
		}
	}
	if strings.Contains(log2, "status=403") || strings.Contains(log2, "status=404") {
		t.Errorf("a machine was refused:\n%s", grepLines(log2, "status=40"))
	}
}

// hasRequest reports whether the access log has a 200 to path for node.
func hasRequest(log, path, node string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "path="+path+" ") && strings.Contains(l, "status=200") && strings.Contains(l, "node="+node) {
			return true
		}
	}
	return false
}
