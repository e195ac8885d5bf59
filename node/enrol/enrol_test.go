package enrol

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
)

// signer is a boot server stand-in that signs every request with the CA of bundle, for node.
func signer(t *testing.T, b *pki.Bundle, node string) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Error(err)
			return
		}
		res := Response{Status: StatusApproved, Certs: map[string]string{}}
		for kind, p := range req.CSRs {
			blk, _ := pem.Decode([]byte(p))
			csr, err := x509.ParseCertificateRequest(blk.Bytes)
			if err != nil {
				t.Error(err)
				return
			}
			c, err := b.Sign(pki.Node{Name: node}, kind, csr.PublicKey, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			res.Certs[kind] = string(c)
		}
		json.NewEncoder(w).Encode(res)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func bundle(t *testing.T) *pki.Bundle {
	t.Helper()
	b, err := pki.Ensure(t.TempDir(), "test", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func config(t *testing.T, server string, ca []byte) Config {
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caPath, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{Server: server, Node: "n1", CA: caPath, Backoff: time.Millisecond, Timeout: 10 * time.Second,
		Certs: []Cert{{Kind: KindClient, CertPath: filepath.Join(dir, "pki/client.crt"), KeyPath: filepath.Join(dir, "pki/client.key")}}}
}

// TestRunChecksCertificates: certificates from another CA, or for another node, are refused and
// nothing is written; the right ones are written and a second run keeps them.
func TestRunChecksCertificates(t *testing.T) {
	cluster, other := bundle(t), bundle(t)
	for _, tc := range []struct {
		name   string
		server *httptest.Server
		want   error
	}{
		{"another CA", signer(t, other, "n1"), ErrBadCert},
		{"another node", signer(t, cluster, "n2"), ErrBadCert},
		{"the cluster CA", signer(t, cluster, "n1"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t, tc.server.URL, cluster.CA)
			err := Run(context.Background(), cfg)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			_, statErr := os.Stat(cfg.Certs[0].CertPath)
			if (statErr == nil) != (tc.want == nil) {
				t.Errorf("certificate written: %v, want %v", statErr == nil, tc.want == nil)
			}
			if tc.want != nil {
				return
			}
			before, _ := os.ReadFile(cfg.Certs[0].CertPath)
			tc.server.Close()
			if err := Run(context.Background(), cfg); err != nil {
				t.Errorf("a second run: %v", err)
			}
			if after, _ := os.ReadFile(cfg.Certs[0].CertPath); string(after) != string(before) {
				t.Error("a second run enrolled again")
			}
		})
	}
}

// TestRunRefusedAndTimeout: a refusal ends the enrolment with ErrRefused; a server that never
// decides ends it with ErrTimeout; the keys stay for the next try.
func TestRunRefusedAndTimeout(t *testing.T) {
	b := bundle(t)
	for _, tc := range []struct {
		status string
		code   int
		want   error
	}{{StatusRefused, 403, ErrRefused}, {StatusPending, 202, ErrTimeout}} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.code)
			json.NewEncoder(w).Encode(Response{Status: tc.status, Message: "no"})
		}))
		cfg := config(t, ts.URL, b.CA)
		cfg.Timeout = 200 * time.Millisecond
		if err := Run(context.Background(), cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.status, err, tc.want)
		}
		if fi, err := os.Stat(cfg.Certs[0].KeyPath); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key %v %v", tc.status, fi, err)
		}
		ts.Close()
	}
}

func TestServerFromCmdline(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"console=ttyS0 ignition.config.url=http://10.0.2.2:8080/ignition?mac=52-54-00-aa-bb-01&token=x quiet", "http://10.0.2.2:8080"},
		{"ignition.config.url=https://boot.example/ignition?hostname=n1", "https://boot.example"},
		{"console=ttyS0", ""},
		{"ignition.config.url=file:///x", ""},
	} {
		got, err := ServerFromCmdline(tc.cmdline)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrNoServer) {
			t.Errorf("%q: %q %v, want %q", tc.cmdline, got, err, tc.want)
		}
	}
}
