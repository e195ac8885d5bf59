package deliver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/render"
)

const example = "../../configs/examples/demo.yaml"

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestCompileKeepsPKIInMemoryPrepareSavesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	c, err := Compile(Options{Spec: example, PKIDir: dir, CreatePKI: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) == 0 || c.PKI == nil {
		t.Fatalf("compiled %d nodes, PKI %v", len(c.Nodes), c.PKI)
	}
	if exists(dir) {
		t.Fatalf("Compile wrote %s: kiln render writes the PKI with its configs, in one step", dir)
	}
	c1, err := Prepare(Options{Spec: example, PKIDir: dir, CreatePKI: true})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(pki.CAPath(dir)) {
		t.Fatalf("Prepare did not save the PKI in %s", dir)
	}
	// A second delivery hands out the same configs: the PKI is reused, not made again.
	c2, err := Prepare(Options{Spec: example, PKIDir: dir, CreatePKI: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1.Nodes[0].Ignition, c2.Nodes[0].Ignition) {
		t.Error("two deliveries from one PKI folder gave different configs")
	}
}

func TestUnknownNodeWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	_, err := Prepare(Options{Spec: example, PKIDir: dir, CreatePKI: true, Nodes: []string{"node1", "node9"}})
	if !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), `no node "node9"`) || !strings.Contains(err.Error(), "node1, node2") {
		t.Fatalf("err = %v, want ErrNoNode naming node9 and the spec's nodes", err)
	}
	if exists(dir) {
		t.Errorf("a refused delivery wrote %s", dir)
	}
}

func TestSpecProblemsArePrintedAndReported(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(spec, []byte("cluster:\n  os: flatcar\nnodes:\n  - {name: n1, ip: 10.0.0.300/24}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for name, run := range map[string]func(Options) error{
		"compile":  func(o Options) error { _, err := Compile(o); return err },
		"prepare":  func(o Options) error { _, err := Prepare(o); return err },
		"validate": func(o Options) error { _, err := Validate(o); return err },
	} {
		out.Reset()
		err := run(Options{Spec: spec, PKIDir: filepath.Join(t.TempDir(), "pki"), CreatePKI: true, Problems: &out})
		if !errors.Is(err, ErrReported) || !errors.Is(err, render.ErrSpec) {
			t.Errorf("%s: err = %v, want ErrReported wrapping render.ErrSpec", name, err)
		}
		if !strings.Contains(out.String(), "cluster.yaml:4:") {
			t.Errorf("%s: report does not point at the line:\n%s", name, out.String())
		}
	}
}

func TestStrictTurnsWarningsIntoErrors(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "cluster.yaml")
	// No SSH keys: a warning.
	if err := os.WriteFile(spec, []byte("nodes: [{name: n1, ip: 10.0.0.1/24}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(Options{Spec: spec}); err != nil {
		t.Fatalf("warnings only: %v", err)
	}
	if _, err := Validate(Options{Spec: spec, Strict: true}); !errors.Is(err, ErrReported) {
		t.Fatalf("strict: err = %v, want ErrReported", err)
	}
}

func TestContextPointsAtTheOperatorCertificates(t *testing.T) {
	c, err := Compile(Options{Spec: example, PKIDir: filepath.Join(t.TempDir(), "pki"), CreatePKI: true})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, err := Context(c.Spec, out)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Name != c.Spec.Cluster.Name || len(ctx.Endpoints) != len(c.Spec.Cluster.Etcd.Members) ||
		ctx.Cert != pki.OperatorCertPath(filepath.Join(out, "pki")) || ctx.CA != pki.CAPath(filepath.Join(out, "pki")) {
		t.Errorf("context = %+v", ctx)
	}
}
