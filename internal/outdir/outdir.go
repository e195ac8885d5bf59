// Package outdir is kiln's one way to replace an output folder (kiln render -o OUT, kiln vagrant
// -o DIR) in one step without ever deleting what kiln did not write:
//
//   - the new version is built in a temporary folder beside the old one (Begin), which then takes
//     its place in one rename (Commit), so a failure at any point leaves the folder as it was;
//   - everything in the old folder that kiln does not own is carried into the new one, hard-linked
//     (same file: owner, mode and other links kept), links and empty folders made again; a file
//     of the user's where kiln writes a folder, or the other way round, is refused;
//   - a symlinked folder is followed (its target replaced, the link kept), and a symlink inside it
//     can be kept as a link while kiln writes where it points (Link);
//   - the temporary folders of a run that was killed (they may hold private keys) are removed by
//     the next one: only folders named .NAME.tmp-DIGITS, owned by this user and not held by a
//     running kiln (each run holds an flock on its own).
package outdir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// ErrInTheWay: a file that kiln does not own stands where kiln writes something else.
var ErrInTheWay = errors.New("is not kiln's and stands where kiln writes: move it away")

// Replacement is a new version of an output folder, built beside it until Commit.
type Replacement struct {
	// Dir is the folder being replaced: the path given to Begin, symlinks followed.
	Dir string
	// Tmp is where the new version is built.
	Tmp string

	unlock func()
}

// Begin starts replacing the folder at path. ours tells whether an existing, non-empty folder
// is one kiln wrote and may replace; when it is not, Begin returns notOurs (wrapped, naming the
// folder). Call Close when done, after Commit or not.
func Begin(path string, ours func(dir string) bool, notOurs error) (*Replacement, error) {
	abs, err := filepath.Abs(path) // "." has no parent to build beside it in
	if err != nil {
		return nil, err
	}
	dir, err := atomicfile.Resolve(abs)
	if err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		if !ours(dir) {
			return nil, fmt.Errorf("%s: %w", dir, notOurs)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	if err := removeStaleTemps(parent, filepath.Base(dir)); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, err
	}
	// The lock tells a later run that tmp is in use, not left by a killed one.
	unlock, err := lockDir(tmp, false)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		unlock()
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Replacement{Dir: dir, Tmp: tmp, unlock: unlock}, nil
}

// Close removes the temporary folder (after Commit: the old version) and releases it.
func (r *Replacement) Close() error {
	err := os.RemoveAll(r.Tmp)
	r.unlock()
	return err
}

// Link keeps Dir/rel as a symlink to a folder: when it is one, the same link is made in Tmp and
// its target (made when missing) returned, for the caller to write into; "" when Dir/rel is not
// a symlink.
func (r *Replacement) Link(rel string) (target string, err error) {
	p := filepath.Join(r.Dir, rel)
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return "", err
	}
	link, err := os.Readlink(p)
	if err != nil {
		return "", err
	}
	if target, err = atomicfile.Resolve(p); err != nil {
		return "", err
	}
	if fi, err := os.Stat(target); err == nil && !fi.IsDir() {
		return "", fmt.Errorf("%s links to %s, which is not a folder", p, target)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return "", err
	}
	dst := filepath.Join(r.Tmp, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return target, os.Symlink(link, dst)
}

// Commit carries into Tmp everything of Dir that owned (given a slash-separated path relative
// to Dir) says kiln does not own, then swaps Tmp and Dir in one rename. A file kiln wrote into
// Tmp replaces the one at the same place in Dir. Folders that held only kiln's files are not
// carried.
func (r *Replacement) Commit(owned func(rel string) bool) error {
	if err := carry(r.Dir, r.Tmp, owned); err != nil {
		return err
	}
	// Everything written into Tmp reaches the disk before Tmp takes Dir's place: one syncfs
	// instead of an fsync per file (a render writes six files per node).
	if err := syncFS(r.Tmp); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, r.Tmp, unix.AT_FDCWD, r.Dir, unix.RENAME_EXCHANGE); err == nil {
		return atomicfile.SyncDir(filepath.Dir(r.Dir))
	} else if !errors.Is(err, unix.ENOENT) {
		if _, statErr := os.Stat(r.Dir); statErr == nil {
			return fmt.Errorf("replacing %s: %w", r.Dir, err)
		}
	}
	if err := os.Remove(r.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // an empty folder is replaced; anything else was caught above
	}
	if err := os.Rename(r.Tmp, r.Dir); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(r.Dir))
}

func carry(dir, tmp string, owned func(rel string) bool) error {
	root, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() && !sameDevice(root, p) {
			// The old folder is removed after the swap: what is mounted in it would go too.
			return fmt.Errorf("%s is a mount point: kiln cannot carry it into the new folder; unmount it or mount it elsewhere", p)
		}
		if !d.IsDir() && owned(filepath.ToSlash(rel)) {
			return nil
		}
		dst := filepath.Join(tmp, rel)
		if dfi, err := os.Lstat(dst); err == nil {
			switch {
			case d.IsDir() && dfi.IsDir():
				return nil // kiln's folder: look inside
			case !d.IsDir() && !dfi.IsDir():
				return nil // kiln wrote this very name: its new version replaces the old
			}
			return fmt.Errorf("%s %w", p, ErrInTheWay)
		}
		if d.IsDir() {
			if ents, err := os.ReadDir(p); err != nil || len(ents) > 0 {
				return err // made by mkdirs when something in it is carried
			}
		}
		if err := mkdirs(dir, tmp, filepath.Dir(rel)); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(dst, fi.Mode().Perm())
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
		return fmt.Errorf("%s is not kiln's and cannot be carried into the new folder (not a file, link or folder): move it away", p)
	})
}

func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

func sameDevice(root os.FileInfo, p string) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return true
	}
	a, okA := root.Sys().(*syscall.Stat_t)
	b, okB := fi.Sys().(*syscall.Stat_t)
	return !okA || !okB || a.Dev == b.Dev
}

// mkdirs makes the folder rel inside tmp and its parents, each with the mode of the same folder
// in dir, unless kiln made it already.
func mkdirs(dir, tmp, rel string) error {
	if rel == "." {
		return nil
	}
	dst := filepath.Join(tmp, rel)
	if fi, err := os.Lstat(dst); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s %w", filepath.Join(dir, rel), ErrInTheWay)
		}
		return nil
	}
	if err := mkdirs(dir, tmp, filepath.Dir(rel)); err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(dir, rel))
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

// removeStaleTemps removes the temporary folders that a killed run left beside the folder base
// in parent: folders named .BASE.tmp-DIGITS, owned by this user, that no running kiln holds.
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
			continue // in use by another run, or gone
		}
		err = os.RemoveAll(p)
		unlock()
		if err != nil {
			return fmt.Errorf("removing %s, left by an interrupted run: %w", p, err)
		}
	}
	return nil
}
