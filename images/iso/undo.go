package iso

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/internal/inputfile"
)

// undoLimit bounds an undo journal: the embed areas it saves are a few MiB at most.
const undoLimit = 64 << 20

// undoEntry is bytes of the image before a change, at their offset.
type undoEntry struct {
	Offset int64  `json:"offset"`
	Data   []byte `json:"data"`
}

// undoPath is the undo journal of the image at path (its final target), beside it.
func undoPath(path string) (string, error) {
	target, err := atomicfile.Resolve(path)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".kiln-undo"), nil
}

// patchInPlace writes the pending changes into the image file itself, keeping its inode (hard
// links, owner, mode). The bytes it overwrites go first to an undo journal (0600: an embedded
// config holds secrets), synced; then the changes, synced; then the journal is removed. A crash
// in between leaves the journal, and rollBack restores the image from it.
func (im *Image) patchInPlace(out string, st *syscall.Stat_t) error {
	undo, err := undoPath(out)
	if err != nil {
		return err
	}
	var entries []undoEntry
	for _, p := range im.patches() {
		old, err := readAt(im.f, p.offset, int64(len(p.data)), im.size)
		if err != nil {
			return err
		}
		entries = append(entries, undoEntry{p.offset, old})
	}
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(undo, raw, 0o600); err != nil {
		return fmt.Errorf("writing the undo journal: %w", err)
	}
	if err := writeAt(out, im.patchesAsUndo()); err != nil {
		return err
	}
	if err := os.Remove(undo); err != nil {
		return err
	}
	slog.Debug("iso patched in place", "path", out, "links", st.Nlink, "changes", len(entries))
	return atomicfile.SyncDir(filepath.Dir(undo))
}

func (im *Image) patchesAsUndo() []undoEntry {
	var e []undoEntry
	for _, p := range im.patches() {
		e = append(e, undoEntry{p.offset, p.data})
	}
	return e
}

// writeAt writes the entries into the file at path and syncs it.
func writeAt(path string, entries []undoEntry) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := f.WriteAt(e.Data, e.Offset); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rollBack restores the image at path from the undo journal that an interrupted in-place change
// left, if any, and removes the journal.
func rollBack(path string) error {
	undo, err := undoPath(path)
	if err != nil {
		return err
	}
	raw, err := inputfile.Read(undo, undoLimit)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var entries []undoEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("%s: %w", undo, err)
	}
	if err := writeAt(path, entries); err != nil {
		return fmt.Errorf("rolling back an interrupted change of %s: %w", path, err)
	}
	slog.Info("iso: rolled back an interrupted change", "path", path, "journal", undo)
	if err := os.Remove(undo); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(undo))
}
