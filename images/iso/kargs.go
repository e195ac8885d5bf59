package iso

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

const (
	kargsInfoPath = "coreos/kargs.json"
	// The legacy header: 72 bytes at the end of the 32 KiB system area, before the 24-byte
	// initrd header: "coreKarg", area length, default-kargs offset, up to six area offsets
	// (little-endian uint64 each).
	kargsHeaderOffset = 32768 - 24 - 72
	kargsHeaderSize   = 72
	kargsHeaderMagic  = "coreKarg"
	kargsMaxAreas     = 6
	kargsMaxSize      = 2048
	kargsDefaultPad   = '#'
	kargsDefaultEnd   = '\n'
)

// kargsInfo is coreos/kargs.json.
type kargsInfo struct {
	Default string `json:"default"`
	Files   []struct {
		Path   string  `json:"path"`
		Offset int64   `json:"offset"`
		Pad    *string `json:"pad"`
		End    *string `json:"end"`
	} `json:"files"`
	Size int `json:"size"`
}

// kargRegion is one copy of the kernel arguments in a boot config file: the arguments, the end
// character, then pad characters up to the area size.
type kargRegion struct {
	offset   int64
	pad, end byte
}

// kargAreas are an image's kernel-argument areas; they all hold the same arguments.
type kargAreas struct {
	size    int
	def     string
	regions []kargRegion
	current string
}

// readKargAreas finds the kernel-argument areas through coreos/kargs.json, or else the legacy
// header in the system area. No areas give nil and no error.
func readKargAreas(r io.ReaderAt, t *tree, size int64) (*kargAreas, error) {
	ext, err := t.lookup(kargsInfoPath)
	if errors.Is(err, errNotFound) {
		return readKargHeader(r, size)
	}
	if err != nil {
		return nil, err
	}
	raw, err := readAt(r, ext.offset, ext.length, size)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", kargsInfoPath, err)
	}
	var info kargsInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadArea, kargsInfoPath, err)
	}
	if info.Size <= 0 || info.Size > kargsMaxSize {
		return nil, fmt.Errorf("%w: %s: size %d not in 1..%d", ErrBadArea, kargsInfoPath, info.Size, kargsMaxSize)
	}
	if len(info.Default) > info.Size {
		return nil, fmt.Errorf("%w: %s: default kernel arguments longer than the area (%d > %d)", ErrBadArea, kargsInfoPath, len(info.Default), info.Size)
	}
	areas := &kargAreas{size: info.Size, def: info.Default}
	for _, f := range info.Files {
		fe, err := t.lookup(f.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadArea, kargsInfoPath, err)
		}
		if f.Offset < 0 || f.Offset+int64(info.Size) > fe.length {
			return nil, fmt.Errorf("%w: %s: area at %d+%d outside %s", ErrBadArea, kargsInfoPath, f.Offset, info.Size, f.Path)
		}
		pad, err := oneChar(f.Pad, kargsDefaultPad)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: pad: %v", ErrBadArea, kargsInfoPath, err)
		}
		end, err := oneChar(f.End, kargsDefaultEnd)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: end: %v", ErrBadArea, kargsInfoPath, err)
		}
		areas.regions = append(areas.regions, kargRegion{offset: fe.offset + f.Offset, pad: pad, end: end})
	}
	sort.Slice(areas.regions, func(i, j int) bool { return areas.regions[i].offset < areas.regions[j].offset })
	return areas, areas.load(r, size)
}

// readKargHeader reads the legacy header of images made before kargs.json (2021).
func readKargHeader(r io.ReaderAt, size int64) (*kargAreas, error) {
	h, err := readAt(r, kargsHeaderOffset, kargsHeaderSize, size)
	if err != nil {
		return nil, nil // too small to have a system area: no kargs
	}
	if string(h[:8]) != kargsHeaderMagic {
		return nil, nil
	}
	length := binary.LittleEndian.Uint64(h[8:])
	if length == 0 || length > kargsMaxSize {
		return nil, fmt.Errorf("%w: kernel-argument area length %d not in 1..%d", ErrBadArea, length, kargsMaxSize)
	}
	areas := &kargAreas{size: int(length)}
	defRaw, err := readAt(r, int64(binary.LittleEndian.Uint64(h[16:])), int64(length), size)
	if err != nil {
		return nil, fmt.Errorf("%w: default kernel arguments: %v", ErrBadArea, err)
	}
	def, err := kargRegion{pad: kargsDefaultPad, end: kargsDefaultEnd}.parse(defRaw)
	if err != nil {
		return nil, err
	}
	areas.def = def
	for i := range kargsMaxAreas {
		off := binary.LittleEndian.Uint64(h[24+8*i:])
		if off == 0 {
			break
		}
		areas.regions = append(areas.regions, kargRegion{offset: int64(off), pad: kargsDefaultPad, end: kargsDefaultEnd})
	}
	return areas, areas.load(r, size)
}

// load reads every region and checks that they agree.
func (a *kargAreas) load(r io.ReaderAt, size int64) error {
	if len(a.regions) == 0 {
		return fmt.Errorf("%w: no kernel-argument areas listed", ErrBadArea)
	}
	for i, reg := range a.regions {
		raw, err := readAt(r, reg.offset, int64(a.size), size)
		if err != nil {
			return fmt.Errorf("%w: kernel-argument area: %v", ErrBadArea, err)
		}
		args, err := reg.parse(raw)
		if err != nil {
			return err
		}
		if i == 0 {
			a.current = args
		} else if args != a.current {
			return fmt.Errorf("%w: %q at byte %d, %q at byte %d", ErrKargsMismatch, a.current, a.regions[0].offset, args, reg.offset)
		}
	}
	return nil
}

func (reg kargRegion) parse(raw []byte) (string, error) {
	if !utf8.Valid(raw) {
		return "", fmt.Errorf("%w: invalid utf-8 in kernel-argument area at byte %d", ErrBadArea, reg.offset)
	}
	s := strings.TrimRight(string(raw), string(reg.pad))
	s = strings.TrimRight(s, string(reg.end))
	return strings.TrimSpace(s), nil
}

// set replaces the arguments and returns the bytes to write at each region's offset.
func (a *kargAreas) set(args string) ([]patch, error) {
	args = strings.TrimSpace(args)
	if len(args) >= a.size {
		return nil, fmt.Errorf("%w: %d bytes, room for %d", ErrKargsTooLarge, len(args)+1, a.size)
	}
	patches := make([]patch, 0, len(a.regions))
	for _, reg := range a.regions {
		b := bytes.Repeat([]byte{reg.pad}, a.size)
		copy(b, args)
		b[len(args)] = reg.end
		patches = append(patches, patch{offset: reg.offset, data: b})
	}
	a.current = args
	return patches, nil
}

func oneChar(s *string, def byte) (byte, error) {
	if s == nil {
		return def, nil
	}
	if len(*s) != 1 {
		return 0, fmt.Errorf("want one ascii character, got %q", *s)
	}
	return (*s)[0], nil
}

// KargsEdit is a change to kernel arguments, applied in the order of coreos-installer's: reset to
// the image's default, delete, append, then replace.
type KargsEdit struct {
	// Reset starts from the image's default arguments instead of the current ones.
	Reset bool
	// Delete removes each argument (or run of arguments) wherever it occurs.
	Delete []string
	// Append adds arguments at the end.
	Append []string
	// Replace changes KEY=OLD into KEY=NEW, written KEY=OLD=NEW.
	Replace []string
}

// Apply edits current (or def, with Reset). Arguments are compared whole, never as substrings.
func (e KargsEdit) Apply(current, def string) (string, error) {
	base := current
	if e.Reset {
		base = def
	}
	args := strings.Fields(base)
	for _, d := range e.Delete {
		args = deleteRun(args, strings.Fields(d))
	}
	for _, a := range e.Append {
		args = append(args, strings.Fields(a)...)
	}
	for _, r := range e.Replace {
		parts := strings.Split(strings.TrimSpace(r), "=")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return "", fmt.Errorf("%w: %q", ErrBadReplace, r)
		}
		old, repl := parts[0]+"="+parts[1], parts[0]+"="+parts[2]
		for i, a := range args {
			if a == old {
				args[i] = repl
			}
		}
	}
	return strings.Join(args, " "), nil
}

// deleteRun removes every occurrence of the run of arguments del.
func deleteRun(args, del []string) []string {
	if len(del) == 0 {
		return args
	}
	out := args[:0:0]
	for i := 0; i < len(args); {
		if i+len(del) <= len(args) && slices.Equal(args[i:i+len(del)], del) {
			i += len(del)
			continue
		}
		out = append(out, args[i])
		i++
	}
	return out
}
