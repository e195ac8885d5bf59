package render

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testPKI is a PKI kept in testdata so that golden files are stable. Its keys are for tests only.
func testPKI(t testing.TB, s *spec.Spec) *pki.Bundle {
	t.Helper()
	dir := filepath.Join("testdata", "pki", s.Cluster.Name)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	b, err := pki.Ensure(dir, s.Cluster.Name, PKINodes(s), now)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := b.Write(dir); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func loadSpec(t testing.TB, path string) *spec.Spec {
	t.Helper()
	s, rep := spec.Load(path)
	if s == nil {
		t.Fatalf("%s: %v", path, rep.Error())
	}
	s.Defaults("v0.0.0-test")
	if r := s.Validate(); r.HasErrors(false) {
		t.Fatalf("%s: %v", path, r.Error())
	}
	return s
}

func renderBoth(t *testing.T, s *spec.Spec, b *pki.Bundle) (fast, slow []Node) {
	t.Helper()
	var err error
	fast, rep, err := Render(s, b, Options{})
	if err != nil {
		t.Fatalf("render: %v\n%s", err, rep.Error())
	}
	slow, rep, err = Render(s, b, Options{Slow: true})
	if err != nil {
		t.Fatalf("slow render: %v\n%s", err, rep.Error())
	}
	return fast, slow
}

// The spliced configs must be exactly what Butane makes of each node's whole config.bu.
func TestSplicedEqualsWholeTranslation(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string
	}{
		{"flatcar demo", "../../configs/examples/demo.yaml"},
		{"fcos", "testdata/fcos.yaml"},
		{"dhcp and podman", "testdata/dhcp.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadSpec(t, tc.spec)
			fast, slow := renderBoth(t, s, testPKI(t, s))
			if len(fast) != len(s.Nodes) {
				t.Fatalf("%d nodes rendered, want %d", len(fast), len(s.Nodes))
			}
			for i := range fast {
				if !bytes.Equal(fast[i].Butane, slow[i].Butane) {
					t.Errorf("%s: config.bu differs:\n--- spliced\n%s\n--- whole\n%s", fast[i].Name, fast[i].Butane, slow[i].Butane)
				}
				if !bytes.Equal(fast[i].Ignition, slow[i].Ignition) {
					t.Errorf("%s: config.ign differs:\n--- spliced\n%s\n--- whole\n%s", fast[i].Name, fast[i].Ignition, slow[i].Ignition)
				}
				// And Butane agrees with itself on the spliced config.bu.
				var rep = new(struct{})
				_ = rep
				if _, r, err := ignconfig.Parse(fast[i].Ignition); err != nil || r.IsFatal() {
					t.Errorf("%s: Ignition rejects the config: %v %v", fast[i].Name, err, r)
				}
			}
		})
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct{ name, spec string }{
		{"flatcar", "../../configs/examples/demo.yaml"},
		{"fcos", "testdata/fcos.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadSpec(t, tc.spec)
			nodes, rep, err := Render(s, testPKI(t, s), Options{})
			if err != nil {
				t.Fatalf("%v\n%s", err, rep.Error())
			}
			for _, n := range nodes {
				for ext, got := range map[string][]byte{"bu": n.Butane, "ign": n.Ignition} {
					golden := filepath.Join("testdata", "golden", tc.name, n.Name+"."+ext)
					if *update {
						if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(golden, got, 0o644); err != nil {
							t.Fatal(err)
						}
						continue
					}
					want, err := os.ReadFile(golden)
					if err != nil {
						t.Fatalf("%v (run with -update to create it)", err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s differs from the golden file (run with -update after checking the change)", golden)
					}
				}
			}
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	s := loadSpec(t, "../../configs/examples/demo.yaml")
	b := testPKI(t, s)
	a, _, err := Render(s, b, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := Render(s, b, Options{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if !bytes.Equal(a[i].Ignition, c[i].Ignition) || !bytes.Equal(a[i].Butane, c[i].Butane) {
			t.Errorf("%s: two renders differ", a[i].Name)
		}
	}
}

// A node's own snippet overrides what kiln writes; a cluster snippet's file lands on every node.
func TestSnippetsMergeLast(t *testing.T) {
	s := loadSpec(t, "testdata/snippets.yaml")
	fast, slow := renderBoth(t, s, testPKI(t, s))
	for i, n := range fast {
		if !bytes.Equal(n.Ignition, slow[i].Ignition) {
			t.Errorf("%s: spliced and whole configs differ", n.Name)
		}
		cfg, _, err := ignconfig.Parse(n.Ignition)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]string{}
		for _, f := range cfg.Storage.Files {
			src := ""
			if f.Contents.Source != nil {
				src = *f.Contents.Source
			}
			files[f.Path] = src
		}
		if _, ok := files["/etc/motd.d/kiln.conf"]; !ok {
			t.Errorf("%s: the cluster snippet's file is missing", n.Name)
		}
		hostname := files["/etc/hostname"]
		switch n.Name {
		case "node1":
			if !strings.Contains(hostname, "custom") {
				t.Errorf("node1: its snippet should override /etc/hostname, got %q", hostname)
			}
		default:
			if !strings.Contains(hostname, n.Name) {
				t.Errorf("%s: /etc/hostname is %q", n.Name, hostname)
			}
		}
	}
}

func nowForTests() time.Time { return time.Now() }

// A snippet that is valid alone but conflicts with what kiln writes is reported at the
// snippet's own line, not at a line of generated output.
func TestProblemsPointAtTheirSource(t *testing.T) {
	s := loadSpec(t, "testdata/conflict.yaml")
	_, rep, err := Render(s, testPKI(t, s), Options{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	found := false
	for _, p := range rep.Problems {
		if strings.HasSuffix(p.File, "conflict.bu") && p.Line == 5 && strings.Contains(p.Message, "node c1: duplicate entry") {
			found = true
		}
	}
	if !found {
		t.Errorf("no problem at conflict.bu:5:\n%s", rep.Error())
	}
}
