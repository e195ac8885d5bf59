package systemdtest_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/systemdtest"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

const sleeper = `[Unit]
Description=kiln systemdtest probe

[Service]
ExecStart=/bin/sleep infinity
`

// TestIntegrationSystemdHost proves that a machine is a real systemd host: units written under
// /run/systemd/system start and stop, the system bus answers, and a static Go binary mounted
// from this host drives systemd over D-Bus with go-systemd, as kiln-node's systemd executor does.
func TestIntegrationSystemdHost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a systemd container")
	}
	systemdtest.Require(t, "")
	probe := buildProbe(t)
	m := systemdtest.Start(t, systemdtest.Options{
		Mounts: []systemdtest.Mount{{Source: probe, Target: "/usr/local/bin/dbusprobe", ReadOnly: true}},
	})
	t.Logf("boot to running: %v", m.BootTime().Round(time.Millisecond))

	if out := m.Run("readlink", "/proc/1/exe"); !strings.Contains(out, "systemd") {
		t.Fatalf("PID 1 is %q, want systemd", out)
	}
	if id := m.MachineID(); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("machine ID %q", id)
	}

	t.Run("systemctl", func(t *testing.T) {
		m := m.WithT(t)
		m.WriteFile("/run/systemd/system/kiln-probe.service", []byte(sleeper), 0o644)
		m.Run("systemctl", "daemon-reload")
		m.Run("systemctl", "start", "kiln-probe.service")
		assertState(t, m, "kiln-probe.service", "active")
		if j := m.Journal("kiln-probe.service"); !strings.Contains(j, "Started") {
			t.Errorf("journal of kiln-probe.service has no start:\n%s", j)
		}
		m.Run("systemctl", "stop", "kiln-probe.service")
		assertState(t, m, "kiln-probe.service", "inactive")
	})

	t.Run("system bus", func(t *testing.T) {
		m := m.WithT(t)
		out := m.Run("busctl", "--system", "get-property", "org.freedesktop.systemd1",
			"/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "SystemState")
		if strings.TrimSpace(out) != `s "running"` {
			t.Errorf("SystemState over the bus: %q", out)
		}
		names := m.Run("busctl", "--system", "list", "--acquired", "--no-legend")
		for _, want := range []string{"org.freedesktop.DBus", "org.freedesktop.systemd1"} {
			if !strings.Contains(names, want) {
				t.Errorf("bus names lack %s:\n%s", want, names)
			}
		}
	})

	t.Run("go-systemd from a static binary", func(t *testing.T) {
		m := m.WithT(t)
		list := m.Run("dbusprobe", "list")
		if !strings.Contains(list, "dbus.service loaded active running") ||
			!strings.Contains(list, "systemd-journald.service loaded active running") {
			t.Fatalf("dbusprobe list lacks running services:\n%s", list)
		}
		m.WriteFile("/run/systemd/system/kiln-probe2.service", []byte(sleeper), 0o644)
		if out := strings.TrimSpace(m.Run("dbusprobe", "start", "kiln-probe2.service")); out != "kiln-probe2.service done active" {
			t.Fatalf("dbusprobe start: %q", out)
		}
		assertState(t, m, "kiln-probe2.service", "active")
		if out := strings.TrimSpace(m.Run("dbusprobe", "stop", "kiln-probe2.service")); out != "kiln-probe2.service done inactive" {
			t.Fatalf("dbusprobe stop: %q", out)
		}
		assertState(t, m, "kiln-probe2.service", "inactive")
	})

	t.Run("failing command", func(t *testing.T) {
		m := m.WithT(t)
		out, err := m.Exec(context.Background(), "systemctl", "is-active", "no-such.service")
		var ee *systemdtest.ExecError
		if !errors.As(err, &ee) || ee.ExitCode == 0 || strings.TrimSpace(out) != "inactive" {
			t.Fatalf("is-active of a missing unit: %q, %v", out, err)
		}
	})
}

// TestIntegrationSystemdFaults proves the network and the fault helpers: two machines on one
// network reach each other, this host reaches them and they reach a listener of this host on the
// network's gateway, a clean stop runs units' ExecStop and a kill does not,
// files outside /run and the machine ID survive restarts, a reboot from inside boots again, and
// nothing is left behind.
func TestIntegrationSystemdFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts systemd containers")
	}
	systemdtest.Require(t, "")
	var names []string
	t.Run("machines", func(t *testing.T) {
		n := systemdtest.NewNetwork(t)
		names = append(names, n.Name())
		a := systemdtest.Start(t, systemdtest.Options{Network: n, Hostname: "node-a"})
		b := systemdtest.Start(t, systemdtest.Options{Network: n})
		names = append(names, a.Name(), b.Name())
		if got := strings.TrimSpace(a.Run("hostname")); got != "node-a" {
			t.Errorf("hostname %q", got)
		}
		if a.MachineID() == b.MachineID() {
			t.Errorf("two machines share machine ID %s", a.MachineID())
		}

		// A socket-activated greeter on a: reached from this host and from b.
		a.WriteFile("/etc/systemd/system/greet.socket", []byte("[Socket]\nListenStream=7777\nAccept=yes\n\n[Install]\nWantedBy=sockets.target\n"), 0o644)
		a.WriteFile("/etc/systemd/system/greet@.service", []byte("[Service]\nExecStart=/bin/hostname\nStandardOutput=socket\n"), 0o644)
		a.Run("systemctl", "daemon-reload")
		a.Run("systemctl", "enable", "--now", "greet.socket")
		if got := greet(t, a.IP()); got != "node-a" {
			t.Errorf("greeting from this host: %q", got)
		}
		got := b.Run("bash", "-c", `exec 3<>/dev/tcp/"$1"/7777 && cat <&3`, "bash", a.IP())
		if strings.TrimSpace(got) != "node-a" {
			t.Errorf("greeting from b: %q", got)
		}
		// A server of the test listening on the gateway (as etcd would) is reachable from b.
		l, err := net.Listen("tcp", net.JoinHostPort(n.Gateway(), "0"))
		if err != nil {
			t.Fatalf("listen on the gateway: %v", err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err == nil {
				_, _ = io.WriteString(c, "host\n")
				_ = c.Close()
			}
		}()
		got = b.Run("bash", "-c", `exec 3<>/dev/tcp/"$1" && cat <&3`, "bash", strings.Replace(l.Addr().String(), ":", "/", 1))
		if strings.TrimSpace(got) != "host" {
			t.Errorf("greeting from this host's listener on %s: %q", l.Addr(), got)
		}

		// Stop is a clean shutdown: ExecStop runs.
		a.WriteFile("/etc/systemd/system/mark.service", []byte("[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\nExecStop=/bin/sh -c 'date >>/var/tmp/stopped'\n\n[Install]\nWantedBy=multi-user.target\n"), 0o644)
		a.Run("systemctl", "enable", "--now", "mark.service")
		id := a.MachineID()
		a.WriteFile("/run/volatile", nil, 0o644)
		a.Stop()
		if a.Running() {
			t.Fatal("running after Stop")
		}
		a.Restart()
		if got := countLines(a.Run("cat", "/var/tmp/stopped")); got != 1 {
			t.Errorf("ExecStop ran %d times on Stop, want 1", got)
		}
		if a.MachineID() != id {
			t.Errorf("machine ID changed across a restart: %s, then %s", id, a.MachineID())
		}
		if _, err := a.Exec(context.Background(), "test", "-e", "/run/volatile"); err == nil {
			t.Error("/run survived a restart")
		}
		assertState(t, a, "greet.socket", "active")

		// Kill is a power cut: ExecStop does not run.
		a.Kill()
		if a.Running() {
			t.Fatal("running after Kill")
		}
		a.Restart()
		if got := countLines(a.Run("cat", "/var/tmp/stopped")); got != 1 {
			t.Errorf("ExecStop ran on Kill (%d lines)", got)
		}

		// Restart of a running machine is a clean reboot; so is `systemctl reboot` inside.
		a.Restart()
		if got := countLines(a.Run("cat", "/var/tmp/stopped")); got != 2 {
			t.Errorf("ExecStop ran %d times after a restart, want 2", got)
		}
		start := time.Now()
		a.Reboot()
		t.Logf("reboot from inside to running: %v", time.Since(start).Round(time.Millisecond))
		if got := countLines(a.Run("cat", "/var/tmp/stopped")); got != 3 {
			t.Errorf("ExecStop ran %d times after systemctl reboot, want 3", got)
		}
		if got := greet(t, a.IP()); got != "node-a" {
			t.Errorf("greeting after the reboots: %q", got)
		}
	})

	// The subtest's cleanups have run: nothing of it is left.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"ps", "--all", "--format", "{{.Names}}"},
		{"network", "ls", "--format", "{{.Name}}"},
	} {
		out, err := exec.CommandContext(ctx, "docker", args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if strings.Contains(string(out), name) {
				t.Errorf("%s left behind", name)
			}
		}
	}
}

// BenchmarkBoot measures a machine's boot: docker run to systemd running (ms-to-running), and
// Start's whole cost (ns/op). Each machine is killed after its boot and removed at the end.
func BenchmarkBoot(b *testing.B) {
	systemdtest.Require(b, "")
	n := systemdtest.NewNetwork(b)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := systemdtest.Start(b, systemdtest.Options{Network: n})
		total += m.BootTime()
		b.StopTimer()
		m.Kill()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-running")
}

func assertState(t *testing.T, m *systemdtest.Machine, unit, want string) {
	t.Helper()
	got := strings.TrimSpace(m.Run("systemctl", "show", "-p", "ActiveState", "--value", unit))
	if got != want {
		t.Fatalf("%s: ActiveState %s, want %s\n%s", unit, got, want, m.Journal(unit))
	}
}

// greet reads what the greeter on addr:7777 says.
func greet(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "7777"), 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(string(data))
}

func countLines(s string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// buildProbe builds testdata/dbusprobe static (CGO_ENABLED=0) into a temporary directory.
func buildProbe(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dbusprobe")
	cmd := exec.Command(testkit.Go(t), "build", "-trimpath", "-o", out, "./testdata/dbusprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dbusprobe: %v\n%s", err, msg)
	}
	return out
}

// TestIntegrationRemoveLeftovers proves that what a dead test process left (a container and a
// network labelled with its PID) is removed, and what a live one owns is not.
func TestIntegrationRemoveLeftovers(t *testing.T) {
	if testing.Short() {
		t.Skip("uses docker")
	}
	image := systemdtest.Require(t, "")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	suffix := strconv.Itoa(time.Now().Nanosecond())
	owners := map[string]int{"dead": dead.Process.Pid, "live": os.Getpid()}
	for owner, pid := range owners {
		labels := []string{"--label", systemdtest.LabelKey + "=1", "--label", systemdtest.LabelKey + ".pid=" + strconv.Itoa(pid)}
		name := "kiln-leftover-" + owner + "-" + suffix
		docker(append(append([]string{"network", "create", "--internal"}, labels...), name)...)
		docker(append(append([]string{"create", "--name", name, "--network", name}, labels...), image)...)
		t.Cleanup(func() {
			_ = exec.Command("docker", "rm", "--force", name).Run()
			_ = exec.Command("docker", "network", "rm", name).Run()
		})
	}
	if err := systemdtest.RemoveLeftovers(ctx); err != nil {
		t.Fatal(err)
	}
	containers := docker("ps", "--all", "--format", "{{.Names}}")
	networks := docker("network", "ls", "--format", "{{.Name}}")
	for owner := range owners {
		name := "kiln-leftover-" + owner + "-" + suffix
		want := owner == "live"
		if got := strings.Contains(containers, name); got != want {
			t.Errorf("container of a %s process present: %v, want %v", owner, got, want)
		}
		if got := strings.Contains(networks, name); got != want {
			t.Errorf("network of a %s process present: %v, want %v", owner, got, want)
		}
	}
}
