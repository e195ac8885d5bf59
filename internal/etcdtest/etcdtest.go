// Package etcdtest starts a real etcd cluster for tests: three members of the pinned etcd
// server on 127.0.0.1, random free ports, mutual TLS for peers and clients (certificates from
// bootstrap/pki), data directories under t.TempDir(), everything stopped in t.Cleanup.
//
//	c := etcdtest.Start(t)              // skips when the etcd binary is missing
//	cli := c.Client(t)                  // ready *clientv3.Client, closed at cleanup
//	c.Kill(1); c.Restart(1)             // crash and bring back a member
//	c.Pause(2); c.Resume(2)             // SIGSTOP/SIGCONT: a partition-like fault
//
// The binary is $KILN_ETCD_BIN, else bin/tools/etcd under the module root (built by
// `make tools`). When neither exists the test is skipped, unless $CI or $KILN_REQUIRE_TOOLS is
// set: then it fails.
package etcdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/node/etcdconn"
)

// DefaultMembers is the size of the cluster Start makes.
const DefaultMembers = 3

// TLSFiles are the paths of a client identity: the cluster CA and a client certificate/key.
type TLSFiles struct {
	CA, Cert, Key string
}

// Cluster is a running etcd cluster. Its methods fail the test on error; they are safe for
// concurrent use.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	pkiDir  string
	token   string
	members []*member

	mu sync.Mutex
}

type member struct {
	name                       string
	dataDir, logPath           string
	clientURL, peerURL, metURL string
	cmd                        *exec.Cmd
	done                       chan struct{} // closed when cmd has exited
	paused                     bool
}

// Option changes how Start builds the cluster.
type Option func(*options)

type options struct {
	members             int
	heartbeat, election time.Duration
}

// Members sets the number of members (default 3).
func Members(n int) Option { return func(o *options) { o.members = n } }

// Binary returns the etcd server binary ($KILN_ETCD_BIN, else bin/tools/etcd under the module
// root), skipping the test (or failing it under CI/KILN_REQUIRE_TOOLS) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	return testkit.Tool(t, "KILN_ETCD_BIN", "etcd")
}

// Start starts a cluster of three members (see Members) and waits until every member is
// healthy. The cluster is stopped, and its data removed, when the test ends. Ports are picked
// free just before etcd binds them; when another process takes one meanwhile, Start tries again
// with new ports.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{members: DefaultMembers, heartbeat: 100 * time.Millisecond, election: time.Second}
	for _, f := range opts {
		f(&o)
	}
	bin := Binary(t)
	for attempt := 1; ; attempt++ {
		c, err := start(t, bin, o)
		if err == nil {
			return c
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("etcdtest: %v", err)
		}
		t.Logf("etcdtest: %v; again with other ports", err)
	}
}

var errPortTaken = errors.New("a port was taken by another process")

func start(t testing.TB, bin string, o options) (*Cluster, error) {
	t.Helper()
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), token: fmt.Sprintf("kiln-test-%d", time.Now().UnixNano())}
	c.pkiDir = filepath.Join(c.dir, "pki")

	var nodes []pki.Node
	var initial []string
	for i := range o.members {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			clientURL: "https://" + freeAddr(t),
			peerURL:   "https://" + freeAddr(t),
			metURL:    "http://" + freeAddr(t),
		}
		m.dataDir = filepath.Join(c.dir, m.name+".etcd")
		m.logPath = filepath.Join(c.dir, m.name+".log")
		c.members = append(c.members, m)
		nodes = append(nodes, pki.Node{Name: m.name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNS: []string{"localhost"}})
		initial = append(initial, m.name+"="+m.peerURL)
	}
	b, err := pki.Ensure(c.pkiDir, "etcdtest", nodes, time.Now())
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := b.Write(c.pkiDir); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	for _, m := range c.members {
		m.cmd = c.command(m, strings.Join(initial, ","), o)
		c.launch(m)
	}
	if err := c.waitHealthy(); err != nil {
		c.stop()
		for _, m := range c.members {
			if strings.Contains(tail(m.logPath, 50), "address already in use") {
				return nil, fmt.Errorf("%s: %w", m.name, errPortTaken)
			}
		}
		return nil, err
	}
	t.Cleanup(c.stop)
	return c, nil
}

// freeAddr returns 127.0.0.1:PORT with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (c *Cluster) command(m *member, initial string, o options) *exec.Cmd {
	cert := func(kind string) (string, string) {
		base := filepath.Join(c.pkiDir, "nodes", m.name, kind)
		return base + ".crt", base + ".key"
	}
	peerCrt, peerKey := cert(pki.KindPeer)
	srvCrt, srvKey := cert(pki.KindServer)
	ca := pki.CAPath(c.pkiDir)
	args := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--listen-metrics-urls", m.metURL,
		"--initial-cluster", initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", c.token,
		"--client-cert-auth", "--trusted-ca-file", ca, "--cert-file", srvCrt, "--key-file", srvKey,
		"--peer-client-cert-auth", "--peer-trusted-ca-file", ca, "--peer-cert-file", peerCrt, "--peer-key-file", peerKey,
		"--heartbeat-interval", fmt.Sprint(o.heartbeat.Milliseconds()),
		"--election-timeout", fmt.Sprint(o.election.Milliseconds()),
		// A killed process loses nothing the page cache holds: fsync only slows tests down.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	}
	return exec.Command(c.bin, args...)
}

// launch starts m.cmd (a fresh exec.Cmd) with its output appended to the member's log.
func (c *Cluster) launch(m *member) {
	c.t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("etcdtest: start %s: %v", m.name, err)
	}
	done := make(chan struct{})
	m.done = done
	cmd := m.cmd
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.paused = false
}

func (c *Cluster) member(i int) *member {
	c.t.Helper()
	if i < 0 || i >= len(c.members) {
		c.t.Fatalf("etcdtest: no member %d (cluster has %d)", i, len(c.members))
	}
	return c.members[i]
}

func running(m *member) bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to member i and waits until it is gone. Killing a stopped member is a no-op.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.member(i)
	if !running(m) {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	m.paused = false
}

// Terminate sends SIGTERM to member i (a graceful stop, as at a machine's shutdown) and
// returns at once; Kill waits for it.
func (c *Cluster) Terminate(i int) {
	c.t.Helper()
	c.signal(i, syscall.SIGTERM, false)
}

// Restart starts member i again on its ports and data directory (killing it first if it runs),
// without waiting for it to be healthy; call WaitHealthy for that.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.member(i)
	c.Kill(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := m.cmd
	m.cmd = exec.Command(old.Path, old.Args[1:]...)
	c.launch(m)
}

// Pause stops member i with SIGSTOP: it keeps its sockets but answers nothing, like a member
// behind a partition.
func (c *Cluster) Pause(i int) {
	c.t.Helper()
	c.signal(i, syscall.SIGSTOP, true)
}

// Resume continues a paused member with SIGCONT.
func (c *Cluster) Resume(i int) {
	c.t.Helper()
	c.signal(i, syscall.SIGCONT, false)
}

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.member(i)
	if !running(m) {
		return
	}
	if err := m.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("etcdtest: signal %s: %v", m.name, err)
	}
	m.paused = paused
}

// Running reports whether member i's process is running (paused members count as running).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return running(c.member(i))
}

// Size is the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Endpoints are the client URLs of every member (https://127.0.0.1:PORT).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// MetricsURLs are the plain-HTTP Prometheus endpoints of every member (http://127.0.0.1:PORT/metrics).
func (c *Cluster) MetricsURLs() []string {
	var urls []string
	for _, m := range c.members {
		urls = append(urls, m.metURL+"/metrics")
	}
	return urls
}

// PKIDir is the directory of the cluster's PKI (bootstrap/pki layout), for tests that need
// more certificates: pki.Ensure on it with more nodes reuses the CA.
func (c *Cluster) PKIDir() string { return c.pkiDir }

// ClientTLS are the files of a client identity trusted by the cluster (the PKI's operator
// certificate).
func (c *Cluster) ClientTLS() TLSFiles {
	return TLSFiles{
		CA:   pki.CAPath(c.pkiDir),
		Cert: pki.OperatorCertPath(c.pkiDir),
		Key:  pki.OperatorKeyPath(c.pkiDir),
	}
}

// TLSConfig is ClientTLS as a *tls.Config.
func (c *Cluster) TLSConfig() *tls.Config {
	c.t.Helper()
	f := c.ClientTLS()
	cfg, err := f.Config()
	if err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
	return cfg
}

// Config loads the files as a client *tls.Config.
func (f TLSFiles) Config() (*tls.Config, error) {
	return etcdconn.TLSConfig(f.CA, f.Cert, f.Key)
}

// Client returns a client of every member, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		TLS:         c.TLSConfig(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitHealthy waits (up to 30 s) until every running member answers a linearizable read.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	if err := c.waitHealthy(); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

func (c *Cluster) waitHealthy() error {
	deadline := time.Now().Add(30 * time.Second)
	tlsCfg, err := c.ClientTLS().Config()
	if err != nil {
		return err
	}
	for i, m := range c.members {
		if !c.Running(i) {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, TLS: tlsCfg, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("client of %s: %w", m.name, err)
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = cli.Get(ctx, "health")
			cancel()
			if err == nil {
				break
			}
			if !c.Running(i) {
				cli.Close()
				return fmt.Errorf("member %s exited while starting:\n%s", m.name, tail(m.logPath, 30))
			}
			if time.Now().After(deadline) {
				cli.Close()
				return fmt.Errorf("member %s not healthy after 30s: %v\n%s", m.name, err, tail(m.logPath, 30))
			}
			time.Sleep(50 * time.Millisecond)
		}
		cli.Close()
	}
	return nil
}

// stop kills every member; when the test failed it logs the end of each member's log.
func (c *Cluster) stop() {
	for i, m := range c.members {
		if c.Running(i) {
			c.mu.Lock()
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			c.mu.Unlock()
			<-m.done
		}
		if c.t.Failed() {
			c.t.Logf("etcdtest: end of %s's log:\n%s", m.name, tail(m.logPath, 20))
		}
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
