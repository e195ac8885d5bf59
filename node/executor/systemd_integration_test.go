package executor

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/systemdtest"
)

// TestIntegrationSystemdExecutor runs the executor contract (TestContractSystemd) against a
// real systemd: the contract's tests (package exec), compiled statically, inside a systemd container. Then,
// from outside, systemctl sees the unit the contract left running, from its file under
// /run/systemd/system.
func TestIntegrationSystemdExecutor(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: systemd in a container")
	}
	// the contract's tests live with the exec executor, which they also check
	m := systemdtest.StartWithTests(t, "exec", systemdtest.Options{})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := m.Exec(ctx, "env", "KILN_SYSTEMD_CONTRACT=1", systemdtest.TestBinaryPath,
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
	if head := m.Run("head", "-1", "/run/systemd/system/kiln-left@.service"); !strings.HasPrefix(head, MarkerPrefix) {
		t.Errorf("unit file's first line %q, want the kiln marker", head)
	}
	// The contract's own units are gone or stopped: nothing of it runs but the one left.
	active := m.Run("systemctl", "list-units", "--state=active", "--no-legend", "--plain", "kiln-test-*")
	if strings.TrimSpace(active) != "" {
		t.Errorf("contract units still active:\n%s", active)
	}
}
