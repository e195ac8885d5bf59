package executor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/systemdtest"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// buildTestBinary compiles the tests of the package in dir, statically, into out.
func buildTestBinary(t *testing.T, dir, out string) {
	t.Helper()
	cmd := exec.Command(testkit.Go(t), "test", "-c", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if raw, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, raw)
	}
}

// TestIntegrationSystemdExecutor runs the executor contract (TestContractSystemd) against a
// real systemd: this package's tests, compiled statically, inside a systemd container. Then,
// from outside, systemctl sees the unit the contract left running, from its file under
// /run/systemd/system.
func TestIntegrationSystemdExecutor(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: systemd in a container")
	}
	systemdtest.Require(t, "")
	bin := t.TempDir()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	buildTestBinary(t, wd, filepath.Join(bin, "executor.test"))
	m := systemdtest.Start(t, systemdtest.Options{Mounts: []systemdtest.Mount{{Source: bin, Target: "/kiln", ReadOnly: true}}})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := m.Exec(ctx, "env", "KILN_SYSTEMD_CONTRACT=1", "/kiln/executor.test",
		"-test.run", "^TestContractSystemd$", "-test.v", "-test.count=1")
	t.Logf("inside the machine:\n%s", out)
	if err != nil {
		t.Fatalf("the contract failed against systemd: %v", err)
	}
	passed := regexp.MustCompile(`(?m)^\s*--- PASS: TestContractSystemd/(\S+)`).FindAllStringSubmatch(out, -1)
	if len(passed) < 9 || strings.Contains(out, "--- FAIL") || strings.Contains(out, "--- SKIP: TestContractSystemd ") {
		t.Fatalf("contract subtests passed: %d, want every one", len(passed))
	}

	if got := strings.TrimSpace(m.Run("systemctl", "is-active", "kiln-left@x.service")); got != "active" {
		t.Errorf("systemctl is-active kiln-left@x.service: %q", got)
	}
	show := m.Run("systemctl", "show", "-p", "FragmentPath", "-p", "SubState", "kiln-left@x.service")
	if !strings.Contains(show, "FragmentPath=/run/systemd/system/kiln-left@.service") || !strings.Contains(show, "SubState=running") {
		t.Errorf("systemctl show:\n%s", show)
	}
	if head := m.Run("head", "-1", "/run/systemd/system/kiln-left@.service"); !strings.HasPrefix(head, markerPrefix) {
		t.Errorf("unit file's first line %q, want the kiln marker", head)
	}
	// The contract's own units are gone or stopped: nothing of it runs but the one left.
	active := m.Run("systemctl", "list-units", "--state=active", "--no-legend", "--plain", "kiln-test-*")
	if strings.TrimSpace(active) != "" {
		t.Errorf("contract units still active:\n%s", active)
	}
}
