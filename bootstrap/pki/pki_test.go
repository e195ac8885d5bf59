package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testNodes() []Node {
	return []Node{
		{Name: "node1", IPs: []net.IP{net.ParseIP("10.0.0.11"), net.ParseIP("127.0.0.1")}, DNS: []string{"node1", "localhost"}},
		{Name: "node2", IPs: []net.IP{net.ParseIP("10.0.0.12")}, DNS: []string{"node2"}},
	}
}

func TestEnsureIssuesVerifiableCerts(t *testing.T) {
	now := time.Now()
	b, err := Ensure(t.TempDir(), "demo", testNodes(), now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CA) {
		t.Fatal("CA does not parse")
	}
	for _, tc := range []struct {
		name  string
		pair  Pair
		usage x509.ExtKeyUsage
		host  string
	}{
		{"peer", b.Nodes["node1"].Peer, x509.ExtKeyUsageServerAuth, "10.0.0.11"},
		{"peer as client", b.Nodes["node1"].Peer, x509.ExtKeyUsageClientAuth, ""},
		{"server", b.Nodes["node2"].Server, x509.ExtKeyUsageServerAuth, "node2"},
		{"kiln-node client", b.Nodes["node2"].Client, x509.ExtKeyUsageClientAuth, ""},
		{"operator", b.Operator, x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tls.X509KeyPair(tc.pair.Cert, tc.pair.Key); err != nil {
				t.Fatalf("key pair: %v", err)
			}
			blk, _ := pem.Decode(tc.pair.Cert)
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}, CurrentTime: now}); err != nil {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

func TestWriteReuseAndModes(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	b1, err := Ensure(dir, "demo", testNodes(), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ca.key", "operator.key", "nodes/node1/peer.key", "nodes/node2/client.key"} {
		st, err := os.Stat(filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", key, st.Mode().Perm())
		}
	}
	nodes := testNodes()
	nodes[1].IPs = []net.IP{net.ParseIP("10.0.0.99")} // node2 moved: its serving certs must change
	b2, err := Ensure(dir, "demo", nodes, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if string(b2.CA) != string(b1.CA) || !b2.Operator.Equal(b1.Operator) {
		t.Error("CA or operator certificate was not reused")
	}
	if !b2.Nodes["node1"].Peer.Equal(b1.Nodes["node1"].Peer) || !b2.Nodes["node1"].Server.Equal(b1.Nodes["node1"].Server) {
		t.Error("node1's certificates were not reused")
	}
	if b2.Nodes["node2"].Peer.Equal(b1.Nodes["node2"].Peer) || b2.Nodes["node2"].Server.Equal(b1.Nodes["node2"].Server) {
		t.Error("node2's certificates were reused although its address changed")
	}
	if !b2.Nodes["node2"].Client.Equal(b1.Nodes["node2"].Client) {
		t.Error("node2's client certificate names no address and should have been reused")
	}
}

func TestEnsureRejectsHalfCA(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, "demo", testNodes(), time.Now()); err == nil {
		t.Fatal("want an error for a CA certificate without its key")
	}
}

func TestOpenRefusesToCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	_, err := Open(dir, "demo", testNodes(), time.Now())
	if !errors.Is(err, ErrNoPKI) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v, want ErrNoPKI naming %s", err, dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open made %s", dir)
	}
	b, err := Ensure(dir, "demo", testNodes(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(dir, "demo", testNodes(), time.Now())
	if err != nil || string(b2.CA) != string(b.CA) {
		t.Fatalf("Open of an existing PKI: %v", err)
	}
}

// A corrupt file is named in the error: the key, not the certificate beside it.
func TestCorruptCANamesTheFile(t *testing.T) {
	dir := t.TempDir()
	b, err := Ensure(dir, "demo", testNodes(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"key", "ca.key", "ca.key: no PEM private key"},
		{"cert", "ca.crt", "ca.crt: no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			good, _ := os.ReadFile(p)
			t.Cleanup(func() { os.WriteFile(p, good, 0o600) })
			if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, "demo", testNodes(), time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
