package unit

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type kv struct{ Section, Name, Value string }

func optsOf(u *Unit) []kv {
	out := make([]kv, len(u.Options))
	for i, o := range u.Options {
		out[i] = kv{o.Section, o.Name, o.Value}
	}
	return out
}

func mustParse(t *testing.T, name, text string) *Unit {
	t.Helper()
	u, err := Parse(name, []byte(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", name, err)
	}
	return u
}

// wantErr asserts that err holds a problem wrapping sentinel at line:col (col 0: any column)
// whose text contains detail.
func wantErr(t *testing.T, err error, sentinel error, line, col int, detail string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v at %d:%d", sentinel, line, col)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %v", err, sentinel)
	}
	var list Errors
	if !errors.As(err, &list) {
		t.Fatalf("error %T is not an Errors", err)
	}
	for _, e := range list {
		if errors.Is(e, sentinel) && e.Line == line && (col == 0 || e.Column == col) && strings.Contains(e.Error(), detail) {
			return
		}
	}
	t.Fatalf("no %v at %d:%d containing %q in:\n%v", sentinel, line, col, detail, err)
}

func TestSyntax(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []kv
	}{
		{
			name: "sections and keys",
			text: "[Unit]\nDescription=My app\n\n[Service]\nExecStart=/bin/app --flag\n",
			want: []kv{{"Unit", "Description", "My app"}, {"Service", "ExecStart", "/bin/app --flag"}},
		},
		{
			name: "comments with # and ; and indentation",
			text: "# top\n; also\n[Unit]\n   # indented comment\nDescription=x # not a comment\n",
			want: []kv{{"Unit", "Description", "x # not a comment"}},
		},
		{
			name: "blanks around = and at the ends are trimmed",
			text: "[Unit]\n  Description \t=   spaced out  \t\n",
			want: []kv{{"Unit", "Description", "spaced out"}},
		},
		{
			name: "continuation replaces the backslash with a space",
			text: "[Service]\nExecStart=/bin/app \\\n    --one \\\n    --two\n",
			want: []kv{{"Service", "ExecStart", "/bin/app      --one      --two"}},
		},
		{
			name: "comments inside a continuation are skipped",
			text: "[Section C]\nKeyThree=value 3\\\n# this line is ignored\n; this line is ignored too\n       value 3 continued\n",
			want: []kv{{"Section C", "KeyThree", "value 3        value 3 continued"}},
		},
		{
			name: "a comment ending in a backslash does not continue",
			text: "[Unit]\n# comment \\\nDescription=kept\n",
			want: []kv{{"Unit", "Description", "kept"}},
		},
		{
			name: "escaped backslash at the end is not a continuation",
			text: "[Service]\nExecStart=/bin/echo a\\\\\nUser=me\n",
			want: []kv{{"Service", "ExecStart", `/bin/echo a\\`}, {"Service", "User", "me"}},
		},
		{
			name: "blank line ends a continuation",
			text: "[Service]\nExecStart=/bin/app \\\n\nUser=me\n",
			want: []kv{{"Service", "ExecStart", "/bin/app"}, {"Service", "User", "me"}},
		},
		{
			name: "continuation at the end of the file",
			text: "[Service]\nExecStart=/bin/app \\",
			want: []kv{{"Service", "ExecStart", "/bin/app"}},
		},
		{
			name: "repeated keys and empty resets are kept in order",
			text: "[Service]\nExecStartPre=/bin/a\nExecStartPre=\nExecStartPre=/bin/b\n",
			want: []kv{{"Service", "ExecStartPre", "/bin/a"}, {"Service", "ExecStartPre", ""}, {"Service", "ExecStartPre", "/bin/b"}},
		},
		{
			name: "quotes are kept in values (each directive unquotes its own way)",
			text: "[Service]\nExecStart=/bin/sh -c \"echo 'hi there'\"\n",
			want: []kv{{"Service", "ExecStart", `/bin/sh -c "echo 'hi there'"`}},
		},
		{
			name: "value with = inside",
			text: "[Service]\nEnvironment=A=1 B=2\n",
			want: []kv{{"Service", "Environment", "A=1 B=2"}},
		},
		{
			name: "CRLF and CR line ends",
			text: "[Unit]\r\nDescription=a\r\n[Service]\rUser=b\r",
			want: []kv{{"Unit", "Description", "a"}, {"Service", "User", "b"}},
		},
		{
			name: "byte order mark",
			text: "\uFEFF[Unit]\nDescription=bom\n",
			want: []kv{{"Unit", "Description", "bom"}},
		},
		{
			name: "a section may repeat",
			text: "[Unit]\nA=1\n[Service]\nB=2\n[Unit]\nC=3\n",
			want: []kv{{"Unit", "A", "1"}, {"Service", "B", "2"}, {"Unit", "C", "3"}},
		},
		{
			name: "empty file",
			text: "",
			want: []kv{},
		},
		{
			name: "unicode values",
			text: "[Unit]\nDescription=Grüße 🚀\n",
			want: []kv{{"Unit", "Description", "Grüße 🚀"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := mustParse(t, "", tt.text)
			got := optsOf(u)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("options\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		sentinel  error
		line, col int
		detail    string
	}{
		{"missing equals", "[Unit]\nDescription\n", ErrMissingEquals, 2, 1, `"Description"`},
		{"missing equals indented", "[Unit]\n   Bad line here\n", ErrMissingEquals, 2, 4, "Bad line here"},
		{"outside a section", "Description=x\n[Unit]\n", ErrOutsideSection, 1, 1, "Description=x"},
		{"unterminated header", "[Unit\nA=b\n", ErrSectionHeader, 1, 1, `"[Unit"`},
		{"empty header", "[]\n", ErrSectionHeader, 1, 1, "empty section name"},
		{"blanks in header", "[ X-Fleet ]\n", ErrSectionHeader, 1, 1, "did you mean [X-Fleet]?"},
		{"brackets in header", "[a]b]\n", ErrSectionHeader, 1, 1, "brackets"},
		{"empty key", "[Unit]\n  = value\n", ErrInvalidKey, 2, 3, "empty key"},
		{"blank in key", "[Unit]\nDescrip tion=x\n", ErrInvalidKey, 2, 1, "contains a blank"},
		{"NUL byte", "[Unit]\nDescription=a\x00b\n", ErrNUL, 2, 14, ""},
		{"invalid UTF-8", "[Unit]\nDescription=ab\xffc\n", ErrInvalidUTF8, 2, 15, ""},
		{"line too long", "[Unit]\nDescription=" + strings.Repeat("x", MaxLineLength) + "\n", ErrLineTooLong, 2, 0, "bytes"},
		{"error after a continuation points at its first line", "[Unit]\nA=b\nNoEquals \\\n   still none\n", ErrMissingEquals, 3, 1, ""},
		{"column counts characters, not bytes", "[Unit]\nÄÖÜ\n", ErrMissingEquals, 2, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("", []byte(tt.text))
			wantErr(t, err, tt.sentinel, tt.line, tt.col, tt.detail)
		})
	}
}

func TestSyntaxReportsEveryProblem(t *testing.T) {
	_, err := Parse("", []byte("Orphan=1\n[Unit]\nBad\n[X-Fleet]\nMachinID=abc\n"))
	var list Errors
	if !errors.As(err, &list) || len(list) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	for i, line := range []int{1, 3, 5} {
		if list[i].Line != line {
			t.Errorf("problem %d at line %d, want %d", i, list[i].Line, line)
		}
	}
}

func TestValues(t *testing.T) {
	u := mustParse(t, "", "[Service]\nExecStartPre=/bin/a\nExecStartPre=/bin/b\nExecStartPre=\nExecStartPre=/bin/c\nExecStartPre=/bin/d\nUser=a\nUser=b\n")
	if got, want := u.Values("Service", "ExecStartPre"), []string{"/bin/c", "/bin/d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Values = %q, want %q (an empty assignment resets the list)", got, want)
	}
	if v, ok := u.Value("Service", "User"); !ok || v != "b" {
		t.Errorf("Value(User) = %q, %v; want the last one, b", v, ok)
	}
	if _, ok := u.Value("Service", "Group"); ok {
		t.Error("Value(Group) is set")
	}
	if got := u.Values("Service", "Missing"); got != nil {
		t.Errorf("Values(Missing) = %q", got)
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  int
	}{
		{`a b  c`, []string{"a", "b", "c"}, -1},
		{"a\tb", []string{"a", "b"}, -1},
		{`"region=us east" "disk=ssd"`, []string{"region=us east", "disk=ssd"}, -1},
		{`'single quoted' x`, []string{"single quoted", "x"}, -1},
		{`pre"fix mid"post`, []string{"prefix midpost"}, -1},
		{`foo\*.service`, []string{`foo\*.service`}, -1},
		{`a\ b`, []string{`a\ b`}, -1},
		{`"a \" b"`, []string{`a \" b`}, -1},
		{`"open`, nil, 0},
		{`ok "open`, nil, 3},
		{``, nil, -1},
	}
	for _, tt := range tests {
		ws, err := SplitWords(tt.in, KeepEscapes)
		bad := -1
		if we, ok := err.(*WordError); ok {
			bad = we.Off
		}
		var got []string
		for _, w := range ws {
			got = append(got, w.Text)
		}
		if !reflect.DeepEqual(got, tt.want) || bad != tt.bad {
			t.Errorf("SplitWords(%q, KeepEscapes) = %q, %d; want %q, %d", tt.in, got, bad, tt.want, tt.bad)
		}
	}
}

// One splitter, two of systemd's flag sets: unit-name lists keep escapes ("\x2d" is part of
// a name that systemd-escape made), command lines and Environment= decode them.
func TestSplitWordsEscapes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		esc  Escapes
		want []string
		err  error
	}{
		{"name list keeps \\x2d", `foo\x2dbar.service b`, KeepEscapes, []string{`foo\x2dbar.service`, "b"}, nil},
		{"command decodes \\x2d", `foo\x2dbar.service b`, CEscapes, []string{"foo-bar.service", "b"}, nil},
		{"C escapes", `a\tb "c\nd" 'e\nf' \101 \s`, CEscapes, []string{"a\tb", "c\nd", `e\nf`, "A", " "}, nil},
		{"escaped blank joins", `a\ b c`, CEscapes, []string{"a b", "c"}, nil},
		{"separator stays escaped", `echo \; x`, CEscapes, []string{"echo", `\;`, "x"}, nil},
		{"bad escape", `a\q`, CEscapes, nil, ErrEscape},
		{"trailing backslash", `a\`, CEscapes, nil, ErrEscape},
		{"unterminated quote", `a "b`, CEscapes, nil, ErrQuote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := SplitWords(tt.in, tt.esc)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			var got []string
			for _, w := range ws {
				got = append(got, w.Text)
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
