package iso

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func statT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// Embedding into a symlink writes the image it points to and keeps the link; the image keeps
// its owner and mode.
func TestEmbedThroughSymlinkKeepsOwnerAndMode(t *testing.T) {
	p := fixture(t, fix2023)
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	chowned := os.Geteuid() == 0
	if chowned {
		if err := os.Chown(p, 4321, 4322); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(t.TempDir(), "live.iso")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if err := Embed(link, smallConfig, Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	if got, err := Show(p); err != nil || !bytes.Equal(got, smallConfig) {
		t.Fatalf("the target has no config: %q %v", got, err)
	}
	st := statT(t, p)
	if st.Mode&0o777 != 0o640 {
		t.Errorf("mode %o, want 640", st.Mode&0o777)
	}
	if chowned && (st.Uid != 4321 || st.Gid != 4322) {
		t.Errorf("owner %d:%d, want 4321:4322", st.Uid, st.Gid)
	}
}

// An image with other hard links is changed in place: every name sees the change, and no
// undo journal is left behind.
func TestEmbedKeepsHardLinks(t *testing.T) {
	p := fixture(t, fix2023)
	orig := readFile(t, p)
	other := filepath.Join(filepath.Dir(p), "other-name.iso")
	if err := os.Link(p, other); err != nil {
		t.Fatal(err)
	}
	ino := statT(t, p).Ino
	if err := Embed(p, smallConfig, Options{}); err != nil {
		t.Fatal(err)
	}
	if statT(t, p).Ino != ino || statT(t, other).Ino != ino {
		t.Fatal("the hard link was broken")
	}
	if got, err := Show(other); err != nil || !bytes.Equal(got, smallConfig) {
		t.Fatalf("the other name has no config: %q %v", got, err)
	}
	undo, _ := undoPath(p)
	if _, err := os.Stat(undo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("undo journal left: %v", err)
	}
	if err := Remove(other, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, p), orig) {
		t.Error("remove through the other name did not give back the original")
	}
}

// A crash during an in-place change leaves the undo journal: the next change rolls the image
// back first.
func TestInterruptedInPlaceChangeIsRolledBack(t *testing.T) {
	p := fixture(t, fix2023)
	orig := readFile(t, p)
	im, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	off, n := im.Area()
	im.Close()
	// What a crash midway leaves: the journal of the area's old bytes, the area half-written.
	undo, _ := undoPath(p)
	raw, _ := json.Marshal([]undoEntry{{Offset: off, Data: orig[off : off+n]}})
	if err := os.WriteFile(undo, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeAt(p, []undoEntry{{Offset: off, Data: bytes.Repeat([]byte{0x5a}, int(n/2))}}); err != nil {
		t.Fatal(err)
	}
	if err := Embed(p, smallConfig, Options{}); err != nil {
		t.Fatal(err)
	}
	if got, err := Show(p); err != nil || !bytes.Equal(got, smallConfig) {
		t.Fatalf("show: %q %v", got, err)
	}
	if _, err := os.Stat(undo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("undo journal left: %v", err)
	}
	if err := Remove(p, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, p), orig) {
		t.Error("the image is not the original after roll back, embed and remove")
	}
}

// A FIFO or a folder is refused at once, not waited on.
func TestOpenRefusesNonImages(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "live.iso")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, dir, "/dev/zero"} {
		done := make(chan error, 1)
		go func() { _, err := Show(p); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotImage) {
				t.Errorf("%s: err = %v, want ErrNotImage", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Show hangs", p)
		}
	}
}
