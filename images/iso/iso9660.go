package iso

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/kdomanski/iso9660"
)

// errNotFound means a path is not in the ISO 9660 tree.
var errNotFound = errors.New("not found in the iso 9660 tree")

// extent is where a file's data lies in the image.
type extent struct {
	offset, length int64
}

// tree looks files up in an image's ISO 9660 directories.
type tree struct {
	img *iso9660.Image
}

func openTree(r io.ReaderAt) (*tree, error) {
	img, err := iso9660.OpenImage(r)
	if err != nil {
		return nil, fmt.Errorf("reading iso 9660 volume: %w", err)
	}
	return &tree{img: img}, nil
}

// lookup finds the file at p (slash-separated, case-insensitive). A component matches either the
// Rock Ridge name or the plain ISO 9660 identifier (upper case, names cut to 8.3), so that the
// paths that coreos-installer's JSON files hold resolve on images mastered with or without Rock
// Ridge.
func (t *tree) lookup(p string) (extent, error) {
	dir, err := t.img.RootDir()
	if err != nil {
		return extent{}, fmt.Errorf("reading iso 9660 root: %w", err)
	}
	parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	for i, part := range parts {
		children, err := dir.GetChildren()
		if err != nil {
			return extent{}, fmt.Errorf("reading iso 9660 directory: %w", err)
		}
		var next *iso9660.File
		for _, c := range children {
			if nameMatches(c.Name(), part) {
				next = c
				break
			}
		}
		if next == nil {
			return extent{}, fmt.Errorf("%s: %w", p, errNotFound)
		}
		if i < len(parts)-1 {
			if !next.IsDir() {
				return extent{}, fmt.Errorf("%s: %w", p, errNotFound)
			}
			dir = next
			continue
		}
		if next.IsDir() {
			return extent{}, fmt.Errorf("%s is a directory", p)
		}
		// The library hides the extent's location but hands out a section of the image.
		sr, ok := next.Reader().(*io.SectionReader)
		if !ok {
			return extent{}, fmt.Errorf("%s: cannot locate file data in the image", p)
		}
		_, off, n := sr.Outer()
		return extent{offset: off, length: n}, nil
	}
	return extent{}, fmt.Errorf("%s: %w", p, errNotFound)
}

// nameMatches compares a directory entry's name with a wanted path component.
func nameMatches(got, want string) bool {
	return strings.EqualFold(got, want) || strings.EqualFold(got, shortName(want))
}

// shortName cuts a name to the ISO 9660 level 1 form that mastering tools write (8.3).
func shortName(name string) string {
	base, ext, dotted := strings.Cut(name, ".")
	if i := strings.LastIndex(name, "."); i >= 0 {
		base, ext, dotted = name[:i], name[i+1:], true
	}
	if len(base) > 8 {
		base = base[:8]
	}
	if !dotted {
		return base
	}
	if len(ext) > 3 {
		ext = ext[:3]
	}
	return base + "." + ext
}
