// Package report collects the problems found in the user's input, each with its file, line and
// column, and prints them the way a compiler does: every problem at once, warnings apart from errors.
package report

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kiln-cluster/kiln/internal/inputfile"
)

// Severity of a problem.
type Severity int

const (
	Error Severity = iota
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Problem is one thing wrong with the input. Line and Col are 1-based; 0 means unknown.
type Problem struct {
	Severity Severity
	File     string
	Line     int
	Col      int
	// Path is where in the document the problem is (cluster.etcd.members.1), for scripts and tests.
	Path    string
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Severity.String())
	b.WriteString(": ")
	b.WriteString(p.Message)
	if loc := p.Location(); loc != "" {
		b.WriteString(" (")
		b.WriteString(loc)
		b.WriteString(")")
	}
	return b.String()
}

// Location is file:line:col, as much of it as is known.
func (p Problem) Location() string {
	switch {
	case p.File == "" && p.Line == 0:
		return ""
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// MaxPrinted is how many problems Print writes in full; the others are counted in one line.
const MaxPrinted = 50

// maxMessage bounds a printed message: one that quotes a huge value is cut.
const maxMessage = 1000

// Report is every problem found.
type Report struct {
	Problems []Problem
	// quotable are the files whose lines Print may quote under a problem: the user's own spec
	// (Quote). Other files a spec names (units, snippets) may be links to anything, such as
	// /etc/shadow: their problems give file:line:col and no content.
	quotable map[string]bool
}

// Quote lets Print quote the lines of file (the spec the user wrote) under its problems.
func (r *Report) Quote(file string) {
	if r.quotable == nil {
		r.quotable = map[string]bool{}
	}
	r.quotable[file] = true
}

// Add records a problem.
func (r *Report) Add(p Problem) { r.Problems = append(r.Problems, p) }

// Errorf records an error at file:line:col.
func (r *Report) Errorf(file string, line, col int, path, format string, a ...any) {
	r.Add(Problem{Severity: Error, File: file, Line: line, Col: col, Path: path, Message: fmt.Sprintf(format, a...)})
}

// Warnf records a warning at file:line:col.
func (r *Report) Warnf(file string, line, col int, path, format string, a ...any) {
	r.Add(Problem{Severity: Warning, File: file, Line: line, Col: col, Path: path, Message: fmt.Sprintf(format, a...)})
}

// Merge appends all of o's problems; the files o may quote, r may quote too.
func (r *Report) Merge(o Report) {
	r.Problems = append(r.Problems, o.Problems...)
	for f := range o.quotable {
		r.Quote(f)
	}
}

// HasErrors reports whether any problem is an error, or, when strict, any problem at all.
func (r Report) HasErrors(strict bool) bool {
	for _, p := range r.Problems {
		if p.Severity == Error || strict {
			return true
		}
	}
	return false
}

// Count returns the number of errors and warnings.
func (r Report) Count() (errors, warnings int) {
	for _, p := range r.Problems {
		if p.Severity == Error {
			errors++
		} else {
			warnings++
		}
	}
	return
}

// Sort orders problems by file, line and column, keeping the order of problems at one place.
func (r *Report) Sort() {
	slices.SortStableFunc(r.Problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// Error makes the report usable as an error; it lists every problem, one a line.
func (r Report) Error() string {
	lines := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Print writes the problems like a compiler: the message, an arrow to file:line:col and, for a
// file that may be quoted (Quote), its one line and a caret under the column. Only the first
// MaxPrinted problems are written in full, then how many more there are; the count line
// counts them all. strict prints warnings as errors.
func (r Report) Print(w io.Writer, strict bool) {
	cache := map[string][][]byte{}
	for i, p := range r.Problems {
		if i == MaxPrinted {
			fmt.Fprintf(w, "... and %d more problems\n", len(r.Problems)-MaxPrinted)
			break
		}
		sev := p.Severity
		if strict {
			sev = Error
		}
		msg := p.Message
		if len(msg) > maxMessage {
			msg = strings.ToValidUTF8(msg[:maxMessage], "") + "..."
		}
		fmt.Fprintf(w, "%s: %s\n", sev, msg)
		if loc := p.Location(); loc != "" {
			fmt.Fprintf(w, "  --> %s\n", loc)
		}
		if p.File == "" || p.Line == 0 || !r.quotable[p.File] {
			continue
		}
		lines, ok := cache[p.File]
		if !ok {
			raw, err := inputfile.Read(p.File, inputfile.SpecLimit)
			if err == nil {
				lines = bytes.Split(raw, []byte("\n"))
			}
			cache[p.File] = lines
		}
		if p.Line > len(lines) {
			continue
		}
		gutter := fmt.Sprintf("%d", p.Line)
		pad := strings.Repeat(" ", len(gutter))
		fmt.Fprintf(w, "%s |\n%s | %s\n", pad, gutter, strings.ReplaceAll(string(lines[p.Line-1]), "\t", " "))
		if p.Col > 0 {
			fmt.Fprintf(w, "%s | %s^\n", pad, strings.Repeat(" ", p.Col-1))
		}
	}
	if n := len(r.Problems); n > 0 {
		e, wn := r.Count()
		if strict {
			e, wn = e+wn, 0
		}
		fmt.Fprintf(w, "%d error(s), %d warning(s)\n", e, wn)
	}
}
