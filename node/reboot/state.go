package reboot

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// State is what survives the reboot in the data directory: that this machine holds a slot
// and decided to reboot in boot PendingBoot.
type State struct {
	PendingBoot     string    `json:"pendingBoot,omitempty"`
	Group           string    `json:"group,omitempty"`
	Source          string    `json:"source,omitempty"`
	RequestRevision int64     `json:"requestRevision,omitempty"`
	Since           time.Time `json:"since,omitzero"`
	// Units are the units the machine ran when it took the slot: the slot is released only
	// once they run again, here or where the scheduler moved them (Config.UnitsBack).
	Units []string `json:"units,omitempty"`
}

// StateFile is the path of the state (DATA_DIR/reboot.json).
type StateFile string

// StateFileIn returns the state file of a data directory.
func StateFileIn(dataDir string) StateFile { return StateFile(filepath.Join(dataDir, "reboot.json")) }

// Load reads the state; a missing file is the zero State.
func (f StateFile) Load() (State, error) {
	var s State
	raw, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(raw, &s)
}

// Save writes the state atomically and durably: the slot's release after the reboot depends
// on it.
func (f StateFile) Save(s State) error {
	if err := os.MkdirAll(filepath.Dir(string(f)), 0o700); err != nil {
		return err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.Write(string(f), raw, 0o600)
}
