package spec

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

func sortStrings(s []string) { slices.Sort(s) }

// nearest returns the candidate closest to s by edit distance, if it is close enough to be a typo.
func nearest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := distance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
