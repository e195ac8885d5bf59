// Package iso reads and changes the embed areas of Fedora CoreOS and Flatcar live ISOs, in the
// format of coreos-installer's `iso ignition` and `iso kargs` commands: an Ignition config packed
// as an xz-compressed cpio archive into a zero-filled file of the ISO 9660 tree, which the boot
// loader hands the kernel as a second initramfs, and the kernel arguments written into the boot
// loaders' config files.
package iso

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"syscall"

	"github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

const (
	ignInfoPath      = "coreos/igninfo.json"
	defaultEmbedPath = "images/ignition.img"
)

// ignInfo is coreos/igninfo.json: the file that holds the embed area, and where in it.
type ignInfo struct {
	File   string `json:"file"`
	Offset *int64 `json:"offset"`
	Length *int64 `json:"length"`
}

// patch is bytes to write at an offset of the image.
type patch struct {
	offset int64
	data   []byte
}

// Image is a live ISO opened to read and change its embed areas. Changes are kept in memory until
// Save or WriteTo.
type Image struct {
	path   string
	f      *os.File
	size   int64
	area   extent
	initrd *Initrd
	kargs  *kargAreas

	initrdPatch *patch
	kargPatches []patch
}

// Open reads the embed areas of the ISO at path.
func Open(path string) (*Image, error) {
	// O_NONBLOCK: a FIFO must not hang the open; it is refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil {
		f.Close()
		return nil, err
	} else if m := st.Mode(); !m.IsRegular() && (m&os.ModeDevice == 0 || m&os.ModeCharDevice != 0) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrNotImage)
	}
	im, err := open(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im.path = path
	return im, nil
}

func open(f *os.File) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	im := &Image{f: f, size: st.Size()}
	t, err := openTree(f)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotLiveISO, err)
	}
	if im.area, err = findEmbedArea(f, t, im.size); err != nil {
		return nil, err
	}
	raw, err := readAt(f, im.area.offset, im.area.length, im.size)
	if err != nil {
		return nil, fmt.Errorf("reading the embed area: %w", err)
	}
	im.initrd = &Initrd{}
	if len(bytes.TrimLeft(raw, "\x00")) > 0 {
		if im.initrd, err = ParseInitrd(raw); err != nil {
			return nil, err
		}
	}
	if im.kargs, err = readKargAreas(f, t, im.size); err != nil {
		return nil, err
	}
	return im, nil
}

// findEmbedArea reads coreos/igninfo.json (images since 2022 may put the area inside another file)
// or falls back to images/ignition.img, as coreos-installer does.
func findEmbedArea(r io.ReaderAt, t *tree, size int64) (extent, error) {
	info := ignInfo{File: defaultEmbedPath}
	ext, err := t.lookup(ignInfoPath)
	switch {
	case err == nil:
		raw, err := readAt(r, ext.offset, ext.length, size)
		if err != nil {
			return extent{}, fmt.Errorf("reading %s: %w", ignInfoPath, err)
		}
		if err := json.Unmarshal(raw, &info); err != nil || info.File == "" {
			return extent{}, fmt.Errorf("%w: %s: %v", ErrBadArea, ignInfoPath, err)
		}
	case !errors.Is(err, errNotFound):
		return extent{}, err
	}
	file, err := t.lookup(info.File)
	if errors.Is(err, errNotFound) {
		return extent{}, ErrNotLiveISO
	}
	if err != nil {
		return extent{}, err
	}
	area := file
	if info.Offset != nil {
		if *info.Offset < 0 || *info.Offset > file.length {
			return extent{}, fmt.Errorf("%w: offset %d outside %s", ErrBadArea, *info.Offset, info.File)
		}
		area.offset += *info.Offset
		area.length -= *info.Offset
	}
	if info.Length != nil {
		if *info.Length < 0 || *info.Length > area.length {
			return extent{}, fmt.Errorf("%w: length %d runs past the end of %s", ErrBadArea, *info.Length, info.File)
		}
		area.length = *info.Length
	}
	if area.length == 0 {
		return extent{}, fmt.Errorf("%w: %s has no room", ErrBadArea, info.File)
	}
	if area.offset+area.length > size {
		return extent{}, fmt.Errorf("%w: embed area runs past the end of the image", ErrBadArea)
	}
	return area, nil
}

// Close releases the image file.
func (im *Image) Close() error { return im.f.Close() }

// Area returns the embed area's byte offset in the image and its length.
func (im *Image) Area() (offset, length int64) { return im.area.offset, im.area.length }

// Initrd returns the files in the embed area.
func (im *Image) Initrd() *Initrd { return im.initrd }

// Ignition returns the embedded Ignition config, or ErrNoConfig.
func (im *Image) Ignition() ([]byte, error) {
	b, ok := im.initrd.Get(IgnitionPath)
	if !ok {
		return nil, ErrNoConfig
	}
	return b, nil
}

// SetIgnition embeds cfg after checking it with Ignition's parser; an existing config is replaced
// only with force. Other files of the embed area (network settings) are kept.
func (im *Image) SetIgnition(cfg []byte, force bool) error {
	if err := ValidateConfig(cfg); err != nil {
		return err
	}
	if _, ok := im.initrd.Get(IgnitionPath); ok && !force {
		return ErrConfigExists
	}
	old, had := im.initrd.Get(IgnitionPath)
	im.initrd.Set(IgnitionPath, cfg)
	if err := im.packInitrd(); err != nil {
		if had {
			im.initrd.Set(IgnitionPath, old)
		} else {
			im.initrd.Remove(IgnitionPath)
		}
		return err
	}
	return nil
}

// RemoveIgnition takes the config out; an area left with no files goes back to zeros.
func (im *Image) RemoveIgnition() error {
	im.initrd.Remove(IgnitionPath)
	return im.packInitrd()
}

// packInitrd serializes the embed area, zero-padded to its length.
func (im *Image) packInitrd() error {
	b, err := im.initrd.Archive()
	if err != nil {
		return fmt.Errorf("packing the embed area: %w", err)
	}
	if int64(len(b)) > im.area.length {
		return fmt.Errorf("%w: %d bytes compressed, room for %d", ErrTooLarge, len(b), im.area.length)
	}
	data := make([]byte, im.area.length)
	copy(data, b)
	im.initrdPatch = &patch{offset: im.area.offset, data: data}
	return nil
}

// ValidateConfig checks an Ignition config with Ignition's own parser (every spec version it
// reads); the error lists what the parser reported.
func ValidateConfig(cfg []byte) error {
	_, rpt, err := config.Parse(cfg)
	if err != nil {
		msg := err.Error()
		if s := rpt.String(); s != "" {
			msg += "\n" + s
		}
		return fmt.Errorf("%w: %s", ErrInvalidConfig, msg)
	}
	return nil
}

// Kargs returns the current kernel arguments, or ErrNoKargs.
func (im *Image) Kargs() (string, error) {
	if im.kargs == nil {
		return "", ErrNoKargs
	}
	return im.kargs.current, nil
}

// DefaultKargs returns the kernel arguments the image was built with, or ErrNoKargs.
func (im *Image) DefaultKargs() (string, error) {
	if im.kargs == nil {
		return "", ErrNoKargs
	}
	return im.kargs.def, nil
}

// SetKargs writes args into every kernel-argument area.
func (im *Image) SetKargs(args string) error {
	if im.kargs == nil {
		return ErrNoKargs
	}
	p, err := im.kargs.set(args)
	if err != nil {
		return err
	}
	im.kargPatches = p
	return nil
}

// patches lists the pending changes by offset.
func (im *Image) patches() []patch {
	var ps []patch
	if im.initrdPatch != nil {
		ps = append(ps, *im.initrdPatch)
	}
	ps = append(ps, im.kargPatches...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].offset < ps[j].offset })
	return ps
}

// WriteTo streams the image with the pending changes to w.
func (im *Image) WriteTo(w io.Writer) (int64, error) {
	var n int64
	pos := int64(0)
	for _, p := range im.patches() {
		k, err := io.Copy(w, io.NewSectionReader(im.f, pos, p.offset-pos))
		n += k
		if err != nil {
			return n, err
		}
		m, err := w.Write(p.data)
		n += int64(m)
		if err != nil {
			return n, err
		}
		pos = p.offset + int64(len(p.data))
	}
	k, err := io.Copy(w, io.NewSectionReader(im.f, pos, im.size-pos))
	return n + k, err
}

// Save writes the image with the pending changes to out, or over the image itself when out is
// empty. A symlink is followed: its target is written and the link kept. A new file is 0600, as
// it may hold secrets; an existing one keeps its mode and owner. Either way a failure or a crash
// leaves out as it was:
//   - an image with one name is replaced atomically (internal/atomicfile: a copy beside it, the
//     changes, fsync, rename), the copy made by the kernel (copy_file_range, a reflink where
//     the file system can);
//   - an image changed in place that has other hard links is patched in place, since a rename
//     would cut it off from them: the bytes it changes are first saved to an undo journal
//     beside it (.NAME.kiln-undo), which the next change rolls back when a crash interrupted
//     this one (patchInPlace).
func (im *Image) Save(out string) error {
	if out == "" {
		out = im.path
	}
	if st, ok := im.hardLinked(out); ok {
		return im.patchInPlace(out, st)
	}
	err := atomicfile.WriteFunc(out, 0o600, func(w io.Writer) error {
		wa, ok := w.(io.WriterAt)
		if !ok {
			return fmt.Errorf("%s: the temporary file cannot be patched", out)
		}
		if _, err := im.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(w, im.f); err != nil {
			return fmt.Errorf("copying the image: %w", err)
		}
		for _, p := range im.patches() {
			if _, err := wa.WriteAt(p.data, p.offset); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slog.Debug("iso written", "path", out, "changes", len(im.patches()))
	return nil
}

// hardLinked reports whether out is the open image itself (through symlinks) and has other hard
// links, which an atomic rename would cut off.
func (im *Image) hardLinked(out string) (*syscall.Stat_t, bool) {
	ost, err := os.Stat(out)
	if err != nil {
		return nil, false
	}
	ist, err := im.f.Stat()
	if err != nil || !os.SameFile(ost, ist) {
		return nil, false
	}
	st, ok := ist.Sys().(*syscall.Stat_t)
	return st, ok && st.Nlink > 1
}

// readAt reads n bytes at off, checking that they lie inside an image of size bytes.
func readAt(r io.ReaderAt, off, n, size int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > size {
		return nil, fmt.Errorf("bytes %d..%d outside the image (%d bytes)", off, off+n, size)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}
