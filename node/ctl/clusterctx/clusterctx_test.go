package clusterctx

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestContextRoundTrip(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	if _, _, err := LoadCurrentContext(); err != ErrNoContext {
		t.Fatalf("no context yet: %v", err)
	}
	c := &Context{Name: "demo", Endpoints: []string{"https://10.0.0.11:2379"}, CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "operator.crt"), Key: filepath.Join(dir, "operator.key")}
	path, err := WriteCurrentContext(c)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "xdg", "kiln", "context.yaml") {
		t.Fatalf("path %s", path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	got, _, err := LoadCurrentContext()
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("got %+v %v, want %+v", got, err, c)
	}
	// Relative paths are relative to the file.
	rel := filepath.Join(dir, "pki", ContextFile)
	os.MkdirAll(filepath.Dir(rel), 0o700)
	os.WriteFile(rel, []byte("endpoints: [https://a:2379]\nca: ca.crt\ncert: operator.crt\nkey: operator.key\n"), 0o600)
	got, err = LoadContext(rel)
	if err != nil || got.CA != filepath.Join(dir, "pki", "ca.crt") {
		t.Fatalf("relative: %+v %v", got, err)
	}
	os.WriteFile(rel, []byte("endpoint: x\n"), 0o600)
	if _, err := LoadContext(rel); err == nil {
		t.Fatal("unknown key accepted")
	}
}
