// Package executor runs the units the scheduler places on a machine. Executor is what the
// agent's reconciler (node/reconcile) needs of a service manager, and no more; two
// implementations behave the same:
//
//   - Systemd drives the machine's systemd over D-Bus (go-systemd): unit files under
//     /run/systemd/system (runtime: gone at reboot, as with fleet), daemon-reload,
//     StartUnit/StopUnit in "replace" mode, ListUnitsByNames, and D-Bus signals for changes;
//     every unit is bound (BindsTo=) to kiln-node's own service, so that it dies with the agent.
//   - the exec executor (package node/executor/exec) runs a service's commands as child
//     processes, each in its own process group, with systemd's states, Restart=,
//     RestartSec=, TimeoutStopSec= and start limits: for development and for tests that run
//     many machines on one host.
//
// Both only touch unit files they wrote: each starts with a marker line holding the unit's
// hash ("# kiln-node unit <hash>"), which Files reads back.
package executor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Executor is a machine's service manager as the reconciler uses it.
type Executor interface {
	// Files returns the unit files the executor wrote (plain units and templates) with the
	// hash given to WriteFile; files it did not write are not listed.
	Files() (map[string]unit.Hash, error)
	// WriteFile writes (or replaces) the file of a plain unit or a template; it takes effect
	// at the next Reload.
	WriteFile(name string, hash unit.Hash, text []byte) error
	// RemoveFile removes a file written by WriteFile; a missing file is no error.
	RemoveFile(name string) error
	// Reload makes the manager read the unit files again (systemd's daemon-reload).
	Reload(ctx context.Context) error
	// Start starts a unit (an instance of a template by its instance's name) and waits for
	// the start job: nil once the unit is active (or activating again after a failure that
	// its Restart= handles), an error wrapping ErrJobFailed when it failed.
	Start(ctx context.Context, name string) error
	// Stop stops a unit and waits until it is inactive or failed. When ctx ends first, the
	// unit's processes are killed with SIGKILL, and Stop returns once they are gone.
	Stop(ctx context.Context, name string) error
	// Status returns the state of each named unit, in the order of names; a unit the manager
	// does not know is LoadState not-found, ActiveState inactive.
	Status(ctx context.Context, names []string) ([]Status, error)
	// Watch calls changed (from one goroutine) whenever a unit's state may have changed, until
	// ctx ends; it returns nil then, or an error when it cannot watch.
	Watch(ctx context.Context, changed func()) error
}

// Status is a unit's state, in systemd's words.
type Status struct {
	Name string
	// LoadState is loaded, not-found or error.
	LoadState string
	// ActiveState is active, activating, deactivating, inactive or failed.
	ActiveState string
	// SubState is the type's detail: running, exited, dead, failed, auto-restart, start-pre...
	SubState string
}

// States of a unit.
const (
	LoadLoaded   = "loaded"
	LoadNotFound = "not-found"
	LoadError    = "error"

	Active       = "active"
	Activating   = "activating"
	Deactivating = "deactivating"
	Inactive     = "inactive"
	Failed       = "failed"
)

// Running tells whether the unit is started, from the manager's point of view: active,
// activating (auto-restart included) or deactivating.
func (s Status) Running() bool {
	return s.ActiveState == Active || s.ActiveState == Activating || s.ActiveState == Deactivating
}

// MarkerPrefix starts the first line of every unit file an executor writes.
const MarkerPrefix = "# kiln-node unit "

// fileText is the text written for a unit: the marker line, then the unit.
func fileText(hash unit.Hash, text []byte) []byte {
	var b bytes.Buffer
	b.WriteString(MarkerPrefix + hash.String() + "\n")
	b.Write(text)
	return b.Bytes()
}

// readMarker returns the hash in the marker line of the file at path, and false when the file
// has none (it is not kiln's).
func readMarker(path string) (unit.Hash, bool) {
	f, err := os.Open(path)
	if err != nil {
		return unit.Hash{}, false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return unit.Hash{}, false
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), MarkerPrefix)
	if !ok {
		return unit.Hash{}, false
	}
	h, err := unit.ParseHash(rest)
	return h, err == nil
}

// ListMarked lists the files of dir written by an executor.
func ListMarked(dir string) (map[string]unit.Hash, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]unit.Hash{}, nil
		}
		return nil, err
	}
	out := map[string]unit.Hash{}
	for _, e := range entries {
		if !e.Type().IsRegular() || unit.ValidateName(e.Name()) != nil {
			continue
		}
		if h, ok := readMarker(filepath.Join(dir, e.Name())); ok {
			out[e.Name()] = h
		}
	}
	return out, nil
}

// fileName checks that name can be a unit file kiln writes: a plain unit or a template.
func fileName(name string) error {
	n, err := unit.ParseName(name)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrName, name)
	}
	if n.IsInstance() {
		return fmt.Errorf("%w: %s is an instance; write its template %s", ErrName, name, n.Template())
	}
	return nil
}

// WriteMarked writes a unit file atomically and durably (internal/atomicfile), mode 0644.
// An existing file without the marker is not replaced.
func WriteMarked(dir, name string, hash unit.Hash, text []byte) error {
	if err := fileName(name); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		if _, ok := readMarker(path); !ok {
			return fmt.Errorf("%w: %s", ErrNotOwned, path)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, fileText(hash, text), 0o644)
}

// RemoveMarked removes a unit file written by WriteMarked.
func RemoveMarked(dir, name string) error {
	if err := fileName(name); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	if _, ok := readMarker(path); !ok {
		return fmt.Errorf("%w: %s", ErrNotOwned, path)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
