package pxe

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/testboot"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// grubPCDir holds GRUB's BIOS modules (Debian's grub-pc-bin).
const grubPCDir = "/usr/lib/grub/i386-pc"

// requireGRUB returns grub-mkimage, or skips (fails under $CI or $KILN_REQUIRE_TOOLS) when GRUB's
// tools or BIOS modules are missing.
func requireGRUB(t *testing.T) string {
	t.Helper()
	mk, err := exec.LookPath("grub-mkimage")
	if err == nil {
		_, err = os.Stat(filepath.Join(grubPCDir, "pxe.mod"))
	}
	if err != nil {
		msg := "GRUB's network boot image cannot be made (Debian packages grub-common and grub-pc-bin; run make deps): " + err.Error()
		testkit.Missing(t, "%s", msg)
	}
	return mk
}

// TestE2EGRUBBoot boots a QEMU machine into GRUB over PXE (iPXE loads GRUB's network image from
// QEMU's TFTP server); GRUB loads /grub from the server over HTTP, which loads the machine's own
// entry by its MAC, then the kernel and initrd of its node; the guest prints the config found at
// ignition.config.url, which must be its node's.
func TestE2EGRUBBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a QEMU machine")
	}
	kit := testboot.Require(t)
	mkimage := requireGRUB(t)

	mac := "52:54:00:e2:e2:01"
	f := newFixture(t, specText("flatcar", "stable", fmt.Sprintf("nodes:\n  - {name: n1}\n  - {name: n2, mac: %q, kernelArgs: [panic=-1, quiet]}\n", mac)))
	a := AssetPaths("flatcar", "stable")
	testkit.CopyFile(t, kit.Kernel.Vmlinuz, filepath.Join(f.assets, a.Kernel))
	if err := kit.WriteInitramfs(filepath.Join(f.assets, a.Initrd), testboot.FetchInit, nil); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log, lb := newLogger()
	serveOn(t, f.config(log), ln, lb)
	port := ln.Addr().(*net.TCPAddr).Port

	// GRUB's PXE image, with a config that does what a DHCP server's GRUB boot file name does:
	// load /grub from the boot server.
	tftp := t.TempDir()
	embedded := filepath.Join(t.TempDir(), "embedded.cfg")
	writeFile(t, embedded, fmt.Sprintf("configfile (http,10.0.2.2:%d)/grub\n", port))
	out, err := exec.Command(mkimage, "-O", "i386-pc-pxe", "-d", grubPCDir, "-o", filepath.Join(tftp, "grub.0"),
		"-p", "(pxe)/", "-c", embedded, "pxe", "net", "http", "linux", "normal", "configfile", "echo", "test").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-mkimage: %v\n%s", err, out)
	}

	got, res := kit.Boot(t, testboot.Machine{
		Boot:      "n",
		NIC:       &testboot.NIC{MAC: mac, TFTP: tftp, BootFile: "grub.0"},
		MemoryMiB: 256,
		Timeout:   4 * time.Minute,
	})
	if want := f.compiled(t).Node("n2").Ignition; string(got) != string(want) {
		t.Fatalf("the guest printed %d bytes that are not n2's config: %.300s", len(got), got)
	}
	if !hasRequest(lb.String(), "/grub", "n2") {
		t.Errorf("GRUB did not load n2's entry from /grub:\n%s", lb.String())
	}
	t.Logf("GRUB booted n2 from /grub and the guest printed its config (%v)", res.Elapsed.Round(time.Millisecond))
}
