package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/coreos/vcontext/validate"
	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/report"
)

// sentinelPath marks, in the shared config, where each node's own files go.
const sentinelPath = "/kiln/per-node-files"

// sharedPart is the config that every node of a role shares, translated once.
type sharedPart struct {
	// tree is the shared Butane config as YAML, for nodes that take the whole translation.
	treeYAML []byte
	// buHead and buTail surround the per-node files in config.bu; ignHead and ignTail in
	// config.ign. ign is nil when the shared part cannot take spliced files: whole says why
	// when that is by design (links), lost when Butane's output is not as splicing expects.
	buHead, buTail   []byte
	ignHead, ignTail []byte
	ign              []byte
	whole, lost      string
	paths            map[string]bool
	indent           string
	origins          origins
}

func (c *cluster) newSharedPart(r role, rep *report.Report) (*sharedPart, error) {
	n, o, err := c.shared(r)
	if err != nil {
		return nil, err
	}
	sp := &sharedPart{paths: map[string]bool{}, origins: o}
	if sp.treeYAML, err = marshalYAML(n); err != nil {
		return nil, err
	}
	storage := lookup(n, "storage")
	files := lookup(storage, "files")
	switch {
	case files == nil:
		sp.whole = "the shared config has no files"
		return sp, nil
	case lookup(storage, "links") != nil:
		sp.whole = "the shared config has links"
		return sp, nil
	}
	for _, f := range files.Content {
		if p := lookup(f, "path"); p != nil {
			sp.paths[p.Value] = true
		}
	}
	// The sentinel file stands where per-node files go, in both outputs.
	sentinel, err := toNode(file{Path: sentinelPath, Contents: contents{Inline: "x"}})
	if err != nil {
		return nil, err
	}
	files.Content = append(files.Content, sentinel)
	bu, err := marshalYAML(n)
	if err != nil {
		return nil, err
	}
	var tree yaml.Node
	if err := yaml.Unmarshal(bu, &tree); err != nil {
		return nil, err
	}
	ign, err := translate("all nodes", "shared", bu, &tree, o, rep)
	if err != nil {
		return nil, err
	}
	sp.lost = sp.cut(bu, ign)
	return sp, nil
}

// cut finds the sentinel file in the shared config.bu and config.ign and keeps what surrounds
// it, for splice. When Butane's output is not as expected (its field order or layout changed)
// it returns why, and the shared part takes whole translations only.
func (sp *sharedPart) cut(bu, ign []byte) (lost string) {
	// config.bu: cut the sentinel's lines out.
	mark := []byte("- path: " + sentinelPath + "\n")
	at := bytes.Index(bu, mark)
	if at < 0 {
		return "no sentinel entry " + strconv.Quote(string(mark)) + " in the shared config.bu"
	}
	lineStart := bytes.LastIndexByte(bu[:at], '\n') + 1
	indent := string(bu[lineStart:at])
	end := at + len(mark)
	for end < len(bu) {
		nl := bytes.IndexByte(bu[end:], '\n')
		if nl < 0 {
			break
		}
		line := bu[end : end+nl+1]
		if !bytes.HasPrefix(line, []byte(indent+"  ")) {
			break
		}
		end += nl + 1
	}
	// config.ign: cut the sentinel's object out.
	jmark := []byte(`{"path":"` + sentinelPath + `"`)
	start := bytes.Index(ign, jmark)
	if start < 0 {
		return "Butane's Ignition output has no file object starting " + strconv.Quote(string(jmark)) + " (its field order changed?)"
	}
	stop := start + matchBrace(ign[start:])
	sp.indent = indent
	sp.buHead, sp.buTail = bu[:lineStart], bu[end:]
	sp.ignHead, sp.ignTail = ign[:start], ign[stop:]
	sp.ign = ign
	return ""
}

// matchBrace returns the length of the JSON object at the start of b.
func matchBrace(b []byte) int {
	depth, inStr, esc := 0, false, false
	for i, ch := range b {
		switch {
		case esc:
			esc = false
		case inStr && ch == '\\':
			esc = true
		case ch == '"':
			inStr = !inStr
		case inStr:
		case ch == '{':
			depth++
		case ch == '}':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(b)
}

// tree returns a fresh copy of the shared Butane config.
func (sp *sharedPart) tree() (*yaml.Node, error) {
	var n yaml.Node
	err := yaml.Unmarshal(sp.treeYAML, &n)
	return &n, err
}

// collides reports whether a node's own files share a path with the shared part.
func (sp *sharedPart) collides(pn *doc) bool {
	for _, f := range pn.Storage.Files {
		if sp.paths[f.Path] {
			return true
		}
	}
	return false
}

// splice renders a node by putting its own files where the sentinel stood.
func (sp *sharedPart) splice(name string, pn *doc) (Node, error) {
	// config.bu: the node's files as YAML list entries at the shared list's indentation.
	var bu bytes.Buffer
	bu.Grow(len(sp.buHead) + len(sp.buTail) + 8192)
	bu.Write(sp.buHead)
	for _, f := range pn.Storage.Files {
		b, err := marshalYAML([]file{f})
		if err != nil {
			return Node{}, err
		}
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if line == "\n" {
				bu.WriteString(line) // yaml writes blank lines of a block unindented
			} else if line != "" {
				bu.WriteString(sp.indent)
				bu.WriteString(line)
			}
		}
	}
	bu.Write(sp.buTail)

	// config.ign: each file encoded as Butane encodes it, validated by Ignition's rules.
	var ign bytes.Buffer
	ign.Grow(len(sp.ignHead) + len(sp.ignTail) + 8192)
	ign.Write(sp.ignHead)
	for i, f := range pn.Storage.Files {
		if i > 0 {
			ign.WriteByte(',')
		}
		raw, err := encodeFile(f)
		if err != nil {
			return Node{}, fmt.Errorf("node %s: %s: %w", name, f.Path, err)
		}
		if err := validateFile(raw); err != nil {
			return Node{}, fmt.Errorf("node %s: %s: %w", name, f.Path, err)
		}
		ign.Write(raw)
	}
	ign.Write(sp.ignTail)
	return Node{Name: name, Butane: bu.Bytes(), Ignition: ign.Bytes()}, nil
}

func marshalYAML(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// validateFile checks one encoded file with the Ignition library's own rules (a whole config's
// rules, such as duplicate paths, are checked by collides and by the shared translation).
func validateFile(raw []byte) error {
	var f igntypes.File
	if err := json.Unmarshal(raw, &f); err != nil {
		return err
	}
	if r := validate.Validate(f, "json"); r.IsFatal() {
		return fmt.Errorf("%w: %s", ErrInvalid, r.String())
	}
	return nil
}

// ignFile is a file as Butane writes it into Ignition (spec 3.4 to 3.6 alike), fields in
// Ignition's order.
type ignFile struct {
	Overwrite *bool       `json:"overwrite,omitempty"`
	Path      string      `json:"path"`
	Contents  ignResource `json:"contents"`
	Mode      *int        `json:"mode,omitempty"`
}

type ignResource struct {
	Compression  *string          `json:"compression,omitempty"`
	Source       *string          `json:"source,omitempty"`
	Verification *ignVerification `json:"verification,omitempty"`
}

type ignVerification struct {
	Hash *string `json:"hash,omitempty"`
}

// encodeFile encodes a node's file as Butane does: inline contents as the smallest data URL.
func encodeFile(f file) ([]byte, error) {
	out := ignFile{Overwrite: f.Overwrite, Path: f.Path}
	if f.Mode != 0 {
		m := int(f.Mode)
		out.Mode = &m
	}
	switch {
	case f.Contents.Source != "":
		src := f.Contents.Source
		out.Contents.Source = &src
	default:
		src, compression, err := dataURL([]byte(f.Contents.Inline))
		if err != nil {
			return nil, err
		}
		out.Contents.Source, out.Contents.Compression = &src, &compression
	}
	if v := f.Contents.Verification; v != nil {
		h := v.Hash
		out.Contents.Verification = &ignVerification{Hash: &h}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
