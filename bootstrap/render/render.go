// Package render turns a validated cluster spec and its PKI into every node's Butane config and
// the Ignition config that Butane translates it to, validated by the Ignition library.
//
// What nodes of one role (etcd member or not) share is translated once; what differs per node
// (its name, addresses, certificates and node.json; all of them files) is encoded on its own and
// spliced in. Nodes with their own snippets, or whose files collide with shared ones, take the
// whole translation. Both ways give byte-identical output; the tests hold them to it.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"

	"github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/report"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
)

// Node is one node's rendered configs.
type Node struct {
	Name     string
	Butane   []byte
	Ignition []byte
	// Path says how Ignition was made: spliced (the fast path), whole or fallback; Why says
	// why a node was not spliced.
	Path Path
	Why  string
}

// Path is how a node's Ignition config was made. All three give the same bytes; the tests hold
// them to it.
type Path string

const (
	// PathSpliced is the fast path: the node's own files, encoded as Butane encodes them, put
	// into the translation that its role shares.
	PathSpliced Path = "spliced"
	// PathWhole: Butane translated the node's whole config, by design: the node has snippets of
	// its own or files that collide with shared ones, the shared config has links, or
	// Options.Slow asked for it.
	PathWhole Path = "whole"
	// PathFallback: the fast path is lost: Butane's output is not shaped as splicing expects
	// (a new Butane changed its layout). The configs are right but take a whole translation
	// each; Stats counts these and kiln warns.
	PathFallback Path = "fallback"
)

// Stats counts how a render's nodes were made.
type Stats struct {
	Spliced, Whole, Fallback int
	// Lost is why the fast path was lost, when Fallback > 0.
	Lost string
}

// Count returns the Stats of rendered nodes.
func Count(nodes []Node) Stats {
	var st Stats
	for _, n := range nodes {
		switch n.Path {
		case PathSpliced:
			st.Spliced++
		case PathFallback:
			st.Fallback++
			st.Lost = n.Why
		default:
			st.Whole++
		}
	}
	return st
}

// Options tune a render.
type Options struct {
	// Workers translate nodes in parallel; 0 means one per CPU.
	Workers int
	// Slow translates every node's whole Butane config, as a reference for tests and benchmarks.
	Slow bool
	// Enrol, when set, leaves the node's private keys out: the node makes them and enrols.
	Enrol *EnrolOptions
}

// Render renders every node of s (defaults applied, validated) with the certificates of b.
// Problems that Butane or Ignition find are reported against the node's config.bu.
func Render(s *spec.Spec, b *pki.Bundle, opt Options) ([]Node, report.Report, error) {
	var rep report.Report
	c, err := newCluster(s, b)
	if err != nil {
		return nil, rep, err
	}
	c.enrol = opt.Enrol
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	out := make([]Node, len(s.Nodes))
	reports := make([]report.Report, len(s.Nodes))
	var mu sync.Mutex
	shared := map[role]*sharedPart{}
	failed := map[role]error{}
	sharedFor := func(r role) (*sharedPart, error) {
		mu.Lock()
		defer mu.Unlock()
		if sp, ok := shared[r]; ok {
			return sp, nil
		}
		if err, ok := failed[r]; ok {
			return nil, err
		}
		sp, err := c.newSharedPart(r, &rep) // reported once, not per node
		if err != nil {
			failed[r] = err
			return nil, err
		}
		shared[r] = sp
		return sp, nil
	}
	var g errgroup.Group
	g.SetLimit(workers)
	for i := range s.Nodes {
		g.Go(func() error {
			name := s.Nodes[i].Name
			pn, err := c.perNode(i)
			if err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
			sp, err := sharedFor(role{member: s.IsMember(name)})
			if err != nil {
				return err
			}
			path, why := PathWhole, ""
			switch {
			case opt.Slow:
				why = "Options.Slow"
			case sp.lost != "":
				path, why = PathFallback, sp.lost
			case sp.whole != "":
				why = sp.whole
			case len(s.Nodes[i].Snippets) > 0:
				why = "the node has snippets of its own"
			case sp.collides(pn):
				why = "the node's files collide with shared ones"
			default:
				out[i], err = sp.splice(name, pn)
				out[i].Path = PathSpliced
				return err
			}
			out[i], reports[i], err = c.whole(name, sp, pn, s.Nodes[i].Snippets)
			out[i].Path, out[i].Why = path, why
			return err
		})
	}
	err = g.Wait()
	for _, r := range reports {
		rep.Merge(r)
	}
	if err != nil {
		return nil, rep, err
	}
	return out, rep, nil
}

// whole builds a node's full Butane config and translates it with Butane.
func (c *cluster) whole(name string, sp *sharedPart, pn *doc, snippets []string) (Node, report.Report, error) {
	var rep report.Report
	n, err := sp.tree()
	if err != nil {
		return Node{}, rep, err
	}
	pt, err := toNode(pn)
	if err != nil {
		return Node{}, rep, err
	}
	o := sp.origins.clone()
	for _, f := range pn.Storage.Files {
		if _, shared := o["storage.files:"+f.Path]; !shared && f.origin != "" {
			o["storage.files:"+f.Path] = c.at(f.origin)
		}
	}
	mergeUnder(n, pt)
	for _, f := range snippets {
		sn, err := loadSnippet(c.s.Path(f))
		if err != nil {
			return Node{}, rep, err
		}
		merge(n, sn, "")
		o.addSnippet(c.s.Path(f), sn)
	}
	bu, err := marshalYAML(n)
	if err != nil {
		return Node{}, rep, err
	}
	ign, err := translate("node "+name, name, bu, n, o, &rep)
	return Node{Name: name, Butane: bu, Ignition: ign}, rep, err
}

// translate runs Butane on a config (what names it in messages, dir where its config.bu
// goes). Problems are reported where the offending entry came from: the spec value or the
// snippet line; failing that, the generated config.bu.
func translate(what, dir string, bu []byte, tree *yaml.Node, o origins, rep *report.Report) ([]byte, error) {
	ign, r, err := config.TranslateBytes(bu, common.TranslateBytesOptions{})
	file := dir + "/config.bu"
	from := len(rep.Problems)
	spec.FromButane(rep, file, r)
	o.resolve(tree, what, rep, from)
	if err != nil {
		if !rep.HasErrors(false) {
			rep.Errorf(file, 0, 0, "", "butane: %v", err)
		}
		return nil, fmt.Errorf("%s: %w", what, ErrInvalid)
	}
	return ign, nil
}

// mergeUnder adds child's entries to parent where parent has none of the same key: what is
// shared (the user's cluster snippets among it) wins over kiln's per-node defaults.
func mergeUnder(parent, child *yaml.Node) {
	parent, child = body(parent), body(child)
	for i := 0; i+1 < len(child.Content); i += 2 {
		k, cv := child.Content[i], child.Content[i+1]
		pv := lookup(parent, k.Value)
		switch {
		case pv == nil:
			parent.Content = append(parent.Content, k, cv)
		case pv.Kind == yaml.MappingNode && cv.Kind == yaml.MappingNode:
			mergeUnder(pv, cv)
		case pv.Kind == yaml.SequenceNode && cv.Kind == yaml.SequenceNode:
			for _, e := range cv.Content {
				if p := lookup(e, "path"); p != nil && hasEntry(pv, "path", p.Value) {
					continue
				}
				pv.Content = append(pv.Content, e)
			}
		}
	}
}

func hasEntry(list *yaml.Node, key, value string) bool {
	for _, e := range list.Content {
		if k := lookup(e, key); k != nil && k.Value == value {
			return true
		}
	}
	return false
}

func jsonIndent(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return b.String(), nil
}
