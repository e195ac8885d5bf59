package spec

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/node/unit"
)

// nearest returns the candidate closest to s when it is close enough to be a typo.
func nearest(s string, candidates []string) string {
	if c, ok := unit.Nearest(s, candidates); ok {
		return c
	}
	return ""
}

// Pos returns the line and column of the value at path (keys and list indexes, dot-separated:
// "nodes.1.ip"); when the value is absent, the position of the deepest part that exists.
// A key's own position is returned for a path ending in "~key" ("nodes.1.~ip").
func (s *Spec) Pos(path string) (line, col int) {
	if s == nil || s.src == nil || s.src.root == nil {
		return 0, 0
	}
	n := s.src.root
	line, col = n.Line, n.Column
	if path == "" {
		return
	}
	for _, part := range splitPath(path) {
		wantKey := strings.HasPrefix(part, "~")
		part = strings.TrimPrefix(part, "~")
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					next = n.Content[i+1]
					if wantKey {
						next = n.Content[i]
					}
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(part); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return
		}
		n = next
		line, col = n.Line, n.Column
	}
	return
}

// Key escapes a map key for a path: dots in it are not separators ("mirrors.docker\\.io").
func Key(k string) string { return strings.ReplaceAll(k, ".", `\.`) }

// splitPath splits a dot-separated path, keeping escaped dots (Key) inside their part.
func splitPath(path string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(path); i++ {
		switch {
		case path[i] == '\\' && i+1 < len(path) && path[i+1] == '.':
			cur.WriteByte('.')
			i++
		case path[i] == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(path[i])
		}
	}
	return append(parts, cur.String())
}

// has reports whether the spec sets the value at path.
func (s *Spec) has(path string) bool {
	if s == nil || s.src == nil {
		return false
	}
	n := s.src.root
	for _, part := range splitPath(path) {
		if n = lookupKey(n, part); n == nil {
			return false
		}
	}
	return true
}

func lookupKey(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
