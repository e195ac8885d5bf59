package pxe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/node/enrol"
)

// keyMaterial reports the private keys in a served body: in its text, and in every file of an
// Ignition config, data URLs decoded and gunzipped.
func keyMaterial(t *testing.T, body []byte) []string {
	t.Helper()
	var found []string
	if bytes.Contains(body, []byte("PRIVATE KEY")) {
		found = append(found, "the body itself")
	}
	cfg, _, err := ignconfig.Parse(body)
	if err != nil {
		return found // not a config
	}
	for _, f := range cfg.Storage.Files {
		if f.Contents.Source == nil || !strings.HasPrefix(*f.Contents.Source, "data:") {
			continue
		}
		data := testkit.DataURLContents(t, *f.Contents.Source, f.Contents.Compression)
		if bytes.Contains(data, []byte("PRIVATE KEY")) || strings.HasSuffix(f.Path, ".key") {
			found = append(found, f.Path)
		}
	}
	return found
}

var configURLRe = regexp.MustCompile(`ignition\.config\.url=(\S+)`)

// TestAttackerGetsNoKeys plays a machine that claims each node's MAC, UUID or name, with tokens
// off and on, under each enrolment policy: every boot script, the config each names, and the
// config asked for directly hold no private key; an enrolment in the node's name gets no
// certificate without the operator (approve) or once the node enrolled (first).
func TestAttackerGetsNoKeys(t *testing.T) {
	for _, tokens := range []bool{false, true} {
		for _, pol := range []Policy{PolicyApprove, PolicyFirst} {
			t.Run(fmt.Sprintf("tokens=%v/%s", tokens, pol), func(t *testing.T) {
				f := newFixture(t, specText("flatcar", "stable", testNodes))
				s, _ := newTestServer(t, f, func(c *Config) {
					c.Enrol = pol
					if tokens {
						c.TokenSecret = []byte(strings.Repeat("s", 32))
					}
				})
				for _, sel := range []string{"mac=52:54:00:aa:bb:01", "mac=52-54-00-AA-BB-02", "uuid=8c3a5c9e-1f2b-4d5e-9a0b-0c1d2e3f4a5b", "hostname=n1", "hostname=n3"} {
					for _, route := range []string{"/ipxe?", "/grub?", "/ignition?"} {
						res := get(t, s, "GET", route+sel)
						b := []byte(body(t, res))
						if k := keyMaterial(t, b); len(k) > 0 {
							t.Errorf("GET %s%s: key material in %v", route, sel, k)
						}
						m := configURLRe.FindSubmatch(b)
						if m == nil {
							continue
						}
						u := strings.Trim(string(m[1]), `"'`)
						cres := get(t, s, "GET", u)
						cb := []byte(body(t, cres))
						if cres.StatusCode != 200 {
							t.Fatalf("GET %s: %d %s", u, cres.StatusCode, cb)
						}
						if k := keyMaterial(t, cb); len(k) > 0 {
							t.Errorf("GET %s (named by %s%s): key material in %v", u, route, sel, k)
						}
						if !strings.Contains(string(cb), EnrolUnitName) {
							t.Errorf("the config of %s does not enrol", sel)
						}
					}
				}
				for _, p := range []string{"/boot.ipxe", "/metrics", "/healthz", "/grub", "/assets/pki/ca.key", "/assets/../pki/ca.key"} {
					if k := keyMaterial(t, []byte(body(t, get(t, s, "GET", p)))); len(k) > 0 {
						t.Errorf("GET %s: key material in %v", p, k)
					}
				}
				// An enrolment in n1's name: under approve it waits for the operator; under first,
				// once the real node enrolled (it boots first: the policy's premise), it is refused.
				if pol == PolicyFirst {
					real, _ := csrRequest(t, "n1", true)
					if code, _ := postEnrol(t, s, real, "10.0.0.11:1"); code != 200 {
						t.Fatalf("first: the node's own first key got %d", code)
					}
				}
				req, _ := csrRequest(t, "n1", true)
				code, res := postEnrol(t, s, req, "10.6.6.6:1234")
				if len(res.Certs) > 0 || bytes.Contains(mustJSON(res), []byte("PRIVATE KEY")) {
					t.Fatalf("the thief got certificates: %d %+v", code, res)
				}
				want := map[Policy]int{PolicyApprove: http.StatusAccepted, PolicyFirst: http.StatusForbidden}[pol]
				if code != want {
					t.Errorf("the thief got %d %+v, want %d", code, res, want)
				}
			})
		}
	}
}

// The unit's name as the configs carry it.
const EnrolUnitName = "kiln-enrol.service"

// csrRequest makes the keys and certificate requests of a node (member: with etcd's), asking
// for names and addresses that are not the node's.
func csrRequest(t *testing.T, node string, member bool) (enrol.Request, map[string]*ecdsa.PrivateKey) {
	t.Helper()
	kinds := []string{enrol.KindClient}
	if member {
		kinds = append(kinds, enrol.KindPeer, enrol.KindServer)
	}
	req := enrol.Request{Node: node, CSRs: map[string]string{}}
	keys := map[string]*ecdsa.PrivateKey{}
	for _, k := range kinds {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: "n2", Organization: []string{"system:masters"}},
			DNSNames:    []string{"evil.example", "n2"},
			IPAddresses: []net.IP{net.ParseIP("10.6.6.6")},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		req.CSRs[k] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		keys[k] = key
	}
	return req, keys
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func postEnrol(t *testing.T, h http.Handler, req enrol.Request, remote string) (int, enrol.Response) {
	t.Helper()
	r := httptest.NewRequest("POST", "http://pxe.test"+enrol.Path, bytes.NewReader(mustJSON(req)))
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var res enrol.Response
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatalf("%d: not JSON: %s", w.Code, w.Body)
	}
	return w.Code, res
}

// TestEnrolIssuesSpecNames: a request for n3 that asks for other names, addresses and a
// different common name gets certificates with n3's names from the spec and the usages of each
// kind, chained to the cluster CA, for the requester's own keys.
func TestEnrolIssuesSpecNames(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", "nodes:\n  - {name: n1, ip: 10.0.0.11/24}\n  - {name: n3, ip: 10.0.0.13/24}\n"))
	s, _ := newTestServer(t, f, func(c *Config) { c.Enrol = PolicyFirst })
	req, keys := csrRequest(t, "n3", true)
	code, res := postEnrol(t, s, req, "10.0.0.13:5000")
	if code != 200 {
		t.Fatalf("%d %+v", code, res)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(pki.CAPath(f.pki))
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	for kind, key := range keys {
		b, _ := pem.Decode([]byte(res.Certs[kind]))
		if b == nil {
			t.Fatalf("%s: no certificate", kind)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not chain to the cluster CA: %v", kind, err)
		}
		if !key.PublicKey.Equal(c.PublicKey) {
			t.Errorf("%s is not for the requester's key", kind)
		}
		if c.Subject.CommonName != "n3" || slices.Contains(c.Subject.Organization, "system:masters") {
			t.Errorf("%s subject %v, want CN n3 and no asked-for organization", kind, c.Subject)
		}
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		slices.Sort(ips)
		switch kind {
		case enrol.KindClient:
			if len(c.DNSNames)+len(c.IPAddresses) != 0 || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
				t.Errorf("client: names %v %v usages %v", c.DNSNames, ips, c.ExtKeyUsage)
			}
		default:
			if !slices.Equal(c.DNSNames, []string{"localhost", "n3"}) || !slices.Equal(ips, []string{"10.0.0.13", "127.0.0.1"}) {
				t.Errorf("%s: names %v %v, want n3's from the spec", kind, c.DNSNames, ips)
			}
		}
	}
	// n1 is the only member: n3 asking for etcd's certificates is a bad request, and n3 asking
	// for its client certificate only gets it.
	f2 := newFixture(t, specText("flatcar", "stable", "  etcd: {members: [n1]}\nnodes:\n  - {name: n1}\n  - {name: n3}\n"))
	s2, _ := newTestServer(t, f2, func(c *Config) { c.Enrol = PolicyFirst })
	if code, res := postEnrol(t, s2, req, "10.0.0.13:5000"); code != http.StatusBadRequest || len(res.Certs) > 0 {
		t.Errorf("a non-member asking for etcd certificates: %d %+v", code, res)
	}
	client, _ := csrRequest(t, "n3", false)
	if code, res := postEnrol(t, s2, client, "10.0.0.13:5000"); code != 200 || len(res.Certs) != 1 {
		t.Errorf("a non-member's client certificate: %d %+v", code, res)
	}
	if code, _ := postEnrol(t, s2, enrol.Request{Node: "n9", CSRs: client.CSRs}, "10.0.0.13:5000"); code != http.StatusNotFound {
		t.Errorf("an unknown node: %d, want 404", code)
	}
}

// TestEnrolFirstRefusesSecondKey: with the policy first, the first keys that claim a node are
// signed (again and again, the same certificates), any other keys are refused and reported: at
// ERROR in the log, in a metric, and in the enrolment list; the state survives a restart.
func TestEnrolFirstRefusesSecondKey(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, lb := newTestServer(t, f, func(c *Config) { c.Enrol = PolicyFirst })
	real, _ := csrRequest(t, "n2", true)
	code, first := postEnrol(t, s, real, "10.0.0.12:1000")
	if code != 200 || len(first.Certs) != 3 {
		t.Fatalf("the first key: %d %+v", code, first)
	}
	thief, _ := csrRequest(t, "n2", true)
	code, res := postEnrol(t, s, thief, "10.6.6.6:1000")
	if code != http.StatusForbidden || res.Status != enrol.StatusRefused || len(res.Certs) > 0 {
		t.Fatalf("a second key: %d %+v, want 403 refused", code, res)
	}
	if !strings.Contains(lb.String(), "level=ERROR") || !strings.Contains(lb.String(), "remote=10.6.6.6:1000") {
		t.Errorf("the refusal is not logged at ERROR with the thief's address:\n%s", lb.String())
	}
	if m := body(t, get(t, s, "GET", "/metrics")); !strings.Contains(m, "kiln_pxe_enrol_conflicts_total 1") {
		t.Errorf("the conflict is not counted:\n%s", grepLines(m, "enrol"))
	}
	all, err := OpenEnrolments(f.pki).List("n2")
	if err != nil || len(all) != 2 || all[0].Status != enrol.StatusApproved || all[1].Status != enrol.StatusRefused || all[1].Remote != "10.6.6.6:1000" {
		t.Fatalf("enrolments: %+v %v", all, err)
	}

	// A restarted server remembers: the node's keys get the same certificates, the thief's
	// are still refused, and a third key too.
	s2, _ := newTestServer(t, f, func(c *Config) { c.Enrol = PolicyFirst })
	if code, again := postEnrol(t, s2, real, "10.0.0.12:1001"); code != 200 || again.Certs[enrol.KindPeer] != first.Certs[enrol.KindPeer] {
		t.Errorf("after a restart the node's keys got %d, other certificates: %v", code, again.Certs[enrol.KindPeer] != first.Certs[enrol.KindPeer])
	}
	if code, _ := postEnrol(t, s2, thief, "10.6.6.6:1001"); code != http.StatusForbidden {
		t.Errorf("after a restart the thief got %d", code)
	}
	third, _ := csrRequest(t, "n2", true)
	if code, _ := postEnrol(t, s2, third, "10.6.6.7:1001"); code != http.StatusForbidden {
		t.Errorf("after a restart a third key got %d", code)
	}
	// The operator may still approve a key (a reinstalled machine).
	if _, err := OpenEnrolments(f.pki).Decide("n2", all[1].Fingerprint[:12], enrol.StatusApproved, "operator", ""); err != nil {
		t.Fatal(err)
	}
	if code, _ := postEnrol(t, s2, thief, "10.6.6.6:1002"); code != 200 {
		t.Errorf("an approved key got %d", code)
	}
}

// TestEnrolApproveWaits: with the policy approve, kiln-node enrol's client waits, through a
// refusal too, until the operator approves, and the node gets certificates that chain to the CA;
// enrolling again does nothing, also with the server gone.
func TestEnrolApproveWaits(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, nil) // approve is the default
	ts := httptest.NewServer(s)
	defer ts.Close()
	node := t.TempDir()
	cfg := enrol.Config{
		Server: ts.URL, Node: "n1", CA: pki.CAPath(f.pki),
		Certs: []enrol.Cert{
			{Kind: enrol.KindClient, CertPath: filepath.Join(node, "client.crt"), KeyPath: filepath.Join(node, "client.key")},
			{Kind: enrol.KindPeer, CertPath: filepath.Join(node, "etcd/peer.crt"), KeyPath: filepath.Join(node, "etcd/peer.key")},
			{Kind: enrol.KindServer, CertPath: filepath.Join(node, "etcd/server.crt"), KeyPath: filepath.Join(node, "etcd/server.key")},
		},
		Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- enrol.Run(context.Background(), cfg) }()
	en := waitPending(t, f.pki, "n1", done)
	if _, err := os.Stat(cfg.Certs[0].CertPath); err == nil {
		t.Fatal("a certificate before the approval")
	}
	if en.Remote == "" || len(en.Fingerprint) != 64 {
		t.Errorf("the pending enrolment lacks its address or fingerprint: %+v", en)
	}
	// Refused first (the operator's mistake): the node keeps waiting and is let through by
	// the approval that follows, with no hands on it.
	if _, err := OpenEnrolments(f.pki).Decide("n1", "", enrol.StatusRefused, "operator", "not sure"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("enrol ended on a refusal: %v", err)
	default:
	}
	if _, err := OpenEnrolments(f.pki).Decide("n1", en.Fingerprint[:8], enrol.StatusApproved, "operator", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("enrol: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no certificates 30 s after the approval")
	}
	for _, c := range cfg.Certs {
		fi, err := os.Stat(c.KeyPath)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", c.KeyPath, fi, err)
		}
		if _, err := os.Stat(c.CertPath); err != nil {
			t.Error(err)
		}
	}
	ts.Close()
	if err := enrol.Run(context.Background(), cfg); err != nil {
		t.Errorf("enrolling again with valid certificates: %v", err)
	}
	if all, _ := OpenEnrolments(f.pki).List(""); len(all) != 1 || all[0].Issued.IsZero() {
		t.Errorf("enrolments: %+v", all)
	}
}

func waitPending(t *testing.T, pkiDir, node string, done chan error) Enrolment {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("enrol returned before the approval: %v", err)
		default:
		}
		if all, _ := OpenEnrolments(pkiDir).List(node); len(all) == 1 && all[0].Status == enrol.StatusPending {
			return all[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no pending enrolment")
	return Enrolment{}
}

// TestAssetsNeverServeSecrets: --assets pointed at kiln render's output serves no private key,
// nothing under pki/ and no config.ign or config.bu; a FIFO is refused at once.
func TestAssetsNeverServeSecrets(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, _ := newTestServer(t, f, nil)
	for p, content := range map[string]string{
		"pki/ca.crt": "SECRET-1", "pki/ca.key": "SECRET-2", "pki/nodes/n1/client.key": "SECRET-3", "PKI/x.crt": "SECRET-4",
		"operator.key": "SECRET-5", "n1/config.ign": "SECRET-6", "n1/config.bu": "SECRET-7", "pxe-token.key": "SECRET-8",
	} {
		writeFile(t, filepath.Join(f.assets, p), content)
		res := get(t, s, "GET", "/assets/"+p)
		if b := body(t, res); res.StatusCode != http.StatusForbidden || strings.Contains(b, content) {
			t.Errorf("GET /assets/%s: %d %q, want 403", p, res.StatusCode, b)
		}
	}
	// A key under another name, or a link to one, is known by its PEM header.
	writeFile(t, filepath.Join(f.assets, "pki/ca.key"), "-----BEGIN PRIVATE KEY-----\nSECRET-2\n")
	writeFile(t, filepath.Join(f.assets, "flatcar/kernel"), "-----BEGIN EC PRIVATE KEY-----\nSECRET-9\n")
	if err := os.Symlink("../pki/ca.key", filepath.Join(f.assets, "flatcar/initrd")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"flatcar/kernel", "flatcar/initrd"} {
		if res := get(t, s, "GET", "/assets/"+p); res.StatusCode != http.StatusForbidden || strings.Contains(body(t, res), "SECRET") {
			t.Errorf("GET /assets/%s: %d, want 403", p, res.StatusCode)
		}
	}
	writeFile(t, filepath.Join(f.assets, "ok.txt"), "fine")
	if res := get(t, s, "GET", "/assets/ok.txt"); res.StatusCode != 200 {
		t.Errorf("a plain asset: %d", res.StatusCode)
	}
	if err := syscall.Mkfifo(filepath.Join(f.assets, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() { got <- get(t, s, "GET", "/assets/fifo").StatusCode }()
	select {
	case code := <-got:
		if code != http.StatusNotFound {
			t.Errorf("a FIFO: %d, want 404", code)
		}
	case <-time.After(10 * time.Second):
		// Unblock the server's open so the test can end.
		if w, err := os.OpenFile(filepath.Join(f.assets, "fifo"), os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("a FIFO in the assets holds the request")
	}
}

func TestRedactDecodes(t *testing.T) {
	for _, q := range []string{"token=abcdef", "mac=1&%74oken=abcdef", "%54OKEN=abcdef", "mac=1&tok%65n=abcdef&x=2"} {
		if got := redact(q); strings.Contains(got, "abcdef") || !strings.Contains(got, "REDACTED") {
			t.Errorf("redact(%q) = %q", q, got)
		}
	}
	if got := redact("mac=52-54&hostname=n1"); got != "mac=52-54&hostname=n1" {
		t.Errorf("redact changed a query without token: %q", got)
	}
}

// TestBadTLSFailsBeforeServing: a certificate that does not load fails Serve before the log says
// it serves.
func TestBadTLSFailsBeforeServing(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	s, lb := newTestServer(t, f, nil)
	bad := filepath.Join(f.dir, "bad.pem")
	writeFile(t, bad, "not a certificate")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = s.Serve(context.Background(), ln, bad, bad, time.Second)
	if !errors.Is(err, ErrTLS) {
		t.Errorf("err = %v, want ErrTLS", err)
	}
	if strings.Contains(lb.String(), "msg=serving") {
		t.Errorf("the log says serving:\n%s", lb.String())
	}
}

// TestNoNewCA: the server refuses a PKI folder without a CA, names it, and makes none.
func TestNoNewCA(t *testing.T) {
	f := newFixture(t, specText("flatcar", "stable", testNodes))
	log, _ := newLogger()
	cfg := f.config(log)
	cfg.Deliver.PKIDir = filepath.Join(f.dir, "typo", "pki")
	writeFile(t, filepath.Join(f.assets, "x"), "x")
	_, err := New(cfg, nil)
	if !errors.Is(err, pki.ErrNoPKI) || !strings.Contains(err.Error(), cfg.Deliver.PKIDir) {
		t.Errorf("err = %v, want ErrNoCA naming %s", err, cfg.Deliver.PKIDir)
	}
	if _, err := os.Stat(cfg.Deliver.PKIDir); err == nil {
		t.Errorf("a PKI folder was made")
	}
}
