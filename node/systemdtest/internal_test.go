package systemdtest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type named struct {
	testing.TB
	name string
}

func (n named) Name() string { return n.name }

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^kiln-[a-z0-9][a-z0-9-]*[a-z0-9]$`)
	for _, tc := range []struct {
		name, test, prefix string
	}{
		{name: "plain", test: "TestIntegrationSystemdHost", prefix: "kiln-integrationsystemdhost-"},
		{name: "subtest", test: "TestX/two machines", prefix: "kiln-x-two-machines-"},
		{name: "symbols only", test: "Test/#01", prefix: "kiln-01-"},
		{name: "empty after trim", test: "Test", prefix: "kiln-"},
		{name: "long", test: "Test" + strings.Repeat("Abc", 40), prefix: "kiln-" + strings.Repeat("abc", 13) + "a-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := uniqueName(named{t, tc.test}), uniqueName(named{t, tc.test})
			if a == b {
				t.Errorf("two names alike: %s", a)
			}
			if !strings.HasPrefix(a, tc.prefix) || !valid.MatchString(a) || len(a) > 63 {
				t.Errorf("uniqueName(%q) = %q, want a hostname-safe name starting %q", tc.test, a, tc.prefix)
			}
		})
	}
}

func TestOrphans(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	list := fmt.Sprintf("live %d\ndead %d\nunlabelled\nbad x\n\n", os.Getpid(), dead.Process.Pid)
	if got, want := orphans(list), []string{"dead", "unlabelled", "bad"}; !slices.Equal(got, want) {
		t.Errorf("orphans = %v, want %v", got, want)
	}
}

func TestExecError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  ExecError
		want string
	}{
		{name: "with stderr", err: ExecError{Machine: "m", Cmd: []string{"systemctl", "start", "x"}, ExitCode: 5, Stderr: "Unit x not found.\n"},
			want: "m: systemctl start x: exit status 5: Unit x not found."},
		{name: "quiet", err: ExecError{Machine: "m", Cmd: []string{"false"}, ExitCode: 1}, want: "m: false: exit status 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
