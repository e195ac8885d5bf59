package systemdtest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
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

// recorder is a testing.TB whose Skip and Fatal record the message and end the goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestRequireWithoutDocker(t *testing.T) {
	for _, tc := range []struct {
		name, ci, require string
		wantFail          bool
	}{
		{name: "skips by default"},
		{name: "fails under CI", ci: "true", wantFail: true},
		{name: "fails with KILN_REQUIRE_TOOLS", require: "1", wantFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", tc.ci)
			t.Setenv("KILN_REQUIRE_TOOLS", tc.require)
			r := &recorder{TB: t}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				Require(r, "")
				t.Error("Require returned without docker")
			}()
			wg.Wait()
			msg := r.skipped
			if tc.wantFail {
				msg = r.failed
			}
			if !strings.Contains(msg, "docker is not installed") {
				t.Errorf("skipped %q, failed %q", r.skipped, r.failed)
			}
		})
	}
}
