// Package testkit holds the small helpers that kiln's tests share, so that each is written
// once: what a test does when a tool it needs is missing (skip, or fail under CI), where the
// tools that make deps builds are, and the kiln binaries (given by the Makefile, or built once
// per test binary), copies of fixtures, and the decoding of Ignition's data URLs.
package testkit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vincent-petithory/dataurl"
)

// EnvRequireTools, set to anything, makes a missing tool fail the test instead of skipping it,
// as $CI does.
const EnvRequireTools = "KILN_REQUIRE_TOOLS"

// ToolsRequired tells whether a missing tool fails tests: under $CI or $KILN_REQUIRE_TOOLS.
func ToolsRequired() bool {
	return os.Getenv("CI") != "" || os.Getenv(EnvRequireTools) != ""
}

// Missing ends the test because something it needs is missing: it fails under ToolsRequired,
// and skips otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ToolsRequired() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// RequireTool returns the path of the command name found in $PATH, or ends the test (Missing).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (make deps installs it)", name)
	}
	return p
}

// Tool returns a tool that make deps builds: $env when it names a file, else bin/tools/name
// under the module root; or ends the test (Missing).
func Tool(t testing.TB, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if fileExists(p) {
			return p
		}
		Missing(t, "%s not found at $%s=%s (run make deps)", name, env, p)
	}
	if root, err := ModuleRoot(); err == nil {
		if p := filepath.Join(root, "bin", "tools", name); fileExists(p) {
			return p
		}
	}
	Missing(t, "%s not found: run make deps or set %s", name, env)
	return ""
}

// ModuleRoot is the folder holding go.mod, found from the working directory up (a test runs in
// its package's folder).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Go returns the go command that runs the tests: from $PATH, else $GOROOT/bin/go.
func Go(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if r := os.Getenv("GOROOT"); r != "" && fileExists(filepath.Join(r, "bin", "go")) {
		return filepath.Join(r, "bin", "go")
	}
	t.Fatal("no go command in $PATH or $GOROOT/bin")
	return ""
}

var built struct {
	sync.Mutex
	dir   string
	paths map[string]string
}

// Binary returns a kiln program: $env when it names a file (the Makefile sets $KILN_BIN and
// $KILN_NODE_BIN to what make build made), else pkg (an import path of a main package, such as
// github.com/kiln-cluster/kiln/cmd/kiln-node) built static (CGO_ENABLED=0, as shipped) once per
// test binary. A package that calls it removes the builds with Main from its TestMain.
func Binary(t testing.TB, env, pkg string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" && fileExists(p) {
		return p
	}
	built.Lock()
	defer built.Unlock()
	if p, ok := built.paths[pkg]; ok {
		return p
	}
	if built.dir == "" {
		d, err := os.MkdirTemp("", "kiln-testkit-bin-")
		if err != nil {
			t.Fatal(err)
		}
		built.dir, built.paths = d, map[string]string{}
	}
	p := filepath.Join(built.dir, strings.ReplaceAll(pkg, "/", "_"), filepath.Base(pkg))
	cmd := exec.Command(Go(t), "build", "-o", p, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	built.paths[pkg] = p
	return p
}

// Main runs the tests and removes what Binary built: call it as the package's TestMain.
func Main(m *testing.M) {
	code := m.Run()
	built.Lock()
	if built.dir != "" {
		if err := os.RemoveAll(built.dir); err != nil {
			fmt.Fprintln(os.Stderr, "testkit:", err)
		}
	}
	built.Unlock()
	os.Exit(code)
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// DataURLContents decodes an Ignition contents source that is a data: URL, gunzipping it when
// compression is "gzip": what Ignition would write for it.
func DataURLContents(t testing.TB, source string, compression *string) []byte {
	t.Helper()
	du, err := dataurl.DecodeString(source)
	if err != nil {
		t.Fatalf("data URL: %v", err)
	}
	return Decompressed(t, du.Data, compression)
}

// Decompressed undoes an Ignition source's compression (nil or "": none; "gzip") on data
// fetched from any source, as Ignition does.
func Decompressed(t testing.TB, data []byte, compression *string) []byte {
	t.Helper()
	if compression == nil || *compression == "" {
		return data
	}
	if *compression != "gzip" {
		t.Fatalf("compression %q: Ignition knows gzip only", *compression)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return out
}

// CopyFile copies the file src to dst, making dst's folder. The copy keeps src's permission
// bits, made writable by its owner: it is the test's own to change.
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	if err := copyFile(src, dst); err != nil {
		t.Fatal(err)
	}
}

// CopyTree copies the folder src into dst (made when missing) with every file and folder below
// it, as CopyFile copies each file; a test's private copy of a fixture.
func CopyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return copyFile(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
