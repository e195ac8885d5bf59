package unit

import (
	"fmt"
	"strconv"
	"strings"
)

// Escapes says what SplitWords does with a backslash. systemd splits every list setting with
// extract_first_word, but with flags that depend on the setting (systemd.syntax(7),
// systemd.service(5) "Command lines"): command lines and Environment= decode C escapes, lists of
// unit names keep them, since a unit name holds escapes such as "\x2d" (systemd-escape).
type Escapes int

const (
	// KeepEscapes: a backslash protects the next character from blanks and quotes and stays in
	// the word (EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE): unit names, and the globs and metadata
	// of [X-Fleet] (path.Match reads "\*" as a literal star).
	KeepEscapes Escapes = iota
	// CEscapes: C escapes are decoded, outside quotes and inside double quotes
	// (EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE): \a \b \f \n \r \t \v \s \\ \" \' "\ " \xNN \NNN;
	// "\;" and "\$" stay escaped, for the command line's separator and variables.
	CEscapes
)

// Word is one word of a value, quotes removed.
type Word struct {
	Text string
	// Off is the byte offset of the word's first character in the value.
	Off int
	// Quoted: some part of the word was quoted (a quoted ";" separates no commands).
	Quoted bool
}

// WordError is a problem at a byte offset of the value that SplitWords read.
type WordError struct {
	Off    int
	Err    error // ErrQuote or ErrEscape
	Detail string
}

func (e *WordError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

func (e *WordError) Unwrap() error { return e.Err }

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// SplitWords splits a value into words as systemd's extract_first_word does: blanks separate
// words, '...' and "..." quote any part of a word and are removed, and backslashes are kept or
// decoded as esc says. An unterminated quote or a bad escape is a *WordError.
func SplitWords(v string, esc Escapes) ([]Word, error) {
	var out []Word
	i := 0
	for {
		for i < len(v) && isBlank(v[i]) {
			i++
		}
		if i == len(v) {
			return out, nil
		}
		w := Word{Off: i}
		var b strings.Builder
		for i < len(v) && !isBlank(v[i]) {
			switch c := v[i]; c {
			case '\'', '"':
				w.Quoted = true
				end := i + 1
				for ; end < len(v) && v[end] != c; end++ {
					if v[end] != '\\' || end+1 >= len(v) {
						b.WriteByte(v[end])
						continue
					}
					switch {
					case esc == KeepEscapes:
						b.WriteString(v[end : end+2])
						end++
					case c == '"':
						n, r, err := cEscape(v, end)
						if err != nil {
							return nil, err
						}
						b.WriteString(r)
						end += n - 1
					default: // single quotes take a backslash as it is
						b.WriteByte(v[end])
					}
				}
				if end == len(v) {
					return nil, &WordError{Off: i, Err: ErrQuote}
				}
				i = end + 1
			case '\\':
				switch {
				case esc == KeepEscapes && i+1 < len(v):
					b.WriteString(v[i : i+2])
					i += 2
				case esc == KeepEscapes:
					b.WriteByte(c)
					i++
				default:
					n, r, err := cEscape(v, i)
					if err != nil {
						return nil, err
					}
					b.WriteString(r)
					i += n
				}
			default:
				b.WriteByte(c)
				i++
			}
		}
		w.Text = b.String()
		out = append(out, w)
	}
}

// cEscape reads the C escape at v[at] (a backslash) and returns its length and its text.
func cEscape(v string, at int) (int, string, error) {
	s := v[at:]
	if len(s) < 2 {
		return 0, "", &WordError{Off: at, Err: ErrEscape, Detail: "trailing backslash"}
	}
	switch c := s[1]; c {
	case 'a':
		return 2, "\a", nil
	case 'b':
		return 2, "\b", nil
	case 'f':
		return 2, "\f", nil
	case 'n':
		return 2, "\n", nil
	case 'r':
		return 2, "\r", nil
	case 't':
		return 2, "\t", nil
	case 'v':
		return 2, "\v", nil
	case 's':
		return 2, " ", nil
	case ';', '$':
		// a literal ';' word and '$' sign: the command line's parser reads them later
		return 2, "\\" + string(c), nil
	case '\\', '"', '\'', ' ':
		return 2, string(c), nil
	case 'x':
		if len(s) >= 4 {
			if n, err := strconv.ParseUint(s[2:4], 16, 8); err == nil {
				return 4, string([]byte{byte(n)}), nil
			}
		}
	case '0', '1', '2', '3':
		if len(s) >= 4 {
			if n, err := strconv.ParseUint(s[1:4], 8, 8); err == nil {
				return 4, string([]byte{byte(n)}), nil
			}
		}
	}
	return 0, "", &WordError{Off: at, Err: ErrEscape, Detail: fmt.Sprintf("%q", s[:2])}
}
