package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/internal/testkit"
)

// renderedPKI runs kiln render of the example into a temporary folder and returns OUT/pki:
// only render creates a PKI.
func renderedPKI(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	if code, o, e := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("render: exit %d\n%s%s", code, o, e)
	}
	return filepath.Join(out, "pki")
}

func TestUserdataCommand(t *testing.T) {
	dir := t.TempDir()
	pki := renderedPKI(t)
	out := filepath.Join(dir, "node1.userdata")
	code, _, errs := kiln(t, "userdata", "-f", example, "--pki", pki, "--platform", "aws", "node1", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v, want mode 0600", out, st, err)
	}
	ud, _ := os.ReadFile(out)
	if _, rpt, err := ignconfig.Parse(ud); err != nil || rpt.IsFatal() {
		t.Fatalf("Ignition rejects the user data: %v %s", err, rpt.String())
	}
	// The same PKI gives the same config: kiln render and kiln userdata agree.
	rendered := filepath.Join(dir, "render")
	if code, o, e := kiln(t, "render", "-f", example, "-o", rendered); code != 0 {
		t.Fatalf("render: exit %d\n%s%s", code, o, e)
	}
	// render made its own PKI in rendered/pki; ask userdata for that one.
	code, stdout, errs := kiln(t, "userdata", "-f", example, "--pki", filepath.Join(rendered, "pki"), "--platform", "vsphere", "node1")
	if code != 0 {
		t.Fatalf("vsphere: exit %d\n%s", code, errs)
	}
	want, _ := os.ReadFile(filepath.Join(rendered, "node1", "config.ign"))
	if !strings.HasPrefix(stdout, "guestinfo.ignition.config.data="+base64.StdEncoding.EncodeToString(want)+"\n") ||
		!strings.Contains(stdout, "\nguestinfo.ignition.config.data.encoding=base64\n") {
		t.Errorf("vsphere output is not the rendered config's guestinfo:\n%.200s", stdout)
	}

	code, stdout, errs = kiln(t, "userdata", "-f", example, "--pki", pki, "--platform", "qemu", "node2", "-o", filepath.Join(dir, "n2.ign"))
	if code != 0 || stdout != "-fw_cfg name=opt/org.flatcar-linux/config,file="+filepath.Join(dir, "n2.ign")+"\n" {
		t.Errorf("qemu: exit %d, stdout %q\n%s", code, stdout, errs)
	}
}

func TestUserdataUserErrors(t *testing.T) {
	pki := renderedPKI(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown platform", []string{"--platform", "ec2", "node1"}, "unknown platform"},
		{"unknown node", []string{"--platform", "aws", "node9"}, `no node "node9"`},
		{"qemu without -o", []string{"--platform", "qemu", "node1"}, "needs -o"},
		{"pointer URL alone", []string{"--platform", "aws", "node1", "--pointer-url", "https://x/n1.ign"}, "go together"},
		{"no node", []string{"--platform", "aws"}, "accepts 1 arg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"userdata", "-f", example, "--pki", pki}, tc.args...)
			code, _, errs := kiln(t, args...)
			if code != 1 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want 1 with %q:\n%s", code, tc.want, errs)
			}
		})
	}
}

func TestVagrantCommand(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "env")
	pki := renderedPKI(t)
	args := []string{"vagrant", "-f", example, "--pki", pki, "-o", env}
	code, stdout, errs := kiln(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	for _, f := range []string{"Vagrantfile", "node1.ign", "node2.ign", "node3.ign"} {
		if !strings.Contains(stdout, filepath.Join(env, f)) {
			t.Errorf("%s not listed:\n%s", f, stdout)
		}
	}
	first, _ := os.ReadFile(filepath.Join(env, "node1.ign"))
	if code, _, errs := kiln(t, args...); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, errs)
	}
	second, _ := os.ReadFile(filepath.Join(env, "node1.ign"))
	if !bytes.Equal(first, second) {
		t.Error("a second run with the same PKI changed node1.ign")
	}
	foreign := filepath.Join(dir, "foreign")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
	if code, _, errs := kiln(t, "vagrant", "-f", example, "--pki", pki, "-o", foreign); code != 1 || !strings.Contains(errs, "not empty") {
		t.Errorf("foreign folder: exit %d\n%s", code, errs)
	}
}

// A missing or mistyped --pki must not make a second CA: only render creates a PKI, the others
// refuse and name the folder they looked in.
func TestMissingPKIIsRefused(t *testing.T) {
	dir := t.TempDir()
	spec := abs(t, example)
	t.Chdir(dir)
	for _, tc := range []struct {
		name, pki string
		args      []string
	}{
		{"userdata default --pki", "", []string{"userdata", "-f", spec, "--platform", "aws", "node1", "-o", "n1.ud"}},
		{"userdata mistyped --pki", "oot/pki", []string{"userdata", "-f", spec, "--platform", "aws", "node1", "-o", "n1.ud", "--pki", "oot/pki"}},
		{"vagrant mistyped --pki", "oot/pki", []string{"vagrant", "-f", spec, "-o", "env", "--pki", "oot/pki"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := kiln(t, tc.args...)
			looked := filepath.Join(dir, "out", "pki")
			if tc.pki != "" {
				looked = filepath.Join(dir, tc.pki)
			}
			if code != 1 || !strings.Contains(errs, looked) || !strings.Contains(errs, "only kiln render creates a PKI") {
				t.Errorf("exit %d, want 1 naming %s:\n%s", code, looked, errs)
			}
			for _, p := range []string{"out", "oot", "n1.ud", "env"} {
				if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
					t.Errorf("%s was created", p)
				}
			}
		})
	}
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// copyExamples copies configs/examples into a temporary folder and returns the demo spec there,
// so tests may point outputs at it without touching the repository.
func copyExamples(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "examples")
	testkit.CopyTree(t, filepath.Dir(example), dst)
	return filepath.Join(dst, filepath.Base(example))
}

// -o and --pointer-out never overwrite the spec, a file it names, the PKI, or each other.
func TestUserdataRefusesOutputsThatAreInputs(t *testing.T) {
	spec := copyExamples(t)
	dir := filepath.Dir(spec)
	out := filepath.Join(dir, "out")
	if code, o, e := kiln(t, "render", "-f", spec, "-o", out); code != 0 {
		t.Fatalf("render: exit %d\n%s%s", code, o, e)
	}
	pki := filepath.Join(out, "pki")
	link := filepath.Join(dir, "spec-link.yaml")
	hard := filepath.Join(dir, "ca-hard.key")
	if err := os.Symlink(spec, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(pki, "ca.key"), hard); err != nil {
		t.Fatal(err)
	}
	both := filepath.Join(dir, "n1.ign")
	base := []string{"userdata", "-f", spec, "--pki", pki, "--platform", "aws", "node1"}
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		guard string // a file that must be left as it was
	}{
		{"the spec", []string{"-o", spec}, "refusing to overwrite an input", spec},
		{"a link to the spec", []string{"-o", link}, "refusing to overwrite an input", spec},
		{"a unit the spec names", []string{"-o", filepath.Join(dir, "units", "my-app@.service")}, "refusing to overwrite an input", filepath.Join(dir, "units", "my-app@.service")},
		{"a snippet", []string{"--pointer-url", "https://x/n1.ign", "--pointer-out", filepath.Join(dir, "snippets", "motd.bu")}, "refusing to overwrite an input", filepath.Join(dir, "snippets", "motd.bu")},
		{"the CA key", []string{"-o", filepath.Join(pki, "ca.key")}, "refusing to overwrite an input", filepath.Join(pki, "ca.key")},
		{"a hard link to the CA key", []string{"-o", hard}, "refusing to overwrite an input", hard},
		{"a new file in the PKI folder", []string{"-o", filepath.Join(pki, "n1.userdata")}, "inside " + pki, ""},
		{"each other", []string{"-o", both, "--pointer-url", "https://x/n1.ign", "--pointer-out", both}, "-o and --pointer-out: name the same file", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before []byte
			if tc.guard != "" {
				before, _ = os.ReadFile(tc.guard)
			}
			code, _, errs := kiln(t, append(base, tc.args...)...)
			if code != 1 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want 1 with %q:\n%s", code, tc.want, errs)
			}
			if tc.guard != "" {
				if after, _ := os.ReadFile(tc.guard); !bytes.Equal(before, after) {
					t.Errorf("%s was overwritten", tc.guard)
				}
			}
			if exists(filepath.Join(pki, "n1.userdata")) || exists(both) {
				t.Error("an output was written")
			}
		})
	}
}

// An existing output keeps its owner but loses group and other access: it holds private keys.
func TestUserdataOutputMode(t *testing.T) {
	pki := renderedPKI(t)
	out := filepath.Join(t.TempDir(), "n1.userdata")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := kiln(t, "userdata", "-f", example, "--pki", pki, "--platform", "aws", "node1", "-o", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%v %v, want mode 0600", fi, err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }
