// Package testboot boots throwaway QEMU machines for end-to-end tests: Debian's kernel (downloaded
// by `make deps`, never installed), a small initramfs of busybox, the kernel modules a test needs
// and an /init script that prints what the test wants to see on the serial console between
// markers, then powers off. Ready scripts fetch ignition.config.url over the network (PXE), print a
// QEMU fw_cfg entry (Vagrant, libvirt) or the Ignition config an ISO's boot loader handed the
// kernel.
//
// QEMU runs with TCG (KVM is not relied upon) and user-mode networking only: the guest reaches the
// host's loopback at 10.0.2.2, and nothing else is set up.
//
// A test that checks what a machine is handed through fw_cfg:
//
//	kit := testboot.Require(t) // skips (fails under $CI) without the kit
//	initrd := filepath.Join(t.TempDir(), "initramfs.img")
//	if err := kit.WriteInitramfs(initrd, testboot.FwCfgInit("opt/com.coreos/config"), nil); err != nil {
//		t.Fatal(err)
//	}
//	got, res := kit.Boot(t, testboot.Machine{
//		Kernel: kit.Kernel.Vmlinuz, Initrd: initrd,
//		FwCfg:  []testboot.FwCfg{{Name: "opt/com.coreos/config", File: "node1/config.ign"}},
//	})
//	// got holds the entry's bytes exactly; res.Elapsed and res.Serial tell the rest.
//
// For PXE, serve the kernel, an initramfs built with FetchInit and an iPXE script from a loopback
// server and boot Machine{Boot: "n", NIC: &NIC{BootFile: "http://10.0.2.2:PORT/boot.ipxe"}}: the
// guest prints what ignition.config.url on its command line pointed at.
package testboot

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/internal/testkit"
)

// Environment variables that point at the kit's parts; the Makefile exports the first.
const (
	// EnvKernelDir is the directory `make deps` unpacked Debian's linux-image package into
	// (default: bin/cache/kernel under the module root).
	EnvKernelDir = "KILN_KERNEL_DIR"
	// EnvBusybox is a statically linked busybox (default: /bin/busybox from busybox-static).
	EnvBusybox = "KILN_BUSYBOX"
	// EnvQEMU is qemu-system-x86_64 (default: found in PATH).
	EnvQEMU = "KILN_QEMU"
)

// Kit is what a boot needs: a kernel, busybox and QEMU.
type Kit struct {
	Kernel  *Kernel
	Busybox string
	QEMU    string
}

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	// Root is where the package was unpacked: boot/ and lib/modules/ are below it.
	Root string
	// Version is the kernel release, e.g. 6.1.0-56-amd64.
	Version string
	// Vmlinuz is the kernel image.
	Vmlinuz string
}

// ModulesDir is lib/modules/<version> of the unpacked package.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Root, "lib", "modules", k.Version) }

// FindKit locates the kit's parts; the error says what is missing and how to get it.
func FindKit() (*Kit, error) {
	var errs []error
	k, err := FindKernel()
	if err != nil {
		errs = append(errs, err)
	}
	bb, err := findBusybox()
	if err != nil {
		errs = append(errs, err)
	}
	q := os.Getenv(EnvQEMU)
	if q == "" {
		if q, err = exec.LookPath("qemu-system-x86_64"); err != nil {
			errs = append(errs, errors.New("qemu-system-x86_64 not found (Debian package qemu-system-x86; run make deps)"))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Kit{Kernel: k, Busybox: bb, QEMU: q}, nil
}

// Require returns the kit, or skips the test when a part is missing; under $CI or
// $KILN_REQUIRE_TOOLS it fails instead.
func Require(t testing.TB) *Kit {
	t.Helper()
	k, err := FindKit()
	if err != nil {
		msg := "QEMU boot kit incomplete: " + err.Error()
		testkit.Missing(t, "%s", msg)
	}
	return k
}

// FindKernel finds the kernel that `make deps` unpacked.
func FindKernel() (*Kernel, error) {
	dir := os.Getenv(EnvKernelDir)
	if dir == "" {
		root, err := testkit.ModuleRoot()
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(root, "bin", "cache", "kernel")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(matches) == 0 {
		return nil, fmt.Errorf("no kernel in %s/boot (make deps downloads Debian's linux-image-amd64 there)", dir)
	}
	vmlinuz := matches[len(matches)-1]
	k := &Kernel{Root: dir, Vmlinuz: vmlinuz, Version: strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")}
	if _, err := os.Stat(k.ModulesDir()); err != nil {
		return nil, fmt.Errorf("kernel %s has no modules: %w", k.Version, err)
	}
	return k, nil
}

// findBusybox returns a busybox that runs with no shared libraries (the initramfs has none).
func findBusybox() (string, error) {
	p := os.Getenv(EnvBusybox)
	if p == "" {
		p = "/bin/busybox"
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("busybox not found at %s (Debian package busybox-static; run make deps): %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked: install busybox-static", p)
		}
	}
	return p, nil
}
