package render

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/report"
)

// place is where in the user's files an entry of a node's config comes from.
type place struct {
	file      string
	line, col int
}

// origins maps the entries of a node's Butane config ("storage.files:/etc/hostname") to the
// spec value or snippet line that produced them, so that a problem Butane or Ignition finds
// in generated output is reported where the user can fix it.
type origins map[string]place

func (o origins) clone() origins {
	c := make(origins, len(o))
	for k, v := range o {
		c[k] = v
	}
	return c
}

// addSnippet records the keyed entries of a snippet as coming from its own lines.
func (o origins) addSnippet(file string, n *yaml.Node) {
	for list := range mergeKeys {
		if !strings.Contains(list, ".") {
			continue
		}
		l := n
		for _, part := range strings.Split(list, ".") {
			l = lookup(l, part)
		}
		if l == nil || l.Kind != yaml.SequenceNode {
			continue
		}
		for _, e := range l.Content {
			if k := lookup(e, mergeKeys[list]); k != nil {
				o[list+":"+k.Value] = place{file, e.Line, e.Column}
			}
		}
	}
}

// resolve moves problems found in a node's config.bu to the place the offending entry came
// from, keeping the generated location in the message.
func (o origins) resolve(tree *yaml.Node, what string, rep *report.Report, from int) {
	for i := from; i < len(rep.Problems); i++ {
		p := &rep.Problems[i]
		key := entryKey(tree, p.Path)
		pl, ok := o[key]
		if !ok || pl.file == "" {
			continue
		}
		generated := p.Location()
		p.File, p.Line, p.Col = pl.file, pl.line, pl.col
		p.Message = fmt.Sprintf("%s: %s (in the generated %s)", what, p.Message, generated)
	}
}

// entryKey finds the keyed list entry that a problem's path (storage.files.3.contents) lies in.
func entryKey(tree *yaml.Node, path string) string {
	parts := strings.Split(path, ".")
	n := tree
	for i, part := range parts {
		if n == nil {
			return ""
		}
		if n.Kind == yaml.DocumentNode {
			n = n.Content[0]
		}
		if n.Kind == yaml.SequenceNode {
			idx, err := strconv.Atoi(part)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return ""
			}
			list := strings.Join(parts[:i], ".")
			if key, ok := mergeKeys[list]; ok {
				if k := lookup(n.Content[idx], key); k != nil {
					return list + ":" + k.Value
				}
			}
			n = n.Content[idx]
			continue
		}
		n = lookup(n, part)
	}
	return ""
}
