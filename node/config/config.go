// Package config is the contract between the generator and kiln-node: the daemon's
// configuration file, /etc/kiln/node.json, and the units manifest. The generator writes them for
// every node; the daemon reads them and lets flags override any field of the configuration.
//
// Both are JSON: the generator writes them, and the daemon reads them with the standard
// library's decoder rather than a YAML parser, which would be 0.3 MB more of the binary and so
// of every node's resident memory (BenchmarkFootprint).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// DefaultPath is where the generator puts the file on every node.
const DefaultPath = "/etc/kiln/node.json"

// Config is the whole of /etc/kiln/node.json.
type Config struct {
	// MachineID defaults to the contents of /etc/machine-id.
	MachineID string `json:"machineID,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	// DataDir keeps the daemon's state across restarts (boot IDs, pending reboots).
	DataDir  string            `json:"dataDir,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// OS and Channel are reported in the machine registry.
	OS      string `json:"os,omitempty"`
	Channel string `json:"channel,omitempty"`

	Etcd   Etcd   `json:"etcd"`
	Reboot Reboot `json:"reboot"`

	// FleetLockListen is the address of the FleetLock server (strategy fleetlock); empty: off.
	FleetLockListen string `json:"fleetlockListen,omitempty"`
	// MetricsListen is the address of the Prometheus endpoint; empty: off.
	MetricsListen string `json:"metricsListen,omitempty"`
	// Executor runs units: systemd (D-Bus) or exec (child processes, for development).
	Executor string `json:"executor,omitempty"`
	// UnitsDir holds the cluster's units that the generator placed on the node; kiln-node
	// submits them to the cluster on first start.
	UnitsDir string `json:"unitsDir,omitempty"`
	// LeaseTTL is the machine lease's time to live, as a Go duration ("10s").
	LeaseTTL string `json:"leaseTTL,omitempty"`
}

// Etcd says how to reach the cluster's etcd, always with the client certificate.
type Etcd struct {
	Endpoints []string `json:"endpoints"`
	CA        string   `json:"ca"`
	Cert      string   `json:"cert"`
	Key       string   `json:"key"`
}

// Reboot is the reboot strategy and its limits.
type Reboot struct {
	// Strategy is etcd-lock, fleetlock, reboot or off.
	Strategy string `json:"strategy"`
	// Group is the semaphore group of this machine ("default" when empty).
	Group string `json:"group,omitempty"`
	// MaxConcurrent is the number of machines of the group that may reboot at once.
	MaxConcurrent int `json:"maxConcurrent,omitempty"`
	// Window restricts reboots to a weekly window; nil: any time.
	Window *Window `json:"window,omitempty"`
	// Command, when set, reboots instead of logind (development: a shell command line).
	Command string `json:"command,omitempty"`
	// RequiredFile is the file that asks for a reboot while it exists ("/run/reboot-required").
	RequiredFile string `json:"requiredFile,omitempty"`
	// BootMarker is the file that holds this boot's random marker ("/run/kiln-node/boot-marker";
	// "none": the kernel's boot ID alone). It must be on a filesystem that every boot starts
	// empty (a tmpfs), so that a restarted container, whose kernel boot ID is the host's, is
	// seen to have rebooted.
	BootMarker string `json:"bootMarker,omitempty"`
	// CheckInterval is how often the daemon checks for a needed reboot, as a Go duration ("10s").
	CheckInterval string `json:"checkInterval,omitempty"`
}

// Window is a reboot window in locksmith's form: Start "Sun 04:00" (days optional, or a
// comma-separated list such as "Mon,Wed 03:30"), Length a Go duration ("2h").
type Window struct {
	Start  string `json:"start"`
	Length string `json:"length"`
}

// Load reads the file at path; unknown keys are an error.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(raw, path)
}

// Parse reads a config from raw; name is used in errors, with the line and column where the
// decoder gives an offset.
func Parse(raw []byte, name string) (*Config, error) {
	var c Config
	if err := decodeStrict(raw, &c); err != nil {
		if at := where(raw, err); at != "" {
			return nil, fmt.Errorf("%s:%s: %w", name, at, err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// decodeStrict decodes one JSON value from raw into v: unknown fields and anything after the
// value are errors.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}

// where is "LINE:COL" (both from 1) in raw of a JSON decoding error, or "" when the error
// gives no offset.
func where(raw []byte, err error) string {
	var off int64
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset - 1 // Offset is just past the byte that is wrong
	case errors.As(err, &typ):
		off = typ.Offset // just past the value of the wrong type
	default:
		return ""
	}
	off = min(max(off, 0), int64(len(raw)))
	before := raw[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return fmt.Sprintf("%d:%d", line, col)
}

// Marshal renders c as indented JSON; the generator writes this to every node.
func (c *Config) Marshal() ([]byte, error) {
	return marshal(c)
}

func marshal(v any) ([]byte, error) {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}
