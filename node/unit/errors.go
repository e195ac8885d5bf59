package unit

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors: every problem Parse, ValidateName and ParseState report wraps one of these,
// so callers and tests compare with errors.Is.
var (
	// Syntax of the file (systemd.syntax(7)).
	ErrTooLarge       = errors.New("unit file too large")
	ErrNUL            = errors.New("NUL byte in unit file")
	ErrInvalidUTF8    = errors.New("invalid UTF-8")
	ErrLineTooLong    = errors.New("line too long")
	ErrSectionHeader  = errors.New("invalid section header")
	ErrOutsideSection = errors.New("assignment outside of any section")
	ErrMissingEquals  = errors.New("missing '='")
	ErrInvalidKey     = errors.New("invalid key")
	ErrQuote          = errors.New("unterminated quote")
	ErrEscape         = errors.New("invalid escape")

	// The [X-Fleet] section.
	ErrUnknownKey    = errors.New("unknown key in [X-Fleet]")
	ErrEmptyValue    = errors.New("empty value")
	ErrBool          = errors.New("invalid boolean")
	ErrMetadata      = errors.New("invalid MachineMetadata")
	ErrGlob          = errors.New("invalid glob pattern")
	ErrMachineID     = errors.New("invalid MachineID")
	ErrCombination   = errors.New("options cannot be combined")
	ErrUnresolvable  = errors.New("unresolvable requirements")
	ErrSelfReference = errors.New("unit refers to itself")

	// Unit names.
	ErrName         = errors.New("invalid unit name")
	ErrNotTemplate  = errors.New("not a template unit")
	ErrInstanceName = errors.New("invalid instance name")

	// Desired states.
	ErrState = errors.New("invalid desired state")
)

// Error is one problem in a unit file, at a line and column (both 1-based; columns count
// characters, not bytes; Column is 0 when the problem concerns the whole line).
type Error struct {
	Line   int
	Column int
	// Err is one of the sentinel errors above.
	Err error
	// Detail says what exactly is wrong; it may be empty.
	Detail string
}

// Error formats the problem as "line:col: what: detail", ready for a caller to prefix with
// the file's name.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Line > 0 && e.Column > 0:
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	case e.Line > 0:
		fmt.Fprintf(&b, "%d: ", e.Line)
	}
	b.WriteString(e.Err.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Message is the problem without its position ("unknown key in [X-Fleet]: ..."), for
// callers that print positions their own way.
func (e *Error) Message() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap gives the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one unit file, in the order of the file. Parse returns
// all of them at once rather than stopping at the first.
type Errors []*Error

// Error joins the problems, one a line.
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.Is and errors.As see every problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
