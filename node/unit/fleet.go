package unit

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// FleetSection is the section systemd ignores (its name starts with X-) and the scheduler
// reads.
const FleetSection = "X-Fleet"

// The keys of [X-Fleet].
const (
	KeyMachineID       = "MachineID"
	KeyMachineOf       = "MachineOf"
	KeyMachineMetadata = "MachineMetadata"
	KeyConflicts       = "Conflicts"
	KeyGlobal          = "Global"
	KeyReplaces        = "Replaces"
)

// FleetKeys are the keys [X-Fleet] accepts, besides fleet's deprecated spellings.
var FleetKeys = []string{KeyMachineID, KeyMachineOf, KeyMachineMetadata, KeyConflicts, KeyGlobal, KeyReplaces}

// deprecatedKeys are fleet's spellings from before v0.8, still read (with a warning) so that
// old units keep their meaning.
var deprecatedKeys = map[string]string{
	"X-ConditionMachineID":       KeyMachineID,
	"X-ConditionMachineBootID":   KeyMachineID,
	"X-ConditionMachineOf":       KeyMachineOf,
	"X-ConditionMachineMetadata": KeyMachineMetadata,
	"X-Conflicts":                KeyConflicts,
}

// Fleet is what a unit's [X-Fleet] section asks of the scheduler, specifiers expanded for the
// unit's name.
type Fleet struct {
	// MachineID pins the unit to the machine with this (full) ID.
	MachineID string
	// MachineOf names units the unit must share a machine with (exact names).
	MachineOf []string
	// Metadata is what a machine's metadata must hold.
	Metadata Metadata
	// Conflicts are path.Match globs of units the unit must not share a machine with; the
	// relation is symmetric (either side's globs matching the other's name is enough).
	Conflicts []string
	// Global runs the unit on every machine that matches Metadata and Conflicts.
	Global bool
	// Replaces are globs of units that must move away from the machine this unit lands on.
	Replaces []string
}

// IsZero tells whether the unit asks nothing of the scheduler.
func (f *Fleet) IsZero() bool {
	return f.MachineID == "" && len(f.MachineOf) == 0 && len(f.Metadata) == 0 &&
		len(f.Conflicts) == 0 && !f.Global && len(f.Replaces) == 0
}

// ConflictsWith tells whether one of the unit's Conflicts globs matches name (one direction
// only; the scheduler checks both).
func (f *Fleet) ConflictsWith(name string) bool { return matchAny(f.Conflicts, name) }

// ReplacesUnit tells whether one of the unit's Replaces globs matches name.
func (f *Fleet) ReplacesUnit(name string) bool { return matchAny(f.Replaces, name) }

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// Op is the comparison of a MachineMetadata rule.
type Op string

// The operators. OpEqual, the zero value, is fleet's; the others are kiln's extensions, which
// fleet would have read as part of the key (and so as a rule no machine meets).
const (
	OpEqual        Op = ""
	OpNotEqual     Op = "!=" // also written !key=value
	OpLess         Op = "<"
	OpLessEqual    Op = "<="
	OpGreater      Op = ">"
	OpGreaterEqual Op = ">="
)

var opOrder = map[Op]int{OpEqual: 0, OpNotEqual: 1, OpLess: 2, OpLessEqual: 3, OpGreater: 4, OpGreaterEqual: 5}

// MetadataRule is one rule of MachineMetadata: key=value as in fleet, or one of kiln's
// extensions key!=value (or !key=value) and numeric key<n, key<=n, key>n, key>=n.
type MetadataRule struct {
	Key   string
	Op    Op
	Value string
}

func (r MetadataRule) String() string { return r.Key + r.Op.String() + r.Value }

// String writes the operator as in a unit file.
func (o Op) String() string {
	if o == OpEqual {
		return "="
	}
	return string(o)
}

// Metadata is a unit's MachineMetadata rules, sorted and without duplicates. As in fleet,
// key=value rules of one key are ORed and different keys are ANDed: "region=east region=west
// disk=ssd" is (region=east OR region=west) AND disk=ssd. The extensions are ANDed with the
// rest: "region!=east" admits machines without a region and those of any other region;
// "memory>=16" needs a machine whose memory is a number of at least 16.
type Metadata []MetadataRule

// Match tells whether a machine's metadata satisfies the rules.
func (m Metadata) Match(md map[string]string) bool {
	for i := 0; i < len(m); {
		key := m[i].Key
		have, ok := md[key]
		positive, matched := false, false
		for ; i < len(m) && m[i].Key == key; i++ {
			r := m[i]
			switch r.Op {
			case OpEqual:
				positive = true
				matched = matched || (ok && have == r.Value)
			case OpNotEqual:
				if ok && have == r.Value {
					return false
				}
			default:
				if !ok || !compare(have, r.Op, r.Value) {
					return false
				}
			}
		}
		if positive && !matched {
			return false
		}
	}
	return true
}

// compare applies a numeric operator; a value that is not a number never matches.
func compare(have string, op Op, want string) bool {
	h, err := strconv.ParseFloat(strings.TrimSpace(have), 64)
	if err != nil {
		return false
	}
	w, err := strconv.ParseFloat(want, 64)
	if err != nil {
		return false
	}
	switch op {
	case OpLess:
		return h < w
	case OpLessEqual:
		return h <= w
	case OpGreater:
		return h > w
	case OpGreaterEqual:
		return h >= w
	}
	return false
}

// String writes the rules as a unit would ("disk=ssd region=east region!=west"); it is also a
// canonical key for caching which machines match.
func (m Metadata) String() string {
	parts := make([]string, len(m))
	for i, r := range m {
		parts[i] = r.String()
	}
	return strings.Join(parts, " ")
}

func (m Metadata) normalize() Metadata {
	slices.SortFunc(m, func(a, b MetadataRule) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if c := opOrder[a.Op] - opOrder[b.Op]; c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return slices.Compact(m)
}

// ParseBool reads a boolean as systemd does (1, yes, y, true, t, on and their opposites, any
// case).
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, &Error{Err: ErrBool, Detail: fmt.Sprintf("%q (expected true or false)", s)}
}

type fleetParser struct {
	name  *Name
	errs  Errors
	warns Errors
	// first assignment of each key still in effect, to point combination errors at.
	first map[string]*Option
}

func (p *fleetParser) fail(o *Option, off int, err error, format string, args ...any) {
	line, col := o.Line, o.Column
	if off >= 0 {
		line, col = o.at(off)
	}
	p.errs = append(p.errs, &Error{Line: line, Column: col, Err: err, Detail: fmt.Sprintf(format, args...)})
}

func (p *fleetParser) expand(s string) string {
	if p.name == nil {
		return s
	}
	return p.name.Expand(s)
}

// words splits a value as systemd splits unit-name lists (escapes kept), reporting an
// unterminated quote.
func (p *fleetParser) words(o *Option) []Word {
	ws, err := SplitWords(o.Value, KeepEscapes)
	if we, ok := err.(*WordError); ok {
		p.fail(o, we.Off, we.Err, "%s=%s", o.Name, o.Value)
		return nil
	}
	return ws
}

// parseFleet reads the [X-Fleet] options. name may be nil (no specifier expansion, no checks
// against the unit's own name).
func parseFleet(opts []Option, name *Name) (Fleet, Errors, Errors) {
	p := &fleetParser{name: name, first: map[string]*Option{}}
	lists := map[string][]*Option{}
	for i := range opts {
		o := &opts[i]
		if o.Section != FleetSection {
			continue
		}
		key := o.Name
		if modern, ok := deprecatedKeys[key]; ok {
			p.warns = append(p.warns, &Error{Line: o.Line, Column: o.Column, Err: ErrUnknownKey,
				Detail: fmt.Sprintf("%s is deprecated, use %s", key, modern)})
			key = modern
		} else if !contains(FleetKeys, key) {
			detail := fmt.Sprintf("%q", key)
			if near, ok := Nearest(key, FleetKeys); ok {
				detail += fmt.Sprintf(": did you mean %s?", near)
			} else {
				detail += fmt.Sprintf(" (valid keys: %s)", strings.Join(FleetKeys, ", "))
			}
			p.fail(o, -1, ErrUnknownKey, "%s", detail)
			continue
		}
		if o.Value == "" {
			// An empty assignment resets the list, as systemd does for list settings.
			lists[key] = nil
			delete(p.first, key)
			continue
		}
		lists[key] = append(lists[key], o)
		if p.first[key] == nil {
			p.first[key] = o
		}
	}

	var f Fleet
	for _, o := range lists[KeyMachineID] {
		ws := p.words(o)
		if ws == nil {
			continue
		}
		if len(ws) != 1 {
			p.fail(o, ws[1].Off, ErrMachineID, "expected one machine ID, got %d words", len(ws))
			continue
		}
		id := p.expand(ws[0].Text)
		if f.MachineID != "" && f.MachineID != id {
			p.fail(o, ws[0].Off, ErrMachineID, "MachineID given twice: %q and %q", f.MachineID, id)
			continue
		}
		f.MachineID = id
	}

	for _, o := range lists[KeyMachineOf] {
		for _, w := range p.words(o) {
			peer := p.expand(w.Text)
			if err := ValidateName(peer); err != nil {
				p.fail(o, w.Off, ErrName, "MachineOf: %s", err.(*Error).Detail)
				continue
			}
			if name != nil && peer == name.Full {
				p.fail(o, w.Off, ErrSelfReference, "MachineOf=%s names the unit itself", peer)
				continue
			}
			if !slices.Contains(f.MachineOf, peer) {
				f.MachineOf = append(f.MachineOf, peer)
			}
		}
	}

	for _, o := range lists[KeyMachineMetadata] {
		quoted := o.Value[0] == '"' || o.Value[0] == '\''
		var ws []Word
		if quoted {
			ws = p.words(o)
		} else {
			// fleet reads an unquoted value as one pair, so a value may hold blanks.
			ws = []Word{{Text: o.Value, Off: 0}}
		}
		for _, w := range ws {
			rule, detail := parseMetadataPair(p.expand(w.Text), quoted)
			if detail != "" {
				p.fail(o, w.Off, ErrMetadata, "%s", detail)
				continue
			}
			f.Metadata = append(f.Metadata, rule)
		}
	}
	f.Metadata = f.Metadata.normalize()

	globs := func(key string) []string {
		var out []string
		for _, o := range lists[key] {
			for _, w := range p.words(o) {
				g := p.expand(w.Text)
				if _, err := path.Match(g, ""); err != nil {
					p.fail(o, w.Off, ErrGlob, "%s=%s: %v", key, g, err)
					continue
				}
				if !slices.Contains(out, g) {
					out = append(out, g)
				}
			}
		}
		return out
	}
	f.Conflicts = globs(KeyConflicts)
	f.Replaces = globs(KeyReplaces)

	for _, o := range lists[KeyGlobal] {
		b, err := ParseBool(o.Value)
		if err != nil {
			p.fail(o, 0, ErrBool, "Global=%s: expected true or false", o.Value)
			continue
		}
		f.Global = b // the last one wins
	}

	p.combinations(&f)
	return f, p.errs, p.warns
}

func parseMetadataPair(s string, quoted bool) (MetadataRule, string) {
	orig := s
	var r MetadataRule
	negated := strings.HasPrefix(s, "!")
	if negated {
		s = s[1:]
	}
	i := strings.IndexAny(s, "!<>=")
	if i < 0 {
		return r, fmt.Sprintf("%q is not key=value", orig)
	}
	k, rest := s[:i], s[i:]
	known := false
	for _, op := range []Op{OpNotEqual, OpLessEqual, OpGreaterEqual, OpLess, OpGreater, OpEqual} {
		if strings.HasPrefix(rest, op.String()) {
			r.Op, known = op, true
			break
		}
	}
	if !known {
		return r, fmt.Sprintf("%q is not key=value", orig)
	}
	v := rest[len(r.Op.String()):]
	switch {
	case negated && r.Op != OpEqual:
		return r, fmt.Sprintf("%q: '!' goes with key=value only (write key!=value)", orig)
	case k == "":
		return r, fmt.Sprintf("%q has an empty key", orig)
	case strings.IndexFunc(k, unicode.IsSpace) >= 0:
		return r, fmt.Sprintf("key %q contains a blank", k)
	case v == "":
		return r, fmt.Sprintf("%q has an empty value", orig)
	case strings.ContainsAny(v, "=") && !quoted:
		return r, fmt.Sprintf("%q: quote each pair when there are several on one line, as in MachineMetadata=\"region=east\" \"disk=ssd\"", orig)
	case strings.ContainsAny(v, "="):
		return r, fmt.Sprintf("%q: a value cannot contain '='", orig)
	}
	if r.Op != OpEqual && r.Op != OpNotEqual {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return r, fmt.Sprintf("%q: %s compares numbers, %q is not one", orig, r.Op, v)
		}
	}
	if negated {
		r.Op = OpNotEqual
	}
	r.Key, r.Value = k, v
	return r, ""
}

// combinations applies fleet's rules on which options go together (fleet's API refused the
// same units): Global only with MachineMetadata and Conflicts; MachineID alone or with
// MachineMetadata; Replaces not with Conflicts; and no MachineOf unit that the unit's own
// Conflicts or Replaces would push away.
func (p *fleetParser) combinations(f *Fleet) {
	has := map[string]bool{
		KeyMachineID: f.MachineID != "",
		KeyMachineOf: len(f.MachineOf) > 0,
		KeyConflicts: len(f.Conflicts) > 0,
		KeyReplaces:  len(f.Replaces) > 0,
	}
	bad := func(with, key, why string) {
		if o := p.first[key]; o != nil {
			p.fail(o, -1, ErrCombination, "%s cannot be used with %s%s", key, with, why)
		}
	}
	if f.Global {
		for _, k := range []string{KeyMachineID, KeyMachineOf, KeyReplaces} {
			if has[k] {
				bad("Global=true", k, " (a global unit takes only MachineMetadata and Conflicts)")
			}
		}
	}
	if has[KeyMachineID] {
		for _, k := range []string{KeyMachineOf, KeyConflicts, KeyReplaces} {
			if has[k] {
				bad(KeyMachineID, k, "")
			}
		}
	}
	if has[KeyConflicts] && has[KeyReplaces] {
		bad(KeyConflicts, KeyReplaces, "")
	}
	for _, peer := range f.MachineOf {
		o := p.first[KeyMachineOf]
		if matchAny(f.Conflicts, peer) {
			p.fail(o, -1, ErrUnresolvable, "MachineOf=%s matches the unit's own Conflicts", peer)
		}
		if matchAny(f.Replaces, peer) {
			p.fail(o, -1, ErrUnresolvable, "MachineOf=%s matches the unit's own Replaces", peer)
		}
	}
}
