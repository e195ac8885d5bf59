package unit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLineLength is systemd's limit on a line, continuations joined (LONG_LINE_MAX, 1 MiB).
const MaxLineLength = 1 << 20

// Option is one assignment in a unit file: Key=Value under [Section].
type Option struct {
	Section string
	Name    string
	Value   string
	// Line and Column locate the key in the parsed text; both are 0 for options built in code.
	Line   int
	Column int

	// pos maps offsets in Value back to the text, for errors inside a value (a value can span
	// several physical lines through continuations).
	pos []span
}

// span says that Value[off:] starts at line:col of the text (up to the next span).
type span struct{ off, line, col int }

// at gives the line and column of byte offset off of the option's value.
func (o *Option) at(off int) (line, col int) {
	if len(o.pos) == 0 {
		return o.Line, 0
	}
	s := o.pos[0]
	for _, p := range o.pos[1:] {
		if p.off > off {
			break
		}
		s = p
	}
	if off > len(o.Value) {
		off = len(o.Value)
	}
	if off < s.off {
		return s.line, s.col
	}
	return s.line, s.col + utf8.RuneCountInString(o.Value[s.off:off])
}

// piece is one physical line's part of a logical line: logical[off:] came from line at col 1.
type piece struct{ off, line int }

type syntaxParser struct {
	opts    []Option
	errs    Errors
	section string
	inSec   bool
}

func (p *syntaxParser) fail(line, col int, err error, format string, args ...any) {
	p.errs = append(p.errs, &Error{Line: line, Column: col, Err: err, Detail: fmt.Sprintf(format, args...)})
}

// parseSyntax reads the text as systemd does (systemd.syntax(7); conf-parser.c): a UTF-8 byte
// order mark at the start is skipped; lines end in \n, \r\n or \r; a line whose first
// non-blank character is # or ; is a comment, even in the middle of a continuation; a line
// ending in an odd number of backslashes continues on the next one, the backslash replaced by
// a space; [Name] opens a section; Key=Value assigns, blanks around both trimmed. Where
// systemd only logs and ignores a line, kiln reports an error: a unit file kiln ships must
// mean what its author thinks.
func parseSyntax(raw []byte) ([]Option, Errors) {
	p := &syntaxParser{}
	text := string(raw)
	text = strings.TrimPrefix(text, "\uFEFF")

	var logical strings.Builder
	var pieces []piece
	inCont := false
	lineNo := 0

	flush := func() {
		if len(pieces) > 0 {
			p.logicalLine(logical.String(), pieces)
		}
		logical.Reset()
		pieces = pieces[:0]
		inCont = false
	}

	for len(text) > 0 || lineNo == 0 {
		lineNo++
		end := strings.IndexAny(text, "\r\n")
		var line string
		if end < 0 {
			line, text = text, ""
		} else {
			line = text[:end]
			if text[end] == '\r' && end+1 < len(text) && text[end+1] == '\n' {
				end++
			}
			text = text[end+1:]
		}

		if i := strings.IndexByte(line, 0); i >= 0 {
			p.fail(lineNo, utf8.RuneCountInString(line[:i])+1, ErrNUL, "remove it")
			continue
		}
		if !utf8.ValidString(line) {
			col := 1
			for i, r := range line {
				if r == utf8.RuneError {
					if _, size := utf8.DecodeRuneInString(line[i:]); size == 1 {
						break
					}
				}
				col++
			}
			p.fail(lineNo, col, ErrInvalidUTF8, "unit files must be UTF-8 text")
			continue
		}
		if len(line) > MaxLineLength {
			p.fail(lineNo, 0, ErrLineTooLong, "%d bytes, the limit is %d", len(line), MaxLineLength)
			continue
		}

		trimmed := strings.TrimLeft(line, " \t")
		if trimmed != "" && (trimmed[0] == '#' || trimmed[0] == ';') {
			continue // comments are skipped, inside continuations too
		}
		if inCont && logical.Len()+len(line) > MaxLineLength {
			p.fail(pieces[0].line, 0, ErrLineTooLong, "continued line exceeds %d bytes", MaxLineLength)
			logical.Reset()
			pieces = pieces[:0]
			inCont = false
			continue
		}

		pieces = append(pieces, piece{off: logical.Len(), line: lineNo})
		if endsEscaped(line) {
			logical.WriteString(line[:len(line)-1])
			logical.WriteByte(' ')
			inCont = true
			continue
		}
		logical.WriteString(line)
		flush()
	}
	if inCont {
		flush() // a continuation at the end of the file still counts, as in systemd
	}
	return p.opts, p.errs
}

// endsEscaped tells whether the line ends in a backslash that is not itself escaped.
func endsEscaped(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

const blanks = " \t\n\r"

// logicalLine parses one line, continuations joined.
func (p *syntaxParser) logicalLine(s string, pieces []piece) {
	pos := func(off int) (line, col int) {
		pc := pieces[0]
		for _, q := range pieces[1:] {
			if q.off > off {
				break
			}
			pc = q
		}
		return pc.line, utf8.RuneCountInString(s[pc.off:off]) + 1
	}

	start := len(s) - len(strings.TrimLeft(s, blanks))
	body := strings.TrimRight(s[start:], blanks)
	if body == "" || body[0] == '#' || body[0] == ';' {
		return
	}
	line, col := pos(start)

	if body[0] == '[' {
		if body[len(body)-1] != ']' || len(body) < 2 {
			p.fail(line, col, ErrSectionHeader, "%q does not end in ']'", body)
			p.inSec = false
			return
		}
		name := body[1 : len(body)-1]
		switch {
		case name == "":
			p.fail(line, col, ErrSectionHeader, "empty section name")
			p.inSec = false
			return
		case strings.ContainsAny(name, "[]"):
			p.fail(line, col, ErrSectionHeader, "%q has brackets inside the name", body)
			p.inSec = false
			return
		case strings.TrimSpace(name) != name:
			p.fail(line, col, ErrSectionHeader, "%q has blanks around the name (did you mean [%s]?)", body, strings.TrimSpace(name))
			p.inSec = false
			return
		case strings.IndexFunc(name, unicode.IsControl) >= 0:
			p.fail(line, col, ErrSectionHeader, "control character in %q", body)
			p.inSec = false
			return
		}
		p.section, p.inSec = name, true
		return
	}

	eq := strings.IndexByte(body, '=')
	if eq < 0 {
		p.fail(line, col, ErrMissingEquals, "expected Key=Value, got %q", shorten(body))
		return
	}
	if !p.inSec {
		p.fail(line, col, ErrOutsideSection, "put %q under a [Section] header", shorten(body))
		return
	}
	key := strings.TrimRight(body[:eq], blanks)
	if key == "" {
		p.fail(line, col, ErrInvalidKey, "empty key before '='")
		return
	}
	if i := strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		p.fail(line, col, ErrInvalidKey, "key %q contains a blank", key)
		return
	}

	rest := body[eq+1:]
	valOff := start + eq + 1 + (len(rest) - len(strings.TrimLeft(rest, blanks)))
	value := strings.TrimLeft(rest, blanks)

	opt := Option{Section: p.section, Name: key, Value: value, Line: line, Column: col}
	// Spans of the value: where it starts, then each later physical line it reaches.
	vl, vc := pos(valOff)
	opt.pos = append(opt.pos, span{off: 0, line: vl, col: vc})
	for _, q := range pieces {
		if q.off > valOff && q.off-valOff < len(value) {
			opt.pos = append(opt.pos, span{off: q.off - valOff, line: q.line, col: 1})
		}
	}
	p.opts = append(p.opts, opt)
}

func shorten(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "..."
}
