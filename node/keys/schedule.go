package keys

import (
	"time"

	"github.com/kiln-cluster/kiln/node/unit"
)

// Assignment is the value at Placement(machine, unit): the engine's decision that a unit runs on
// a machine, in the state the operator wants. The engine writes it (compare-and-swap); the
// machine's agent only reads it.
type Assignment struct {
	// Unit is the unit's name ("my-app@1.service").
	Unit string `json:"unit"`
	// Hash names the unit file's text at UnitFile(Hash). For an instance it is the template's
	// file (instances share their template's hash), which the agent writes under the
	// template's name ("my-app@.service").
	Hash unit.Hash `json:"hash"`
	// State is what the agent makes of the unit: loaded (file written, not started) or
	// launched (started).
	State unit.State `json:"state"`
	// Lease is the machine's registry lease (the lease of Machine(machine)) when the engine
	// placed the unit: a fencing token. An agent runs a placement only while its own lease is
	// that one, so that a placement made before the machine's lease expired is not run under
	// the next lease until the engine has written it again. 0 means no token: the agent runs
	// the placement under any lease.
	Lease int64 `json:"lease,omitempty"`
}

// UnitReport is the value at UnitState(machine, unit): what the machine's agent sees of a unit
// that is placed on it, written under the machine's lease (so that it is gone when the machine
// is) and only when it changes.
type UnitReport struct {
	Unit string `json:"unit"`
	// Hash is the unit file's hash the agent runs.
	Hash unit.Hash `json:"hash"`
	// LoadState, ActiveState and SubState are systemd's (loaded / not-found / error;
	// active / activating / deactivating / inactive / failed; running, dead, auto-restart...),
	// whichever executor runs the unit.
	LoadState   string `json:"loadState"`
	ActiveState string `json:"activeState"`
	SubState    string `json:"subState"`
	// Since is when ActiveState took its value, as the agent saw it.
	Since time.Time `json:"since,omitzero"`
	// Error is the agent's last failure with the unit (fetching its file, starting it), if any.
	Error string `json:"error,omitempty"`
}
