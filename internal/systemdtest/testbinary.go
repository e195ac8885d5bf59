package systemdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildTestBinary compiles the tests of the package in pkgDir into out, statically
// (CGO_ENABLED=0), so that a test can run some of its own tests inside a machine: mount out's
// folder and m.Exec(ctx, "/mnt/x.test", "-test.run", "^TestInside$").
func BuildTestBinary(t testing.TB, pkgDir, out string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(goBin, "test", "-c", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if raw, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemdtest: go test -c in %s: %v\n%s", pkgDir, err, raw)
	}
}
