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
			if st := Count(fast); st.Spliced != len(s.Nodes) {
				t.Errorf("fast path taken for %d of %d nodes: %+v", st.Spliced, len(s.Nodes), st)
			}
			if st := Count(slow); st.Whole != len(s.Nodes) {
				t.Errorf("Options.Slow: %+v", st)
			}
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
				// And Ignition accepts the spliced config.
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

// Every example spec takes the fast path on every node: when a new Butane lays out its output
// otherwise, this fails (and kiln warns users: Compiled.Stats counts the fallbacks).
func TestExamplesTakeTheFastPath(t *testing.T) {
	examples, err := filepath.Glob("../../configs/examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no example specs: %v", err)
	}
	for _, path := range examples {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, rep, err := Compile(path, CompileOptions{PKIDir: filepath.Join(t.TempDir(), "pki"), CreatePKI: true, KilnVersion: "v0.0.0-test"})
			if err != nil {
				t.Fatalf("%v\n%s", err, rep.Error())
			}
			for _, n := range c.Nodes {
				if n.Path != PathSpliced {
					t.Errorf("%s: %s (%s), not spliced", n.Name, n.Path, n.Why)
				}
			}
			if c.Stats.Spliced != len(c.Nodes) || c.Stats.Fallback != 0 {
				t.Errorf("stats %+v", c.Stats)
			}
		})
	}
}

// When Butane's output is not shaped as splicing expects, the loss is said, not silent: the
// shared part takes no spliced files and names why, and its nodes count as fallbacks.
func TestLostFastPathIsVisible(t *testing.T) {
	bu := []byte("storage:\n  files:\n    - path: /etc/a\n    - path: " + sentinelPath + "\n      contents:\n        inline: x\n")
	good := []byte(`{"storage":{"files":[{"path":"/etc/a"},{"path":"` + sentinelPath + `","contents":{"source":"data:,x"}}]}}`)
	reordered := []byte(`{"storage":{"files":[{"path":"/etc/a"},{"contents":{"source":"data:,x"},"path":"` + sentinelPath + `"}]}}`)
	for _, tc := range []struct {
		name     string
		bu, ign  []byte
		wantLost string
	}{
		{"as expected", bu, good, ""},
		{"Ignition fields reordered", bu, reordered, "field order changed"},
		{"Butane layout changed", []byte("storage:\n  files:\n  - {path: " + sentinelPath + "}\n"), good, "no sentinel entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := &sharedPart{}
			lost := sp.cut(tc.bu, tc.ign)
			if tc.wantLost == "" {
				if lost != "" || sp.ign == nil || string(sp.ignHead)+string(sp.ignTail) != `{"storage":{"files":[{"path":"/etc/a"},]}}` {
					t.Fatalf("lost %q, head+tail %s%s", lost, sp.ignHead, sp.ignTail)
				}
				return
			}
			if !strings.Contains(lost, tc.wantLost) || sp.ign != nil {
				t.Fatalf("lost %q (want %q), spliceable %v", lost, tc.wantLost, sp.ign != nil)
			}
		})
	}
	st := Count([]Node{{Path: PathSpliced}, {Path: PathFallback, Why: "field order changed"}, {Path: PathWhole}})
	if st != (Stats{Spliced: 1, Whole: 1, Fallback: 1, Lost: "field order changed"}) {
		t.Errorf("Count = %+v", st)
	}
}
