package render

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// doc is the part of a Butane config (variants fcos and flatcar) that kiln writes. Field names
// and order follow Butane's schema, so that config.bu reads like a hand-written one.
type doc struct {
	Variant string  `yaml:"variant"`
	Version string  `yaml:"version"`
	Passwd  passwd  `yaml:"passwd,omitempty"`
	Storage storage `yaml:"storage,omitempty"`
	Systemd systemd `yaml:"systemd,omitempty"`
}

type passwd struct {
	Users []user `yaml:"users,omitempty"`
}

type user struct {
	Name              string   `yaml:"name"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type storage struct {
	Directories []dir  `yaml:"directories,omitempty"`
	Files       []file `yaml:"files,omitempty"`
}

type dir struct {
	Path string `yaml:"path"`
	Mode mode   `yaml:"mode,omitempty"`
}

type file struct {
	Path      string   `yaml:"path"`
	Mode      mode     `yaml:"mode,omitempty"`
	Overwrite *bool    `yaml:"overwrite,omitempty"`
	Contents  contents `yaml:"contents"`
	// origin names the spec value this file comes from, for problems and comments.
	origin string
}

type contents struct {
	Inline       string        `yaml:"inline,omitempty"`
	Source       string        `yaml:"source,omitempty"`
	Verification *verification `yaml:"verification,omitempty"`
}

type verification struct {
	Hash string `yaml:"hash"`
}

type systemd struct {
	Units []unit `yaml:"units,omitempty"`
}

type unit struct {
	Name     string   `yaml:"name"`
	Enabled  *bool    `yaml:"enabled,omitempty"`
	Mask     *bool    `yaml:"mask,omitempty"`
	Contents string   `yaml:"contents,omitempty"`
	Dropins  []dropin `yaml:"dropins,omitempty"`
}

type dropin struct {
	Name     string `yaml:"name"`
	Contents string `yaml:"contents"`
}

// mode is a file mode, written in octal as people write it (0644).
type mode int

func (m mode) IsZero() bool { return m == 0 }

func (m mode) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprintf("0%o", int(m))}, nil
}

func (m *mode) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.ParseInt(n.Value, 0, 32)
	*m = mode(v)
	return err
}

var yes = func() *bool { b := true; return &b }()

// mergeKeys are the lists whose entries Ignition merges by a key rather than appending; a
// snippet's entry with the same key is merged into kiln's own, field by field.
var mergeKeys = map[string]string{
	"passwd.users":        "name",
	"passwd.groups":       "name",
	"storage.files":       "path",
	"storage.directories": "path",
	"storage.links":       "path",
	"storage.disks":       "device",
	"storage.filesystems": "device",
	"storage.luks":        "name",
	"storage.raid":        "name",
	"systemd.units":       "name",
	"dropins":             "name",
}

// merge merges the YAML mapping child into parent the way Ignition merges configs: mappings
// key by key, keyed lists entry by entry, other lists appended, scalars replaced by the child's.
func merge(parent, child *yaml.Node, path string) {
	parent, child = body(parent), body(child)
	for i := 0; i+1 < len(child.Content); i += 2 {
		k, cv := child.Content[i], child.Content[i+1]
		if path == "" && (k.Value == "variant" || k.Value == "version") {
			continue // ours: the snippet was checked to be of the same variant
		}
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		pv := lookup(parent, k.Value)
		switch {
		case pv == nil:
			parent.Content = append(parent.Content, k, cv)
		case pv.Kind == yaml.MappingNode && cv.Kind == yaml.MappingNode:
			merge(pv, cv, p)
		case pv.Kind == yaml.SequenceNode && cv.Kind == yaml.SequenceNode:
			mergeList(pv, cv, p)
		default:
			*pv = *cv
		}
	}
}

func mergeList(parent, child *yaml.Node, path string) {
	key := mergeKeys[path]
	if key == "" {
		key = mergeKeys[lastPart(path)]
	}
	for _, c := range child.Content {
		var match *yaml.Node
		if key != "" && c.Kind == yaml.MappingNode {
			if ck := lookup(c, key); ck != nil {
				for _, p := range parent.Content {
					if pk := lookup(p, key); pk != nil && pk.Value == ck.Value {
						match = p
						break
					}
				}
			}
		}
		if match != nil {
			merge(match, c, lastPart(path))
		} else {
			parent.Content = append(parent.Content, c)
		}
	}
}

func lastPart(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '.' {
			return path[i+1:]
		}
	}
	return path
}

// body is a YAML document's one node (the node itself when it is not a document).
func body(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return n.Content[0]
	}
	return n
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil {
		return nil
	}
	m = body(m)
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
