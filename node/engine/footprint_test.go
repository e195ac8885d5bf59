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
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// procStatus reads a process's memory from /proc/PID/status: VmRSS, RssAnon and RssFile in
// bytes, and Threads.
type procStatus struct{ rss, anon, file, threads float64 }

func readStatus(tb testing.TB, pid int) procStatus {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var st procStatus
	fields := map[string]*float64{"VmRSS": &st.rss, "RssAnon": &st.anon, "RssFile": &st.file, "Threads": &st.threads}
	for line := range strings.SplitSeq(string(raw), "\n") {
		name, val, _ := strings.Cut(line, ":")
		if p, ok := fields[name]; ok {
			val = strings.TrimSpace(val)
			scale := 1.0
			if v, ok := strings.CutSuffix(val, " kB"); ok {
				val, scale = v, 1024
			}
			n, err := strconv.ParseFloat(val, 64)
			if err != nil {
				tb.Fatalf("%s of %d: %q", name, pid, val)
			}
			*p = n * scale
			delete(fields, name)
		}
	}
	if len(fields) > 0 {
		tb.Fatalf("/proc/%d/status lacks %v", pid, fields)
	}
	return st
}

// cpuSeconds is the CPU time (user and system) a process has used so far, from /proc/PID/stat
// (in USER_HZ ticks, 100 a second on Linux).
func cpuSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), ") ") // the command name may hold spaces
	f := strings.Fields(rest)
	if len(f) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	return (utime + stime) / 100
}

func (a *procStatus) add(b procStatus) {
	a.rss, a.anon, a.file, a.threads = a.rss+b.rss, a.anon+b.anon, a.file+b.file, a.threads+b.threads
}

func (a procStatus) String() string {
	return fmt.Sprintf("%.1f MB (anonymous %.1f, file %.1f; %.0f threads)", a.rss/1e6, a.anon/1e6, a.file/1e6, a.threads)
}

// floorProcess starts testdata/floor (a bare Go process with kiln's etcd client, a lease and a
// watch, built as make build builds kiln-node) against the cluster; it ends when the test does.
func floorProcess(tb testing.TB, c *etcdtest.Cluster) *exec.Cmd {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "floor")
	build := exec.Command(testkit.Go(tb), "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w", "-o", bin, "./testdata/floor")
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
// (floor-MB), in MB of 10^6 bytes; and the CPU time a kiln-node used over the whole run, from
// its start through placing and starting its units to the end of the samples (cpu-s, the
// mean of the three), the price of the memory settings.
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
		sums := make([]procStatus, nodes)
		var floorSum procStatus
		for range samples {
			for i, n := range ns {
				sums[i].add(readStatus(b, n.cmd.Process.Pid))
			}
			floorSum.add(readStatus(b, floor.Process.Pid))
			time.Sleep(time.Second)
		}
		b.StopTimer()
		mean := func(s procStatus) procStatus {
			return procStatus{s.rss / samples, s.anon / samples, s.file / samples, s.threads / samples}
		}
		var total, largest, cpu float64
		var per []string
		for _, n := range ns {
			cpu += cpuSeconds(b, n.cmd.Process.Pid) / nodes
		}
		for i, s := range sums {
			m := mean(s)
			total += m.rss / 1e6
			largest = max(largest, m.rss/1e6)
			per = append(per, fmt.Sprintf("%s %s", ns[i].id, m))
		}
		fl := mean(floorSum)
		b.ReportMetric(largest, "rss-max-MB")
		b.ReportMetric(total/nodes, "rss-MB")
		b.ReportMetric(fl.rss/1e6, "floor-MB")
		b.ReportMetric(cpu, "cpu-s")
		b.Logf("steady state, %d units on %d kiln-node processes: RSS %s; floor (etcd client, lease, watch) %s",
			units, nodes, strings.Join(per, ", "), fl)
		if reps, ok := reported(cli); !ok || len(reps) != units {
			b.Fatalf("%d units reported running at the end, want %d", len(reps), units)
		}
	}
}
