package exec

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

func specs(t *testing.T, name string) specifiers {
	t.Helper()
	n, err := unit.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	return specifiers{Name: n, MachineID: "mid", BootID: "bid", Hostname: "host", RuntimeDir: "/run"}
}

func TestSpecifiers(t *testing.T) {
	tests := []struct {
		name, unit, in, want string
		err                  error
	}{
		{"none", "a.service", "/bin/true", "/bin/true", nil},
		{"name", "my-app@1.service", "%n", "my-app@1.service", nil},
		{"name without type", "my-app@1.service", "%N", "my-app@1", nil},
		{"prefix", "my-app@1.service", "%p", "my-app", nil},
		{"unescaped prefix", "my-app@1.service", "%P", "my/app", nil},
		{"instance", "my-app@web-1.service", "%i", "web-1", nil},
		{"unescaped instance", "my-app@web-1.service", "%I", "web/1", nil},
		{"escaped byte", `x@a\x20b.service`, "%I", "a b", nil},
		{"last prefix component", "my-app@1.service", "%j", "app", nil},
		{"path of instance", "mnt@data-disk.service", "%f", "/data/disk", nil},
		{"host, machine, boot, runtime", "a.service", "%H %m %b %t", "host mid bid /run", nil},
		{"percent", "a.service", "100%%", "100%", nil},
		{"escaped percent is not expanded again", "a@x.service", "%%i-%p", "%i-a", nil},
		{"plain unit has empty instance", "a.service", "[%i]", "[]", nil},
		{"unknown", "a.service", "%Z", "", executor.ErrSpecifier},
		{"trailing", "a.service", "50%", "", executor.ErrSpecifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := specs(t, tt.unit)
			got, err := sp.expand(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("Expand(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseCommands(t *testing.T) {
	type cmd struct {
		Path          string
		Argv          []string
		IgnoreFailure bool
		NoEnvExpand   bool
		Privileged    bool
	}
	tests := []struct {
		name, unit, in string
		want           []cmd
		err            error
	}{
		{"plain", "a.service", "/bin/sleep 10", []cmd{{Path: "/bin/sleep", Argv: []string{"/bin/sleep", "10"}}}, nil},
		{"double quotes", "a.service", `/bin/sh -c "echo a  b"`, []cmd{{Path: "/bin/sh", Argv: []string{"/bin/sh", "-c", "echo a  b"}}}, nil},
		{"single quotes", "a.service", `/bin/sh -c 'echo "x"'`, []cmd{{Path: "/bin/sh", Argv: []string{"/bin/sh", "-c", `echo "x"`}}}, nil},
		{"quote inside a word", "a.service", `/bin/echo --name="a b"`, []cmd{{Path: "/bin/echo", Argv: []string{"/bin/echo", "--name=a b"}}}, nil},
		{"C escapes", "a.service", `/bin/printf a\tb\x41 "\n"`, []cmd{{Path: "/bin/printf", Argv: []string{"/bin/printf", "a\tbA", "\n"}}}, nil},
		{"escaped blank", "a.service", `/bin/echo a\ b`, []cmd{{Path: "/bin/echo", Argv: []string{"/bin/echo", "a b"}}}, nil},
		{"ignore failure", "a.service", "-/bin/false", []cmd{{Path: "/bin/false", Argv: []string{"/bin/false"}, IgnoreFailure: true}}, nil},
		{"argv0", "a.service", "@/bin/sh myname -c true", []cmd{{Path: "/bin/sh", Argv: []string{"myname", "-c", "true"}}}, nil},
		{"combined prefixes", "a.service", "-@/bin/sh sh0", []cmd{{Path: "/bin/sh", Argv: []string{"sh0"}, IgnoreFailure: true}}, nil},
		{"privileged", "a.service", "+/bin/true", []cmd{{Path: "/bin/true", Argv: []string{"/bin/true"}, Privileged: true}}, nil},
		{"fully privileged", "a.service", "!!/bin/true", []cmd{{Path: "/bin/true", Argv: []string{"/bin/true"}, Privileged: true}}, nil},
		{"no env expansion", "a.service", ":/bin/echo $X", []cmd{{Path: "/bin/echo", Argv: []string{"/bin/echo", "$X"}, NoEnvExpand: true}}, nil},
		{"specifiers before splitting", "web@a.service", "/bin/echo %i %n", []cmd{{Path: "/bin/echo", Argv: []string{"/bin/echo", "a", "web@a.service"}}}, nil},
		{"two commands", "a.service", "/bin/echo a ; /bin/echo b", []cmd{
			{Path: "/bin/echo", Argv: []string{"/bin/echo", "a"}}, {Path: "/bin/echo", Argv: []string{"/bin/echo", "b"}}}, nil},
		{"escaped semicolon is a word", "a.service", `/bin/echo \;`, []cmd{{Path: "/bin/echo", Argv: []string{"/bin/echo", `\;`}}}, nil},
		{"bare name", "a.service", "sleep 1", []cmd{{Path: "sleep", Argv: []string{"sleep", "1"}}}, nil},
		{"empty", "a.service", "", nil, nil},
		{"unterminated quote", "a.service", `/bin/sh -c "echo`, nil, executor.ErrCommand},
		{"prefix alone", "a.service", "-", nil, executor.ErrCommand},
		{"argv0 missing", "a.service", "@/bin/sh", nil, executor.ErrCommand},
		{"bad escape", "a.service", `/bin/echo \q`, nil, executor.ErrCommand},
		{"bad specifier", "a.service", "/bin/echo %Z", nil, executor.ErrSpecifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCommands(tt.in, specs(t, tt.unit))
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			var g []cmd
			for _, c := range got {
				g = append(g, cmd(c))
			}
			if !reflect.DeepEqual(g, tt.want) {
				t.Errorf("got %+v\nwant %+v", g, tt.want)
			}
		})
	}
}

func TestCommandExpand(t *testing.T) {
	env := map[string]string{"ONE": "1", "TWO": "a b", "EMPTY": ""}
	tests := []struct {
		name, in string
		want     []string
	}{
		{"braced inside a word", "/bin/echo x${ONE}y", []string{"/bin/echo", "x1y"}},
		{"bare word splits", "/bin/echo $TWO", []string{"/bin/echo", "a", "b"}},
		{"braced keeps one word", "/bin/echo ${TWO}", []string{"/bin/echo", "a b"}},
		{"unset bare word vanishes", "/bin/echo $NOPE $EMPTY end", []string{"/bin/echo", "end"}},
		{"unset braced is empty", "/bin/echo [${NOPE}]", []string{"/bin/echo", "[]"}},
		{"escaped dollar", `/bin/echo \$ONE`, []string{"/bin/echo", "$ONE"}},
		{"not a variable", "/bin/echo $1x a$ONE", []string{"/bin/echo", "$1x", "a$ONE"}},
		{"no expansion prefix", ":/bin/echo ${ONE} $TWO", []string{"/bin/echo", "${ONE}", "$TWO"}},
	}
	sp := specifiers{Name: unit.Name{Full: "a.service", Prefix: "a", Type: "service"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds, err := parseCommands(tt.in, sp)
			if err != nil || len(cmds) != 1 {
				t.Fatalf("parse: %v %v", cmds, err)
			}
			_, argv := cmds[0].expand(env)
			if !reflect.DeepEqual(argv, tt.want) {
				t.Errorf("got %q, want %q", argv, tt.want)
			}
		})
	}
}

func TestParseEnvironment(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		err      error
	}{
		{"one", "A=1", map[string]string{"A": "1"}, nil},
		{"several and quoted", `A=1 "B=two words" 'C=x y'`, map[string]string{"A": "1", "B": "two words", "C": "x y"}, nil},
		{"empty value", "A=", map[string]string{"A": ""}, nil},
		{"equals in value", "A=b=c", map[string]string{"A": "b=c"}, nil},
		{"no equals", "A", nil, executor.ErrEnvironment},
		{"bad name", "1A=x", nil, executor.ErrEnvironment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvironment(tt.in)
			if !errors.Is(err, tt.err) || (err == nil && !reflect.DeepEqual(got, tt.want)) {
				t.Errorf("got %v, %v; want %v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseTimeSpan(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		inf  bool
		err  bool
	}{
		{"90", 90 * time.Second, false, false},
		{"5s", 5 * time.Second, false, false},
		{"500ms", 500 * time.Millisecond, false, false},
		{"1min 30s", 90 * time.Second, false, false},
		{"1min30s", 90 * time.Second, false, false},
		{"2h", 2 * time.Hour, false, false},
		{"0.5s", 500 * time.Millisecond, false, false},
		{"infinity", 0, true, false},
		{"", 0, false, true},
		{"5 parsecs", 0, false, true},
		{"s", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, inf, err := parseTimeSpan(tt.in)
			if (err != nil) != tt.err || d != tt.want || inf != tt.inf {
				t.Errorf("parseTimeSpan(%q) = %v, %v, %v", tt.in, d, inf, err)
			}
		})
	}
}
