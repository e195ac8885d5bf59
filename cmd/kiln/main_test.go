package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
)

// kiln runs the CLI in-process and returns its exit code and output.
func kiln(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if os.Getenv("XDG_CONFIG_HOME") == "" || !strings.HasPrefix(os.Getenv("XDG_CONFIG_HOME"), os.TempDir()) {
		t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // render writes the current context there
	}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

const example = "../../configs/examples/demo.yaml"

func TestValidateExample(t *testing.T) {
	code, out, errs := kiln(t, "validate", "-f", example)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
}

func TestValidateReportsLikeACompiler(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(spec, []byte("cluster:\n  os: flatcar\n  chanel: stable\nnodes:\n  - {name: n1, ip: 10.0.0.300/24}\n"), 0o644)
	code, _, errs := kiln(t, "validate", "-f", spec)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errs)
	}
	for _, want := range []string{
		`error: unknown key "chanel" in cluster: did you mean "channel"?`,
		"--> " + spec + ":3:3",
		"3 |   chanel: stable",
		"  |   ^",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("output lacks %q:\n%s", want, errs)
		}
	}
}

func TestValidateStrict(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(spec, []byte("nodes: [{name: n1, ip: 10.0.0.1/24}]\n"), 0o644) // no SSH keys: a warning
	if code, _, errs := kiln(t, "validate", "-f", spec); code != 0 || !strings.Contains(errs, "warning:") {
		t.Fatalf("exit %d, want 0 with a warning\n%s", code, errs)
	}
	if code, _, errs := kiln(t, "validate", "--strict", "-f", spec); code != 1 {
		t.Fatalf("--strict: exit %d, want 1\n%s", code, errs)
	}
}

func TestRenderIsAtomicAndRepeatable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if code, o, e := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	first := snapshot(t, out)
	for _, p := range []string{"node1/config.bu", "node1/config.ign", "node3/config.ign", "pki/ca.crt", "pki/ca.key", "pki/operator.key", "pki/context.yaml"} {
		if _, ok := first[p]; !ok {
			t.Errorf("%s was not written", p)
		}
	}
	// kiln ctl finds the cluster with no flags: the current context is this render's.
	ctx, _, err := clusterctx.LoadCurrentContext()
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Name != "demo" || len(ctx.Endpoints) != 3 || ctx.Cert != filepath.Join(out, "pki", "operator.crt") {
		t.Errorf("current context = %+v", ctx)
	}
	if _, err := clusterctx.LoadContext(filepath.Join(out, "pki", "context.yaml")); err != nil {
		t.Errorf("OUT/pki/context.yaml: %v", err)
	}
	for _, p := range []string{"pki/ca.key", "pki/operator.key", "pki/nodes/node2/peer.key", "node1/config.ign"} {
		if st, err := os.Stat(filepath.Join(out, p)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", p, st.Mode().Perm(), err)
		}
	}
	if code, o, e := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("second render: exit %d\n%s%s", code, o, e)
	}
	second := snapshot(t, out)
	if len(first) != len(second) {
		t.Fatalf("%d files, then %d", len(first), len(second))
	}
	for p, b := range first {
		if !bytes.Equal(b, second[p]) {
			t.Errorf("%s changed on re-render", p)
		}
	}

	// A spec that fails leaves the output as it was.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("nodes: [{name: Bad_Name}]\n"), 0o644)
	if code, _, _ := kiln(t, "render", "-f", bad, "-o", out); code != 1 {
		t.Fatalf("bad spec: exit %d, want 1", code)
	}
	third := snapshot(t, out)
	for p, b := range first {
		if !bytes.Equal(b, third[p]) {
			t.Errorf("%s changed after a failed render", p)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".out.tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary folders left behind: %v", leftovers)
	}
}

func TestRenderRefusesAForeignFolder(t *testing.T) {
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "precious.txt"), []byte("keep me"), 0o644)
	code, _, errs := kiln(t, "render", "-f", example, "-o", out)
	if code != 1 || !strings.Contains(errs, "was not written by kiln render") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(out, "precious.txt")); err != nil || string(b) != "keep me" {
		t.Fatal("the user's file was touched")
	}
}

func TestInitWritesAValidSpec(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	if code, o, e := kiln(t, "init", dir); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	if code, o, e := kiln(t, "validate", "-f", filepath.Join(dir, "cluster.yaml")); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, o, e)
	}
	if code, _, _ := kiln(t, "init", dir); code != 1 {
		t.Fatal("init over existing files should refuse without --force")
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"unknown command", []string{"nope"}, 1},
		{"unknown flag", []string{"validate", "--nope"}, 1},
		{"extra argument", []string{"validate", "x"}, 1},
		{"missing spec", []string{"validate", "-f", "/nonexistent/cluster.yaml"}, 1},
		{"version", []string{"version"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, o, e := kiln(t, tc.args...); code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, o, e)
			}
		})
	}
}

// Every command explains itself with a working example.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Example == "" && c.Name() != "help" && c.Name() != "completion" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// The specs shown in the README validate.
func TestReadmeExamplesValidate(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlock.FindAllSubmatch(readme, -1)
	n := 0
	for _, b := range blocks {
		if !bytes.Contains(b[1], []byte("nodes:")) {
			continue
		}
		n++
		tmp := filepath.Join(t.TempDir(), "cluster.yaml")
		// Relative unit and snippet paths in README specs are those of configs/examples.
		os.WriteFile(tmp, b[1], 0o644)
		abs, _ := filepath.Abs("../../configs/examples")
		for _, rel := range []string{"units", "snippets"} {
			os.Symlink(filepath.Join(abs, rel), filepath.Join(filepath.Dir(tmp), rel))
		}
		if code, o, e := kiln(t, "validate", "-f", tmp); code != 0 {
			t.Errorf("README spec %d does not validate:\n%s\n%s%s", n, b[1], o, e)
		}
	}
	if n == 0 {
		t.Fatal("the README shows no spec")
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	return files
}

// kiln render keeps what it did not write in OUT: the boot server's token secret in OUT/pki
// and the user's notes survive a second render, byte for byte.
func TestRenderKeepsForeignFiles(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if code, o, e := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	keep := map[string]string{"pki/pxe-token.key": "secret\n", "NOTES.txt": "my notes\n"}
	for rel, s := range keep {
		if err := os.WriteFile(filepath.Join(out, rel), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, o, e := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("second render: exit %d\n%s%s", code, o, e)
	}
	for rel, s := range keep {
		if b, err := os.ReadFile(filepath.Join(out, rel)); err != nil || string(b) != s {
			t.Errorf("%s: %q %v, want it kept", rel, b, err)
		}
	}
}
