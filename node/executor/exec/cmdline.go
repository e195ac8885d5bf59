package exec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

// command is one command line of ExecStart= and friends, read as systemd.service(5) does.
type command struct {
	// Path is the executable (the first word); Argv the arguments, Argv[0] included (the
	// second word with the '@' prefix, else the first).
	Path string
	Argv []string
	// IgnoreFailure is the '-' prefix: a failing command counts as a success.
	IgnoreFailure bool
	// NoEnvExpand is the ':' prefix: $VAR and ${VAR} are left as they are.
	NoEnvExpand bool
	// Privileged is the '+', '!' or '!!' prefix; the exec executor runs every command as
	// itself, so it only records it.
	Privileged bool
}

// specifiers are the values of systemd's % specifiers for one unit (systemd.unit(5)).
type specifiers struct {
	Name      unit.Name
	MachineID string
	BootID    string
	Hostname  string
	// RuntimeDir is %t (/run for system units).
	RuntimeDir string
}

// Expand replaces the specifiers in s: %n %N %p %P %i %I %j %J %f %H %m %b %t and %%.
// Another % sequence is an error, as in systemd ("failed to resolve unit specifiers").
func (sp specifiers) expand(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	n := sp.Name
	prefix := n.Prefix
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%w: trailing %%", executor.ErrSpecifier)
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case 'n':
			b.WriteString(n.Full)
		case 'N':
			b.WriteString(n.Base())
		case 'p':
			b.WriteString(prefix)
		case 'P':
			b.WriteString(unescapeName(prefix))
		case 'i':
			b.WriteString(n.Instance)
		case 'I':
			b.WriteString(unescapeName(n.Instance))
		case 'j':
			b.WriteString(lastDashComponent(prefix))
		case 'J':
			b.WriteString(unescapeName(lastDashComponent(prefix)))
		case 'f':
			if n.Instance != "" {
				b.WriteString("/" + strings.TrimPrefix(unescapeName(n.Instance), "/"))
			} else {
				b.WriteString("/" + strings.TrimPrefix(unescapeName(prefix), "/"))
			}
		case 'H':
			b.WriteString(sp.Hostname)
		case 'm':
			b.WriteString(sp.MachineID)
		case 'b':
			b.WriteString(sp.BootID)
		case 't':
			b.WriteString(sp.RuntimeDir)
		default:
			return "", fmt.Errorf("%w: %%%c", executor.ErrSpecifier, s[i])
		}
	}
	return b.String(), nil
}

func lastDashComponent(s string) string {
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// unescapeName undoes systemd's unit name escaping: "-" is "/", "\xNN" a byte.
func unescapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '-':
			b.WriteByte('/')
		case s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x':
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// parseCommands reads one ExecStart=-style value: specifiers expanded first (as systemd does
// when it loads the unit), then split into words with quotes and C escapes, several commands
// separated by a lone ";" word. Environment variables are expanded later, by command.expand.
func parseCommands(value string, sp specifiers) ([]command, error) {
	expanded, err := sp.expand(value)
	if err != nil {
		return nil, err
	}
	words, err := splitWords(expanded)
	if err != nil {
		return nil, err
	}
	var out []command
	var cur []string
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		c, err := newCommand(cur)
		if err != nil {
			return err
		}
		out = append(out, c)
		cur = nil
		return nil
	}
	for _, w := range words {
		if w.Text == ";" && !w.Quoted {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, w.Text)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func newCommand(words []string) (command, error) {
	var c command
	first := words[0]
	argv0 := false
	for len(first) > 0 {
		switch first[0] {
		case '-':
			c.IgnoreFailure = true
		case '@':
			argv0 = true
		case ':':
			c.NoEnvExpand = true
		case '+', '!':
			c.Privileged = true
		default:
			goto done
		}
		first = first[1:]
	}
done:
	if first == "" {
		return c, fmt.Errorf("%w: no executable", executor.ErrCommand)
	}
	c.Path = first
	rest := words[1:]
	if argv0 {
		if len(rest) == 0 {
			return c, fmt.Errorf("%w: '@' without argv[0]", executor.ErrCommand)
		}
		c.Argv = append([]string{rest[0]}, rest[1:]...)
	} else {
		c.Argv = append([]string{first}, rest...)
	}
	return c, nil
}

// splitWords splits a command line or an Environment= value as systemd does (unit.SplitWords
// with C escapes); its errors are executor.ErrCommand's.
func splitWords(v string) ([]unit.Word, error) {
	ws, err := unit.SplitWords(v, unit.CEscapes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", executor.ErrCommand, err)
	}
	return ws, nil
}

// Expand returns the command's path and argv with environment variables expanded as systemd
// does at exec time: a word that is exactly $NAME becomes the value's blank-separated words
// (none when unset or empty), ${NAME} is replaced inside a word, and "\$" is a literal '$'.
func (c command) expand(env map[string]string) (path string, argv []string) {
	unescape := func(w string) string { return strings.NewReplacer(`\$`, "$", `\;`, ";").Replace(w) }
	if c.NoEnvExpand {
		argv = make([]string, len(c.Argv))
		for i, w := range c.Argv {
			argv[i] = unescape(w)
		}
		return unescape(c.Path), argv
	}
	for i, w := range c.Argv {
		if name, ok := strings.CutPrefix(w, "$"); ok && i > 0 && validEnvName(name) {
			argv = append(argv, strings.Fields(env[name])...)
			continue
		}
		argv = append(argv, unescape(expandBraced(w, env)))
	}
	return unescape(expandBraced(c.Path, env)), argv
}

func expandBraced(w string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		if w[i] == '\\' && i+1 < len(w) && w[i+1] == '$' {
			b.WriteString(`\$`)
			i++
			continue
		}
		if w[i] == '$' && i+1 < len(w) && w[i+1] == '{' {
			if end := strings.IndexByte(w[i+2:], '}'); end >= 0 && validEnvName(w[i+2:i+2+end]) {
				b.WriteString(env[w[i+2:i+2+end]])
				i += 2 + end
				continue
			}
		}
		b.WriteByte(w[i])
	}
	return b.String()
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r < unicode.MaxASCII && (unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

// parseEnvironment reads one Environment= value: blank-separated, optionally quoted
// NAME=value assignments.
func parseEnvironment(value string) (map[string]string, error) {
	words, err := splitWords(value)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, w := range words {
		name, val, ok := strings.Cut(w.Text, "=")
		if !ok || !validEnvName(name) {
			return nil, fmt.Errorf("%w: %q", executor.ErrEnvironment, w.Text)
		}
		out[name] = val
	}
	return out, nil
}

// parseTimeSpan reads a systemd time span: "90" (seconds), "5s", "1min 30s", "500ms",
// "infinity" (returned as 0 with ok infinite).
func parseTimeSpan(s string) (d time.Duration, infinite bool, err error) {
	s = strings.TrimSpace(s)
	if s == "infinity" {
		return 0, true, nil
	}
	if s == "" {
		return 0, false, fmt.Errorf("%w: empty", executor.ErrTimeSpan)
	}
	units := []struct {
		suffix string
		d      time.Duration
	}{
		{"usec", time.Microsecond}, {"us", time.Microsecond}, {"msec", time.Millisecond}, {"ms", time.Millisecond},
		{"seconds", time.Second}, {"second", time.Second}, {"sec", time.Second}, {"s", time.Second},
		{"minutes", time.Minute}, {"minute", time.Minute}, {"min", time.Minute}, {"m", time.Minute},
		{"hours", time.Hour}, {"hour", time.Hour}, {"hr", time.Hour}, {"h", time.Hour},
		{"days", 24 * time.Hour}, {"day", 24 * time.Hour}, {"d", 24 * time.Hour},
		{"weeks", 7 * 24 * time.Hour}, {"week", 7 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour},
	}
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t")
		j := 0
		for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		if j == 0 {
			return 0, false, fmt.Errorf("%w: %q", executor.ErrTimeSpan, s)
		}
		num, err := strconv.ParseFloat(rest[:j], 64)
		if err != nil {
			return 0, false, fmt.Errorf("%w: %q", executor.ErrTimeSpan, s)
		}
		rest = strings.TrimLeft(rest[j:], " \t")
		mult := time.Second
		for _, u := range units {
			if strings.HasPrefix(rest, u.suffix) && (len(rest) == len(u.suffix) || !unicode.IsLetter(rune(rest[len(u.suffix)]))) {
				mult = u.d
				rest = rest[len(u.suffix):]
				break
			}
		}
		if rest != "" && unicode.IsLetter(rune(rest[0])) {
			return 0, false, fmt.Errorf("%w: %q", executor.ErrTimeSpan, s)
		}
		d += time.Duration(num * float64(mult))
	}
	return d, false, nil
}
