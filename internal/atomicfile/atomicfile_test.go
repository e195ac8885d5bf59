package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		setup    func(t *testing.T) string // returns the path to write
		check    string                    // the file whose content must be the new data
		wantMode os.FileMode
	}{
		{"new file gets perm", func(t *testing.T) string { return filepath.Join(dir, "new") }, "new", 0o600},
		{"existing file keeps its mode", func(t *testing.T) string {
			p := filepath.Join(dir, "old")
			if err := os.WriteFile(p, []byte("old"), 0o640); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o640)
			return p
		}, "old", 0o640},
		{"symlink is followed and kept", func(t *testing.T) string {
			if err := os.WriteFile(filepath.Join(dir, "target"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			l := filepath.Join(dir, "link")
			if err := os.Symlink("target", l); err != nil {
				t.Fatal(err)
			}
			return l
		}, "target", 0o644},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t)
			if err := Write(p, []byte("new"), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, tc.check))
			if err != nil || string(got) != "new" {
				t.Fatalf("%s = %q, %v; want new", tc.check, got, err)
			}
			fi, _ := os.Stat(filepath.Join(dir, tc.check))
			if fi.Mode().Perm() != tc.wantMode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.wantMode)
			}
			if li, _ := os.Lstat(p); p != filepath.Join(dir, tc.check) && li.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is no longer a symlink", p)
			}
		})
	}
}

func TestWriteFuncFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFunc(p, 0o644, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "keep" {
		t.Errorf("file = %q, want keep", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("folder holds %d entries, want only f", len(ents))
	}
}
