// Package config is kiln-node's configuration file, /etc/kiln/node.yaml. The generator writes it
// for every node; the daemon reads it and lets flags override any field.
package config

import (
	"bytes"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where the generator puts the file on every node.
const DefaultPath = "/etc/kiln/node.yaml"

// Config is the whole of /etc/kiln/node.yaml.
type Config struct {
	// MachineID defaults to the contents of /etc/machine-id.
	MachineID string `yaml:"machineID,omitempty"`
	Hostname  string `yaml:"hostname,omitempty"`
	// DataDir keeps the daemon's state across restarts (boot IDs, pending reboots).
	DataDir  string            `yaml:"dataDir,omitempty"`
	Metadata map[string]string `yaml:"metadata,omitempty"`
	// OS and Channel are reported in the machine registry.
	OS      string `yaml:"os,omitempty"`
	Channel string `yaml:"channel,omitempty"`

	Etcd   Etcd   `yaml:"etcd"`
	Reboot Reboot `yaml:"reboot"`

	// FleetLockListen is the address of the FleetLock server (strategy fleetlock); empty: off.
	FleetLockListen string `yaml:"fleetlockListen,omitempty"`
	// MetricsListen is the address of the Prometheus endpoint; empty: off.
	MetricsListen string `yaml:"metricsListen,omitempty"`
	// Executor runs units: systemd (D-Bus) or exec (child processes, for development).
	Executor string `yaml:"executor,omitempty"`
	// UnitsDir holds the cluster's units that the generator placed on the node; kiln-node
	// submits them to the cluster on first start.
	UnitsDir string `yaml:"unitsDir,omitempty"`
	// LeaseTTL is the machine lease's time to live, as a Go duration ("10s").
	LeaseTTL string `yaml:"leaseTTL,omitempty"`
}

// Etcd says how to reach the cluster's etcd, always with the client certificate.
type Etcd struct {
	Endpoints []string `yaml:"endpoints"`
	CA        string   `yaml:"ca"`
	Cert      string   `yaml:"cert"`
	Key       string   `yaml:"key"`
}

// Reboot is the reboot strategy and its limits.
type Reboot struct {
	// Strategy is etcd-lock, fleetlock, reboot or off.
	Strategy string `yaml:"strategy"`
	// Group is the semaphore group of this machine ("default" when empty).
	Group string `yaml:"group,omitempty"`
	// MaxConcurrent is the number of machines of the group that may reboot at once.
	MaxConcurrent int `yaml:"maxConcurrent,omitempty"`
	// Window restricts reboots to a weekly window; nil: any time.
	Window *Window `yaml:"window,omitempty"`
	// Command, when set, reboots instead of logind (development: a shell command line).
	Command string `yaml:"command,omitempty"`
	// RequiredFile is the file that asks for a reboot while it exists ("/run/reboot-required").
	RequiredFile string `yaml:"requiredFile,omitempty"`
	// BootMarker is the file that holds this boot's random marker ("/run/kiln-node/boot-marker";
	// "none": the kernel's boot ID alone). It must be on a filesystem that every boot starts
	// empty (a tmpfs), so that a restarted container, whose kernel boot ID is the host's, is
	// seen to have rebooted.
	BootMarker string `yaml:"bootMarker,omitempty"`
	// CheckInterval is how often the daemon checks for a needed reboot, as a Go duration ("10s").
	CheckInterval string `yaml:"checkInterval,omitempty"`
}

// Window is a reboot window in locksmith's form: Start "Sun 04:00" (days optional, or a
// comma-separated list such as "Mon,Wed 03:30"), Length a Go duration ("2h").
type Window struct {
	Start  string `yaml:"start"`
	Length string `yaml:"length"`
}

// Load reads the file at path; unknown keys are an error.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(raw, path)
}

// Parse reads a config from raw; name is used in errors.
func Parse(raw []byte, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// Marshal renders c as YAML; the generator writes this to every node.
func (c *Config) Marshal() ([]byte, error) {
	return yaml.Marshal(c)
}
