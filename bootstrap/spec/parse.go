package spec

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/report"
	"github.com/kiln-cluster/kiln/internal/inputfile"
)

// source is the parsed YAML document of a spec, kept to point problems at their line and column.
type source struct {
	file string
	root *yaml.Node // the document's top mapping; nil for an empty document
}

// Load reads and parses the spec at path. A spec that does not parse gives a report with errors
// and a nil Spec; a parsed spec is returned with its defaults applied and not yet validated.
func Load(path string) (*Spec, report.Report) {
	raw, err := inputfile.Read(path, inputfile.SpecLimit)
	if err != nil {
		var r report.Report // no Quote: the file is not a spec that could be read
		r.Errorf(path, 0, 0, "", "cannot read the spec: %v", unwrapPathErr(err))
		return nil, r
	}
	return Parse(path, raw)
}

// Parse parses raw, named file in problems. Every unknown key and every value of the wrong
// type is reported, not only the first.
func Parse(file string, raw []byte) (*Spec, report.Report) {
	var r report.Report
	r.Quote(file)
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			r.Errorf(file, 1, 1, "", "the spec is empty: expected a mapping with cluster: and nodes:")
			return nil, r
		}
		line, col, msg := yamlError(raw, err)
		r.Errorf(file, line, col, "", "%s", msg)
		return nil, r
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		r.Errorf(file, extra.Line, extra.Column, "", "the spec holds more than one YAML document: expected one")
		return nil, r
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		r.Errorf(file, root.Line, root.Column, "", "the spec must be a mapping with cluster: and nodes:, not %s", kindName(root))
		return nil, r
	}
	s := &Spec{File: file, src: &source{file: file, root: root}}
	checkShape(&r, file, root, reflect.TypeOf(s).Elem(), "")
	if len(r.Problems) >= maxShapeProblems {
		r.Errorf(file, 0, 0, "", "stopped after %d problems: is this a cluster spec?", maxShapeProblems)
	}
	if r.HasErrors(false) {
		return nil, r
	}
	if err := root.Decode(s); err != nil {
		// checkShape found nothing, so this is a value yaml rejects in a way it did not foresee.
		line, msg := yamlErrorLine(err)
		r.Errorf(file, line, 0, "", "%s", msg)
		return nil, r
	}
	return s, r
}

var yamlLineRe = regexp.MustCompile(`line (\d+): `)

// yamlError is yamlErrorLine for an error of parsing raw, with the column when it is known.
// yaml.v3 reports a tab in indentation at the line of the token before it (the scanner's
// context), often lines above: the tab itself is found and pointed at instead.
func yamlError(raw []byte, err error) (line, col int, msg string) {
	line, msg = yamlErrorLine(err)
	if !strings.Contains(msg, "tab character") || line < 1 {
		return line, 0, msg
	}
	lines := bytes.Split(raw, []byte("\n"))
	for i := line - 1; i < len(lines); i++ {
		l := lines[i]
		indent := len(l) - len(bytes.TrimLeft(l, " \t"))
		if t := bytes.IndexByte(l[:indent], '\t'); t >= 0 {
			return i + 1, t + 1, msg + ": indent with spaces"
		}
	}
	return line, 0, msg
}

// yamlErrorLine takes the line out of a yaml.v3 error and gives the message without its prefixes.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	line := 0
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.Replace(msg, m[0], "", 1)
	}
	return line, "invalid YAML: " + msg
}

// maxShapeProblems bounds the problems checkShape collects: a file that is not a spec (two
// million unknown keys) is told apart in a moment, not after a report of every key.
const maxShapeProblems = 1000

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// checkShape walks the YAML tree beside the Go type it decodes into and reports unknown keys,
// duplicate keys and values of the wrong kind, each at its own line and column.
func checkShape(r *report.Report, file string, n *yaml.Node, t reflect.Type, path string) {
	if len(r.Problems) >= maxShapeProblems {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(unmarshalerType) {
		return // the type takes a scalar form too (Runtime: a bare engine name)
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(r, file, n, t.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			r.Errorf(file, n.Line, n.Column, path, "%s: expected a mapping, found %s", pathOrTop(path), kindName(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content) && len(r.Problems) < maxShapeProblems; i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				r.Errorf(file, k.Line, k.Column, join(path, k.Value), "duplicate key %s", quote(k.Value))
				continue
			}
			seen[k.Value] = true
			f, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %s in %s", quote(k.Value), pathOrTop(path))
				if s := nearest(k.Value, fieldNames(fields)); s != "" {
					msg += fmt.Sprintf(": did you mean %q?", s)
				} else {
					msg += fmt.Sprintf(": expected one of %s", strings.Join(fieldNames(fields), ", "))
				}
				r.Errorf(file, k.Line, k.Column, join(path, k.Value), "%s", msg)
				continue
			}
			checkShape(r, file, v, f.Type, join(path, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			r.Errorf(file, n.Line, n.Column, path, "%s: expected a list, found %s", pathOrTop(path), kindName(n))
			return
		}
		for i, c := range n.Content {
			checkShape(r, file, c, t.Elem(), join(path, strconv.Itoa(i)))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			r.Errorf(file, n.Line, n.Column, path, "%s: expected a mapping, found %s", pathOrTop(path), kindName(n))
			return
		}
		for i := 0; i+1 < len(n.Content) && len(r.Problems) < maxShapeProblems; i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				r.Errorf(file, k.Line, k.Column, path, "%s: keys must be plain strings", pathOrTop(path))
				continue
			}
			checkShape(r, file, v, t.Elem(), join(path, k.Value))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			r.Errorf(file, n.Line, n.Column, path, "%s: expected a string, found %s", pathOrTop(path), kindName(n))
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			r.Errorf(file, n.Line, n.Column, path, "%s: expected a whole number, found %s", pathOrTop(path), kindName(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			r.Errorf(file, n.Line, n.Column, path, "%s: expected true or false, found %s", pathOrTop(path), kindName(n))
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing"
		}
		return quote(n.Value)
	}
	return "an alias"
}

// quote quotes a value of the input for a message, shortened to its first 60 characters: a
// message says what is wrong, not the whole value (which may be megabytes long).
func quote(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:max])) + "..."
}

func pathOrTop(p string) string {
	if p == "" {
		return "the spec"
	}
	return p
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = f
	}
	return m
}

func fieldNames(m map[string]reflect.StructField) []string {
	return slices.Sorted(maps.Keys(m))
}

// UnmarshalYAML accepts a runtime as a bare engine name or as a mapping.
func (rt *Runtime) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		rt.Engine = n.Value
		return nil
	}
	type plain Runtime
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*rt = Runtime(p)
	return nil
}
