package userdata

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// Output is a file a delivery is about to write, with the flag that named it.
type Output struct {
	Flag string
	Path string
}

// CheckOutputs refuses outputs that would overwrite an input or each other: a file in inputs
// (the spec and the files it names), anything inside one of dirs (the PKI folder), or the file
// another output names. Paths are compared resolved (symlinks followed, as the write follows
// them) and by inode, so a link or a hard link to an input is caught too.
func CheckOutputs(outs []Output, inputs, dirs []string) error {
	type file struct {
		path string
		fi   os.FileInfo
	}
	resolve := func(p string) file {
		r, err := atomicfile.Resolve(p)
		if err != nil {
			r = p
		}
		if a, err := filepath.Abs(r); err == nil {
			r = a
		}
		fi, _ := os.Stat(r)
		return file{r, fi}
	}
	same := func(a, b file) bool {
		if a.path == b.path {
			return true
		}
		return a.fi != nil && b.fi != nil && os.SameFile(a.fi, b.fi)
	}
	var ins []file
	for _, p := range inputs {
		ins = append(ins, resolve(p))
	}
	var inDirs []string
	for _, d := range dirs {
		r := resolve(d)
		inDirs = append(inDirs, r.path)
		// Hard links to the folder's files elsewhere are the same files.
		_ = filepath.WalkDir(r.path, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				ins = append(ins, resolve(p))
			}
			return nil
		})
	}
	var seen []file
	for _, o := range outs {
		f := resolve(o.Path)
		for _, in := range ins {
			if same(f, in) {
				return fmt.Errorf("%s %s: %w (%s)", o.Flag, o.Path, ErrOutputIsInput, in.path)
			}
		}
		for _, d := range inDirs {
			if rel, err := filepath.Rel(d, f.path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return fmt.Errorf("%s %s: %w (inside %s)", o.Flag, o.Path, ErrOutputIsInput, d)
			}
		}
		for i, s := range seen {
			if same(f, s) {
				return fmt.Errorf("%s and %s: %w", outs[i].Flag, o.Flag, ErrSameOutput)
			}
		}
		seen = append(seen, f)
	}
	return nil
}

// WriteSecret writes data, which holds a node's private keys, to path in one step (through a
// symlink to its target): a new file gets mode 0600; an existing one keeps its owner and
// loses any group and other access first.
func WriteSecret(path string, data []byte) error {
	target, err := atomicfile.Resolve(path)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(target); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(target, fi.Mode().Perm()&0o700); err != nil {
			return err
		}
	}
	return atomicfile.Write(path, data, 0o600)
}
