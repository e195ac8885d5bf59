// Package inputfile is kiln's one bounded read of a file a user names (a spec, a snippet, a unit
// file, a PKI file): only regular files are read, never more than a limit, and a FIFO, a device
// or a folder is refused at once instead of hanging or growing memory without end.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Limits for the inputs kiln reads.
const (
	// SpecLimit bounds a cluster spec.
	SpecLimit = 4 << 20
	// SnippetLimit bounds a Butane snippet or a unit file the spec names.
	SnippetLimit = 1 << 20
	// PKILimit bounds a certificate or key file.
	PKILimit = 64 << 10
	// ConfigLimit bounds an Ignition config given to kiln (kiln iso embed -i).
	ConfigLimit = 16 << 20
)

// The errors of reading an input; tests compare against these values.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// Read returns the contents of the regular file at path (symlinks followed) when it holds at most
// max bytes. Errors are *os.PathError values naming the path; a larger file's wraps ErrTooLarge
// and names the limit; a FIFO's, socket's, device's or folder's wraps ErrNotRegular.
func Read(path string, max int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, kind(fi.Mode()))}
	}
	if fi.Size() > max {
		return nil, tooLarge(path, max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max { // grew while being read
		return nil, tooLarge(path, max)
	}
	return data, nil
}

// ReadFrom reads all of r, named name in errors, refusing more than max bytes (standard input).
func ReadFrom(r io.Reader, name string, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, tooLarge(name, max)
	}
	return data, nil
}

func tooLarge(path string, max int64) error {
	return &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, max)}
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return m.Type().String()
	}
}
