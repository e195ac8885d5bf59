package systemdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kiln-cluster/kiln/internal/testkit"
)

// TestBinaryPath is where StartWithTests puts the test binary inside the machine.
const TestBinaryPath = "/kiln-tests/pkg.test"

// StartWithTests starts a machine (Require first: it skips without docker or the image) with
// the tests of the package in pkgDir ("" : the current one) compiled statically and mounted
// at TestBinaryPath, so that a test can run some of its own tests inside the machine:
// m.Exec(ctx, systemdtest.TestBinaryPath, "-test.run", "^TestInside$").
func StartWithTests(t testing.TB, pkgDir string, opts Options) *Machine {
	t.Helper()
	Require(t, opts.Image)
	if pkgDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		pkgDir = wd
	}
	bin := t.TempDir()
	cmd := exec.Command(testkit.Go(t), "test", "-c", "-o", filepath.Join(bin, filepath.Base(TestBinaryPath)), ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if raw, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemdtest: go test -c in %s: %v\n%s", pkgDir, err, raw)
	}
	opts.Mounts = append(opts.Mounts, Mount{Source: bin, Target: filepath.Dir(TestBinaryPath), ReadOnly: true})
	return Start(t, opts)
}
