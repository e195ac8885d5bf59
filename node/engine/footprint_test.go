package engine_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
)

// vmRSS reads a process's resident set size, in bytes, from /proc/PID/status.
func vmRSS(tb testing.TB, pid int) float64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				tb.Fatalf("VmRSS of %d: %q", pid, rest)
			}
			return kb * 1024
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// floorProcess starts testdata/floor (a bare Go process with kiln's etcd client, a lease and a
// watch) against the cluster; it ends when the test does.
func floorProcess(tb testing.TB, c *etcdtest.Cluster) *exec.Cmd {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "floor")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./testdata/floor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build floor: %v\n%s", err, out)
	}
	tl := c.ClientTLS()
	cmd := exec.Command(bin, "-endpoints", strings.Join(c.Endpoints(), ","), "-ca", tl.CA, "-cert", tl.Cert, "-key", tl.Key)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		tb.Fatalf("floor did not start: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return cmd
}

// BenchmarkFootprint: three kiln-node processes (exec executor, default settings, info logs)
// run 100 units between them on a real three-member etcd; in the steady state that follows,
// the resident set (VmRSS) of each is sampled every second for 10 s. The same run measures the
// floor: a bare Go process with kiln's etcd client, a lease and a watch. Reported: the largest
// kiln-node's mean RSS (rss-max-MB), the mean over the three (rss-MB) and the floor's
// (floor-MB), in MB of 10^6 bytes.
func BenchmarkFootprint(b *testing.B) {
	const nodes, units = 3, 100
	for range b.N {
		c := etcdtest.Start(b)
		cli := c.Client(b)
		var ns []*kilnNode
		for i := range nodes {
			n := newKilnNode(b, c, fmt.Sprintf("node%d", i+1), "--log-level", "info")
			n.start(b)
			ns = append(ns, n)
		}
		floor := floorProcess(b, c)
		submitTemplate(b, cli, "fp@.service", "[Service]\nExecStart=/bin/sleep infinity\n", units)
		waitCond(b, 2*time.Minute, fmt.Sprint(units, " units running"), ns, func() bool {
			reps, ok := reported(cli)
			return ok && len(reps) == units
		})
		b.ResetTimer()
		// steady state: let start-up garbage be collected and the scavenger return it
		time.Sleep(20 * time.Second)
		const samples = 10
		sums := make([]float64, nodes)
		var floorSum float64
		for range samples {
			for i, n := range ns {
				sums[i] += vmRSS(b, n.cmd.Process.Pid)
			}
			floorSum += vmRSS(b, floor.Process.Pid)
			time.Sleep(time.Second)
		}
		b.StopTimer()
		if d := os.Getenv("KILN_FOOTPRINT_HOLD"); d != "" {
			hold, _ := time.ParseDuration(d)
			for _, n := range ns {
				b.Logf("%s pid %d", n.id, n.cmd.Process.Pid)
			}
			b.Logf("floor pid %d", floor.Process.Pid)
			time.Sleep(hold)
		}
		var total, largest float64
		var per []string
		for i, s := range sums {
			mean := s / samples / 1e6
			total += mean
			largest = max(largest, mean)
			per = append(per, fmt.Sprintf("%s %.1f MB", ns[i].id, mean))
		}
		floorMB := floorSum / samples / 1e6
		b.ReportMetric(largest, "rss-max-MB")
		b.ReportMetric(total/nodes, "rss-MB")
		b.ReportMetric(floorMB, "floor-MB")
		b.Logf("steady state, %d units on %d kiln-node processes: RSS %s; floor (etcd client, lease, watch) %.1f MB",
			units, nodes, strings.Join(per, ", "), floorMB)
		if reps, ok := reported(cli); !ok || len(reps) != units {
			b.Fatalf("%d units reported running at the end, want %d", len(reps), units)
		}
	}
}
