package unit

import "strings"

// word is one whitespace-separated word of a value, quotes removed; off is the byte offset of
// its first character in the value.
type word struct {
	text string
	off  int
}

// splitWords splits a value the way systemd splits list settings (extract_first_word with
// unquoting): blanks separate words; "double" or 'single' quotes keep blanks inside a word and
// are removed; a backslash protects the next character from both and is kept, because the
// words kiln splits are globs (path.Match reads "\*" as a literal star) and metadata. It
// returns the offset of an unterminated quote, or -1.
func splitWords(v string) ([]word, int) {
	var out []word
	var b strings.Builder
	inWord := false
	start := 0
	var quote byte
	quoteAt := -1
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote != 0:
			switch {
			case c == '\\' && i+1 < len(v):
				b.WriteByte(c)
				i++
				b.WriteByte(v[i])
			case c == quote:
				quote = 0
			default:
				b.WriteByte(c)
			}
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, word{text: b.String(), off: start})
				b.Reset()
				inWord = false
			}
		default:
			if !inWord {
				inWord, start = true, i
			}
			switch {
			case c == '"' || c == '\'':
				quote, quoteAt = c, i
			case c == '\\' && i+1 < len(v):
				b.WriteByte(c)
				i++
				b.WriteByte(v[i])
			default:
				b.WriteByte(c)
			}
		}
	}
	if quote != 0 {
		return out, quoteAt
	}
	if inWord {
		out = append(out, word{text: b.String(), off: start})
	}
	return out, -1
}
