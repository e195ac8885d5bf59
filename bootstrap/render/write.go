package render

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// Write stores the nodes' configs and the PKI under out, atomically: everything is written to
// a new folder beside out that then takes out's place in one rename, so a failure at any point
// leaves out as it was. extra files (relative path to contents, mode 0644) go in too.
//
// Write never deletes what it did not write: every file, link and folder in out that is not a
// node's config.bu or config.ign or a PKI file (pki.Owned) is carried into the new folder
// (hard-linked, so owner, mode and other links stay). A symlink out is followed: the folder it
// points to is replaced and the link kept. A symlink out/pki is kept too, and the PKI written
// where it points (each file atomically). Temporary folders that an interrupted Write left
// beside out are removed first.
func Write(out string, nodes []Node, b *pki.Bundle, extra map[string][]byte) error {
	out, err := atomicfile.Resolve(filepath.Clean(out))
	if err != nil {
		return err
	}
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		if _, err := os.Stat(pki.CAPath(filepath.Join(out, "pki"))); err != nil {
			return fmt.Errorf("%s: %w", out, ErrNotOurs)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	if err := removeStaleTemps(parent, filepath.Base(out)); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after the swap, tmp holds the old output
	// The lock tells a later Write that tmp is in use, not left by a killed one.
	unlock, err := lockDir(tmp, false)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	written := map[string]bool{} // slash paths relative to out
	for _, n := range nodes {
		dir := filepath.Join(tmp, n.Name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		// The configs hold the node's private keys: readable by the owner only.
		for name, data := range map[string][]byte{"config.bu": n.Butane, "config.ign": n.Ignition} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return err
			}
			written[n.Name+"/"+name] = true
		}
	}
	pkiDir := filepath.Join(tmp, "pki")
	pkiLink, pkiTarget, err := symlinkAt(filepath.Join(out, "pki"))
	if err != nil {
		return err
	}
	if pkiLink != "" {
		pkiDir = pkiTarget // written in place, where the user's link points
	}
	if err := b.Write(pkiDir); err != nil {
		return err
	}
	for rel, data := range extra {
		p := filepath.Join(tmp, rel)
		if sub, ok := cutPrefix(rel, "pki"); ok && pkiLink != "" {
			p = filepath.Join(pkiTarget, sub)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := atomicfile.Write(p, data, 0o644); err != nil {
			return err
		}
		written[filepath.ToSlash(rel)] = true
	}
	if pkiLink != "" {
		if err := os.Symlink(pkiLink, filepath.Join(tmp, "pki")); err != nil {
			return err
		}
	}
	if err := carry(out, tmp, written, pkiLink != ""); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, out, unix.RENAME_EXCHANGE); err == nil {
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		if _, statErr := os.Stat(out); statErr == nil {
			return fmt.Errorf("replacing %s: %w", out, err)
		}
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // an empty folder is replaced; anything else was caught above
	}
	return os.Rename(tmp, out)
}

// cutPrefix returns rel below the folder dir ("pki/context.yaml" below "pki": "context.yaml").
func cutPrefix(rel, dir string) (string, bool) {
	r, err := filepath.Rel(dir, rel)
	if err != nil || r == "." || r == ".." || len(r) > 2 && r[:3] == ".."+string(filepath.Separator) {
		return "", false
	}
	return r, true
}

// symlinkAt returns the link text and the resolved target when p is a symlink to a folder (or
// to nothing yet), "" when p is not a symlink.
func symlinkAt(p string) (link, target string, err error) {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return "", "", err
	}
	if link, err = os.Readlink(p); err != nil {
		return "", "", err
	}
	if target, err = atomicfile.Resolve(p); err != nil {
		return "", "", err
	}
	if fi, err := os.Stat(target); err == nil && !fi.IsDir() {
		return "", "", fmt.Errorf("%s links to %s, which is not a folder", p, target)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return "", "", err
	}
	return link, target, nil
}

// owned reports whether rel, a slash path inside a render's output, is a file render writes:
// a node's config.bu or config.ign, or a PKI file.
func owned(rel string) bool {
	if sub, ok := cutPrefix(rel, "pki"); ok {
		return pki.Owned(filepath.ToSlash(sub))
	}
	dir, name := path.Split(rel)
	return dir != "" && !strings.Contains(strings.TrimSuffix(dir, "/"), "/") && (name == "config.bu" || name == "config.ign")
}

// carry brings into tmp, at the same place, everything in out that render does not own: files
// are hard-linked (copied when the file system refuses), symlinks made again, empty folders
// made again, each folder with its mode. Folders that held only render's files are not
// carried: they belonged to nodes that are gone. skipPKI: out/pki is a link, kept as such.
func carry(out, tmp string, written map[string]bool, skipPKI bool) error {
	if _, err := os.Lstat(out); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(out, p)
		if err != nil || rel == "." {
			return err
		}
		slash := filepath.ToSlash(rel)
		if slash == "pki" && skipPKI {
			return nil
		}
		if written[slash] || owned(slash) {
			return nil
		}
		dst := filepath.Join(tmp, rel)
		if d.IsDir() {
			if ents, err := os.ReadDir(p); err != nil || len(ents) > 0 {
				return err // made below, when something in it is carried
			}
		}
		if _, err := os.Lstat(dst); err == nil {
			if d.IsDir() {
				return nil
			}
			return fmt.Errorf("%s is not kiln's and is in the way of what kiln render writes there: move it away", p)
		}
		if err := mkdirs(out, tmp, filepath.Dir(rel)); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(dst, fi.Mode().Perm())
		case fi.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, dst)
		case fi.Mode().IsRegular():
			if err := os.Link(p, dst); err == nil {
				return nil
			}
			return copyFile(p, dst, fi)
		}
		return fmt.Errorf("%s is not kiln's and cannot be carried into the new output (not a file, link or folder): move it away", p)
	})
}

// mkdirs makes the folder rel inside tmp and its parents, each with the mode of the same folder
// in out, unless render made it already.
func mkdirs(out, tmp, rel string) error {
	if rel == "." {
		return nil
	}
	dst := filepath.Join(tmp, rel)
	if fi, err := os.Lstat(dst); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: %w", dst, syscall.ENOTDIR)
		}
		return nil
	}
	if err := mkdirs(out, tmp, filepath.Dir(rel)); err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(out, rel))
	if err != nil {
		return err
	}
	if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm()) // past the umask
}

func copyFile(src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = o.Chown(int(st.Uid), int(st.Gid)) // best effort: only root may give a file away
	}
	return o.Close()
}

// lockDir takes an exclusive flock on the folder; nonBlock fails at once when another holds it.
func lockDir(dir string, nonBlock bool) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if nonBlock {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// removeStaleTemps removes the temporary folders that a Write of base killed midway left in
// parent (they may hold private keys): folders named .BASE.tmp-DIGITS, owned by this user, that
// no running Write holds locked.
func removeStaleTemps(parent, base string) error {
	re := regexp.MustCompile(`^\.` + regexp.QuoteMeta(base) + `\.tmp-[0-9]+$`)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || !re.MatchString(e.Name()) {
			continue // a symlink is not a folder here: never followed
		}
		p := filepath.Join(parent, e.Name())
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		unlock, err := lockDir(p, true)
		if err != nil {
			continue // in use by another render, or gone
		}
		err = os.RemoveAll(p)
		unlock()
		if err != nil {
			return fmt.Errorf("removing %s, left by an interrupted render: %w", p, err)
		}
	}
	return nil
}
