package pxe

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// emptySHA512 is the SHA-512 of nothing: the spec needs a hash for kiln-node, not a file.
const emptySHA512 = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

// testNodes are three machines: one known by MAC (with extra kernel arguments), one by MAC and
// UUID, one by name only.
const testNodes = `nodes:
  - {name: n1, mac: "52:54:00:aa:bb:01", kernelArgs: ["quiet", "panic=-1"]}
  - {name: n2, mac: "52:54:00:aa:bb:02", metadata: {uuid: "8c3a5c9e-1f2b-4d5e-9a0b-0c1d2e3f4a5b"}}
  - {name: n3}
`

// specText is a small spec of os (flatcar or fcos) with nodes.
func specText(os, channel, nodes string) string {
	return `cluster:
  name: pxetest
  os: ` + os + `
  channel: ` + channel + `
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  kilnNode: {url: "http://10.0.2.2/assets/kiln-node", sha512: "` + emptySHA512 + `"}
` + nodes
}

// fixture is a spec, a PKI folder and an assets folder in a test's temporary directory.
type fixture struct {
	dir, spec, assets, pki string
}

func newFixture(t testing.TB, spec string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, spec: filepath.Join(dir, "cluster.yaml"), assets: filepath.Join(dir, "assets"), pki: filepath.Join(dir, "pki")}
	writeFile(t, f.spec, spec)
	copyTestPKI(t, f.pki)
	return f
}

func (f *fixture) options() deliver.Options {
	// The server serves configs without keys: nodes enrol (render.EnrolOptions).
	return deliver.Options{Spec: f.spec, PKIDir: f.pki, Enrol: &render.EnrolOptions{}}
}

func (f *fixture) config(log *slog.Logger) Config {
	return Config{Deliver: f.options(), Assets: f.assets, Logger: log}
}

// compiled compiles the fixture's spec the way the server does: the configs it must serve.
func (f *fixture) compiled(t testing.TB) *render.Compiled {
	t.Helper()
	var problems strings.Builder
	o := f.options()
	o.Problems = &problems
	c, err := deliver.Compile(o)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, problems.String())
	}
	return c
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pkiOnce makes the test cluster's certificates once per test binary; each test copies them
// (issuing keys is the slow part of a compile).
var (
	pkiOnce sync.Once
	pkiDir  string
	pkiErr  error
)

func copyTestPKI(t testing.TB, dst string) {
	t.Helper()
	pkiOnce.Do(func() {
		pkiDir, pkiErr = os.MkdirTemp("", "kiln-pxe-pki-")
		if pkiErr != nil {
			return
		}
		spec := filepath.Join(pkiDir, "cluster.yaml")
		if pkiErr = os.WriteFile(spec, []byte(specText("flatcar", "stable", testNodes+"  - {name: n4, mac: \"52:54:00:aa:bb:04\"}\n")), 0o644); pkiErr != nil {
			return
		}
		_, pkiErr = deliver.Prepare(deliver.Options{Spec: spec, PKIDir: filepath.Join(pkiDir, "pki"), CreatePKI: true})
	})
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
	testkit.CopyTree(t, filepath.Join(pkiDir, "pki"), dst)
}

// logBuffer is a slog destination tests can read while the server writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// get sends a request straight to the handler, with Host pxe.test unless target is absolute.
func get(t testing.TB, h http.Handler, method, target string, header ...string) *http.Response {
	t.Helper()
	if !strings.Contains(target, "://") {
		target = "http://pxe.test" + target
	}
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			r.Host = header[i+1]
		} else {
			r.Header.Set(header[i], header[i+1])
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t testing.TB, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serveOn runs a server with cfg on ln until the test ends (a clean shutdown is asserted) and
// prints the server's log when the test failed.
func serveOn(t *testing.T, cfg Config, ln net.Listener, logs *logBuffer) {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, "", "", 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
}
