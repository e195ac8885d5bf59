package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// nodeBin is the kiln-node binary: $KILN_NODE_BIN, else built once.
func nodeBin(t *testing.T) string {
	t.Helper()
	return testkit.Binary(t, "KILN_NODE_BIN", "github.com/kiln-cluster/kiln/cmd/kiln-node")
}

// node is one simulated machine: a kiln-node process whose reboot command records the boot ID
// in a marker file and kills the daemon; the supervisor then "boots" it again with a new boot
// ID after a delay, and /run/reboot-required (a file in its directory) is gone, as on a tmpfs.
type node struct {
	id   string
	dir  string
	args []string

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{}
	boot        int
	rebooting   bool // down for a simulated reboot
	chaosKilled bool
	reboots     []string // boot IDs that ended in a reboot
	daemonKills int
}

func (n *node) bootID() string       { return fmt.Sprintf("%s-boot-%d", n.id, n.boot) }
func (n *node) requiredFile() string { return filepath.Join(n.dir, "reboot-required") }
func (n *node) marker() string       { return filepath.Join(n.dir, "rebooted") }
func (n *node) logPath() string      { return filepath.Join(n.dir, "kiln-node.log") }
func (n *node) needReboot(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(n.requiredFile(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newNode prepares machine id with the given extra kiln-node flags.
func newNode(t *testing.T, c *etcdtest.Cluster, id string, extra ...string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{id: id, dir: dir}
	tl := c.ClientTLS()
	n.args = append([]string{"run",
		"--config=", // no file: flags only
		"--etcd-endpoints", strings.Join(c.Endpoints(), ","),
		"--etcd-ca", tl.CA, "--etcd-cert", tl.Cert, "--etcd-key", tl.Key,
		"--machine-id", id,
		"--data-dir", filepath.Join(dir, "data"),
		"--strategy", "etcd-lock",
		"--reboot-required-file", n.requiredFile(),
		"--reboot-command", `echo "$KILN_BOOT_ID" >> ` + n.marker() + ` && kill -TERM $PPID`,
		"--check-interval", "500ms",
		"--lease-ttl", "3s",
		"--update-engine=false",
		"--log-level", "debug",
	}, extra...)
	return n
}

func (n *node) start(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	logf, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s\n", n.bootID())
	cmd := exec.Command(nodeBin(t), append(n.args, "--boot-id", n.bootID())...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.cmd, n.done, n.chaosKilled = cmd, done, false
}

func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill stops the daemon (not a reboot: it comes back with the same boot ID).
func (n *node) kill(sig syscall.Signal) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.rebooting {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
	}
	n.chaosKilled = true
	n.daemonKills++
	_ = n.cmd.Process.Signal(sig)
	return true
}

func (n *node) stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// markerHas reports whether the marker's lines include boot.
func (n *node) markerHas(boot string) bool {
	f, err := os.Open(n.marker())
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.TrimSpace(s.Text()) == boot {
			return true
		}
	}
	return false
}

// supervise restarts the node until ctx ends: after a simulated reboot with the next boot ID
// (after rebootDelay), after a chaos kill with the same one (after restartDelay). An exit for
// any other reason fails the test.
func (n *node) supervise(ctx context.Context, t *testing.T, rebootDelay, restartDelay func() time.Duration) {
	defer n.stop()
	for {
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-done:
		}
		n.mu.Lock()
		boot := n.bootID()
		killed := n.chaosKilled
		n.mu.Unlock()
		var delay time.Duration
		if n.markerHas(boot) {
			n.mu.Lock()
			n.rebooting = true
			n.reboots = append(n.reboots, boot)
			n.mu.Unlock()
			os.Remove(n.requiredFile()) // /run is a tmpfs
			delay = rebootDelay()
		} else {
			if !killed {
				t.Errorf("%s exited on its own in %s:\n%s", n.id, boot, tailFile(n.logPath(), 30))
				return
			}
			delay = restartDelay()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		n.mu.Lock()
		if n.rebooting {
			n.boot++
			n.rebooting = false
		}
		n.mu.Unlock()
		n.start(t)
	}
}

func (n *node) snapshot() (reboots []string, rebooting bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.reboots...), n.rebooting
}

func tailFile(path string, lines int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
