package iso

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/kiln-cluster/kiln/internal/testkit"
)

// fixtureDir finds coreos-installer's ISO fixtures in shared/fixtures beside the repository (CI
// clones the repository as main/ with shared/ beside it); they are not copied into the repository.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir, err := testkit.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	fix := filepath.Join(filepath.Dir(dir), "shared", "fixtures", "coreos-installer-iso")
	if _, err := os.Stat(fix); err != nil {
		msg := "coreos-installer ISO fixtures not found at " + fix + " (clone the shared/ folder beside the repository)"
		testkit.Missing(t, "%s", msg)
	}
	return fix
}

// fixture decompresses a fixture (name without .xz) into a temporary directory.
func fixture(t *testing.T, name string) string {
	t.Helper()
	src, err := os.Open(filepath.Join(fixtureDir(t), name+".xz"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	zr, err := xz.NewReader(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, zr); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
