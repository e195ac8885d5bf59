package testkit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// A missing tool skips the test, and fails it under CI or KILN_REQUIRE_TOOLS (any value, "1"
// as "true").
func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		name, ci, require string
		wantFail          bool
	}{
		{name: "skips by default"},
		{name: "fails under CI", ci: "true", wantFail: true},
		{name: "fails with KILN_REQUIRE_TOOLS=1", require: "1", wantFail: true},
		{name: "fails with KILN_REQUIRE_TOOLS=true", require: "true", wantFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv(EnvRequireTools, tc.require)
			var failed, skipped bool
			// Run the check in a goroutine of its own: Fatal and Skip end it with Goexit.
			done := make(chan struct{})
			rec := &recorder{TB: t, failed: &failed, skipped: &skipped}
			go func() {
				defer close(done)
				RequireTool(rec, "kiln-no-such-tool")
			}()
			<-done
			if failed != tc.wantFail || skipped == tc.wantFail {
				t.Errorf("failed %v, skipped %v; want failed %v", failed, skipped, tc.wantFail)
			}
		})
	}
}

// recorder notes Fatal and Skip instead of ending the real test.
type recorder struct {
	testing.TB
	failed, skipped *bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(...any) {
	*r.failed = true
	runtime.Goexit()
}
func (r *recorder) Skip(...any) {
	*r.skipped = true
	runtime.Goexit()
}

func TestToolFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TESTKIT_TOOL", p)
	if got := Tool(t, "KILN_TESTKIT_TOOL", "tool"); got != p {
		t.Fatalf("Tool = %s, want %s", got, p)
	}
}

// Binary builds a package once per test binary, and takes $env when it is set.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	t.Setenv("KILN_TESTKIT_BIN", "")
	const pkg = "github.com/kiln-cluster/kiln/internal/testkit/testdata/hello"
	a := Binary(t, "KILN_TESTKIT_BIN", pkg)
	out, err := exec.Command(a).Output()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("%s: %q %v", a, out, err)
	}
	if b := Binary(t, "KILN_TESTKIT_BIN", pkg); b != a {
		t.Errorf("built twice: %s, %s", a, b)
	}
	t.Setenv("KILN_TESTKIT_BIN", "/bin/true")
	if p := Binary(t, "KILN_TESTKIT_BIN", pkg); p != "/bin/true" {
		t.Errorf("$KILN_TESTKIT_BIN not taken: %s", p)
	}
}

func TestDataURLContents(t *testing.T) {
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write([]byte("hello, world\n"))
	zw.Close()
	gz, none := "gzip", ""
	for _, tc := range []struct {
		name, source string
		compression  *string
	}{
		{"percent-encoded", "data:,hello%2C%20world%0A", nil},
		{"base64", "data:;base64," + base64.StdEncoding.EncodeToString([]byte("hello, world\n")), &none},
		{"gzip", "data:;base64," + base64.StdEncoding.EncodeToString(zipped.Bytes()), &gz},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DataURLContents(t, tc.source, tc.compression); string(got) != "hello, world\n" {
				t.Errorf("got %q", got)
			}
		})
	}
	if got := Decompressed(t, zipped.Bytes(), &gz); string(got) != "hello, world\n" {
		t.Errorf("Decompressed: %q", got)
	}
}

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "key"), []byte("secret"), 0o600)
	os.WriteFile(filepath.Join(src, "sub", "ro"), []byte("read-only"), 0o444)
	CopyTree(t, src, dst)
	for name, want := range map[string]struct {
		data string
		perm os.FileMode
	}{"key": {"secret", 0o600}, "sub/ro": {"read-only", 0o644}} {
		b, err := os.ReadFile(filepath.Join(dst, name))
		fi, _ := os.Stat(filepath.Join(dst, name))
		if err != nil || string(b) != want.data || fi.Mode().Perm() != want.perm {
			t.Errorf("%s: %q %v %v, want %q %v", name, b, fi.Mode().Perm(), err, want.data, want.perm)
		}
	}
	CopyFile(t, filepath.Join(src, "key"), filepath.Join(dst, "new", "key"))
	if b, _ := os.ReadFile(filepath.Join(dst, "new", "key")); string(b) != "secret" {
		t.Errorf("CopyFile: %q", b)
	}
}
