package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/node/submit"
	nodeunit "github.com/kiln-cluster/kiln/node/unit"
)

// The generator–node contract: the units folder a rendered config writes on a node is what
// kiln-node's first start reads back, unit for unit (node/config.Manifest is the one type both
// sides use).
func TestRenderedUnitsAreReadByKilnNode(t *testing.T) {
	s := loadSpec(t, "../../configs/examples/demo.yaml")
	nodes, rep, err := Render(s, testPKI(t, s), Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.Error())
	}
	cfg, _, err := ignconfig.Parse(nodes[0].Ignition)
	if err != nil {
		t.Fatal(err)
	}
	// Apply the node's files under UnitsDir to a folder, as Ignition would.
	dir := t.TempDir()
	for _, f := range cfg.Storage.Files {
		if !strings.HasPrefix(f.Path, UnitsDir+"/") || f.Contents.Source == nil {
			continue
		}
		data := testkit.DataURLContents(t, *f.Contents.Source, f.Contents.Compression)
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Path)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.Base(UnitsManifest))); err != nil {
		t.Fatalf("the config writes no manifest at %s: %v", UnitsManifest, err)
	}
	plan, digest, err := submit.ReadDir(dir)
	if err != nil || digest == "" {
		t.Fatalf("kiln-node cannot read the rendered units: %v", err)
	}
	got := map[string]nodeunit.State{}
	for _, p := range plan {
		got[p.Unit.Name] = p.State
	}
	// demo.yaml: my-app@.service with two instances, launched.
	want := map[string]nodeunit.State{
		"my-app@.service":  nodeunit.StateInactive, // the template itself
		"my-app@1.service": nodeunit.StateLaunched,
		"my-app@2.service": nodeunit.StateLaunched,
	}
	if len(got) != len(want) {
		t.Errorf("kiln-node plans %v, want %v", got, want)
	}
	for name, st := range want {
		if got[name] != st {
			t.Errorf("%s: planned %q, want %q (all: %v)", name, got[name], st, got)
		}
	}
}
