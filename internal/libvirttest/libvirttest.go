//go:build cgo && libvirt_dlopen

// Package libvirttest is what the tests against a real libvirtd share: the daemon (Debian's,
// started by the test when none runs, stopped when it ends), and a storage pool and an isolated
// network of the test's own, removed when it ends.
package libvirttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	virt "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// URI is the daemon the tests use.
const URI = "qemu:///system"

// Require returns a connection to the system libvirtd; when none runs, it starts virtlogd and
// libvirtd in the foreground and stops them when the test ends. Without the daemon's binaries
// (or as another user than root) the test skips; under $CI or $KILN_REQUIRE_TOOLS it fails.
func Require(t testing.TB) *virt.Connect {
	t.Helper()
	if conn, err := virt.NewConnect(URI); err == nil {
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	missing := func(msg string) {
		if os.Getenv("CI") != "" || os.Getenv("KILN_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		missing("no libvirtd runs and only root can start the system one")
	}
	for _, daemon := range []string{"virtlogd", "libvirtd"} {
		bin, err := exec.LookPath(daemon)
		if err != nil {
			missing(daemon + " not found (Debian package libvirt-daemon-system; run make deps)")
		}
		cmd := exec.Command(bin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Logf("started %s (pid %d)", daemon, cmd.Process.Pid)
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			if t.Failed() && out.Len() > 0 {
				t.Logf("%s said:\n%s", daemon, out.String())
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := virt.NewConnect(URI)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd did not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ID is a random hex string of n bytes, for unique names.
func ID(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Subnet is a random 10.x.y prefix (the first three octets) in 10.200-249.
func Subnet(t testing.TB) string {
	n := func(max int64) int64 {
		v, err := rand.Int(rand.Reader, big.NewInt(max))
		if err != nil {
			t.Fatal(err)
		}
		return v.Int64()
	}
	return fmt.Sprintf("10.%d.%d", 200+n(50), n(250))
}

// Dir is a temporary folder that QEMU's user can read through (mode 0755), removed at the end.
func Dir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "kiln-libvirt-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Pool starts a transient directory pool kiln-test-<id> in a folder of its own; the pool and
// whatever volumes are left in it go when the test ends.
func Pool(t testing.TB, conn *virt.Connect) string {
	t.Helper()
	dir := Dir(t)
	name := "kiln-test-" + ID(t, 3)
	x, err := (&libvirtxml.StoragePool{Type: "dir", Name: name, Target: &libvirtxml.StoragePoolTarget{Path: dir}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := conn.StoragePoolCreateXML(x, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if names, err := pool.ListStorageVolumes(); err == nil {
			for _, n := range names {
				if v, err := pool.LookupStorageVolByName(n); err == nil {
					v.Delete(0)
					v.Free()
				}
			}
		}
		pool.Destroy()
		pool.Free()
	})
	return name
}

// Network starts a transient isolated network kiln-test-<id> on subnet.1/24 (no forwarding, no
// DHCP), gone when the test ends.
func Network(t testing.TB, conn *virt.Connect, subnet string) string {
	t.Helper()
	name := "kiln-test-" + ID(t, 3)
	x, err := (&libvirtxml.Network{Name: name, IPs: []libvirtxml.NetworkIP{{Address: subnet + ".1", Prefix: 24}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	net, err := conn.NetworkCreateXML(x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Destroy(); net.Free() })
	return name
}
