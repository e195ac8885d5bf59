// Package statefile keeps a driver's record of what it made in the cluster's state folder: one
// JSON file per driver, written in one step (mode 0600), so that `kiln down` needs no flags.
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// Load reads dir/name into a new T; nil (and no error) when there is no such file.
func Load[T any](dir, name string) (*T, error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Save writes v to dir/name, creating dir (mode 0700) when missing.
func Save(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, name), append(b, '\n'), 0o600)
}

// Remove deletes dir/name; a missing file is no error.
func Remove(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
