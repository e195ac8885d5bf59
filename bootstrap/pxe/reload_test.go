package pxe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/render"
)

const snippetV1 = `variant: flatcar
version: 1.1.0
storage:
  files:
    - path: /etc/kiln-pxe-test
      contents: {inline: "version one"}
`

// waitFor polls cond until it holds or 15 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replaceFile writes a file the way editors that save atomically do (a new file renamed over
// the old), so that the watcher never sees it half-written.
func replaceFile(t *testing.T, p, content string) {
	t.Helper()
	tmp := p + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// watch runs the server's watcher for the test's duration.
func watch(t *testing.T, s *Server) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestReloadOnChange(t *testing.T) {
	spec := specText("flatcar", "stable", "snippets: [extra.bu]\n"+testNodes)
	f := newFixture(t, spec)
	writeFile(t, filepath.Join(f.dir, "extra.bu"), snippetV1)
	s, lb := newTestServer(t, f, func(c *Config) { c.Poll = 10 * time.Millisecond })
	watch(t, s)
	ignition := func(mac string) (int, string) {
		res := get(t, s, "GET", "/ignition?mac="+mac)
		return res.StatusCode, body(t, res)
	}

	// A node is added (with certificates nobody issued yet): the server compiles the new spec,
	// keeps the new certificates in the PKI folder and serves the new node.
	replaceFile(t, f.spec, spec+"  - {name: n5, mac: \"52:54:00:aa:bb:05\"}\n")
	waitFor(t, "the new node", func() bool { code, _ := ignition("52:54:00:aa:bb:05"); return code == 200 })
	if _, err := os.Stat(filepath.Join(f.pki, "nodes", "n5")); err != nil {
		t.Errorf("the new node's certificates were not saved: %v", err)
	}
	if _, got := ignition("52:54:00:aa:bb:05"); got != string(f.compiled(t).Node("n5").Ignition) {
		t.Errorf("the new node's config is not what the spec compiles to")
	}
	if !strings.Contains(lb.String(), `msg=reloaded`) || !strings.Contains(lb.String(), "changed=+n5") {
		t.Errorf("no reload in the log:\n%s", lb.String())
	}
	_, good := ignition("52:54:00:aa:bb:01")

	// A broken spec: the last good configs stay, and the log says why.
	replaceFile(t, f.spec, spec+"  - {name: n5, mac: \"52:54:00:aa:bb:05\", ip: nonsense}\n")
	waitFor(t, "the failed reload in the log", func() bool { return strings.Contains(lb.String(), "nonsense") })
	if code, got := ignition("52:54:00:aa:bb:01"); code != 200 || got != good {
		t.Errorf("after a failed reload: status %d, same config %v", code, got == good)
	}
	if code, _ := ignition("52:54:00:aa:bb:05"); code != 200 {
		t.Errorf("a node of the last good spec is gone after a failed reload: %d", code)
	}
	if log := lb.String(); !strings.Contains(log, "still serving the last good configs") || !strings.Contains(log, "nonsense") {
		t.Errorf("the log does not say why the reload failed:\n%s", log)
	}
	if m := body(t, get(t, s, "GET", "/metrics")); !strings.Contains(m, `kiln_pxe_reloads_total{result="failed"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(m, "reloads"))
	}

	// A snippet the spec names changes: the configs are compiled again.
	replaceFile(t, f.spec, spec)
	replaceFile(t, filepath.Join(f.dir, "extra.bu"), strings.Replace(snippetV1, "version one", "version two", 1))
	waitFor(t, "the snippet's change", func() bool {
		_, got := ignition("52:54:00:aa:bb:01")
		return strings.Contains(got, "version%20two") || strings.Contains(got, "version two")
	})
	if code, _ := ignition("52:54:00:aa:bb:05"); code != 404 {
		t.Errorf("a node removed from the spec is still served: %d", code)
	}
}

func TestReloadKeepsLastGood(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, lb := newTestServer(t, f, nil)
	before := body(t, get(t, s, "GET", "/ignition?mac=52:54:00:aa:bb:01"))
	for _, tc := range []struct {
		name, spec string
		want       error
	}{
		{"not YAML", "cluster: [\n", render.ErrSpec},
		{"invalid", specText("flatcar", "stable", "nodes:\n  - {name: n1, mac: zz}\n"), render.ErrSpec},
		{"missing", "", render.ErrSpec},
		{"kernel argument with a line break", specText("flatcar", "stable", "nodes:\n  - {name: n1, kernelArgs: [\"a\\nb\"]}\n"), ErrKernelArgs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.spec == "" {
				os.Remove(f.spec)
			} else {
				writeFile(t, f.spec, tc.spec)
			}
			if err := s.Reload(); !errors.Is(err, tc.want) {
				t.Errorf("Reload: %v, want %v", err, tc.want)
			}
			if got := body(t, get(t, s, "GET", "/ignition?mac=52:54:00:aa:bb:01")); got != before {
				t.Errorf("the config changed after a failed reload")
			}
		})
	}
	if n := strings.Count(lb.String(), "reload failed"); n != 4 {
		t.Errorf("%d failed reloads logged, want 4:\n%s", n, lb.String())
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns their paths and a pool
// that trusts the certificate.
func selfSigned(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln pxe test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

func TestServe(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, specText("flatcar", "stable", testNodes))
			s, lb := newTestServer(t, f, nil)
			client := &http.Client{Timeout: 10 * time.Second}
			var cert, key string
			if tlsOn {
				var pool *x509.CertPool
				cert, key, pool = selfSigned(t)
				client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln, cert, key, 5*time.Second) }()
			t.Cleanup(func() { cancel(); <-served })
			base := name + "://" + ln.Addr().String()

			res, err := client.Get(base + "/ipxe?mac=52:54:00:aa:bb:01")
			if err != nil {
				t.Fatal(err)
			}
			script, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if !strings.Contains(string(script), "ignition.config.url="+base+"/ignition?mac=52-54-00-aa-bb-01 ") {
				t.Errorf("the script does not point back at %s:\n%s", base, script)
			}
			res, err = client.Get(base + "/ignition?mac=52:54:00:aa:bb:01")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(got) != string(f.compiled(t).Node("n1").Ignition) {
				t.Errorf("%s: not n1's config: %.200s", name, got)
			}

			cancel()
			select {
			case err := <-served:
				served <- err // for the cleanup
				if err != nil {
					t.Errorf("Serve after shutdown: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return after its context ended")
			}
			if _, err := client.Get(base + "/healthz"); err == nil {
				t.Errorf("still serving after shutdown")
			}
			if !strings.Contains(lb.String(), "msg=stopped") {
				t.Errorf("no stop in the log:\n%s", lb.String())
			}
		})
	}
	t.Run("half TLS", func(t *testing.T) {
		f := newFixture(t, specText("flatcar", "stable", testNodes))
		s, _ := newTestServer(t, f, nil)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		if err := s.Serve(context.Background(), ln, "cert.pem", "", time.Second); !errors.Is(err, ErrTLS) {
			t.Errorf("err = %v, want ErrTLS", err)
		}
	})
}

// A change is compiled once the files are the same at two checks in a row: a spec caught
// half-written is not compiled.
func TestReloadWaitsForChangesToSettle(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, lb := newTestServer(t, f, nil)
	served := func() int { return get(t, s, "GET", "/ignition?mac=52:54:00:aa:bb:05").StatusCode }
	full := specText("flatcar", "stable", testNodes+"  - {name: n5, mac: \"52:54:00:aa:bb:05\"}\n")

	writeFile(t, f.spec, full[:len(full)/2]) // caught half-written
	s.reloadIfChanged()
	writeFile(t, f.spec, full)
	s.reloadIfChanged()
	if served() != 404 || strings.Contains(lb.String(), "reload") {
		t.Fatalf("compiled a spec that was still changing:\n%s", lb.String())
	}
	s.reloadIfChanged()
	if served() != 200 {
		t.Fatalf("the settled spec was not compiled:\n%s", lb.String())
	}
	s.reloadIfChanged()
	if n := strings.Count(lb.String(), "msg=reloaded"); n != 1 || strings.Contains(lb.String(), "reload failed") {
		t.Errorf("%d reloads, want exactly one and no failure:\n%s", n, lb.String())
	}
}

// TestReloadReportsProblems: the server compiles through deliver as every delivery does: a
// spec's warnings, which a compile that succeeds would drop, are logged with their place in the
// spec, and a failed reload's error carries each problem's place.
func TestReloadReportsProblems(t *testing.T) {
	keys := regexp.MustCompile(`(?m)^  sshAuthorizedKeys: .*\n`)
	spec := keys.ReplaceAllString(specText("flatcar", "stable", testNodes), "")
	f := newFixture(t, spec)
	s, lb := newTestServer(t, f, nil)
	if log := lb.String(); !strings.Contains(log, "the spec has warnings") || !strings.Contains(log, "no sshAuthorizedKeys") || !strings.Contains(log, "--> "+f.spec+":") {
		t.Errorf("the spec's warning is not in the log:\n%s", log)
	}
	writeFile(t, f.spec, spec+"  - {name: n5, ip: nonsense}\n")
	err := s.Reload()
	if !errors.Is(err, render.ErrSpec) || !errors.Is(err, deliver.ErrReported) || !strings.Contains(fmt.Sprint(err), "--> "+f.spec+":") {
		t.Errorf("Reload: %v, want the spec's problems with their place", err)
	}
}
