// Package unit reads systemd unit files as systemd does and the [X-Fleet] section as fleet
// did, for kiln's scheduler (kiln-node) and the generator's validation (kiln validate).
//
// A Unit is identified in etcd by the hash of its canonical text (Bytes): comments, blank
// lines and continuations are gone and the options of each section are grouped under one
// header, so two files that mean the same to systemd share one hash.
package unit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Unit is a parsed unit file.
type Unit struct {
	// Name is the unit's name ("my-app@1.service"); empty when parsed without one.
	Name string
	// Options are the assignments in the order of the file, empty ones included (they reset
	// list settings).
	Options []Option
	// Fleet is the [X-Fleet] section, specifiers expanded for Name.
	Fleet Fleet
	// Warnings are problems that do not stop the unit from working (deprecated keys).
	Warnings Errors
}

// MaxSize is the largest unit file the cluster takes: etcd keeps a unit file in one value and
// refuses requests over 1.5 MiB, and a unit file is a few KiB. CheckSize refuses a larger one.
const MaxSize = 512 << 10

// CheckSize refuses a unit file larger than MaxSize with ErrTooLarge (submitting it would fail
// in etcd with a raw gRPC error).
func CheckSize(raw []byte) error {
	if len(raw) > MaxSize {
		return Errors{{Err: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, at most %d KiB (etcd keeps a unit file in one value)", len(raw), MaxSize>>10)}}
	}
	return nil
}

// Parse reads a unit file. name is the unit's name (checked with ValidateName; it gives the
// values of the specifiers %n %N %p %i in [X-Fleet]); it may be empty to check the text
// alone. The error, if any, is an Errors holding every problem with its line and column.
//
// A template ("my-app@.service") is checked as its instances would be: its [X-Fleet] values
// are tried with a sample instance name, so that "MachineOf=%i.socket" is no error; its Fleet
// field holds the values with an empty instance, as fleet had them.
func Parse(name string, raw []byte) (*Unit, error) {
	var errs Errors
	var n *Name
	if name != "" {
		parsed, err := ParseName(name)
		if err != nil {
			errs = append(errs, err.(*Error))
		} else {
			n = &parsed
		}
	}
	opts, serrs := parseSyntax(raw)
	errs = append(errs, serrs...)

	u := &Unit{Name: name, Options: opts}
	if n != nil && n.IsTemplate() {
		sample := *n
		sample.Instance = "instance"
		sample.Full = sample.Prefix + "@" + sample.Instance + "." + sample.Type
		_, ferrs, _ := parseFleet(opts, &sample)
		errs = append(errs, ferrs...)
		u.Fleet, _, u.Warnings = parseFleet(opts, n)
	} else {
		var ferrs Errors
		u.Fleet, ferrs, u.Warnings = parseFleet(opts, n)
		errs = append(errs, ferrs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return u, nil
}

// ParseName gives the unit's name taken apart (the zero Name for a unit parsed without one).
func (u *Unit) ParseName() Name {
	n, _ := ParseName(u.Name)
	return n
}

// Instantiate gives the unit of one instance of a template unit: the same options (and so the
// same hash), the [X-Fleet] section read again for the instance's name.
func (u *Unit) Instantiate(instance string) (*Unit, error) {
	full, err := InstanceName(u.Name, instance)
	if err != nil {
		return nil, err
	}
	n, _ := ParseName(full)
	f, errs, warns := parseFleet(u.Options, &n)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Unit{Name: full, Options: u.Options, Fleet: f, Warnings: warns}, nil
}

// Values gives the values of a key in a section, in order, with systemd's rule for list
// settings: an empty assignment drops the values before it.
func (u *Unit) Values(section, key string) []string {
	var out []string
	for _, o := range u.Options {
		if o.Section != section || o.Name != key {
			continue
		}
		if o.Value == "" {
			out = nil
			continue
		}
		out = append(out, o.Value)
	}
	return out
}

// Value gives the last value of a key in a section (systemd's rule for single settings) and
// whether the key is set at all.
func (u *Unit) Value(section, key string) (string, bool) {
	v, ok := "", false
	for _, o := range u.Options {
		if o.Section == section && o.Name == key {
			v, ok = o.Value, true
		}
	}
	return v, ok
}

// Sections gives the names of the unit's sections in the order they first appear.
func (u *Unit) Sections() []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range u.Options {
		if !seen[o.Section] {
			seen[o.Section] = true
			out = append(out, o.Section)
		}
	}
	return out
}

// Description is the [Unit] Description, or "".
func (u *Unit) Description() string {
	v, _ := u.Value("Unit", "Description")
	return v
}

// Serialize writes options as a unit file in canonical form: sections in the order they first
// appear, each once, with its options in their order; "Key=Value" lines; a blank line between
// sections. Parse reads the text back to the same options. A value that ends in an odd number
// of backslashes (possible when a blank followed it) gets a trailing space, so that it is not
// read as a continuation.
func Serialize(opts []Option) []byte {
	var sections []string
	bySection := map[string][]int{}
	for i, o := range opts {
		if _, ok := bySection[o.Section]; !ok {
			sections = append(sections, o.Section)
		}
		bySection[o.Section] = append(bySection[o.Section], i)
	}
	var b strings.Builder
	for si, s := range sections {
		if si > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("[" + s + "]\n")
		for _, i := range bySection[s] {
			o := opts[i]
			b.WriteString(o.Name)
			b.WriteByte('=')
			b.WriteString(o.Value)
			if endsEscaped(o.Value) {
				b.WriteByte(' ')
			}
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

// Bytes is the unit's canonical text (Serialize of its options).
func (u *Unit) Bytes() []byte { return Serialize(u.Options) }

// String is the unit's canonical text.
func (u *Unit) String() string { return string(u.Bytes()) }

// Hash is the unit's identity: the SHA-256 of its canonical text. Instances of one template
// share it.
func (u *Unit) Hash() Hash { return sha256.Sum256(u.Bytes()) }

// Hash is the SHA-256 of a unit's canonical text.
type Hash [sha256.Size]byte

// String is the hash in lower-case hex, as stored in etcd.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short is the first 7 hex digits, for tables.
func (h Hash) Short() string { return h.String()[:7] }

// IsZero tells whether the hash is unset.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText writes the hex form.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads the hex form.
func (h *Hash) UnmarshalText(b []byte) error {
	x, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = x
	return nil
}

// ParseHash reads a hash in hex.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("invalid unit hash %q: expected %d hex digits", s, 2*len(h))
	}
	copy(h[:], b)
	return h, nil
}
