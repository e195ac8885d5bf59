package unit

import (
	"fmt"
	"strings"
)

// MaxNameLength is the longest unit name systemd accepts (UNIT_NAME_MAX less the NUL).
const MaxNameLength = 255

// Types are the unit types kiln schedules (fleet's list: systemd's types less those systemd
// creates on its own).
var Types = []string{
	"automount", "busname", "device", "mount", "path", "scope", "service",
	"slice", "snapshot", "socket", "swap", "target", "timer",
}

// TemplateTypes are the types a template unit (name@.type) may have.
var TemplateTypes = []string{"path", "service", "socket", "target", "timer"}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Normalize gives a name without a unit type suffix the ".service" one, as systemctl and
// fleetctl do: "foo" is "foo.service", "my-app@1" is "my-app@1.service". A name that ends in
// a type ("foo.socket") is returned as it is. Every command that takes a unit's name passes it
// through here.
func Normalize(name string) string {
	if name == "" {
		return name
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 && contains(Types, name[i+1:]) {
		return name
	}
	return name + ".service"
}

// Name is a unit name taken apart: "my-app@1.service" has Prefix "my-app", Instance "1" and
// Type "service".
type Name struct {
	Full     string
	Prefix   string
	Instance string
	Type     string
	// at is true when the name has an '@': a template (empty Instance) or an instance.
	at bool
}

// IsTemplate tells whether the name is a template, such as "my-app@.service".
func (n Name) IsTemplate() bool { return n.at && n.Instance == "" }

// IsInstance tells whether the name is an instance of a template, such as "my-app@1.service".
func (n Name) IsInstance() bool { return n.at && n.Instance != "" }

// Base is the name without its type suffix ("my-app@1"), fleet's %N.
func (n Name) Base() string { return strings.TrimSuffix(n.Full, "."+n.Type) }

// Template is the name of the template an instance or template belongs to ("my-app@.service"),
// or "" for a plain unit.
func (n Name) Template() string {
	if !n.at {
		return ""
	}
	return n.Prefix + "@." + n.Type
}

// Expand replaces fleet's specifiers in s: %n the full name, %N the name without its type
// suffix, %p the prefix, %i the instance. Other % sequences are left as they are, as fleet
// does. The replacement is one pass, so a replaced text is never expanded again.
func (n Name) Expand(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteString(n.Full)
				i++
				continue
			case 'N':
				b.WriteString(n.Base())
				i++
				continue
			case 'p':
				b.WriteString(n.Prefix)
				i++
				continue
			case 'i':
				b.WriteString(n.Instance)
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func validNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '-' || c == '_' || c == '.' || c == '\\'
}

// ParseName checks a unit name as systemd and fleet do (unit_name_is_valid) and takes it
// apart: prefix and instance of [a-zA-Z0-9:_.\-] (the instance may also hold '@'), a dot and a
// type among Types; templates and instances only of TemplateTypes.
func ParseName(name string) (Name, error) {
	bad := func(format string, args ...any) (Name, error) {
		return Name{}, &Error{Err: ErrName, Detail: fmt.Sprintf(format, args...)}
	}
	if name == "" {
		return bad("empty name")
	}
	if len(name) > MaxNameLength {
		return bad("%q is longer than %d characters", shorten(name), MaxNameLength)
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return bad("%q has no type suffix such as .service", name)
	}
	n := Name{Full: name, Type: name[dot+1:]}
	if n.Type == "" {
		return bad("%q ends in '.'", name)
	}
	if !contains(Types, n.Type) {
		return bad("%q: unknown unit type %q", name, n.Type)
	}
	stem := name[:dot]
	n.Prefix = stem
	if at := strings.IndexByte(stem, '@'); at >= 0 {
		n.at = true
		n.Prefix, n.Instance = stem[:at], stem[at+1:]
		if !contains(TemplateTypes, n.Type) {
			return bad("%q: a template or instance cannot be of type %q (only %s)", name, n.Type, strings.Join(TemplateTypes, ", "))
		}
	}
	if n.Prefix == "" {
		return bad("%q has an empty name before the type or '@'", name)
	}
	for i := 0; i < len(n.Prefix); i++ {
		if !validNameChar(n.Prefix[i]) {
			return bad("%q: invalid character %q", name, n.Prefix[i])
		}
	}
	for i := 0; i < len(n.Instance); i++ {
		if c := n.Instance[i]; !validNameChar(c) && c != '@' {
			return bad("%q: invalid character %q in the instance", name, c)
		}
	}
	return n, nil
}

// ValidateName reports whether name is a valid unit name for kiln (see ParseName).
func ValidateName(name string) error {
	_, err := ParseName(name)
	return err
}

// InstanceName gives the name of an instance of a template: ("my-app@.service", "1") is
// "my-app@1.service".
func InstanceName(template, instance string) (string, error) {
	n, err := ParseName(template)
	if err != nil {
		return "", err
	}
	if !n.IsTemplate() {
		return "", &Error{Err: ErrNotTemplate, Detail: fmt.Sprintf("%q is not of the form name@.type", template)}
	}
	if instance == "" {
		return "", &Error{Err: ErrInstanceName, Detail: "empty instance"}
	}
	full := n.Prefix + "@" + instance + "." + n.Type
	if _, err := ParseName(full); err != nil {
		return "", &Error{Err: ErrInstanceName, Detail: err.(*Error).Detail}
	}
	return full, nil
}
