package spec

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Default values of a spec; a spec that names only its nodes gets all of these.
const (
	DefaultName          = "kiln"
	DefaultClientPort    = 2379
	DefaultPeerPort      = 2380
	DefaultEtcdImage     = "quay.io/coreos/etcd:v3.6.16"
	DefaultStrategy      = "etcd-lock"
	DefaultMaxConcurrent = 1
	DefaultGroup         = "default"
	DefaultEngine        = "docker"
	DefaultState         = "launched"
)

// DefaultKilnNodeURL is where nodes fetch kiln-node of the given version when the spec says nothing.
func DefaultKilnNodeURL(version string) string {
	return "https://github.com/kiln-cluster/kiln/releases/download/" + version + "/kiln-node-linux-amd64"
}

// Defaults fills in what the spec leaves out. It is idempotent; kilnVersion names the
// kiln-node release fetched by default.
func (s *Spec) Defaults(kilnVersion string) {
	c := &s.Cluster
	c.Name = or(c.Name, DefaultName)
	c.OS = or(c.OS, catalog.Default.Name)
	c.Channel = or(c.Channel, catalog.Of(c.OS).DefaultChannel)
	if len(c.Etcd.Members) == 0 {
		for _, node := range s.Nodes {
			if len(c.Etcd.Members) == 3 {
				break
			}
			if node.Name != "" && !s.IsMember(node.Name) {
				c.Etcd.Members = append(c.Etcd.Members, node.Name)
			}
		}
	}
	if c.Etcd.ClientPort == 0 {
		c.Etcd.ClientPort = DefaultClientPort
	}
	if c.Etcd.PeerPort == 0 {
		c.Etcd.PeerPort = DefaultPeerPort
	}
	c.Etcd.Image = or(c.Etcd.Image, DefaultEtcdImage)
	c.Updates.Strategy = or(c.Updates.Strategy, DefaultStrategy)
	if c.Updates.MaxConcurrent == 0 && !s.has("cluster.updates.maxConcurrent") {
		c.Updates.MaxConcurrent = DefaultMaxConcurrent
	}
	c.Updates.Group = or(c.Updates.Group, DefaultGroup)
	c.Runtime.Engine = or(c.Runtime.Engine, DefaultEngine)
	for i := range c.Units {
		u := &c.Units[i]
		u.State = or(u.State, DefaultState)
		if u.Instances == 0 && IsTemplate(filepath.Base(u.File)) && !s.has(fmt.Sprintf("cluster.units.%d.instances", i)) {
			u.Instances = 1
		}
	}
	if c.KilnNode.URL == "" {
		c.KilnNode.URL = DefaultKilnNodeURL(kilnVersion)
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		n.Group = or(n.Group, c.Updates.Group)
		if n.IP != "" {
			n.Gateway = or(n.Gateway, c.Network.Gateway)
			if len(n.DNS) == 0 {
				n.DNS = c.Network.DNS
			}
		}
	}
}

// IsTemplate reports whether a unit file name is a template (name@.service).
func IsTemplate(name string) bool {
	at := strings.LastIndexByte(name, '@')
	return at > 0 && at+1 < len(name) && name[at+1] == '.'
}

// IsMember reports whether the named node runs an etcd member.
func (s *Spec) IsMember(name string) bool {
	for _, m := range s.Cluster.Etcd.Members {
		if m == name {
			return true
		}
	}
	return false
}

// Path resolves a path written in the spec relative to the spec's folder.
func (s *Spec) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(s.File), p)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Inputs lists the files the spec is made of: the spec itself and every file it names (units,
// snippets, local copies of binaries), as paths resolved against the spec's folder. Outputs
// must never be one of them.
func (s *Spec) Inputs() []string {
	in := []string{s.File}
	add := func(p string) {
		if p != "" {
			in = append(in, s.Path(p))
		}
	}
	for _, u := range s.Cluster.Units {
		add(u.File)
	}
	for _, sn := range s.Snippets {
		add(sn)
	}
	for _, n := range s.Nodes {
		for _, sn := range n.Snippets {
			add(sn)
		}
	}
	add(s.Cluster.KilnNode.File)
	add(s.Cluster.Etcd.Binary.File)
	return in
}
