package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/internal/vspheretest"
)

// providerSpec is a two-node spec for the provider drivers' CLI tests.
func providerSpec(t *testing.T, cluster string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	spec := fmt.Sprintf(`cluster:
  name: %s
  os: flatcar
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  kilnNode: {url: "http://10.81.0.1/kiln-node", sha512: "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"}
nodes:
  - {name: n1, mac: "00:50:56:3b:00:01", ip: 10.81.0.11/24}
  - {name: n2, mac: "00:50:56:3b:00:02", ip: 10.81.0.12/24}
`, cluster)
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIntegrationUpVSphere runs kiln up and kiln down with --driver vsphere against govmomi's
// simulator on loopback, configured through govc's variables: the drivers are linked in, their
// flags parsed, the clones made and powered on, and down (no driver flag: kiln up's record)
// destroys them.
func TestIntegrationUpVSphere(t *testing.T) {
	if testing.Short() {
		t.Skip("runs govmomi's simulator")
	}
	sim := vspheretest.Start(t)
	ctx, f := context.Background(), sim.Finder
	t.Setenv("GOVC_URL", sim.URL)
	t.Setenv("GOVC_INSECURE", "1")

	spec, out := providerSpec(t, "cliv"), filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := kiln(t, "up", "-f", spec, "-o", out, "--driver", "vsphere", "--wait=false",
		"--vsphere-template", "DC0_H0_VM0", "--vsphere-network", "VM Network", "--vsphere-resource-pool", "DC0_C0/Resources")
	if code != 0 {
		t.Fatalf("kiln up: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := f.VirtualMachine(ctx, "kiln-cliv-"+n); err != nil {
			t.Errorf("no VM for %s after kiln up: %v\n%s", n, err, stdout)
		}
	}
	code, stdout, stderr = kiln(t, "down", "-f", spec, "-o", out)
	if code != 0 {
		t.Fatalf("kiln down: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := f.VirtualMachine(ctx, "kiln-cliv-"+n); err == nil {
			t.Errorf("VM for %s still there after kiln down", n)
		}
	}

	// Without a template: an error that says which flag.
	code, _, stderr = kiln(t, "up", "-f", spec, "-o", out, "--driver", "vsphere", "--wait=false")
	if code == 0 || !strings.Contains(stderr, "--vsphere-template") {
		t.Errorf("kiln up without a template: exit %d\n%s", code, stderr)
	}
}

// TestUpDriverConfigErrors: a driver's bad or missing flags are the user's errors (exit 1, as
// bad flags of kiln's own), found before the driver makes or reaches anything.
func TestUpDriverConfigErrors(t *testing.T) {
	t.Setenv("GOVC_URL", "")
	spec, out := providerSpec(t, "cfg"), filepath.Join(t.TempDir(), "out")
	for _, tc := range []struct {
		name string
		args []string
		msg  string
		tool string // a tool the case needs
	}{
		{"unknown driver", []string{"--driver", "nope"}, `unknown driver "nope"`, ""},
		{"libvirt domain type", []string{"--driver", "libvirt", "--libvirt-domain-type", "xen"}, "--libvirt-domain-type must be auto, kvm or qemu", ""},
		{"libvirt memory", []string{"--driver", "libvirt", "--memory", "16"}, "--memory (MiB) must be at least 64", ""},
		{"libvirt disk size", []string{"--driver", "libvirt", "--disk-size", "12X"}, "--disk-size must be a size", ""},
		{"vsphere template", []string{"--driver", "vsphere"}, "--vsphere-template", ""},
		{"vsphere url", []string{"--driver", "vsphere", "--vsphere-template", "t"}, "no vSphere URL", ""},
		{"vsphere bad url", []string{"--driver", "vsphere", "--vsphere-template", "t", "--vsphere-url", "https://[::1"}, "vSphere URL", ""},
		// Docker is asked, and names no such image: nothing is made.
		{"docker image", []string{"--driver", "docker", "--docker-image", "kiln-no-such-image:0"}, "--docker-image kiln-no-such-image:0: no such node image", "docker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tool != "" {
				testkit.RequireTool(t, tc.tool)
			}
			args := append([]string{"up", "-f", spec, "-o", out, "--wait=false"}, tc.args...)
			if code, o, e := kiln(t, args...); code != 1 || !strings.Contains(e, tc.msg) {
				t.Errorf("exit %d, want 1 with %q\n%s%s", code, tc.msg, o, e)
			}
		})
	}
}

// TestUpHelpNamesEveryDriver: kiln up's help describes and shows an example of every driver
// that kiln links in.
func TestUpHelpNamesEveryDriver(t *testing.T) {
	code, out, errs := kiln(t, "up", "--help")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	long, example, _ := strings.Cut(out, "Examples:")
	for _, name := range up.Names() {
		shown := strings.Contains(example, "--driver "+name) || name == "docker" && strings.Contains(example, "kiln up -f") // the default
		if !strings.Contains(long, "--driver "+name) || !shown {
			t.Errorf("kiln up --help does not describe or show --driver %s:\n%s", name, out)
		}
	}
}
