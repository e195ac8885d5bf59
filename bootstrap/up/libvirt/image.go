package libvirt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/kiln-cluster/kiln/bootstrap/up"
)

// image is an OS disk image on the local disk.
type image struct {
	Path   string
	Format string // qcow2 or raw
	// VirtualSize is the size of the disk the image holds; Size the bytes of the file.
	VirtualSize, Size uint64
	SHA256            string
}

// qcow2Magic starts every qcow2 file; the virtual size is the big-endian uint64 at offset 24.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// inspectImage reads an image's format, sizes and SHA-256 (the name of its base volume).
func inspectImage(path string) (*image, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, up.ConfigError(err)
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, fmt.Errorf("%s: %w (an empty or special file)", path, ErrImageFormat)
	}
	img := &image{Path: path, Format: "raw", Size: uint64(st.Size()), VirtualSize: uint64(st.Size())}
	var hdr [32]byte
	if n, _ := io.ReadFull(f, hdr[:]); n == len(hdr) && string(hdr[:4]) == string(qcow2Magic) {
		img.Format = "qcow2"
		img.VirtualSize = binary.BigEndian.Uint64(hdr[24:32])
	} else if isCompressed(hdr[:n]) {
		return nil, fmt.Errorf("%s: %w (it is compressed: unpack it first)", path, ErrImageFormat)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	img.SHA256 = hex.EncodeToString(h.Sum(nil))
	return img, nil
}

// isCompressed tells bzip2, gzip, xz and zstd files, which are not disk images yet.
func isCompressed(b []byte) bool {
	for _, m := range []string{"BZh", "\x1f\x8b", "\xfd7zXZ\x00", "\x28\xb5\x2f\xfd"} {
		if strings.HasPrefix(string(b), m) {
			return true
		}
	}
	return false
}

// baseVolumeName names the volume an image is uploaded into, by its checksum: one upload per
// image and pool, shared by every cluster.
func (img *image) baseVolumeName() string {
	return "kiln-base-" + img.SHA256[:16] + "." + img.Format
}

// parseSize reads 21474836480, 20G, 20GiB, 512M (binary units, as qemu-img does); "" is 0.
func parseSize(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift > 0 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 || n > (1<<63)>>shift {
		return 0, fmt.Errorf("%w, not %q", ErrDiskSize, s)
	}
	return n << shift, nil
}
