package config

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The units the generator places on every node: the unit files and a manifest that says what to
// start of them, in DefaultUnitsDir. kiln render writes them; kiln-node submits them to the
// cluster on first start (node/submit). This file is the contract between the two.
const (
	// DefaultUnitsDir is where the generator puts the cluster's unit files and the manifest.
	DefaultUnitsDir = "/etc/kiln/units"
	// ManifestName is the manifest's file name in the units folder.
	ManifestName = "units.json"
	// DefaultManifestPath is the manifest on a node.
	DefaultManifestPath = DefaultUnitsDir + "/" + ManifestName
)

// Manifest is the list of the cluster's units, in the order of the spec.
type Manifest struct {
	Units []ManifestUnit `json:"units"`
}

// ManifestUnit is one unit file of the units folder and what to start of it: a template
// (name@.service) with Instances starts instances 1..Instances; State is launched, loaded or
// inactive, and empty means launched.
type ManifestUnit struct {
	// Name is the unit file's name in the units folder (a name, not a path).
	Name      string `json:"name"`
	Instances int    `json:"instances,omitempty"`
	State     string `json:"state,omitempty"`
}

// ParseManifest reads a manifest. Fields it does not know are ignored: a node may be older than
// the generator.
func ParseManifest(raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&m); err != nil {
		if at := where(raw, err); at != "" {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		return nil, err
	}
	return &m, nil
}

// Marshal renders m as indented JSON; the generator writes this to every node.
func (m *Manifest) Marshal() ([]byte, error) {
	return marshal(m)
}
