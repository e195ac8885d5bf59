package reboot

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// State is what survives the reboot in the data directory: that this machine holds a slot
// and decided to reboot in boot PendingBoot.
type State struct {
	PendingBoot     string    `json:"pendingBoot,omitempty"`
	Group           string    `json:"group,omitempty"`
	Source          string    `json:"source,omitempty"`
	RequestRevision int64     `json:"requestRevision,omitempty"`
	Since           time.Time `json:"since,omitzero"`
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

// Save writes the state atomically and durably (write, fsync, rename, fsync the directory).
func (f StateFile) Save(s State) error {
	dir := filepath.Dir(string(f))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	raw, _ := json.Marshal(s)
	tmp, err := os.CreateTemp(dir, ".reboot-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), string(f)); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
