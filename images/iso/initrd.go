package iso

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/cavaliergopher/cpio"
	"github.com/ulikunitz/xz"
)

// IgnitionPath is where the live system's initramfs expects the embedded Ignition config.
const IgnitionPath = "config.ign"

// maxUnpacked bounds what an embed area may decompress to (a guard against archive bombs).
const maxUnpacked = 64 << 20

var (
	magicCpio = []byte("07070")
	magicGzip = []byte{0x1f, 0x8b}
	magicXz   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Initrd is the set of regular files an embed area's initramfs holds, by path. The kernel unpacks
// them into the live system's root filesystem on top of the main initramfs.
type Initrd struct {
	files map[string][]byte
}

// Get returns a file's content and whether it is there.
func (i *Initrd) Get(name string) ([]byte, bool) {
	b, ok := i.files[name]
	return b, ok
}

// Set adds or replaces a file.
func (i *Initrd) Set(name string, data []byte) {
	if i.files == nil {
		i.files = map[string][]byte{}
	}
	i.files[name] = data
}

// Remove deletes a file; removing a missing file is not an error.
func (i *Initrd) Remove(name string) { delete(i.files, name) }

// Names lists the files in path order.
func (i *Initrd) Names() []string {
	return slices.Sorted(maps.Keys(i.files))
}

// Len is the number of files.
func (i *Initrd) Len() int { return len(i.files) }

// ParseInitrd reads an embed area: cpio archives (newc), plain, gzip- or xz-compressed, one after
// the other, with zero padding between and after them, as the kernel accepts them. Only regular
// files are kept; a later copy of a path wins, as in the kernel.
func ParseInitrd(area []byte) (*Initrd, error) {
	ird := &Initrd{files: map[string][]byte{}}
	pos := 0
	for {
		pos = skipZeros(area, pos)
		if pos == len(area) {
			return ird, nil
		}
		rest := area[pos:]
		switch {
		case bytes.HasPrefix(rest, magicCpio):
			n, err := readCpio(rest, ird)
			if err != nil {
				return nil, fmt.Errorf("%w: cpio archive at byte %d: %v", ErrBadInitrd, pos, err)
			}
			pos += n
		case bytes.HasPrefix(rest, magicGzip):
			br := bytes.NewReader(rest)
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, fmt.Errorf("%w: gzip archive at byte %d: %v", ErrBadInitrd, pos, err)
			}
			zr.Multistream(false)
			if err := readCompressed(zr, ird); err != nil {
				return nil, fmt.Errorf("%w: gzip archive at byte %d: %v", ErrBadInitrd, pos, err)
			}
			pos += len(rest) - br.Len()
		case bytes.HasPrefix(rest, magicXz):
			// xz streams are a multiple of four bytes long, and the format's own stream padding
			// (zeros in groups of four) may follow: hand the decoder everything up to the last
			// non-zero byte, rounded up to four. It reads concatenated xz streams to the end.
			end := len(bytes.TrimRight(rest, "\x00"))
			end = min(len(rest), (end+3)&^3)
			zr, err := xz.NewReader(bytes.NewReader(rest[:end]))
			if err != nil {
				return nil, fmt.Errorf("%w: xz archive at byte %d: %v", ErrBadInitrd, pos, err)
			}
			if err := readCompressed(zr, ird); err != nil {
				return nil, fmt.Errorf("%w: xz archive at byte %d: %v", ErrBadInitrd, pos, err)
			}
			pos = len(area)
		case bytes.HasPrefix(rest, magicZstd):
			return nil, fmt.Errorf("%w: zstd archive at byte %d is not supported", ErrBadInitrd, pos)
		default:
			return nil, fmt.Errorf("%w: unknown data at byte %d", ErrBadInitrd, pos)
		}
	}
}

// readCompressed decompresses one archive and reads the cpio archives it holds.
func readCompressed(r io.Reader, ird *Initrd) error {
	data, err := io.ReadAll(io.LimitReader(r, maxUnpacked+1))
	if err != nil {
		return err
	}
	if len(data) > maxUnpacked {
		return fmt.Errorf("unpacks to more than %d bytes", maxUnpacked)
	}
	for pos := skipZeros(data, 0); pos < len(data); pos = skipZeros(data, pos) {
		if !bytes.HasPrefix(data[pos:], magicCpio) {
			return fmt.Errorf("unknown data at byte %d of the unpacked archive", pos)
		}
		n, err := readCpio(data[pos:], ird)
		if err != nil {
			return err
		}
		pos += n
	}
	return nil
}

// readCpio reads one newc archive up to its trailer and returns how many bytes it used (the
// trailer's name padding excepted: it is zeros, which the callers skip).
func readCpio(b []byte, ird *Initrd) (int, error) {
	br := bytes.NewReader(b)
	cr := cpio.NewReader(br)
	for {
		h, err := cr.Next()
		if err == io.EOF {
			return len(b) - br.Len(), nil
		}
		if err != nil {
			return 0, err
		}
		if !h.Mode.IsRegular() {
			continue
		}
		data, err := io.ReadAll(cr)
		if err != nil {
			return 0, err
		}
		if int64(len(data)) != h.Size {
			return 0, fmt.Errorf("%s: truncated", h.Name)
		}
		ird.Set(h.Name, data)
	}
}

func skipZeros(b []byte, pos int) int {
	for pos < len(b) && b[pos] == 0 {
		pos++
	}
	return pos
}

// Archive writes the files as the kernel and coreos-installer expect them: one newc cpio archive,
// each file (mode 0600) preceded by its parent directories (0755), xz-compressed with a CRC32
// check (the only check the kernel's xz decoder verifies). No files give no bytes. The output is
// a function of the files alone: no times, inodes in order.
func (i *Initrd) Archive() ([]byte, error) {
	if len(i.files) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	xw, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	cw := cpio.NewWriter(xw)
	var cwd []string
	for _, name := range i.Names() {
		parent := strings.Split(name, "/")
		parent = parent[:len(parent)-1]
		common := 0
		for common < len(cwd) && common < len(parent) && cwd[common] == parent[common] {
			common++
		}
		cwd = cwd[:common]
		for _, dir := range parent[common:] {
			cwd = append(cwd, dir)
			if err := cw.WriteHeader(&cpio.Header{Name: strings.Join(cwd, "/"), Mode: cpio.TypeDir | 0o755, Links: 2}); err != nil {
				return nil, err
			}
		}
		data := i.files[name]
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | 0o600, Links: 1, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := cw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	if err := xw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
