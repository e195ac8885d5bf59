//go:build cgo && libvirt_dlopen

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/internal/libvirttest"
)

// TestE2EUpLibvirt runs kiln up and kiln down with --driver libvirt on a real libvirtd: two
// TCG domains on the test's own pool and isolated network (named with --libvirt-network, so
// kiln defines none and down leaves it), running after up, gone after down.
func TestE2EUpLibvirt(t *testing.T) {
	if testing.Short() {
		t.Skip("defines domains on a real libvirtd")
	}
	conn := libvirttest.Require(t)
	pool := libvirttest.Pool(t, conn)
	sub := libvirttest.Subnet(t)
	network := libvirttest.Network(t, conn, sub)
	image := filepath.Join(libvirttest.Dir(t), "disk.img")
	if err := os.WriteFile(image, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster := "cli" + libvirttest.ID(t, 3)
	spec, out := providerSpec(t, cluster), filepath.Join(t.TempDir(), "out")
	b, _ := os.ReadFile(spec)
	os.WriteFile(spec, []byte(strings.ReplaceAll(string(b), "10.81.0", sub)), 0o644)
	t.Cleanup(func() { kiln(t, "down", "-f", spec, "-o", out) })

	code, stdout, stderr := kiln(t, "up", "-f", spec, "-o", out, "--driver", "libvirt", "--wait=false",
		"--libvirt-uri", libvirttest.URI, "--image", image, "--libvirt-pool", pool, "--libvirt-network", network,
		"--libvirt-domain-type", "qemu", "--memory", "128", "--cpus", "1")
	if code != 0 {
		t.Fatalf("kiln up: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, n := range []string{"n1", "n2"} {
		dom, err := conn.LookupDomainByName("kiln-" + cluster + "-" + n)
		if err != nil {
			t.Fatalf("no domain for %s after kiln up: %v\n%s", n, err, stdout)
		}
		if active, _ := dom.IsActive(); !active {
			t.Errorf("domain of %s not running", n)
		}
		dom.Free()
	}
	code, stdout, stderr = kiln(t, "down", "-f", spec, "-o", out)
	if code != 0 {
		t.Fatalf("kiln down: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, n := range []string{"n1", "n2"} {
		if dom, err := conn.LookupDomainByName("kiln-" + cluster + "-" + n); err == nil {
			dom.Free()
			t.Errorf("domain of %s still defined after kiln down", n)
		}
	}
	if net, err := conn.LookupNetworkByName(network); err != nil {
		t.Errorf("kiln down removed the user's network %s: %v", network, err)
	} else {
		net.Free()
	}
}
