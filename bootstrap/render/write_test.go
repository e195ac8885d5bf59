package render

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/outdir"
)

// writeFixture is a small bundle and nodes to write, without a spec.
func writeFixture(t *testing.T, names ...string) ([]Node, *pki.Bundle) {
	t.Helper()
	var nodes []Node
	var pn []pki.Node
	for _, n := range names {
		nodes = append(nodes, Node{Name: n, Butane: []byte("bu " + n), Ignition: []byte("ign " + n)})
		pn = append(pn, pki.Node{Name: n})
	}
	b, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), "t", pn, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return nodes, b
}

func mustWrite(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// What kiln render did not write survives the next render, in place and as it was; what it
// wrote for a node that is gone does not.
func TestWriteKeepsWhatItDoesNotOwn(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	nodes, b := writeFixture(t, "n1", "n2")
	if err := Write(out, nodes, b, nil); err != nil {
		t.Fatal(err)
	}
	foreign := map[string]string{
		"NOTES.txt":          "my notes",
		"pki/pxe-token.key":  "token secret",
		"n1/extra.conf":      "mine",
		"docs/a/b/readme.md": "deep",
	}
	for rel, s := range foreign {
		mustWrite(t, filepath.Join(out, rel), s, 0o640)
	}
	if err := os.Mkdir(filepath.Join(out, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nowhere", filepath.Join(out, "link")); err != nil {
		t.Fatal(err)
	}
	notesIno := inode(t, filepath.Join(out, "NOTES.txt"))

	nodes, b = writeFixture(t, "n1") // n2 left the spec
	if err := Write(out, nodes, b, map[string][]byte{"pki/context.yaml": []byte("ctx")}); err != nil {
		t.Fatal(err)
	}
	for rel, s := range foreign {
		got, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil || string(got) != s {
			t.Errorf("%s: %q, %v; want %q kept", rel, got, err, s)
		}
		if fi, err := os.Stat(filepath.Join(out, rel)); err == nil && fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", rel, fi.Mode().Perm())
		}
	}
	if inode(t, filepath.Join(out, "NOTES.txt")) != notesIno {
		t.Error("NOTES.txt is a copy, not the same file")
	}
	if fi, err := os.Stat(filepath.Join(out, "empty")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("empty folder: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "/nowhere" {
		t.Errorf("link: %q %v", l, err)
	}
	for _, rel := range []string{"n2", "pki/nodes/n2"} {
		if exists(filepath.Join(out, rel)) {
			t.Errorf("%s of the node that left is still there", rel)
		}
	}
	for _, rel := range []string{"n1/config.ign", "pki/ca.key", "pki/nodes/n1/peer.key", "pki/context.yaml"} {
		if !exists(filepath.Join(out, rel)) {
			t.Errorf("%s was not written", rel)
		}
	}
}

// A foreign file where render must write a folder: refused, the output left as it was.
func TestWriteRefusesWhatIsInTheWay(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	nodes, b := writeFixture(t, "n1")
	if err := Write(out, nodes, b, nil); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(out, "n2", "config.ign", "x"), "a folder where a config goes", 0o644)
	nodes, b = writeFixture(t, "n1", "n2")
	if err := Write(out, nodes, b, nil); !errors.Is(err, outdir.ErrInTheWay) {
		t.Fatalf("err = %v, want ErrInTheWay", err)
	}
	if !exists(filepath.Join(out, "n2", "config.ign", "x")) || !exists(filepath.Join(out, "n1", "config.ign")) {
		t.Error("the output was changed")
	}
}

// A symlinked output folder, or pki folder, is followed: the links stay and no copy of ca.key
// is left beside them.
func TestWriteFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	keys := filepath.Join(dir, "vault", "keys")
	out := filepath.Join(dir, "out")
	if err := os.Symlink("real", out); err != nil {
		t.Fatal(err)
	}
	nodes, b := writeFixture(t, "n1")
	if err := Write(out, nodes, b, nil); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(out); err != nil || l != "real" {
		t.Fatalf("out is no longer the link: %q %v", l, err)
	}
	if !exists(filepath.Join(real, "n1", "config.ign")) {
		t.Fatal("nothing written where out points")
	}

	// Move the PKI to a folder of the user's choice and link it.
	if err := os.MkdirAll(filepath.Dir(keys), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(real, "pki"), keys); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../vault/keys", filepath.Join(real, "pki")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(keys, "pxe-token.key"), "secret", 0o600)
	nodes, b = writeFixture(t, "n1", "n2")
	if err := Write(out, nodes, b, map[string][]byte{"pki/context.yaml": []byte("ctx")}); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(real, "pki")); err != nil || l != "../vault/keys" {
		t.Fatalf("out/pki is no longer the link: %q %v", l, err)
	}
	for _, rel := range []string{"ca.key", "nodes/n2/peer.key", "context.yaml", "pxe-token.key"} {
		if !exists(filepath.Join(keys, rel)) {
			t.Errorf("%s is not where out/pki points", rel)
		}
	}
	if fi, err := os.Stat(filepath.Join(keys, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v %v", fi, err)
	}
}

// kill -9 during a render leaves its temporary folder, private keys in it: the next render
// removes it, and only it.
func TestWriteRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	stale := filepath.Join(dir, ".out.tmp-123456")
	mustWrite(t, filepath.Join(stale, "pki", "ca.key"), "key", 0o600)
	inUse := filepath.Join(dir, ".out.tmp-999")
	if err := os.Mkdir(inUse, 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockForTest(inUse)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	others := []string{".out.tmp-mine", ".other.tmp-1", "out.tmp-1"}
	for _, o := range others {
		if err := os.Mkdir(filepath.Join(dir, o), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	nodes, b := writeFixture(t, "n1")
	if err := Write(out, nodes, b, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale folder is still there: %v", err)
	}
	for _, o := range append(others, ".out.tmp-999") {
		if !exists(filepath.Join(dir, o)) {
			t.Errorf("%s was removed", o)
		}
	}
}

// lockForTest holds dir as a running render holds its temporary folder.
func lockForTest(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
