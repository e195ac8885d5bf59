package pxe

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// kilnBin is the kiln binary the Makefile builds ($KILN_BIN), else one built once.
func kilnBin(t *testing.T) string {
	t.Helper()
	return testkit.Binary(t, "KILN_BIN", "github.com/kiln-cluster/kiln/cmd/kiln")
}

// TestIntegrationPXEServeCommand runs `kiln pxe serve` as users do: it serves on the port it
// says, hashes the kiln-node it serves from the assets, makes and keeps the token secret beside
// the PKI, recompiles on SIGHUP, stops cleanly on SIGTERM, and refuses bad starts with exit 1.
// The spec is in another folder than the current one, and --assets is relative: the kiln-node
// hashed and the one served are both under the current folder.
func TestIntegrationPXEServeCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the kiln binary")
	}
	bin := kilnBin(t)
	spec := strings.Replace(specText("flatcar", "stable", testNodes),
		`kilnNode: {url: "http://10.0.2.2/assets/kiln-node", sha512: "`+emptySHA512+`"}`,
		`kilnNode: {url: "http://10.0.2.2/assets/kiln-node"}`, 1)
	f := newFixture(t, spec)
	nodeBinary := "#!/bin/sh\necho kiln-node from the assets\n"
	writeFile(t, filepath.Join(f.assets, "kiln-node"), nodeBinary)
	sum := sha512.Sum512([]byte(nodeBinary))

	specPath := filepath.Join(f.dir, "conf", "cluster.yaml")
	writeFile(t, specPath, spec)
	cmd := exec.Command(bin, "pxe", "serve", "-f", specPath, "--listen", "127.0.0.1:0", "--assets", "assets",
		"--pki", f.pki, "--token", "--poll", "1h")
	cmd.Dir = f.dir
	var stderr logBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	exited := make(chan error, 1)
	go func() { io.Copy(io.Discard, br); exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("kiln pxe serve's log:\n%s", stderr.String())
		}
	})
	m := regexp.MustCompile(`^serving 3 nodes of cluster pxetest at (http://127\.0\.0\.1:\d+) `).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q (%v)", line, err)
	}
	base := m[1]
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	_, script := get("/ipxe?mac=52-54-00-aa-bb-01")
	tok := tokenRe.FindStringSubmatch(script)
	if tok == nil {
		t.Fatalf("no token in the script:\n%s", script)
	}
	if code, _ := get("/ignition?mac=52-54-00-aa-bb-01"); code != 403 {
		t.Errorf("without its token: status %d, want 403", code)
	}
	code, cfg := get("/ignition?mac=52-54-00-aa-bb-01&token=" + tok[1])
	if code != 200 || !strings.Contains(cfg, "sha512-"+hex.EncodeToString(sum[:])) {
		t.Errorf("status %d; the config does not verify the kiln-node of the assets:\n%.500s", code, cfg)
	}
	if code, body := get("/assets/kiln-node"); code != 200 || body != nodeBinary {
		t.Errorf("/assets/kiln-node: %d %q", code, body)
	}
	fi, err := os.Stat(filepath.Join(f.pki, TokenSecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token secret beside the PKI: %v, %v", fi, err)
	}

	// A new node, then SIGHUP: served without waiting for the (hour-long) poll.
	writeFile(t, specPath, spec+"  - {name: n5, mac: \"52:54:00:aa:bb:05\"}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n5 after SIGHUP", func() bool {
		_, s := get("/ipxe?mac=52:54:00:aa:bb:05")
		return strings.Contains(s, "node n5 ")
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("kiln pxe serve did not stop after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("no graceful stop in the log")
	}

	// Starts that must fail with exit 1 and say why.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := filepath.Join(f.dir, "bad.yaml")
	writeFile(t, bad, "cluster: {os: plan9}\nnodes: [{name: n1}]\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a spec with errors", []string{"-f", bad, "--assets", f.assets}, "plan9"},
		{"no assets folder", []string{"-f", f.spec, "--assets", filepath.Join(f.dir, "none")}, "assets folder"},
		{"a port in use", []string{"-f", f.spec, "--assets", f.assets, "--listen", busy.Addr().String()}, "--listen"},
		{"half TLS", []string{"-f", f.spec, "--assets", f.assets, "--tls-cert", "x.pem"}, "a certificate and its key"},
		{"a bad TLS certificate", []string{"-f", f.spec, "--assets", f.assets, "--tls-cert", bad, "--tls-key", bad}, "a certificate and its key"},
		{"a PKI folder without a CA", []string{"-f", f.spec, "--assets", f.assets, "--pki", filepath.Join(f.dir, "typo")}, filepath.Join(f.dir, "typo") + ": no cluster CA"},
		{"an unknown policy", []string{"-f", f.spec, "--assets", f.assets, "--enrol", "anyone"}, "approve or first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := exec.Command(bin, append([]string{"pxe", "serve", "--listen", "127.0.0.1:0", "--pki", f.pki}, tc.args...)...)
			var e, o bytes.Buffer
			c.Stderr, c.Stdout = &e, &o
			err := c.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit: %v, want 1; stderr:\n%s", err, e.String())
			}
			if !strings.Contains(e.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, e.String())
			}
			if strings.Contains(o.String()+e.String(), "serving") {
				t.Errorf("says serving before failing:\n%s%s", o.String(), e.String())
			}
		})
	}
}
