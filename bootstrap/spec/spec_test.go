package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/report"
)

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq t@kiln"

// check parses, defaults and validates src written to a temp dir (with the given extra files).
func check(t *testing.T, src string, files map[string]string) (*Spec, report.Report) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, r := Load(path)
	if s != nil {
		s.Defaults("v1.0.0")
		r.Merge(s.Validate())
	}
	return s, r
}

// want is one expected problem: "error 3:5 substring" (line:col may be 3 alone or omitted).
func assertProblems(t *testing.T, r report.Report, want []string) {
	t.Helper()
	var got []string
	for _, p := range r.Problems {
		got = append(got, fmt.Sprintf("%s %d:%d %s", p.Severity, p.Line, p.Col, p.Message))
	}
	for _, w := range want {
		sev, rest, _ := strings.Cut(w, " ")
		pos, sub, _ := strings.Cut(rest, " ")
		found := false
		for _, g := range got {
			gs, grest, _ := strings.Cut(g, " ")
			gpos, gmsg, _ := strings.Cut(grest, " ")
			if gs == sev && (gpos == pos || strings.HasPrefix(gpos, pos+":")) && strings.Contains(gmsg, sub) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem %q; got:\n  %s", w, strings.Join(got, "\n  "))
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n  %s", len(got), len(want), strings.Join(got, "\n  "))
	}
}

func TestValidate(t *testing.T) {
	unit := "[Service]\nExecStart=/bin/true\n"
	for _, tc := range []struct {
		name  string
		src   string
		files map[string]string
		want  []string
	}{
		{
			name: "three-line spec works",
			src:  "cluster: {name: demo, sshAuthorizedKeys: [\"" + key + "\"], kilnNode: {url: http://x/k, sha512: " + strings.Repeat("ab", 64) + "}}\nnodes:\n  - {name: n1, ip: 10.0.0.1/24}\n",
		},
		{
			name: "unknown keys with suggestions",
			src:  "cluster:\n  nmae: x\n  os: flatcar\nnodes:\n  - name: n1\n    ipp: 10.0.0.1/24\n",
			want: []string{
				`error 2:3 unknown key "nmae" in cluster: did you mean "name"?`,
				`error 6:5 unknown key "ipp" in nodes.0: did you mean "ip"?`,
			},
		},
		{
			name: "wrong kinds",
			src:  "cluster:\n  sshAuthorizedKeys: abc\n  etcd: {clientPort: high}\nnodes: {name: x}\n",
			want: []string{
				`error 2:22 cluster.sshAuthorizedKeys: expected a list`,
				`error 3:22 cluster.etcd.clientPort: expected a whole number`,
				`error 4:8 nodes: expected a list`,
			},
		},
		{
			name: "bad addresses and duplicates",
			src: `cluster: {sshAuthorizedKeys: ["` + key + `"], kilnNode: {url: "http://x/k", sha512: "` + strings.Repeat("ab", 64) + `"}}
nodes:
  - {name: n1, mac: "52:54:00:00:00:01", ip: 10.0.0.1/24}
  - {name: n1, mac: "52:54:00:00:00:01", ip: 10.0.0.1/24}
  - {name: n3, mac: "zz:54", ip: 10.0.0.300}
`,
			want: []string{
				`error 4:12 duplicate node name "n1"`,
				`error 4:21 duplicate MAC address 52:54:00:00:00:01`,
				`error 4:46 duplicate IP address 10.0.0.1`,
				`error 5:21 MAC address "zz:54"`,
				`error 5:34 IP "10.0.0.300"`,
				`warning 1:10 2 etcd members`,
			},
		},
		{
			name: "nonsense addresses",
			src: `cluster: {sshAuthorizedKeys: ["` + key + `"], kilnNode: {url: "http://x/k", sha512: "` + strings.Repeat("ab", 64) + `"}, etcd: {members: [n1]}}
nodes:
  - {name: n1, ip: 0.0.0.0/0}
  - {name: n2, ip: 127.0.0.1/8}
  - {name: n3, ip: 255.255.255.255/32}
  - {name: n4, ip: 224.0.0.5/24}
  - {name: n5, ip: 10.1.0.5/0}
  - {name: n6, ip: 10.0.0.11/24}
  - {name: n7, ip: "::ffff:10.0.0.11/120"}
  - {name: n8, ip: 10.2.0.0/24}
  - {name: n9, ip: 10.2.0.255/24}
  - {name: m1, mac: "ff:ff:ff:ff:ff:ff"}
  - {name: m2, mac: "01:00:5e:00:00:01"}
  - {name: m3, mac: "00:00:00:00:00:00"}
  - {name: ok1, ip: "fd00::1/64", mac: "52:54:00:00:00:09"}
  - {name: ok2, ip: 10.3.0.1/31}
`,
			want: []string{
				`error 3:20 IP 0.0.0.0/0: the unspecified address`,
				`error 4:20 IP 127.0.0.1/8: a loopback address`,
				`error 5:20 IP 255.255.255.255/32: the broadcast address`,
				`error 6:20 IP 224.0.0.5/24: a multicast address`,
				`error 7:20 IP 10.1.0.5/0: a prefix length of 0`,
				`error 9:20 duplicate IP address 10.0.0.11 (also node n6)`,
				`error 10:20 the address of the network 10.2.0.0/24`,
				`error 11:20 the broadcast address of the network 10.2.0.0/24`,
				`error 12:21 MAC address ff:ff:ff:ff:ff:ff is the broadcast address`,
				`error 13:21 MAC address 01:00:5e:00:00:01 is a multicast address`,
				`error 14:21 MAC address 00:00:00:00:00:00 is all zeros`,
			},
		},
		{
			name: "reserved node name",
			src:  "cluster: {sshAuthorizedKeys: [\"" + key + "\"], kilnNode: {url: http://x/k, sha512: " + strings.Repeat("ab", 64) + "}}\nnodes:\n  - {name: n1, ip: 10.0.0.1/24}\n  - {name: pki, ip: 10.0.0.2/24}\n",
			want: []string{`error 4:12 node name "pki" is reserved`, `warning 1:10 2 etcd members`},
		},
		{
			name: "a tab in indentation is pointed at",
			src:  "cluster:\n  name: demo\nnodes:\n  - name: n1\n\tip: 10.0.0.1/24\n",
			want: []string{`error 5:1 found a tab character`},
		},
		{
			name: "etcd members, even count and channel",
			src: `cluster:
  os: fcos
  channel: stabel
  sshAuthorizedKeys: ["` + key + `"]
  kilnNode: {url: "http://x/k", sha512: "` + strings.Repeat("ab", 64) + `"}
  etcd: {members: [n1, n9]}
nodes: [{name: n1, ip: 10.0.0.1/24}, {name: n2, ip: 10.0.0.2/24}]
`,
			want: []string{
				`error 3:12 channel of fcos "stabel" does not exist: did you mean "stable"?`,
				`error 6:24 etcd member "n9" is not a node`,
				`warning 6:19 2 etcd members`,
			},
		},
		{
			name: "updates, window and runtime",
			src: `cluster:
  sshAuthorizedKeys: ["` + key + `"]
  kilnNode: {url: "http://x/k", sha512: "` + strings.Repeat("ab", 64) + `"}
  updates: {strategy: etcd-lok, maxConcurrent: 0, window: {start: "Sunday 25:00", length: forever}}
  runtime: {engine: docker, mirrors: {quay.io: [ftp://m]}}
nodes: [{name: n1, ip: 10.0.0.1/24}]
`,
			want: []string{
				`error 4:23 update strategy "etcd-lok" does not exist: did you mean "etcd-lock"?`,
				`error 4:48 maxConcurrent must be at least 1`,
				`error 4:67 reboot window start "Sunday 25:00"`,
				`error 4:91 reboot window length "forever"`,
				`warning 5:39 docker mirrors only docker.io`,
				`error 5:49 a mirror "ftp://m"`,
			},
		},
		{
			name:  "units: missing file, instances on a plain unit",
			src:   "cluster:\n  sshAuthorizedKeys: [\"" + key + "\"]\n  kilnNode: {url: \"http://x/k\", sha512: \"" + strings.Repeat("ab", 64) + "\"}\n  units:\n    - {file: nope.service}\n    - {file: app.service, instances: 3}\nnodes: [{name: n1, ip: 10.0.0.1/24}]\n",
			files: map[string]string{"app.service": unit},
			want: []string{
				`error 5:14 cannot read unit nope.service`,
				`error 6:38 app.service is not a template`,
			},
		},
		{
			name:  "a unit whose X-Fleet section does not parse",
			src:   "cluster:\n  sshAuthorizedKeys: [\"" + key + "\"]\n  kilnNode: {url: \"http://x/k\", sha512: \"" + strings.Repeat("ab", 64) + "\"}\n  units: [{file: app@.service, instances: 2}]\nnodes: [{name: n1, ip: 10.0.0.1/24}]\n",
			files: map[string]string{"app@.service": "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nMachineMetdata=region=east\n"},
			want:  []string{`error 5:1 unit app@.service: `},
		},
		{
			name:  "snippet errors at the snippet's own line",
			src:   "cluster:\n  sshAuthorizedKeys: [\"" + key + "\"]\n  kilnNode: {url: \"http://x/k\", sha512: \"" + strings.Repeat("ab", 64) + "\"}\nnodes: [{name: n1, ip: 10.0.0.1/24}]\nsnippets: [extra.bu]\n",
			files: map[string]string{"extra.bu": "variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: relative/path\n      contents: {inline: x}\n"},
			want:  []string{`error 5:13 path not absolute`},
		},
		{
			name:  "snippet of the wrong variant",
			src:   "cluster:\n  sshAuthorizedKeys: [\"" + key + "\"]\n  kilnNode: {url: \"http://x/k\", sha512: \"" + strings.Repeat("ab", 64) + "\"}\nnodes: [{name: n1, ip: 10.0.0.1/24}]\nsnippets: [extra.bu]\n",
			files: map[string]string{"extra.bu": "variant: fcos\nversion: 1.6.0\n"},
			want:  []string{`error 1:1 snippet variant "fcos": a flatcar cluster takes Butane snippets of variant "flatcar"`},
		},
		{
			name: "no keys, no hash, no static ip for a member",
			src:  "cluster: {name: demo}\nnodes: [{name: n1}]\n",
			want: []string{
				`warning 1:10 no sshAuthorizedKeys`,
				`warning 1:10 no sha512 and no file`,
				`warning 1:10 etcd member "n1" has no static ip`,
			},
		},
		{
			name: "not YAML",
			src:  "cluster: [\n",
			want: []string{`error 1:0 invalid YAML`},
		},
		{
			name: "empty",
			src:  "",
			want: []string{`error 1:1 the spec is empty`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := check(t, tc.src, tc.files)
			assertProblems(t, r, tc.want)
		})
	}
}

func TestDefaults(t *testing.T) {
	s, r := check(t, "nodes: [{name: a}, {name: b}, {name: c}, {name: d}]\n", nil)
	if s == nil {
		t.Fatal(r.Error())
	}
	c := s.Cluster
	for _, tc := range []struct{ name, got, want string }{
		{"os", c.OS, "flatcar"},
		{"channel", c.Channel, "stable"},
		{"strategy", c.Updates.Strategy, "etcd-lock"},
		{"engine", c.Runtime.Engine, "docker"},
		{"members", strings.Join(c.Etcd.Members, ","), "a,b,c"},
		{"group", s.Nodes[3].Group, "default"},
		{"kiln-node", c.KilnNode.URL, DefaultKilnNodeURL("v1.0.0")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseWindowStart(t *testing.T) {
	for _, tc := range []struct {
		in      string
		days    int
		minute  int
		wantErr bool
	}{
		{"04:00", 0, 240, false},
		{"Sun 04:00", 1, 240, false},
		{"Mon,Thu 23:59", 2, 1439, false},
		{"Sunday 04:00", 0, 0, true},
		{"24:00", 0, 0, true},
		{"4:0", 0, 0, true},
		{"", 0, 0, true},
	} {
		days, m, err := ParseWindowStart(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && (len(days) != tc.days || m != tc.minute)) {
			t.Errorf("ParseWindowStart(%q) = %v, %d, %v", tc.in, days, m, err)
		}
	}
}

// Every example spec shipped with kiln validates without errors.
func TestExamplesValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../configs/examples/*.yaml")
	if len(paths) == 0 {
		t.Fatal("no examples found")
	}
	for _, p := range paths {
		s, r := Load(p)
		if s != nil {
			s.Defaults("v1.0.0")
			r.Merge(s.Validate())
		}
		if r.HasErrors(false) {
			t.Errorf("%s:\n%s", p, r.Error())
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"../../configs/examples/demo.yaml", "../render/testdata/fcos.yaml"} {
		if raw, err := os.ReadFile(p); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte("cluster: {name: x}\nnodes: [{name: a, ip: 1.2.3.4/8}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("nodes:\n  - name: [\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, r := Parse("fuzz.yaml", raw)
		if s == nil && !r.HasErrors(false) {
			t.Fatal("no spec and no error")
		}
		if s != nil {
			s.Defaults("v1")
			s.Validate()
		}
	})
}
