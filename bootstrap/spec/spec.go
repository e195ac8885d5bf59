// Package spec is kiln's cluster spec: the one YAML file from which every node's config is made.
// Parse reads it keeping every value's line and column, Defaults fills what a short spec leaves out,
// and Validate reports every problem at once against the line that caused it.
package spec

import (
	"github.com/kiln-cluster/kiln/images/catalog"
)

// Spec is a whole cluster spec file.
type Spec struct {
	Cluster Cluster `yaml:"cluster"`
	Nodes   []Node  `yaml:"nodes"`
	// Snippets are the user's own Butane files, merged last into every node's config.
	Snippets []string `yaml:"snippets"`

	// File is the path the spec was read from; relative paths in it are relative to its folder.
	File string `yaml:"-"`
	// src keeps the parsed document to find the line and column of every value.
	src *source `yaml:"-"`
}

// Cluster holds what all nodes share.
type Cluster struct {
	Name              string   `yaml:"name"`
	OS                string   `yaml:"os"`
	Channel           string   `yaml:"channel"`
	SSHAuthorizedKeys []string `yaml:"sshAuthorizedKeys"`
	Etcd              Etcd     `yaml:"etcd"`
	Updates           Updates  `yaml:"updates"`
	Runtime           Runtime  `yaml:"runtime"`
	Units             []Unit   `yaml:"units"`
	Network           Network  `yaml:"network"`
	// KilnNode says where nodes fetch the kiln-node binary from.
	KilnNode Binary `yaml:"kilnNode"`
}

// Etcd is the cluster's etcd: which nodes are members and how they are reached.
type Etcd struct {
	// Members names the nodes that run an etcd member; default: the first three nodes (one if fewer).
	Members    []string `yaml:"members"`
	ClientPort int      `yaml:"clientPort"`
	PeerPort   int      `yaml:"peerPort"`
	// Image is the etcd container image the runtime runs, unless Binary is given.
	Image string `yaml:"image"`
	// Binary, when its URL is set, is fetched by Ignition and run natively instead of Image
	// (an air-gapped cluster serves it from `kiln pxe serve`'s assets).
	Binary Binary `yaml:"binary"`
}

// Updates is the OS update and reboot policy.
type Updates struct {
	// Strategy is etcd-lock, fleetlock, reboot or off.
	Strategy      string `yaml:"strategy"`
	MaxConcurrent int    `yaml:"maxConcurrent"`
	// Group is the reboot semaphore group of the nodes that do not name their own.
	Group  string  `yaml:"group"`
	Window *Window `yaml:"window"`
	// Server is Flatcar's update server URL, or "disabled"; empty: the OS's default.
	Server string `yaml:"server"`
}

// Window is a weekly reboot window: Start "Sun 04:00" (days optional, "Mon,Thu 03:00"), Length "2h".
type Window struct {
	Start  string `yaml:"start"`
	Length string `yaml:"length"`
}

// Runtime is the container runtime; in YAML either a name ("docker") or a mapping.
type Runtime struct {
	Engine string `yaml:"engine"`
	// Mirrors maps a registry (docker.io, quay.io, ...) to the mirrors tried before it.
	Mirrors map[string][]string `yaml:"mirrors"`
}

// Unit is a fleet unit of the cluster; a template (name@.service) runs Instances times.
type Unit struct {
	File      string `yaml:"file"`
	Instances int    `yaml:"instances"`
	// State is the desired state: launched (default), loaded or inactive.
	State string `yaml:"state"`
}

// Network holds the defaults of the nodes' static networking.
type Network struct {
	Gateway string   `yaml:"gateway"`
	DNS     []string `yaml:"dns"`
}

// Binary is a file that Ignition fetches and verifies.
type Binary struct {
	URL string `yaml:"url"`
	// SHA512 is the hex digest Ignition verifies; computed from File when empty.
	SHA512 string `yaml:"sha512"`
	// File is a local copy of what URL serves, hashed by kiln when SHA512 is empty.
	File string `yaml:"file"`
}

// Node is one machine.
type Node struct {
	Name string `yaml:"name"`
	MAC  string `yaml:"mac"`
	// IP is the static address with its prefix length (10.0.0.11/24); empty means DHCP.
	IP       string            `yaml:"ip"`
	Gateway  string            `yaml:"gateway"`
	DNS      []string          `yaml:"dns"`
	Metadata map[string]string `yaml:"metadata"`
	// Group is the node's reboot semaphore group; default: the cluster's.
	Group string `yaml:"group"`
	// Snippets are Butane files merged last into this node's config only.
	Snippets []string `yaml:"snippets"`
	// KernelArgs are extra kernel arguments for network boots (PXE, ISO).
	KernelArgs []string `yaml:"kernelArgs"`
}

// The values that the spec accepts.
var (
	OSes       = catalog.Names()
	Strategies = []string{"etcd-lock", "fleetlock", "reboot", "off"}
	Engines    = []string{"docker", "podman"}
	States     = []string{"inactive", "loaded", "launched"}
)
