// Package systemdtest gives tests a real systemd machine: a Docker container of the base of
// kiln's node image (images/nodeimage: Debian bookworm by debootstrap, minbase plus systemd, D-Bus,
// iproute2, procps and busybox; built by `make systemd-image`, which runs `kiln images
// build-node`) with systemd as PID 1 and the system bus running, on an internal Docker
// network that the test creates. Everything is removed in t.Cleanup, also when the test fails.
//
//	m := systemdtest.Start(t, systemdtest.Options{
//		Mounts: []systemdtest.Mount{{Source: bin, Target: "/usr/local/bin/kiln-node", ReadOnly: true}},
//	})                                   // skips when docker or the image is missing
//	out := m.Run("systemctl", "is-active", "dbus.service")
//	m.WriteFile("/run/systemd/system/x.service", unit, 0o644)
//	m.Journal("x.service")               // journalctl -u x.service of the current boot
//	m.Kill(); m.Restart()                // a power cut, then a boot
//	m.Stop(); m.Restart()                // a clean poweroff (units' ExecStop run), then a boot
//	m.Reboot()                           // systemctl reboot inside, back when running again
//	t.Run("sub", func(t *testing.T) { m := m.WithT(t); m.Run("true") }) // fail the subtest
//
// Several machines that must reach each other share a network:
//
//	n := systemdtest.NewNetwork(t)
//	a := systemdtest.Start(t, systemdtest.Options{Network: n})
//	b := systemdtest.Start(t, systemdtest.Options{Network: n})
//	// a.IP() and b.IP() reach each other; n.Gateway() is this host's address on the network,
//	// where a server of the test (etcd...) can listen for the machines.
//
// The networks are internal (no route out of them): machines reach each other and this host,
// nothing else. Each machine has its own /etc/machine-id, written by systemd at its first boot
// and kept across restarts. `systemctl reboot` inside a machine boots it again, as on a real
// machine; `systemctl poweroff` leaves it stopped. A machine's boot ID
// (/proc/sys/kernel/random/boot_id) is the host kernel's and does not change when it restarts.
//
// The image is $KILN_SYSTEMD_IMAGE, else DefaultImage(). When docker,
// its daemon or the image is missing, the test is skipped, unless $CI or $KILN_REQUIRE_TOOLS is
// set: then it fails. Containers and networks carry the label LabelKey (and LabelKey+".pid", the
// test process); leftovers of test processes that died without cleaning up (a test binary killed
// by -timeout) are removed by the next Start, or by hand:
//
//	docker rm -f $(docker ps -aq --filter label=dev.kiln.systemdtest)   # also those of running tests
//	docker network prune -f --filter label=dev.kiln.systemdtest
package systemdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/kiln-cluster/kiln/images/nodeimage"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/testkit"
)

// DefaultImage is the base of kiln's node image, which `make systemd-image` builds: the same
// systemd root that `kiln up --driver docker` runs, tagged by a hash of its recipe.
func DefaultImage() string { return nodeimage.BaseImage() }

// LabelKey labels every container and network this package creates (value "1"). LabelKey+".pid"
// holds the test process's PID and LabelKey+".test" the test's name.
const LabelKey = "dev.kiln.systemdtest"

// DefaultBootTimeout bounds the wait for a machine to reach running or degraded.
const DefaultBootTimeout = 90 * time.Second

// RunFlags are the docker run flags that let systemd run as PID 1 here: the node image's.
var RunFlags = nodeimage.RunFlags

// exitReboot and exitHalt are the exit codes of systemd as PID 1 of a container after
// `systemctl reboot` and after a halt or poweroff (also what docker stop asks for).
const (
	exitReboot = 129
	exitHalt   = 130
)

// Mount is a bind mount from this host into a machine.
type Mount struct {
	Source   string // path on this host; must exist
	Target   string // absolute path in the machine
	ReadOnly bool
}

// Options are the settings of Start; the zero value is a machine of the default image on a
// network of its own.
type Options struct {
	// Image overrides $KILN_SYSTEMD_IMAGE and DefaultImage.
	Image string
	// Network to join; nil: a new network for this machine alone, removed with it.
	Network *Network
	// Hostname of the machine; empty: the container's name.
	Hostname string
	// Mounts are bind mounts into the machine (a kiln-node binary, a config directory...).
	Mounts []Mount
	// ExtraArgs are appended to docker run's flags (before the image), for what Options lacks.
	ExtraArgs []string
	// BootTimeout bounds each wait for the machine to boot; zero: DefaultBootTimeout.
	BootTimeout time.Duration
}

// Machine is a running systemd container. Its methods are safe for concurrent use; those that
// do not return an error fail the test they are bound to: the one given to Start, or to WithT.
type Machine struct {
	t testing.TB
	*machine
}

// machine is the state that the views of one machine (WithT) share.
type machine struct {
	name    string
	network *Network
	timeout time.Duration

	mu       sync.Mutex
	ip       string
	bootTime time.Duration
	watching bool // a goroutine boots the machine again after `systemctl reboot`
	stop     chan struct{}
	done     sync.WaitGroup
}

// WithT returns the same machine bound to t, for use in a subtest (a failure must end the
// goroutine of the test that failed). The machine is still removed at the end of Start's test.
func (m *Machine) WithT(t testing.TB) *Machine {
	return &Machine{t: t, machine: m.machine}
}

// ExecError is the error of a command that ran in a machine and failed.
type ExecError struct {
	Machine  string
	Cmd      []string
	ExitCode int // -1 when docker exec itself failed
	Stderr   string
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("%s: %s: exit status %d", e.Machine, strings.Join(e.Cmd, " "), e.ExitCode)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Require skips the test (fails it under $CI or $KILN_REQUIRE_TOOLS) unless the docker CLI, its
// daemon and image are there. It returns the image ("" means the default image).
func Require(t testing.TB, image string) string {
	t.Helper()
	if image == "" {
		image = os.Getenv("KILN_SYSTEMD_IMAGE")
	}
	if image == "" {
		image = DefaultImage()
	}
	if _, err := exec.LookPath("docker"); err != nil {
		missing(t, "docker is not installed (make deps installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		missing(t, fmt.Sprintf("the docker daemon is not reachable: %v", err))
	}
	if _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		missing(t, fmt.Sprintf("docker image %s is missing (make systemd-image builds it: kiln images build-node)", image))
	}
	return image
}

func missing(t testing.TB, msg string) {
	t.Helper()
	testkit.Missing(t, "%s", msg)
}

var leftovers sync.Once

// Start runs a machine and waits until systemd reports it running (or degraded, whose failed
// units it logs). The machine and, when Start made it, its network are removed at cleanup; when
// the test failed, the machine's failed units and journal are logged first.
func Start(t testing.TB, opts Options) *Machine {
	t.Helper()
	image := Require(t, opts.Image)
	leftovers.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := RemoveLeftovers(ctx); err != nil {
			t.Logf("systemdtest: removing leftovers: %v", err)
		}
	})
	network := opts.Network
	if network == nil {
		network = NewNetwork(t) // its cleanup runs after the machine's, registered below
	}
	m := &Machine{t: t, machine: &machine{
		name:    uniqueName(t),
		network: network,
		timeout: opts.BootTimeout,
	}}
	if m.timeout <= 0 {
		m.timeout = DefaultBootTimeout
	}
	hostname := opts.Hostname
	if hostname == "" {
		hostname = m.name
	}
	args := []string{"run", "--detach", "--name", m.name, "--hostname", hostname,
		"--network", network.name}
	args = append(args, labels(t)...)
	args = append(args, RunFlags...)
	for _, mt := range opts.Mounts {
		spec := "type=bind,source=" + mt.Source + ",target=" + mt.Target
		if mt.ReadOnly {
			spec += ",readonly"
		}
		args = append(args, "--mount", spec)
	}
	args = append(args, opts.ExtraArgs...)
	args = append(args, image)

	t.Cleanup(m.remove)
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err := docker(ctx, args...)
	cancel()
	if err != nil {
		t.Fatalf("systemdtest: start %s: %v", m.name, err)
	}
	if err := m.waitRunning(begin); err != nil {
		t.Fatalf("systemdtest: %v", err)
	}
	m.watch()
	t.Logf("systemdtest: %s (%s) running in %v", m.name, m.IP(), m.BootTime().Round(time.Millisecond))
	return m
}

// Name is the container's name (unique; also the default hostname).
func (m *Machine) Name() string { return m.name }

// Network is the network the machine is on.
func (m *Machine) Network() *Network { return m.network }

// IP is the machine's IPv4 address on its network, read from Docker: a restart may change it.
// While the machine is stopped it is the last address it had.
func (m *Machine) IP() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := docker(ctx, "inspect", "--format",
		fmt.Sprintf(`{{with index .NetworkSettings.Networks %q}}{{.IPAddress}}{{end}}`, m.network.name), m.name)
	if err != nil {
		m.t.Fatalf("systemdtest: address of %s: %v", m.name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ip := strings.TrimSpace(out); ip != "" {
		m.ip = ip
	}
	return m.ip
}

// BootTime is how long the last boot took, from docker run (or start) to systemd running.
func (m *Machine) BootTime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootTime
}

// MachineID is the machine's /etc/machine-id.
func (m *Machine) MachineID() string {
	return strings.TrimSpace(m.Run("cat", "/etc/machine-id"))
}

// Exec runs cmd in the machine (docker exec, as root) and returns its standard output. A command
// that exits non-zero returns its output and an *ExecError with the exit code and standard error.
// Cancelling ctx ends the wait, not the command (docker exec leaves it running in the machine).
func (m *Machine) Exec(ctx context.Context, cmd ...string) (string, error) {
	return m.exec(ctx, nil, cmd...)
}

func (m *Machine) exec(ctx context.Context, stdin []byte, cmd ...string) (string, error) {
	args := []string{"exec"}
	if stdin != nil {
		args = append(args, "--interactive")
	}
	args = append(args, m.name)
	c := exec.CommandContext(ctx, "docker", append(args, cmd...)...)
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if err == nil {
		return stdout.String(), nil
	}
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("%s: %s: %w", m.name, strings.Join(cmd, " "), ctx.Err())
	}
	// docker exec exits 125-127 for its own failures (no such container, command not found).
	code := -1
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	return stdout.String(), &ExecError{Machine: m.name, Cmd: cmd, ExitCode: code, Stderr: stderr.String()}
}

// Run is Exec with a one-minute limit that fails the test when the command fails.
func (m *Machine) Run(cmd ...string) string {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := m.Exec(ctx, cmd...)
	if err != nil {
		m.t.Fatalf("systemdtest: %v", err)
	}
	return out
}

// WriteFile writes data to path in the machine with the given mode, creating its directory.
func (m *Machine) WriteFile(path string, data []byte, mode os.FileMode) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := `set -e; mkdir -p "$(dirname "$1")"; cat >"$1.tmp"; chmod "$2" "$1.tmp"; mv "$1.tmp" "$1"`
	if _, err := m.exec(ctx, data, "sh", "-c", script, "sh", path, strconv.FormatUint(uint64(mode.Perm()), 8)); err != nil {
		m.t.Fatalf("systemdtest: write %s: %v", path, err)
	}
}

// Journal returns the journal of unit in the current boot (journalctl -u UNIT -b, short-precise
// timestamps); an empty unit gives the whole journal of the boot. The journal lives in /run, so
// it starts again at each boot.
func (m *Machine) Journal(unit string) string {
	m.t.Helper()
	args := []string{"journalctl", "--no-pager", "-b", "-o", "short-precise"}
	if unit != "" {
		args = append(args, "-u", unit)
	}
	return m.Run(args...)
}

// Running reports whether the container is running (systemd may still be booting).
func (m *Machine) Running() bool {
	running, _ := m.state()
	return running
}

// state is the container's running flag and last exit code.
func (m *Machine) state() (running bool, exitCode int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := docker(ctx, "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", m.name)
	if err != nil {
		m.t.Fatalf("systemdtest: state of %s: %v", m.name, err)
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		m.t.Fatalf("systemdtest: state of %s: %q", m.name, out)
	}
	exitCode, _ = strconv.Atoi(f[1])
	return f[0] == "true", exitCode
}

// Stop shuts the machine down cleanly (systemd stops its units, as at a poweroff) and waits for
// it to be off; after 30 seconds it is killed.
func (m *Machine) Stop() {
	m.t.Helper()
	m.unwatch()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := docker(ctx, "stop", "--time", "30", m.name); err != nil {
		m.t.Fatalf("systemdtest: stop %s: %v", m.name, err)
	}
}

// Kill stops the machine at once (SIGKILL to everything in it), like a power cut.
func (m *Machine) Kill() {
	m.t.Helper()
	m.unwatch()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := docker(ctx, "kill", "--signal", "KILL", m.name); err != nil && m.Running() {
		m.t.Fatalf("systemdtest: kill %s: %v", m.name, err)
	}
	if _, err := docker(ctx, "wait", m.name); err != nil {
		m.t.Fatalf("systemdtest: kill %s: %v", m.name, err)
	}
}

// Restart boots the machine again: a clean reboot when it is running, a boot when it is stopped.
// It waits until systemd is running. Files written outside /run (and the machine ID) survive.
func (m *Machine) Restart() {
	m.t.Helper()
	m.unwatch()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	if m.Running() {
		_, err = docker(ctx, "stop", "--time", "30", m.name)
	}
	begin := time.Now()
	if err == nil {
		_, err = docker(ctx, "start", m.name)
	}
	if err != nil {
		m.t.Fatalf("systemdtest: restart %s: %v", m.name, err)
	}
	if err := m.waitRunning(begin); err != nil {
		m.t.Fatalf("systemdtest: %v", err)
	}
	m.watch()
}

// Reboot asks systemd in the machine to reboot (systemctl reboot, as logind's Reboot does) and
// waits until the new boot is running. Files outside /run and the machine ID survive.
func (m *Machine) Reboot() {
	m.t.Helper()
	before := m.StartedAt()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The command may lose its connection as the machine goes down: its error says nothing.
	_, _ = m.Exec(ctx, "systemctl", "reboot")
	deadline := time.Now().Add(m.timeout)
	for !m.StartedAt().After(before) {
		if time.Now().After(deadline) {
			m.t.Fatalf("systemdtest: %s did not reboot within %v", m.name, m.timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.WaitRunning()
}

// StartedAt is when the container last started (at Start, Restart, or a reboot from inside): a
// test that makes the machine reboot itself waits for it to move, then calls WaitRunning.
func (m *Machine) StartedAt() time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := docker(ctx, "inspect", "--format", "{{.State.StartedAt}}", m.name)
	if err != nil {
		m.t.Fatalf("systemdtest: start time of %s: %v", m.name, err)
	}
	at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
	if err != nil {
		m.t.Fatalf("systemdtest: start time of %s: %v", m.name, err)
	}
	return at
}

// WaitRunning waits until systemd in the machine says running or degraded. After a reboot that
// the machine did itself, first wait for StartedAt to move: just before it goes down, it may
// still say running.
func (m *Machine) WaitRunning() {
	m.t.Helper()
	if err := m.waitRunning(time.Now()); err != nil {
		m.t.Fatalf("systemdtest: %v", err)
	}
}

// waitRunning polls `systemctl is-system-running --wait` (which blocks until the boot is over
// once the bus is up) until it says running or degraded, and records the boot time since begin.
func (m *Machine) waitRunning(begin time.Time) error {
	deadline := begin.Add(m.timeout)
	var last string
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		out, err := m.Exec(ctx, "systemctl", "is-system-running", "--wait")
		cancel()
		state := strings.TrimSpace(out)
		switch state {
		case "running", "degraded":
			m.mu.Lock()
			m.bootTime = time.Since(begin)
			m.mu.Unlock()
			if state == "degraded" {
				failed, _ := m.Exec(context.Background(), "systemctl", "--failed", "--no-pager", "--no-legend")
				m.t.Logf("systemdtest: %s is degraded; failed units:\n%s", m.name, failed)
			}
			return nil
		case "maintenance":
			return fmt.Errorf("%s booted into state %s", m.name, state)
		}
		if state != "" {
			last = state
		} else if err != nil {
			last = err.Error()
		}
		// A machine that exited for a reboot is started again by its watcher: keep waiting.
		if running, code := m.state(); !running && code != exitReboot {
			logs, _ := docker(context.Background(), "logs", "--tail", "50", m.name)
			return fmt.Errorf("%s stopped while booting (last: %s)\n%s", m.name, last, logs)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not running after %v (last: %s)", m.name, m.timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watch starts a goroutine that boots the machine again when systemd exits for a reboot
// (`systemctl reboot` inside). It ends when the machine stops for any other reason, or at unwatch.
func (m *Machine) watch() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watching {
		return
	}
	m.watching = true
	stop := make(chan struct{})
	m.stop = stop
	m.done.Add(1)
	go func() {
		defer m.done.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			out, err := docker(ctx, "wait", m.name)
			if err != nil || ctx.Err() != nil {
				return
			}
			if code, _ := strconv.Atoi(strings.TrimSpace(out)); code != exitReboot {
				return
			}
			if _, err := docker(ctx, "start", m.name); err != nil {
				return
			}
		}
	}()
}

// unwatch stops the reboot watcher, so that the harness's own stops are not taken for reboots.
func (m *Machine) unwatch() {
	m.mu.Lock()
	if !m.watching {
		m.mu.Unlock()
		return
	}
	m.watching = false
	close(m.stop)
	m.mu.Unlock()
	m.done.Wait()
}

// remove logs diagnostics when the test failed, then removes the container.
func (m *Machine) remove() {
	m.unwatch()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if m.t.Failed() {
		if out, err := docker(ctx, "inspect", "--format", "{{.State.Running}}", m.name); err == nil && strings.TrimSpace(out) == "true" {
			failed, _ := m.Exec(ctx, "systemctl", "--failed", "--no-pager")
			journal, _ := m.Exec(ctx, "journalctl", "--no-pager", "-b", "-n", "200", "-o", "short-precise")
			m.t.Logf("systemdtest: %s failed units:\n%s\njournal (last 200 lines):\n%s", m.name, failed, journal)
		}
	}
	if _, err := docker(ctx, "rm", "--force", "--volumes", m.name); err != nil && !strings.Contains(err.Error(), "No such container") {
		m.t.Errorf("systemdtest: remove %s: %v", m.name, err)
	}
}

// Network is a Docker network that machines share: an internal bridge (no route out) with this
// host on it at Gateway.
type Network struct {
	name    string
	subnet  string
	gateway string
}

// NewNetwork creates a network, removed at cleanup (after the machines started on it, whose
// cleanups run first).
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	Require(t, "")
	n := &Network{name: uniqueName(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"network", "create", "--internal"}, labels(t)...)
	if _, err := docker(ctx, append(args, n.name)...); err != nil {
		t.Fatalf("systemdtest: create network: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := docker(ctx, "network", "rm", n.name); err != nil {
			t.Errorf("systemdtest: remove network %s: %v", n.name, err)
		}
	})
	out, err := docker(ctx, "network", "inspect", "--format",
		`{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{"\n"}}{{end}}`, n.name)
	if err != nil {
		t.Fatalf("systemdtest: inspect network %s: %v", n.name, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.Contains(f[0], ".") {
			n.subnet, n.gateway = f[0], f[1]
			break
		}
	}
	if n.gateway == "" {
		t.Fatalf("systemdtest: network %s has no IPv4 gateway: %q", n.name, out)
	}
	return n
}

// Name is the Docker network's name.
func (n *Network) Name() string { return n.name }

// Subnet is the network's IPv4 subnet (CIDR).
func (n *Network) Subnet() string { return n.subnet }

// Gateway is this host's IPv4 address on the network: a server of the test listening there is
// reachable from the machines (and from nothing outside this host).
func (n *Network) Gateway() string { return n.gateway }

// RemoveLeftovers removes the containers and networks of this package whose test process is
// gone (killed before its cleanups ran). Those of live test processes are left alone.
func RemoveLeftovers(ctx context.Context) error {
	var errs []error
	pidLabel := fmt.Sprintf(`{{.ID}} {{.Label %q}}`, LabelKey+".pid")
	out, err := docker(ctx, "ps", "--all", "--filter", "label="+LabelKey, "--format", pidLabel)
	if err != nil {
		return err
	}
	if ids := orphans(out); len(ids) > 0 {
		if _, err := docker(ctx, append([]string{"rm", "--force", "--volumes"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	out, err = docker(ctx, "network", "ls", "--filter", "label="+LabelKey, "--format", pidLabel)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if ids := orphans(out); len(ids) > 0 {
		if _, err := docker(ctx, append([]string{"network", "rm"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// orphans returns the IDs of "ID PID" lines whose process does not exist.
func orphans(list string) []string {
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) == 2 {
			if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 && alive(pid) {
				continue
			}
		}
		ids = append(ids, f[0])
	}
	return ids
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func labels(t testing.TB) []string {
	return []string{
		"--label", LabelKey + "=1",
		"--label", LabelKey + ".pid=" + strconv.Itoa(os.Getpid()),
		"--label", LabelKey + ".test=" + t.Name(),
	}
}

// uniqueName is "kiln-" and the test's name in a form Docker and hostnames accept, with a random
// suffix.
func uniqueName(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if s := b.String(); s != "" && !strings.HasSuffix(s, "-") {
				b.WriteByte('-')
			}
		}
	}
	name := strings.Trim(b.String(), "-")
	name = strings.TrimPrefix(name, "test")
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-")
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	if name == "" {
		return "kiln-" + hex.EncodeToString(suffix[:])
	}
	return "kiln-" + name + "-" + hex.EncodeToString(suffix[:])
}

// docker runs the docker CLI and returns its standard output; errors carry its standard error.
func docker(ctx context.Context, args ...string) (string, error) {
	c := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
