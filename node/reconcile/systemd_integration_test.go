package reconcile

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/internal/systemdtest"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/unit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// kilnNodeBinary copies a static kiln-node into dir: $KILN_NODE_BIN (the Makefile builds it
// with CGO_ENABLED=0), else one built once.
func kilnNodeBinary(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(testkit.Binary(t, "KILN_NODE_BIN", "github.com/kiln-cluster/kiln/cmd/kiln-node"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kiln-node")
	if err := os.WriteFile(out, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// proxyCA makes a CA and a server certificate for ip, written as PEM to dir/ca.crt; it
// returns the server's tls.Certificate.
func proxyCA(t *testing.T, dir, ip string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test proxy CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// etcdProxy lets the machines reach the test's etcd, which listens on 127.0.0.1 only: a TLS
// listener on the network's gateway (a certificate for that address) that opens a TLS
// connection to the member with the test's client identity and copies bytes both ways.
func etcdProxy(t *testing.T, gw string, cert tls.Certificate, upstream string, upTLS *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", net.JoinHostPort(gw, "0"), &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	u, _ := url.Parse(upstream)
	up := upTLS.Clone()
	up.NextProtos = []string{"h2"}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := tls.Dial("tcp", u.Host, up)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return "https://" + l.Addr().String()
}

// TestIntegrationAgentSystemd runs kiln-node in a systemd container (systemd executor, the
// node's engine candidate and its agent) against the test's etcd: a submitted template
// instance runs as a systemd unit from /run/systemd/system and is reported; set inactive, it
// stops and its file goes; with etcd unreachable, the agent stops the unit before its lease
// can expire; with etcd back, the unit runs again under the machine's new lease; when
// kiln-node dies, systemd stops its units.
func TestIntegrationAgentSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: systemd in a container, real etcd")
	}
	systemdtest.Require(t, "")
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := context.Background()
	n := systemdtest.NewNetwork(t)

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kilnNodeBinary(t, dir)
	srv := proxyCA(t, dir, n.Gateway())
	ct := c.ClientTLS()
	for src, dst := range map[string]string{ct.Cert: "client.crt", ct.Key: "client.key"} {
		raw, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var eps []string
	for _, ep := range c.Endpoints() {
		eps = append(eps, etcdProxy(t, n.Gateway(), srv, ep, c.TLSConfig()))
	}

	m := systemdtest.Start(t, systemdtest.Options{Network: n, Mounts: []systemdtest.Mount{{Source: dir, Target: "/kiln", ReadOnly: true}}})
	const ttl = 5 * time.Second
	m.Run("systemd-run", "--unit=kiln-node", "--property=KillMode=mixed", "/kiln/kiln-node", "run", "--config=",
		"--etcd-endpoints", strings.Join(eps, ","), "--etcd-ca", "/kiln/ca.crt",
		"--etcd-cert", "/kiln/client.crt", "--etcd-key", "/kiln/client.key",
		"--executor", "systemd", "--strategy", "off", "--update-engine=false", "--lease-ttl", ttl.String(),
		"--data-dir", "/var/lib/kiln-node", "--log-level", "debug")
	id := m.MachineID()
	defer func() {
		if t.Failed() {
			t.Logf("kiln-node's journal:\n%s", m.Journal("kiln-node.service"))
		}
	}()
	waitUntil(t, 30*time.Second, "machine registered", func() bool {
		mm, err := registry.Get(ctx, cli, id)
		return err == nil && mm != nil
	})

	isActive := func(name string) string {
		out, _ := m.Exec(ctx, "systemctl", "is-active", name)
		return strings.TrimSpace(out)
	}
	if _, err := submit.Submit(ctx, cli, []submit.File{{Name: "my-app@.service", Text: []byte(appTemplate)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "my-app@1.service"}}, unit.StateLaunched); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "my-app@1 active in systemd", func() bool { return isActive("my-app@1.service") == "active" })
	if show := m.Run("systemctl", "show", "-p", "FragmentPath", "my-app@1.service"); !strings.Contains(show, "/run/systemd/system/my-app@.service") {
		t.Errorf("unit loaded from %s", show)
	}
	waitUntil(t, 10*time.Second, "reported active under the machine's lease", func() bool {
		r, resp := report(t, cli, id, "my-app@1.service")
		mresp, err := cli.Get(ctx, keys.Machine(id))
		return r != nil && r.ActiveState == "active" && r.SubState == "running" && err == nil && len(mresp.Kvs) == 1 &&
			resp.Kvs[0].Lease == mresp.Kvs[0].Lease
	})

	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "my-app@1.service"}}, unit.StateInactive); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "my-app@1 stopped", func() bool { return isActive("my-app@1.service") != "active" })
	waitUntil(t, 10*time.Second, "unit file removed", func() bool {
		_, err := m.Exec(ctx, "test", "-e", "/run/systemd/system/my-app@.service")
		return err != nil
	})
	waitUntil(t, 10*time.Second, "report deleted", func() bool { r, _ := report(t, cli, id, "my-app@1.service"); return r == nil })

	// Self-fencing against real systemd.
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "my-app@1.service"}}, unit.StateLaunched); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "my-app@1 active again", func() bool { return isActive("my-app@1.service") == "active" })
	before, _ := cli.Get(ctx, keys.Machine(id))
	for i := 0; i < c.Size(); i++ {
		c.Pause(i)
	}
	paused := time.Now()
	waitUntil(t, 2*ttl, "fenced", func() bool { return isActive("my-app@1.service") != "active" })
	fenced := time.Since(paused)
	t.Logf("etcd paused: unit stopped by systemd %v later (lease TTL %v)", fenced.Round(time.Millisecond), ttl)
	if fenced >= ttl {
		t.Errorf("the unit stopped %v after etcd went away, not before the lease could expire (%v)", fenced, ttl)
	}
	time.Sleep(time.Until(paused.Add(ttl + time.Second)))
	for i := 0; i < c.Size(); i++ {
		c.Resume(i)
	}
	waitUntil(t, 60*time.Second, "running again under a new lease", func() bool {
		resp, err := cli.Get(ctx, keys.Machine(id))
		return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != before.Kvs[0].Lease && isActive("my-app@1.service") == "active"
	})
	var a keys.Assignment
	resp, err := cli.Get(ctx, keys.Placement(id, "my-app@1.service"))
	if err != nil || len(resp.Kvs) != 1 || json.Unmarshal(resp.Kvs[0].Value, &a) != nil {
		t.Fatalf("placement: %v %v", resp, err)
	}
	mresp, _ := cli.Get(ctx, keys.Machine(id))
	if clientv3.LeaseID(a.Lease) != clientv3.LeaseID(mresp.Kvs[0].Lease) {
		t.Errorf("placement's lease %x, machine's %x", a.Lease, mresp.Kvs[0].Lease)
	}

	// kiln-node dies: its units die with it (BindsTo=), so that none outlives the agent
	// that would fence it.
	if show := m.Run("systemctl", "show", "-p", "BindsTo", "my-app@1.service"); !strings.Contains(show, "kiln-node.service") {
		t.Fatalf("unit not bound to kiln-node: %s", show)
	}
	killed := time.Now()
	m.Run("systemctl", "kill", "--signal=SIGKILL", "kiln-node.service")
	waitUntil(t, 10*time.Second, "unit stopped with kiln-node", func() bool { return isActive("my-app@1.service") != "active" })
	t.Logf("kiln-node killed: its unit stopped %v later", time.Since(killed).Round(time.Millisecond))
}
