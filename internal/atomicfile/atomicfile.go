// Package atomicfile is kiln's one atomic file write: a temporary file in the target's folder,
// written, fsynced, renamed over the target, then the folder fsynced, so that a reader sees the
// old file or the new one and a crash after Write returns keeps the new one. It builds on
// github.com/google/renameio (temporary file, fsync, rename) and adds what kiln needs beside it:
// the folder's fsync, symlinks followed (the link stays, its target is replaced) and an existing
// file's owner kept.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/google/renameio/v2"
)

// Write replaces path with data, atomically and durably. A new file gets mode perm; an existing
// one keeps its mode and owner. When path is a symlink its target is written and the link kept.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write for content streamed by fill; when fill fails nothing is replaced and the
// temporary file is removed.
func WriteFunc(path string, perm os.FileMode, fill func(io.Writer) error) error {
	target, err := Resolve(path)
	if err != nil {
		return err
	}
	opts := []renameio.Option{renameio.WithStaticPermissions(perm)}
	var owner *syscall.Stat_t
	if fi, err := os.Stat(target); err == nil {
		opts = []renameio.Option{renameio.WithStaticPermissions(fi.Mode().Perm())}
		owner, _ = fi.Sys().(*syscall.Stat_t)
	}
	t, err := renameio.NewPendingFile(target, opts...)
	if err != nil {
		return err
	}
	defer t.Cleanup()
	if err := fill(t); err != nil {
		return err
	}
	if owner != nil && (int(owner.Uid) != os.Geteuid() || int(owner.Gid) != os.Getegid()) {
		if err := t.Chown(int(owner.Uid), int(owner.Gid)); err != nil {
			return err
		}
	}
	if err := t.CloseAtomicallyReplace(); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(target))
}

// Resolve returns the file that a write to path must replace: path itself, or the final target
// when path is a symlink (a dangling link resolves to where it points).
func Resolve(path string) (string, error) {
	for range 40 {
		fi, err := os.Lstat(path)
		if os.IsNotExist(err) {
			return path, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return path, nil
		}
		link, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(path), link)
		}
		path = link
	}
	return "", &os.PathError{Op: "resolve", Path: path, Err: syscall.ELOOP}
}

// SyncDir fsyncs a folder, so that a rename or a new entry in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
