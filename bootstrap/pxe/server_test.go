package pxe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/render"
)

// newTestServer serves the fixture's spec; the test's assets folder holds Flatcar's boot files
// for the stable channel.
func newTestServer(t *testing.T, f *fixture, edit func(*Config)) (*Server, *logBuffer) {
	t.Helper()
	writeFile(t, filepath.Join(f.assets, "flatcar/stable/flatcar_production_pxe.vmlinuz"), "kernel-bytes-0123456789")
	writeFile(t, filepath.Join(f.assets, "flatcar/stable/flatcar_production_pxe_image.cpio.gz"), "initrd")
	log, lb := newLogger()
	cfg := f.config(log)
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, lb
}

func TestNormalizeMAC(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"colons", "52:54:00:aa:bb:01", "52:54:00:aa:bb:01"},
		{"upper colons", "52:54:00:AA:BB:01", "52:54:00:aa:bb:01"},
		{"dashes", "52-54-00-aa-bb-01", "52:54:00:aa:bb:01"},
		{"upper dashes", "52-54-00-AA-BB-01", "52:54:00:aa:bb:01"},
		{"cisco dots", "5254.00aa.bb01", "52:54:00:aa:bb:01"},
		{"bare hex", "525400AABB01", "52:54:00:aa:bb:01"},
		{"spaces around", " 52:54:00:aa:bb:01 ", "52:54:00:aa:bb:01"},
		{"too short", "52:54:00:aa:bb", ""},
		{"eui-64", "52:54:00:ff:fe:aa:bb:01", ""},
		{"not hex", "52:54:00:aa:bb:zz", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NormalizeMAC(tc.in)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, nil)
	c := f.compiled(t)
	ign := func(name string) string { return string(c.Node(name).Ignition) }
	symlink(t, "/etc/passwd", filepath.Join(f.assets, "out"))
	symlink(t, f.dir, filepath.Join(f.assets, "outdir"))
	symlink(t, "stable", filepath.Join(f.assets, "flatcar/current"))

	for _, tc := range []struct {
		name, method, target string
		header               []string
		code                 int
		// want are substrings of the body, or the whole body when exact.
		want  []string
		exact string
		// not are substrings the body must not hold.
		not []string
	}{
		{name: "boot.ipxe chains with the machine's identity", target: "/boot.ipxe", code: 200,
			want: []string{"#!ipxe\n", "chain ipxe?mac=${mac:hexhyp}&uuid=${uuid}&hostname=${hostname}"}},

		{name: "ipxe by MAC with colons", target: "/ipxe?mac=52:54:00:aa:bb:01", code: 200, want: []string{"# kiln: node n1 "}},
		{name: "ipxe by MAC with dashes, upper case", target: "/ipxe?mac=52-54-00-AA-BB-01&uuid=&hostname=", code: 200, want: []string{"node n1 "}},
		{name: "ipxe by MAC in Cisco dots", target: "/ipxe?mac=5254.00aa.bb01", code: 200, want: []string{"node n1 "}},
		{name: "ipxe by MAC as bare hex", target: "/ipxe?mac=525400aabb02", code: 200, want: []string{"node n2 "}},
		{name: "ipxe by UUID", target: "/ipxe?uuid=8c3a5c9e-1f2b-4d5e-9a0b-0c1d2e3f4a5b", code: 200, want: []string{"node n2 "}},
		{name: "ipxe by UUID, upper case in braces", target: "/ipxe?uuid={8C3A5C9E-1F2B-4D5E-9A0B-0C1D2E3F4A5B}", code: 200, want: []string{"node n2 "}},
		{name: "ipxe by hostname", target: "/ipxe?mac=52-54-00-00-00-99&uuid=00000000-0000-0000-0000-000000000000&hostname=n3", code: 200,
			want: []string{"node n3 ", "ignition.config.url=http://pxe.test/ignition?hostname=n3 "}},
		{name: "ipxe by fully qualified hostname", target: "/ipxe?hostname=N3.lab.example", code: 200, want: []string{"node n3 "}},
		{name: "ipxe MAC wins over hostname", target: "/ipxe?mac=52:54:00:aa:bb:02&hostname=n3", code: 200, want: []string{"node n2 "}},
		{name: "ipxe unknown MAC is 404 with a clear body", target: "/ipxe?mac=52:54:00:00:00:99", code: 404,
			want: []string{"no node of cluster pxetest has MAC 52:54:00:00:00:99"}, not: []string{"kernel"}},
		{name: "ipxe bad MAC is 404 and says so", target: "/ipxe?mac=nope", code: 404, want: []string{`MAC "nope" (not a MAC address)`}},
		{name: "ipxe without selector is 404", target: "/ipxe", code: 404, want: []string{"the request names no machine: give mac=, uuid= or hostname="}},
		{name: "ipxe script of a Flatcar node", target: "/ipxe?mac=52:54:00:aa:bb:01", code: 200,
			exact: "#!ipxe\n# kiln: node n1 of cluster pxetest (flatcar stable)\n" +
				"kernel http://pxe.test/assets/flatcar/stable/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1 " +
				"ignition.config.url=http://pxe.test/ignition?mac=52-54-00-aa-bb-01 console=tty0 console=ttyS0,115200n8 quiet panic=-1\n" +
				"initrd http://pxe.test/assets/flatcar/stable/flatcar_production_pxe_image.cpio.gz\nboot\n"},
		{name: "ipxe follows the Host the machine used", target: "http://10.0.2.2:8080/ipxe?mac=52:54:00:aa:bb:02", code: 200,
			want: []string{"kernel http://10.0.2.2:8080/assets/", "ignition.config.url=http://10.0.2.2:8080/ignition?mac=52-54-00-aa-bb-02 "}},
		{name: "ipxe refuses a Host that would break the script", target: "/ipxe?mac=52:54:00:aa:bb:01", header: []string{"Host", "evil\nboot"}, code: 400},

		{name: "grub without selector loads itself by MAC", target: "/grub", code: 200,
			exact: "# kiln: load this machine's entry\nconfigfile \"(http,pxe.test)/grub?mac=${net_default_mac}\"\n"},
		{name: "grub entry of a node", target: "/grub?mac=52:54:00:aa:bb:01", code: 200,
			exact: "# kiln: node n1 of cluster pxetest\nset default=0\nset timeout=0\nmenuentry 'kiln pxetest/n1' {\n  echo 'Loading the kernel'\n" +
				"  linux (http,pxe.test)/assets/flatcar/stable/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1 " +
				"'ignition.config.url=http://pxe.test/ignition?mac=52-54-00-aa-bb-01' console=tty0 console=ttyS0,115200n8 quiet panic=-1\n" +
				"  echo 'Loading the initrd'\n  initrd (http,pxe.test)/assets/flatcar/stable/flatcar_production_pxe_image.cpio.gz\n}\n"},
		{name: "grub unknown machine is 404", target: "/grub?mac=52:54:00:00:00:99", code: 404, want: []string{"no node"}},

		{name: "ignition by MAC with colons", target: "/ignition?mac=52:54:00:aa:bb:01", code: 200, exact: ign("n1")},
		{name: "ignition by MAC with dashes", target: "/ignition?mac=52-54-00-aa-bb-02", code: 200, exact: ign("n2")},
		{name: "ignition by MAC upper case", target: "/ignition?mac=52-54-00-AA-BB-02", code: 200, exact: ign("n2")},
		{name: "ignition by UUID", target: "/ignition?uuid=8c3a5c9e-1f2b-4d5e-9a0b-0c1d2e3f4a5b", code: 200, exact: ign("n2")},
		{name: "ignition by hostname", target: "/ignition?hostname=n3", code: 200, exact: ign("n3")},
		{name: "ignition unknown machine is 404, never an empty config", target: "/ignition?mac=52:54:00:00:00:99", code: 404,
			want: []string{"no node of cluster pxetest"}, not: []string{"ignition"}},
		{name: "ignition HEAD", method: "HEAD", target: "/ignition?mac=52:54:00:aa:bb:01", code: 200, exact: ""},
		{name: "ignition POST is refused", method: "POST", target: "/ignition?mac=52:54:00:aa:bb:01", code: 405},

		{name: "asset", target: "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", code: 200, exact: "kernel-bytes-0123456789"},
		{name: "asset range", target: "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", header: []string{"Range", "bytes=7-11"}, code: 206, exact: "bytes"},
		{name: "asset open range", target: "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", header: []string{"Range", "bytes=-4"}, code: 206, exact: "6789"},
		{name: "asset range past the end", target: "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", header: []string{"Range", "bytes=100-"}, code: 416},
		{name: "asset HEAD", method: "HEAD", target: "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", code: 200, exact: ""},
		{name: "asset missing", target: "/assets/flatcar/stable/nothing", code: 404},
		{name: "asset folder is not listed", target: "/assets/flatcar/stable", code: 404},
		{name: "asset folder with a slash is refused", target: "/assets/flatcar/", code: 400},
		{name: "asset dot-dot", target: "/assets/../cluster.yaml", code: 400},
		{name: "asset dot-dot inside", target: "/assets/flatcar/../../cluster.yaml", code: 400},
		{name: "asset encoded dot-dot", target: "/assets/%2e%2e/cluster.yaml", code: 400},
		{name: "asset encoded slash", target: "/assets/flatcar%2fstable%2fflatcar_production_pxe.vmlinuz", code: 400},
		{name: "asset encoded slash upper case", target: "/assets/..%2F..%2Fcluster.yaml", code: 400},
		{name: "asset encoded backslash", target: "/assets/..%5ccluster.yaml", code: 400},
		{name: "asset absolute path", target: "/assets//etc/passwd", code: 400},
		{name: "asset symlink out of the folder", target: "/assets/out", code: 404, not: []string{"root:"}},
		{name: "asset symlink to a folder out of it", target: "/assets/outdir/cluster.yaml", code: 404, not: []string{"cluster:"}},
		{name: "asset symlink inside the folder", target: "/assets/flatcar/current/flatcar_production_pxe_image.cpio.gz", code: 200, exact: "initrd"},

		{name: "metrics", target: "/metrics", code: 200, want: []string{"kiln_pxe_requests_total", "kiln_pxe_nodes 3"}},
		{name: "health", target: "/healthz", code: 200, exact: "ok\n"},
		{name: "unknown route", target: "/config", code: 404, want: []string{"no such route"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			res := get(t, s, method, tc.target, tc.header...)
			b := body(t, res)
			if res.StatusCode != tc.code {
				t.Fatalf("status %d, want %d; body:\n%s", res.StatusCode, tc.code, b)
			}
			if tc.exact != "" || (tc.want == nil && tc.code < 300 && tc.code != 0 && method == "HEAD") {
				if b != tc.exact {
					t.Errorf("body:\n%s\nwant:\n%s", b, tc.exact)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(b, w) {
					t.Errorf("body lacks %q:\n%s", w, b)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(b, n) {
					t.Errorf("body holds %q:\n%s", n, b)
				}
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
}

func TestIgnitionHeaders(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, nil)
	want := f.compiled(t).Node("n1").Ignition
	for _, method := range []string{"GET", "HEAD"} {
		res := get(t, s, method, "/ignition?mac=52:54:00:aa:bb:01")
		b := body(t, res)
		if res.Header.Get("Content-Type") != "application/vnd.coreos.ignition+json" || res.Header.Get("Cache-Control") != "no-store" ||
			res.Header.Get("Content-Length") != strconv.Itoa(len(want)) || res.Header.Get("ETag") == "" {
			t.Errorf("%s headers: %v", method, res.Header)
		}
		if method == "HEAD" && b != "" {
			t.Errorf("HEAD has a body")
		}
	}
}

func TestAssetHeaders(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, nil)
	res := get(t, s, "HEAD", "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz")
	if res.Header.Get("Content-Length") != "23" || res.Header.Get("Accept-Ranges") != "bytes" || res.Header.Get("Last-Modified") == "" {
		t.Errorf("HEAD headers: %v", res.Header)
	}
	res = get(t, s, "GET", "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", "Range", "bytes=0-5")
	if got := res.Header.Get("Content-Range"); got != "bytes 0-5/23" {
		t.Errorf("Content-Range %q", got)
	}
	lm := get(t, s, "GET", "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz").Header.Get("Last-Modified")
	if res := get(t, s, "GET", "/assets/flatcar/stable/flatcar_production_pxe.vmlinuz", "If-Modified-Since", lm); res.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since: status %d", res.StatusCode)
	}
}

var tokenRe = regexp.MustCompile(`token=([0-9a-f]+)`)

func TestTokens(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	secret, err := LoadOrCreateSecret(filepath.Join(f.pki, TokenSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(f.pki, TokenSecretFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	again, err := LoadOrCreateSecret(filepath.Join(f.pki, TokenSecretFile))
	if err != nil || string(again) != string(secret) {
		t.Fatalf("the secret changed on reload: %v", err)
	}
	s, lb := newTestServer(t, f, func(c *Config) { c.TokenSecret = secret })
	c := f.compiled(t)

	tokenOf := func(route, sel string) string {
		t.Helper()
		b := body(t, get(t, s, "GET", "/"+route+"?"+sel))
		m := tokenRe.FindStringSubmatch(b)
		if m == nil {
			t.Fatalf("no token in the %s script:\n%s", route, b)
		}
		return m[1]
	}
	t1 := tokenOf("ipxe", "mac=52:54:00:aa:bb:01")
	t2 := tokenOf("ipxe", "mac=52:54:00:aa:bb:02")
	t3 := tokenOf("ipxe", "hostname=n3")
	if g := tokenOf("grub", "mac=52:54:00:aa:bb:01"); g != t1 {
		t.Errorf("grub and ipxe tokens differ: %s %s", g, t1)
	}
	if t1 == t2 || t1 == t3 || t2 == t3 {
		t.Fatalf("tokens are not per machine: %s %s %s", t1, t2, t3)
	}
	for _, tc := range []struct {
		name, query string
		code        int
		node        string
	}{
		{"right token", "mac=52:54:00:aa:bb:01&token=" + t1, 200, "n1"},
		{"right token, MAC spelled otherwise", "mac=525400AABB01&token=" + t1, 200, "n1"},
		{"no token", "mac=52:54:00:aa:bb:01", 403, ""},
		{"another machine's token", "mac=52:54:00:aa:bb:01&token=" + t2, 403, ""},
		{"a wrong token", "mac=52:54:00:aa:bb:01&token=" + strings.Repeat("0", 32), 403, ""},
		{"a short token", "mac=52:54:00:aa:bb:01&token=" + t1[:8], 403, ""},
		{"token of a node by name", "hostname=n3&token=" + t3, 200, "n3"},
		{"unknown machine is still 404", "mac=52:54:00:00:00:99&token=" + t1, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := get(t, s, "GET", "/ignition?"+tc.query)
			b := body(t, res)
			if res.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.code, b)
			}
			if tc.node != "" && b != string(c.Node(tc.node).Ignition) {
				t.Errorf("body is not %s's config", tc.node)
			}
			if tc.code == 403 && (strings.Contains(b, "ignition") || !strings.Contains(b, "token")) {
				t.Errorf("403 body: %s", b)
			}
		})
	}
	if strings.Contains(lb.String(), t1) {
		t.Errorf("a token reached the log:\n%s", lb.String())
	}
	if !strings.Contains(lb.String(), "token=REDACTED") {
		t.Errorf("the access log does not show a redacted token:\n%s", lb.String())
	}
	if got := body(t, get(t, s, "GET", "/metrics")); !strings.Contains(got, "kiln_pxe_token_rejections_total 4") {
		t.Errorf("metrics do not count 4 rejections:\n%s", grepLines(got, "token"))
	}
}

func TestTokenSecretTooShort(t *testing.T) {
	p := filepath.Join(t.TempDir(), "short")
	writeFile(t, p, "0123456789\n")
	if _, err := LoadOrCreateSecret(p); !errors.Is(err, ErrTokenSecret) {
		t.Errorf("err = %v, want ErrTokenSecret", err)
	}
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	if _, err := New(Config{Deliver: f.options(), Assets: t.TempDir(), TokenSecret: []byte("short")}, nil); !errors.Is(err, ErrTokenSecret) {
		t.Errorf("New err = %v, want ErrTokenSecret", err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestFCOSKernelArgs(t *testing.T) {
	nodes := `nodes:
  - {name: n1, mac: "52:54:00:aa:bb:01"}
  - {name: n2, mac: "52:54:00:aa:bb:02", kernelArgs: ["coreos.inst.install_dev=/dev/vdb"]}
`
	base := "http://pxe.test/assets/fcos/testing/"
	for _, tc := range []struct {
		name, installDev, mac string
		want                  string
	}{
		{"live", "", "52:54:00:aa:bb:01",
			"#!ipxe\n# kiln: node n1 of cluster pxetest (fcos testing)\nkernel " + base + "fedora-coreos-live-kernel-x86_64 initrd=main coreos.live.rootfs_url=" + base +
				"fedora-coreos-live-rootfs.x86_64.img ignition.firstboot ignition.platform.id=metal ignition.config.url=http://pxe.test/ignition?mac=52-54-00-aa-bb-01 console=ttyS0\n" +
				"initrd --name main " + base + "fedora-coreos-live-initramfs.x86_64.img\nboot\n"},
		{"install by the server's --install-dev", "/dev/sda", "52:54:00:aa:bb:01",
			"#!ipxe\n# kiln: node n1 of cluster pxetest (fcos testing)\nkernel " + base + "fedora-coreos-live-kernel-x86_64 initrd=main coreos.live.rootfs_url=" + base +
				"fedora-coreos-live-rootfs.x86_64.img ignition.firstboot ignition.platform.id=metal coreos.inst.install_dev=/dev/sda coreos.inst.ignition_url=http://pxe.test/ignition?mac=52-54-00-aa-bb-01 console=ttyS0\n" +
				"initrd --name main " + base + "fedora-coreos-live-initramfs.x86_64.img\nboot\n"},
		{"install by the node's own kernel argument", "/dev/sda", "52:54:00:aa:bb:02",
			"#!ipxe\n# kiln: node n2 of cluster pxetest (fcos testing)\nkernel " + base + "fedora-coreos-live-kernel-x86_64 initrd=main coreos.live.rootfs_url=" + base +
				"fedora-coreos-live-rootfs.x86_64.img ignition.firstboot ignition.platform.id=metal coreos.inst.ignition_url=http://pxe.test/ignition?mac=52-54-00-aa-bb-02 console=ttyS0 coreos.inst.install_dev=/dev/vdb\n" +
				"initrd --name main " + base + "fedora-coreos-live-initramfs.x86_64.img\nboot\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, specText("fcos", "testing", nodes))
			s, _ := newTestServer(t, f, func(c *Config) { c.InstallDev = tc.installDev; c.Console = []string{"console=ttyS0"} })
			if got := body(t, get(t, s, "GET", "/ipxe?mac="+tc.mac)); got != tc.want {
				t.Errorf("script:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestBaseURLAndConsole(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, func(c *Config) { c.BaseURL = "https://boot.example.com:8443/"; c.Console = []string{} })
	got := body(t, get(t, s, "GET", "/ipxe?mac=52:54:00:aa:bb:02"))
	want := "kernel https://boot.example.com:8443/assets/flatcar/stable/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1 ignition.config.url=https://boot.example.com:8443/ignition?mac=52-54-00-aa-bb-02\n"
	if !strings.Contains(got, want) {
		t.Errorf("script:\n%s\nwant a line:\n%s", got, want)
	}
	for _, bad := range []string{"ftp://x", "http://", "http://a/?q=1", "http://a b/"} {
		if _, err := New(Config{Deliver: f.options(), Assets: f.assets, BaseURL: bad}, nil); !errors.Is(err, ErrBaseURL) {
			t.Errorf("base URL %q: err = %v, want ErrBaseURL", bad, err)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		assets     bool
		want       error
	}{
		{"no assets folder", specText("flatcar", "stable", testNodes), false, ErrNoAssets},
		{"kernel argument with a line break", specText("flatcar", "stable", "nodes:\n  - {name: n1, kernelArgs: [\"a\\nboot\"]}\n"), true, ErrKernelArgs},
		{"a spec with errors", "cluster: {os: plan9}\nnodes: [{name: n1}]\n", true, render.ErrSpec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.spec)
			if tc.assets {
				os.MkdirAll(f.assets, 0o755)
			}
			_, err := New(f.config(nil), nil)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCheckAssets(t *testing.T) {
	for _, tc := range []struct {
		name, os, kilnNode string // kilnNode: content of DIR/kiln-node, "-" for none
		want, not          []string
	}{
		{"all there", "flatcar", "", nil, []string{`msg="boot file missing`, `msg="binary missing`, `msg="binary in the assets`}},
		{"kiln-node missing", "flatcar", "-", []string{`msg="binary missing from the assets`, "binary=kilnNode"}, nil},
		{"kiln-node differs from its hash", "flatcar", "other bytes", []string{`msg="binary in the assets differs`, "expected=" + emptySHA512}, nil},
		{"boot files of another OS", "fcos", "", []string{`msg="boot file missing from the assets`, "path=fcos/stable/fedora-coreos-live-kernel-x86_64",
			"path=fcos/stable/fedora-coreos-live-rootfs.x86_64.img"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, strings.Replace(specText(tc.os, "stable", testNodes), "http://10.0.2.2/assets/kiln-node", "http://10.0.2.2:8080/assets/kiln-node", 1))
			if tc.kilnNode != "-" {
				writeFile(t, filepath.Join(f.assets, "kiln-node"), tc.kilnNode)
			}
			_, lb := newTestServer(t, f, nil)
			for _, w := range tc.want {
				if !strings.Contains(lb.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, lb.String())
				}
			}
			for _, n := range tc.not {
				if strings.Contains(lb.String(), n) {
					t.Errorf("log holds %q:\n%s", n, lb.String())
				}
			}
		})
	}
}

// GRUB leaves the port out of its Host header: its scripts use the port it connected to.
func TestGRUBHostWithoutPort(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, nil)
	for _, tc := range []struct {
		name, agent, host, want string
	}{
		{"GRUB", "GRUB 2.06-13+deb12u2", "10.0.2.2", "linux (http,10.0.2.2:8123)/assets/"},
		{"GRUB with a port", "GRUB 2.06", "10.0.2.2:9000", "linux (http,10.0.2.2:9000)/assets/"},
		{"GRUB over IPv6", "GRUB 2.06", "[fd00::1]", "linux '(http,[fd00::1]:8123)/assets/"},
		{"another client keeps its Host", "curl/8.0", "boot.example.com", "linux (http,boot.example.com)/assets/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/grub?mac=52:54:00:aa:bb:01", nil)
			r.Host = tc.host
			r.Header.Set("User-Agent", tc.agent)
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8123}))
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if b := w.Body.String(); !strings.Contains(b, tc.want) {
				t.Errorf("script lacks %q:\n%s", tc.want, b)
			}
		})
	}
}
