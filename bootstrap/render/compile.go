package render

import (
	"os"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/report"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
)

// CompileOptions say how to turn a spec file into configs.
type CompileOptions struct {
	// PKIDir holds the cluster's PKI, reused by every delivery (render, PXE, user-data, Vagrant)
	// so that all hand out certificates of the same CA.
	PKIDir string
	// CreatePKI lets Compile make a new CA when PKIDir holds none (kiln render only). Without it
	// a PKIDir with no CA is an error wrapping pki.ErrNoPKI that names the folder.
	CreatePKI bool
	// KilnVersion names the kiln-node release fetched when the spec names no URL.
	KilnVersion string
	// KilnNodeFile is hashed for Ignition's verification when the spec gives neither a hash
	// nor a file (kiln passes the kiln-node installed beside it).
	KilnNodeFile string
	// Strict turns the spec's warnings into errors.
	Strict bool
	// Now is the time certificates are checked and issued at; zero means time.Now().
	Now time.Time
	// Enrol, when set, renders configs without the nodes' private keys (see EnrolOptions).
	Enrol *EnrolOptions
}

// Compiled is a spec turned into every node's configs.
type Compiled struct {
	Spec  *spec.Spec
	Nodes []Node
	PKI   *pki.Bundle
	// Stats counts the nodes spliced (the fast path), translated whole, and those that fell
	// back because the fast path is lost.
	Stats Stats
}

// Node returns the named node's configs, or nil.
func (c *Compiled) Node(name string) *Node {
	for i := range c.Nodes {
		if c.Nodes[i].Name == name {
			return &c.Nodes[i]
		}
	}
	return nil
}

// Compile loads the spec at path, applies its defaults, validates it, opens the PKI in
// opt.PKIDir (made anew only with opt.CreatePKI; nothing is written: see SavePKI) and renders
// every node.
func Compile(path string, opt CompileOptions) (*Compiled, report.Report, error) {
	s, rep, err := Load(path, opt)
	if err != nil {
		return nil, rep, err
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	open := pki.Open
	if opt.CreatePKI {
		open = pki.Ensure
	}
	b, err := open(opt.PKIDir, s.Cluster.Name, PKINodes(s), now)
	if err != nil {
		return nil, rep, err
	}
	nodes, r, err := Render(s, b, Options{Enrol: opt.Enrol})
	rep.Merge(r)
	if err != nil {
		return nil, rep, err
	}
	return &Compiled{Spec: s, Nodes: nodes, PKI: b, Stats: Count(nodes)}, rep, nil
}

// Load reads the spec at path, applies its defaults (kiln's version, the kiln-node file) and
// validates it: what Compile does before the PKI and rendering, and all that kiln validate does.
// The error is ErrSpec when the report has errors (or, with opt.Strict, warnings).
func Load(path string, opt CompileOptions) (*spec.Spec, report.Report, error) {
	s, rep := spec.Load(path)
	if s == nil {
		return nil, rep, ErrSpec
	}
	s.Defaults(opt.KilnVersion)
	if k := &s.Cluster.KilnNode; k.SHA512 == "" && k.File == "" && opt.KilnNodeFile != "" {
		k.File = opt.KilnNodeFile
	}
	rep.Merge(s.Validate())
	if rep.HasErrors(opt.Strict) {
		return nil, rep, ErrSpec
	}
	return s, rep, nil
}

// SavePKI writes the bundle to its directory unless it is already there unchanged.
func SavePKI(b *pki.Bundle) error {
	if _, err := os.Stat(pki.CAPath(b.Dir)); err == nil && !b.Changed() {
		return nil
	}
	return b.Write(b.Dir)
}
