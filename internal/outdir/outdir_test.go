package outdir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var errNotOurs = errors.New("not ours")

func build(t *testing.T, path string, files map[string]string, owned func(string) bool) error {
	t.Helper()
	r, err := Begin(path, func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "marker"))
		return err == nil
	}, errNotOurs)
	if err != nil {
		return err
	}
	defer r.Close()
	for rel, s := range files {
		p := filepath.Join(r.Tmp, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r.Commit(owned)
}

// "." (the current folder) is replaced from beside it, not from inside.
func TestBeginDot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	mine := func(rel string) bool { return rel == "marker" || rel == "a" }
	if err := build(t, ".", map[string]string{"marker": "", "a": "1"}, mine); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The old folder, the current one, is gone now: the next run names the new one.
	if err := build(t, dir, map[string]string{"marker": "", "a": "2"}, mine); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "2", "notes": "n"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".out.tmp-*")); len(left) > 0 {
		t.Errorf("temporary folders left: %v", left)
	}
}

func TestBeginRefusesForeignFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := build(t, dir, nil, func(string) bool { return false }); !errors.Is(err, errNotOurs) {
		t.Fatalf("err = %v, want errNotOurs", err)
	}
}

// A file system mounted inside the folder is refused, not copied and then removed with the old
// folder.
func TestCommitRefusesMountPoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	mine := func(rel string) bool { return rel == "marker" }
	if err := build(t, dir, map[string]string{"marker": ""}, mine); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "data")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "precious"), []byte("p"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := build(t, dir, map[string]string{"marker": ""}, mine)
	if err == nil || !strings.Contains(err.Error(), "mount point") {
		t.Fatalf("err = %v, want a refusal naming the mount point", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "precious")); err != nil || string(b) != "p" {
		t.Errorf("the mounted file is gone: %q %v", b, err)
	}
}
