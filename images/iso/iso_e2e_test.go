package iso

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/internal/testboot"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// Files from Debian's isolinux and syslinux-common packages.
const (
	isolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"
	ldlinuxC32  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// TestE2EISOBoot masters a small live ISO laid out as Fedora CoreOS's (isolinux loading the kernel
// with two initrds, the second a zeroed 256 KiB images/ignition.img; coreos/igninfo.json; a
// kernel-argument area in isolinux.cfg described by coreos/kargs.json), embeds a config and a
// kernel argument with kiln, boots it in QEMU from the CD-ROM and checks that the kernel unpacked
// the embedded config into the root file system and booted with the argument.
func TestE2EISOBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("masters an ISO and boots QEMU")
	}
	kit := testboot.Require(t)
	xorriso := requireISOTools(t)

	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	for _, d := range []string{"isolinux", "images", "coreos"} {
		os.MkdirAll(filepath.Join(stage, d), 0o755)
	}
	testkit.CopyFile(t, isolinuxBin, filepath.Join(stage, "isolinux", "isolinux.bin"))
	testkit.CopyFile(t, ldlinuxC32, filepath.Join(stage, "isolinux", "ldlinux.c32"))
	testkit.CopyFile(t, kit.Kernel.Vmlinuz, filepath.Join(stage, "images", "vmlinuz"))
	init := testboot.ISOInit
	init.Script = "grep -qw kiln.e2e=1 /proc/cmdline || fail \"embedded kernel argument missing: $(cat /proc/cmdline)\"\n" + init.Script
	if err := kit.WriteInitramfs(filepath.Join(stage, "images", "initramfs.img"), init, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stage, "images", "ignition.img"), make([]byte, 256<<10), 0o644)

	// The kernel-argument area starts at the arguments on the append line and runs on over a
	// line of '#' (a comment for isolinux), as in Fedora CoreOS's isolinux.cfg.
	const defaultKargs = "console=ttyS0 panic=-1 quiet"
	const kargsSize = 512
	head := "serial 0 115200\ndefault live\nprompt 0\ntimeout 0\nlabel live\n  kernel /images/vmlinuz\n  append initrd=/images/initramfs.img,/images/ignition.img "
	area := defaultKargs + "\n" + strings.Repeat("#", kargsSize-len(defaultKargs)-1)
	os.WriteFile(filepath.Join(stage, "isolinux", "isolinux.cfg"), []byte(head+area+"\n"), 0o644)
	kargsJSON, _ := json.Marshal(map[string]any{
		"default": defaultKargs,
		"files":   []map[string]any{{"path": "isolinux/isolinux.cfg", "offset": len(head)}},
		"size":    kargsSize,
	})
	os.WriteFile(filepath.Join(stage, "coreos", "kargs.json"), kargsJSON, 0o644)
	os.WriteFile(filepath.Join(stage, "coreos", "igninfo.json"), []byte(`{"file": "images/ignition.img"}`), 0o644)

	live := filepath.Join(dir, "live.iso")
	cmd := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-o", live, "-V", "KILN_E2E", "-R", "-J",
		"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		stage)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}

	config := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","mode":420,"contents":{"source":"data:,iso-e2e"}}]}}`)
	node := filepath.Join(dir, "node1.iso")
	if err := Embed(live, config, Options{Output: node}); err != nil {
		t.Fatal(err)
	}
	if _, err := ModifyKargs(node, KargsEdit{Append: []string{"kiln.e2e=1"}}, Options{}); err != nil {
		t.Fatal(err)
	}
	if k, _ := ShowKargs(node, false); k != defaultKargs+" kiln.e2e=1" {
		t.Fatalf("kargs %q", k)
	}

	got, res := kit.Boot(t, testboot.Machine{CDROM: node})
	t.Logf("ISO boot took %v", res.Elapsed.Round(100e6))
	if !bytes.Equal(got, config) {
		t.Errorf("guest found %q, want %q", got, config)
	}

	// The pristine ISO boots without a config: the embed area is all zeros, which the kernel skips.
	if err := Remove(node, Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := kit.Run(t.Context(), testboot.Machine{CDROM: node})
	if err != nil {
		t.Fatalf("boot without config: %v\n%s", err, res.Serial)
	}
	if _, err := res.Payload(); err == nil || !strings.Contains(err.Error(), "no /config.ign") {
		t.Errorf("boot without config: %v, want the guest to find no /config.ign\n%s", err, res.Serial)
	}
	t.Logf("ISO boot without config took %v", res.Elapsed.Round(100e6))
}

// requireISOTools returns xorriso, or skips (fails under $CI or $KILN_REQUIRE_TOOLS) when it or
// isolinux is missing.
func requireISOTools(t *testing.T) string {
	t.Helper()
	x, err := exec.LookPath("xorriso")
	var missing []string
	if err != nil {
		missing = append(missing, "xorriso")
	}
	for _, f := range []string{isolinuxBin, ldlinuxC32} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("ISO mastering tools missing: %s (Debian packages xorriso, isolinux, syslinux-common; run make deps)", strings.Join(missing, ", "))
		testkit.Missing(t, "%s", msg)
	}
	return x
}
