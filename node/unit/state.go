package unit

import "fmt"

// State is the state an operator wants a unit in, cluster-wide (fleet's target states).
type State string

const (
	// StateInactive: known to the cluster, scheduled nowhere.
	StateInactive State = "inactive"
	// StateLoaded: scheduled to a machine and loaded into its systemd, not started.
	StateLoaded State = "loaded"
	// StateLaunched: scheduled, loaded and started.
	StateLaunched State = "launched"
)

// States lists the desired states from the least to the most active.
var States = []State{StateInactive, StateLoaded, StateLaunched}

// ParseState reads a desired state; anything but the three names is an error.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StateInactive, StateLoaded, StateLaunched:
		return st, nil
	}
	return "", &Error{Err: ErrState, Detail: fmt.Sprintf("%q (expected inactive, loaded or launched)", s)}
}

// Valid tells whether s is one of the three states.
func (s State) Valid() bool { _, err := ParseState(string(s)); return err == nil }

// Scheduled tells whether a unit in this state needs a machine.
func (s State) Scheduled() bool { return s == StateLoaded || s == StateLaunched }

func (s State) String() string { return string(s) }

// MarshalText writes the state's name, refusing invalid states.
func (s State) MarshalText() ([]byte, error) {
	if _, err := ParseState(string(s)); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// UnmarshalText reads a state's name (JSON, YAML).
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}
