package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/inputfile"
)

// within runs f and fails the test when it has not returned after a generous time: reading a
// FIFO or /dev/zero must be refused at once, not hang or eat memory.
func within(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("still reading after 20 s")
	}
}

func TestBoundedInputs(t *testing.T) {
	head := "cluster:\n  sshAuthorizedKeys: [\"" + key + "\"]\n  kilnNode: {url: \"http://x/k\", sha512: \"" + strings.Repeat("ab", 64) + "\"}\n"
	for _, tc := range []struct {
		name  string
		src   string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{
			name:  "snippet of /dev/zero",
			src:   head + "nodes: [{name: n1, ip: 10.0.0.1/24}]\nsnippets: [zero.bu]\n",
			setup: func(t *testing.T, dir string) { symlink(t, "/dev/zero", filepath.Join(dir, "zero.bu")) },
			want:  []string{`error 5:12 cannot read snippet zero.bu: not a regular file (a device)`},
		},
		{
			name:  "unit that is a FIFO",
			src:   head + "  units: [{file: app.service}]\nnodes: [{name: n1, ip: 10.0.0.1/24}]\n",
			setup: func(t *testing.T, dir string) { mkfifo(t, filepath.Join(dir, "app.service")) },
			want:  []string{`error 4:18 cannot read unit app.service: not a regular file (a FIFO)`},
		},
		{
			name: "snippet over the limit",
			src:  head + "nodes: [{name: n1, ip: 10.0.0.1/24}]\nsnippets: [big.bu]\n",
			setup: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "big.bu"), "variant: flatcar\nversion: 1.1.0\n#"+strings.Repeat("x", inputfile.SnippetLimit))
			},
			want: []string{`error 5:12 cannot read snippet big.bu: file too large: the limit is 1048576 bytes`},
		},
		{
			name:  "kiln-node file that is a FIFO",
			src:   "cluster:\n  sshAuthorizedKeys: [\"" + key + "\"]\n  kilnNode: {url: \"http://x/k\", file: kn}\nnodes: [{name: n1, ip: 10.0.0.1/24}]\n",
			setup: func(t *testing.T, dir string) { mkfifo(t, filepath.Join(dir, "kn")) },
			want:  []string{`error 3:39 kn: not a regular file`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			path := filepath.Join(dir, "cluster.yaml")
			write(t, path, tc.src)
			within(t, func() {
				s, r := Load(path)
				if s == nil {
					t.Fatal(r.Error())
				}
				s.Defaults("v1")
				assertProblems(t, s.Validate(), tc.want)
			})
		})
	}
}

func TestBoundedSpec(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	mkfifo(t, fifo)
	big := filepath.Join(dir, "big.yaml")
	write(t, big, "nodes: [{name: n1}]\n#"+strings.Repeat("x", inputfile.SpecLimit))
	for _, tc := range []struct{ name, path, want string }{
		{"FIFO", fifo, "cannot read the spec: not a regular file (a FIFO)"},
		{"too large", big, "cannot read the spec: file too large: the limit is 4194304 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			within(t, func() {
				s, r := Load(tc.path)
				if s != nil || len(r.Problems) != 1 || r.Problems[0].Message != tc.want || r.Problems[0].File != tc.path {
					t.Errorf("got %v, want one problem %q at %s", r.Problems, tc.want, tc.path)
				}
			})
		})
	}
}

// Files a spec names as units or snippets may be links to anything, here a stand-in for
// /etc/shadow: the printed report quotes at most one line of them.
func TestProblemsInNamedFilesQuoteAtMostOneLine(t *testing.T) {
	dir := t.TempDir()
	var shadow strings.Builder
	for i := range 8 {
		shadow.WriteString("user" + string(rune('a'+i)) + ":$6$SECRET" + string(rune('a'+i)) + "$hash:19000:0:99999:7:::\n")
	}
	secret := filepath.Join(dir, "shadow")
	write(t, secret, shadow.String())
	symlink(t, secret, filepath.Join(dir, "app.service"))
	symlink(t, secret, filepath.Join(dir, "extra.bu"))
	path := filepath.Join(dir, "cluster.yaml")
	write(t, path, "cluster:\n  sshAuthorizedKeys: [\""+key+"\"]\n  kilnNode: {url: \"http://x/k\", sha512: \""+strings.Repeat("ab", 64)+"\"}\n  units: [{file: app.service}]\nnodes: [{name: n1, ip: 10.0.0.1/24}]\nsnippets: [extra.bu]\n")
	s, r := Load(path)
	if s == nil {
		t.Fatal(r.Error())
	}
	s.Defaults("v1")
	r.Merge(s.Validate())
	var out bytes.Buffer
	r.Print(&out, false)
	if !r.HasErrors(false) {
		t.Fatalf("no errors:\n%s", out.String())
	}
	quoted := 0
	for i := range 8 {
		if strings.Contains(out.String(), "user"+string(rune('a'+i))) {
			quoted++
		}
	}
	if quoted > 2 { // one line of the unit, one of the snippet, at most
		t.Errorf("%d lines of the linked file are quoted:\n%s", quoted, out.String())
	}
	if !strings.Contains(out.String(), secret) && !strings.Contains(out.String(), filepath.Join(dir, "app.service")) {
		t.Errorf("the unit file is not named:\n%s", out.String())
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A file of many unknown keys is not reported key by key without end.
func TestShapeProblemsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("cluster:\n")
	for i := range 3 * maxShapeProblems {
		b.WriteString("  k" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "_" + strings.Repeat("y", i/26%5) + ": 1\n")
	}
	_, r := Parse("big.yaml", []byte(b.String()))
	if n := len(r.Problems); n != maxShapeProblems+1 {
		t.Fatalf("%d problems, want %d", n, maxShapeProblems+1)
	}
	if last := r.Problems[len(r.Problems)-1].Message; !strings.Contains(last, "stopped after 1000 problems") {
		t.Errorf("last problem %q", last)
	}
}

// A huge key or value is named by its beginning, not printed whole.
func TestMessagesQuoteShortly(t *testing.T) {
	_, r := Parse("big.yaml", []byte("cluster: "+strings.Repeat("v", 100000)+"\n"+strings.Repeat("k", 1000)+": 1\n"))
	for _, p := range r.Problems {
		if len(p.Message) > 300 {
			t.Errorf("message of %d bytes: %.100s...", len(p.Message), p.Message)
		}
	}
	if len(r.Problems) != 2 {
		t.Errorf("problems: %v", r.Problems)
	}
}
