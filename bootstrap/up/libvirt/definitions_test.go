package libvirt

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"libvirt.org/go/libvirtxml"

	"github.com/kiln-cluster/kiln/bootstrap/spec"
	"github.com/kiln-cluster/kiln/bootstrap/up"
)

func TestSubnetOf(t *testing.T) {
	node := func(name, mac, ip string) spec.Node { return spec.Node{Name: name, MAC: mac, IP: ip} }
	for _, tc := range []struct {
		name    string
		gateway string
		nodes   []spec.Node
		want    string // gateway/prefix
		err     string
	}{
		{name: "gateway of the spec", gateway: "10.1.0.254", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "10.1.0.11/24")}, want: "10.1.0.254/24"},
		{name: "first address when no gateway", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "10.1.0.11/24"), node("b", "52:54:00:00:00:02", "")}, want: "10.1.0.1/24"},
		{name: "two subnets", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "10.1.0.11/24"), node("b", "52:54:00:00:00:02", "10.2.0.11/24")}, err: "node b is in 10.2.0.0/24"},
		{name: "gateway outside", gateway: "10.9.0.1", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "10.1.0.11/24")}, err: "not in 10.1.0.0/24"},
		{name: "node on the gateway", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "10.1.0.1/24")}, err: "gateway's address"},
		{name: "no addresses", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "")}, err: "--libvirt-network"},
		{name: "IPv6", nodes: []spec.Node{node("a", "52:54:00:00:00:01", "fd00::11/64")}, err: "fd00::11/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &spec.Spec{Cluster: spec.Cluster{Network: spec.Network{Gateway: tc.gateway}}, Nodes: tc.nodes}
			sn, err := subnetOf(s)
			if tc.err != "" {
				if !errors.Is(err, ErrSubnet) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want ErrSubnet with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sn.Gateway.String() != tc.want {
				t.Errorf("gateway %s, want %s", sn.Gateway, tc.want)
			}
			x, err := networkXML("kiln-t", sn, false)
			if err != nil {
				t.Fatal(err)
			}
			var n libvirtxml.Network
			if err := n.Unmarshal(x); err != nil {
				t.Fatal(err)
			}
			if n.Forward == nil || n.Forward.Mode != "nat" || len(n.IPs[0].DHCP.Hosts) != 1 || n.IPs[0].DHCP.Hosts[0].IP != "10.1.0.11" {
				t.Errorf("network definition:\n%s", x)
			}
		})
	}
}

func TestDomainXMLMark(t *testing.T) {
	x, err := domainXML(machine{Name: "kiln-c-n1", Cluster: "c", Node: "n1", MAC: "52:54:00:00:00:01", Type: "qemu",
		MemoryMiB: 512, CPUs: 1, Disk: "/p/kiln-c-n1.qcow2", FwCfgName: "opt/com.coreos/config", FwCfgFile: "/p/kiln-c-n1.ign",
		Network: "kiln-c", ConsoleLog: "/s/kiln-c-n1.console.log"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<entry name="opt/com.coreos/config" file="/p/kiln-c-n1.ign">`, `<sysinfo type="fwcfg">`, `<domain type="qemu">`} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %s:\n%s", want, x)
		}
	}
	m, err := markOf(x)
	if err != nil || m == nil || m.Cluster != "c" || m.Node != "n1" {
		t.Fatalf("mark %+v, %v", m, err)
	}
	if m, err := markOf(`<domain type="kvm"><name>x</name><metadata><other xmlns="urn:x"/></metadata></domain>`); err != nil || m != nil {
		t.Fatalf("a domain without kiln's mark: %+v, %v", m, err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"": 0, "1048576": 1 << 20, "20G": 20 << 30, "20GiB": 20 << 30, "512m": 512 << 20, "1T": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"G", "-1G", "20X", "0"} {
		if _, err := parseSize(in); !errors.Is(err, ErrDiskSize) {
			t.Errorf("parseSize(%q): %v, want ErrDiskSize", in, err)
		}
	}
}

func TestInspectImage(t *testing.T) {
	dir := t.TempDir()
	qcow := make([]byte, 512)
	copy(qcow, qcow2Magic)
	binary.BigEndian.PutUint64(qcow[24:], 8<<30)
	raw := make([]byte, 4096)
	for name, tc := range map[string]struct {
		data   []byte
		format string
		vsize  uint64
		err    bool
	}{
		"qcow2": {data: qcow, format: "qcow2", vsize: 8 << 30},
		"raw":   {data: raw, format: "raw", vsize: 4096},
		"bz2":   {data: []byte("BZh91AY&SY..."), err: true},
		"empty": {data: nil, err: true},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			os.WriteFile(p, tc.data, 0o644)
			img, err := inspectImage(p)
			if tc.err {
				if !errors.Is(err, ErrImageFormat) {
					t.Fatalf("%v, want ErrImageFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Format != tc.format || img.VirtualSize != tc.vsize || len(img.SHA256) != 64 {
				t.Errorf("%+v", img)
			}
			if !strings.HasPrefix(img.baseVolumeName(), "kiln-base-"+img.SHA256[:16]) {
				t.Errorf("base volume %s", img.baseVolumeName())
			}
		})
	}
}

// TestSharedFlags: --image and the sizes, when another driver added them first, are shared
// rather than added twice (pflag would panic), and their values reach this driver.
func TestSharedFlags(t *testing.T) {
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	var otherImage string
	fs.StringVar(&otherImage, "image", "", "docker: node image")
	d := New()
	d.AddFlags(fs)
	if err := fs.Parse([]string{"--image", "/tmp/os.qcow2", "--memory", "1024", "--libvirt-uri", "qemu:///session"}); err != nil {
		t.Fatal(err)
	}
	if err := d.sharedFlags(); err != nil {
		t.Fatal(err)
	}
	if d.Image != "/tmp/os.qcow2" || otherImage != "/tmp/os.qcow2" || d.MemoryMiB != 1024 || d.URI != "qemu:///session" {
		t.Fatalf("image %q (other %q), memory %d, uri %s", d.Image, otherImage, d.MemoryMiB, d.URI)
	}
}

// TestCheck: the flags are checked before anything is made, and their errors are the user's
// (up.ErrConfig).
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(d *Driver)
		want error
		got  settings
	}{
		{"defaults", func(*Driver) {}, nil, settings{domType: "auto"}},
		{"tcg is qemu", func(d *Driver) { d.DomainType, d.DiskSize = "tcg", "20G" }, nil, settings{domType: "qemu", diskSize: 20 << 30}},
		{"domain type", func(d *Driver) { d.DomainType = "xen" }, ErrDomainType, settings{}},
		{"memory", func(d *Driver) { d.MemoryMiB = 32 }, ErrResources, settings{}},
		{"cpus", func(d *Driver) { d.CPUs = 0 }, ErrResources, settings{}},
		{"disk size", func(d *Driver) { d.DiskSize = "20X" }, ErrDiskSize, settings{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New()
			tc.set(d)
			got, err := d.check()
			if tc.want == nil && (err != nil || got != tc.got) {
				t.Fatalf("check() = %+v, %v; want %+v", got, err, tc.got)
			}
			if tc.want != nil && (!errors.Is(err, tc.want) || !errors.Is(err, up.ErrConfig)) {
				t.Fatalf("check(): %v, want %v and up.ErrConfig", err, tc.want)
			}
		})
	}
	if _, err := inspectImage(filepath.Join(t.TempDir(), "none.img")); !errors.Is(err, up.ErrConfig) {
		t.Errorf("a missing --image: %v, want up.ErrConfig", err)
	}
}
