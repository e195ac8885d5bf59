package reboot_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/systemdtest"
	"github.com/kiln-cluster/kiln/node/reboot"
)

// TestPrintBoot prints this boot's identity with the default marker; it runs only inside the
// machine of TestIntegrationBootInContainer.
func TestPrintBoot(t *testing.T) {
	if os.Getenv("KILN_PRINT_BOOT") == "" {
		t.Skip("runs inside the machine of TestIntegrationBootInContainer")
	}
	id, err := reboot.Boot(reboot.DefaultBootMarker)
	if err != nil {
		t.Fatal(err)
	}
	bt, err := reboot.BootTime()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BOOT=%s\nBOOTTIME=%s\n", id, bt.Format(time.RFC3339Nano))
}

// TestIntegrationBootInContainer checks the boot identity where the kernel's boot ID cannot
// tell: in a systemd container (as the docker driver runs nodes), a reboot keeps the host's
// boot ID, and the identity must change all the same; within one boot it must not.
func TestIntegrationBootInContainer(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: systemd in a container")
	}
	m := systemdtest.StartWithTests(t, "", systemdtest.Options{})
	re := regexp.MustCompile(`(?m)^BOOT=(\S+)\nBOOTTIME=(\S+)$`)
	var bootTime time.Time
	boot := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := m.Exec(ctx, "env", "KILN_PRINT_BOOT=1", systemdtest.TestBinaryPath, "-test.run", "^TestPrintBoot$", "-test.v")
		match := re.FindStringSubmatch(out)
		if err != nil || match == nil {
			t.Fatalf("inside the machine: %v\n%s", err, out)
		}
		bt, err := time.Parse(time.RFC3339Nano, match[2])
		if err != nil {
			t.Fatal(err)
		}
		bootTime = bt
		return match[1]
	}
	first := boot()
	firstTime := bootTime
	if again := boot(); again != first || !bootTime.Equal(firstTime) {
		t.Fatalf("one boot, two identities: %s then %s", first, again)
	}
	rebootAt := time.Now()
	m.Reboot()
	second := boot()
	// the boot time is the container's start, not the host kernel's
	if !bootTime.After(firstTime) || bootTime.Before(rebootAt.Add(-2*time.Second)) {
		t.Errorf("boot time %v after a reboot at %v (before: %v)", bootTime, rebootAt, firstTime)
	}
	if second == first {
		t.Fatalf("the identity %s survived a reboot of the container", first)
	}
	kernel := func(id string) string { k, _, _ := strings.Cut(id, "+"); return k }
	t.Logf("before: %s, after the reboot: %s (kernel boot ID unchanged: %v)", first, second, kernel(first) == kernel(second))
}
