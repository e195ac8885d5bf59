package testboot

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EBootKit boots the kit's ready init scripts with Debian's kernel under QEMU (TCG) and
// checks that each prints exactly what the machine was given.
func TestE2EBootKit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	kit := Require(t)
	config := []byte("{\"ignition\":{\"version\":\"3.4.0\"},\"kiln\":\"fw_cfg \\u00e9\"}\n\x00binary tail")

	t.Run("fwcfg", func(t *testing.T) {
		t.Parallel()
		const name = "opt/org.flatcar-linux/config"
		initrd := filepath.Join(t.TempDir(), "initramfs.img")
		if err := kit.WriteInitramfs(initrd, FwCfgInit(name), nil); err != nil {
			t.Fatal(err)
		}
		got, res := kit.Boot(t, Machine{
			Kernel: kit.Kernel.Vmlinuz, Initrd: initrd,
			FwCfg: []FwCfg{{Name: name, File: TempFile(t, "config.ign", config)}},
		})
		t.Logf("fw_cfg boot took %v", res.Elapsed.Round(100e6))
		if !bytes.Equal(got, config) {
			t.Errorf("guest printed %q, want %q", got, config)
		}
	})

	t.Run("fetch", func(t *testing.T) {
		t.Parallel()
		base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ignition/node1.ign" {
				http.NotFound(w, r)
				return
			}
			w.Write(config)
		}))

		initrd := filepath.Join(t.TempDir(), "initramfs.img")
		if err := kit.WriteInitramfs(initrd, FetchInit, nil); err != nil {
			t.Fatal(err)
		}
		got, res := kit.Boot(t, Machine{
			Kernel: kit.Kernel.Vmlinuz, Initrd: initrd,
			Append: DefaultAppend + " ignition.config.url=" + base + "/ignition/node1.ign",
			NIC:    &NIC{},
		})
		t.Logf("network fetch boot took %v", res.Elapsed.Round(100e6))
		if !bytes.Equal(got, config) {
			t.Errorf("guest printed %q, want %q", got, config)
		}
	})

	// pxe: iPXE (Debian's ipxe-qemu ROM) gets its script from QEMU's TFTP server, then the
	// kernel, the initramfs and the config over HTTP from the host's loopback.
	t.Run("pxe", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := kit.WriteInitramfs(filepath.Join(dir, "initramfs.img"), FetchInit, nil); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/vmlinuz", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, kit.Kernel.Vmlinuz) })
		mux.HandleFunc("/initramfs.img", func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(dir, "initramfs.img"))
		})
		mux.HandleFunc("/ignition/node1.ign", func(w http.ResponseWriter, r *http.Request) { w.Write(config) })
		base := serve(t, mux)
		script := fmt.Sprintf("#!ipxe\nkernel %[1]s/vmlinuz %[2]s ignition.config.url=%[1]s/ignition/node1.ign\ninitrd %[1]s/initramfs.img\nboot\n", base, DefaultAppend)
		tftp := t.TempDir()
		TempFileIn(t, tftp, "boot.ipxe", []byte(script))
		got, res := kit.Boot(t, Machine{Boot: "n", NIC: &NIC{TFTP: tftp, BootFile: "boot.ipxe", MAC: "52:54:00:00:00:01"}})
		t.Logf("iPXE boot took %v", res.Elapsed.Round(100e6))
		if !bytes.Equal(got, config) {
			t.Errorf("guest printed %q, want %q", got, config)
		}
	})
}

// TestE2EBootTimeout proves the hard timeout: a guest that never powers off is killed.
func TestE2EBootTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	kit := Require(t)
	initrd := filepath.Join(t.TempDir(), "initramfs.img")
	if err := kit.WriteInitramfs(initrd, Init{Script: "echo hanging\nwhile :; do sleep 1; done\n"}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := kit.Run(t.Context(), Machine{Kernel: kit.Kernel.Vmlinuz, Initrd: initrd, Timeout: 15 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("error %v, want a timeout", err)
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("Run returned after %v with a 15s timeout", d)
	}
	if !strings.Contains(res.Serial, "hanging") {
		t.Errorf("serial output lost:\n%s", res.Serial)
	}
}

// serve serves h on a free loopback port until the test ends and returns the URL the guest
// reaches it at (QEMU's user-mode network maps 10.0.2.2 to the host's loopback).
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("http://10.0.2.2:%d", ln.Addr().(*net.TCPAddr).Port)
}
