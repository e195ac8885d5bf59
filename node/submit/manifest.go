package submit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kiln-cluster/kiln/node/config"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Planned is one unit the manifest asks for.
type Planned struct {
	Unit  *unit.Unit
	State unit.State
}

// ReadDir reads dir's manifest (config.Manifest, written by the generator) and unit files and returns the units to ensure, and a digest of
// all of it (to remember that this content was submitted). A directory without a manifest
// gives nothing.
func ReadDir(dir string) ([]Planned, string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, config.ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	m, err := config.ParseManifest(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w: %v", filepath.Join(dir, config.ManifestName), ErrManifest, err)
	}
	sum := sha256.New()
	sum.Write(raw)
	var out []Planned
	var errs []error
	for _, mu := range m.Units {
		state := unit.StateLaunched
		if mu.State != "" {
			if state, err = unit.ParseState(mu.State); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", mu.Name, err))
				continue
			}
		}
		if filepath.Base(mu.Name) != mu.Name {
			errs = append(errs, fmt.Errorf("%s: %w: a unit name, not a path", mu.Name, ErrManifest))
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, mu.Name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sum.Write(text)
		u, err := Parse(File{Name: mu.Name, Text: text})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !u.ParseName().IsTemplate() {
			if mu.Instances > 0 {
				errs = append(errs, fmt.Errorf("%s: %w: instances need a template unit (name@.type)", mu.Name, ErrManifest))
				continue
			}
			out = append(out, Planned{Unit: u, State: state})
			continue
		}
		out = append(out, Planned{Unit: u, State: unit.StateInactive})
		for i := 1; i <= mu.Instances; i++ {
			iu, err := u.Instantiate(strconv.Itoa(i))
			if err != nil {
				errs = append(errs, err)
				break
			}
			out = append(out, Planned{Unit: iu, State: state})
		}
	}
	return out, hex.EncodeToString(sum.Sum(nil)), errors.Join(errs...)
}

// EnsureAll submits the planned units with Ensure: new units get their state, known ones are
// left alone.
func EnsureAll(ctx context.Context, kv KV, plan []Planned) ([]Result, error) {
	results := make([]Result, len(plan))
	err := each(ctx, len(plan), func(ctx context.Context, i int) error {
		var err error
		results[i], err = Ensure(ctx, kv, plan[i].Unit, plan[i].State)
		return err
	})
	return results, err
}
