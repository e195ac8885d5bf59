package pxe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ign34 "github.com/coreos/ignition/v2/config/v3_4"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
)

// The load the benchmarks put on a server: 32 connections on loopback, each sending its next
// request as soon as the last one is answered, for at most benchRequests requests or
// benchDuration, whichever ends first.
const (
	benchConns    = 32
	benchDuration = 10 * time.Second
	// benchNode is the node whose config is fetched (the first of the bench spec).
	benchNode = "node1"
	benchMAC  = "52:54:00:00:00:01"
)

// matchboxModule is the matchbox release kiln measures itself against.
const matchboxModule = "github.com/poseidon/matchbox@v0.11.0"

// benchSpec is the demo cluster (three nodes, units, a snippet), with kiln-node's hash given
// so that every server compiles the very same configs.
func benchSpec(b *testing.B) *fixture {
	b.Helper()
	ex, err := filepath.Abs("../../configs/examples")
	if err != nil {
		b.Fatal(err)
	}
	spec := fmt.Sprintf(`cluster:
  name: bench
  os: flatcar
  channel: stable
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq bench@kiln"]
  etcd: {members: [node1, node2, node3]}
  updates: {strategy: etcd-lock, maxConcurrent: 1, window: {start: "Sun 04:00", length: 2h}}
  runtime: {engine: docker, mirrors: {docker.io: ["https://mirror.example.com"]}}
  network: {gateway: 10.0.0.1, dns: [10.0.0.1]}
  kilnNode: {url: "http://10.0.0.1:8080/assets/kiln-node", sha512: "%[2]s"}
  units:
    - {file: %[1]s/units/my-app@.service, instances: 2}
    - {file: %[1]s/units/node-exporter.service}
nodes:
  - {name: node1, mac: "52:54:00:00:00:01", ip: 10.0.0.11/24, metadata: {region: east, disk: ssd}}
  - {name: node2, mac: "52:54:00:00:00:02", ip: 10.0.0.12/24, metadata: {region: west}}
  - {name: node3, mac: "52:54:00:00:00:03", ip: 10.0.0.13/24, metadata: {region: west}}
snippets: [%[1]s/snippets/motd.bu]
`, ex, emptySHA512)
	dir := b.TempDir()
	f := &fixture{dir: dir, spec: filepath.Join(dir, "cluster.yaml"), assets: filepath.Join(dir, "assets"), pki: filepath.Join(dir, "pki")}
	writeFile(b, f.spec, spec)
	if err := os.MkdirAll(f.assets, 0o755); err != nil {
		b.Fatal(err)
	}
	o := f.options()
	o.CreatePKI = true
	if _, err := deliver.Prepare(o); err != nil {
		b.Fatal(err)
	}
	return f
}

// loadResult is what a load run measured.
type loadResult struct {
	requests, failures int
	elapsed            time.Duration
	p50, p99           time.Duration
	// cpu is the CPU time the server process used during the run (0: not measured).
	cpu time.Duration
}

func (r loadResult) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// load sends GET url over conns keep-alive connections until max requests were answered or d
// has passed. Each connection sends its next request as soon as the last answer is read. The
// client speaks just enough HTTP/1.1 (Content-Length and chunked bodies) to stay light: on two
// cores, net/http's client would take the CPU the servers need. Every answer but a 200 counts as
// a failure.
func load(url string, conns, max int, d time.Duration) loadResult {
	hostPath := strings.TrimPrefix(url, "http://")
	addr, path, _ := strings.Cut(hostPath, "/")
	req := []byte("GET /" + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: kiln-bench\r\n\r\n")
	var next, failures atomic.Int64
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, max/conns+1)
			var c net.Conn
			var br *bufio.Reader
			for next.Add(1) <= int64(max) && time.Now().Before(deadline) {
				t0 := time.Now()
				if c == nil {
					var err error
					if c, err = net.Dial("tcp", addr); err != nil {
						failures.Add(1)
						mine = append(mine, time.Since(t0))
						continue
					}
					br = bufio.NewReaderSize(c, 64<<10)
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				code, keep, err := roundTrip(c, br, req)
				mine = append(mine, time.Since(t0))
				if err != nil || code != http.StatusOK {
					failures.Add(1)
				}
				if err != nil || !keep {
					c.Close()
					c = nil
				}
			}
			if c != nil {
				c.Close()
			}
			lat[i] = mine
		}()
	}
	wg.Wait()
	r := loadResult{elapsed: time.Since(start), failures: int(failures.Load())}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r.requests = len(all)
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return r
}

// roundTrip writes req and reads one response, discarding its body; keep says whether the
// connection can carry another request.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (code int, keep bool, err error) {
	if _, err := c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	code = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length, chunked, keep := -1, false, true
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return code, false, err
		}
		hs := strings.TrimSpace(string(h))
		if hs == "" {
			break
		}
		k, v, _ := strings.Cut(hs, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			fmt.Sscan(v, &length)
		case "transfer-encoding":
			chunked = strings.EqualFold(v, "chunked")
		case "connection":
			keep = !strings.EqualFold(v, "close")
		}
	}
	switch {
	case chunked:
		for {
			sz, err := br.ReadSlice('\n')
			if err != nil {
				return code, false, err
			}
			var n int
			if _, err := fmt.Sscanf(strings.TrimSpace(string(sz)), "%x", &n); err != nil {
				return code, false, fmt.Errorf("bad chunk size %q", sz)
			}
			if _, err := br.Discard(n + 2); err != nil {
				return code, false, err
			}
			if n == 0 {
				return code, keep, nil
			}
		}
	case length >= 0:
		_, err = br.Discard(length)
		return code, keep, err
	}
	return code, false, errors.New("a response without a length")
}

// report prints a load run and records it as the benchmark's metrics.
func report(b *testing.B, who string, r loadResult) {
	b.Helper()
	b.ReportMetric(r.rate(), "req/s")
	b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(r.requests), "requests")
	cpu := "not measured"
	if r.cpu > 0 && r.requests > 0 {
		per := float64(r.cpu.Microseconds()) / float64(r.requests)
		b.ReportMetric(per, "server-cpu-us/req")
		cpu = fmt.Sprintf("%.0f µs", per)
	}
	b.Logf("%s: %d requests in %v over %d connections: %.0f requests/s, p50 %v, p99 %v, %d failed; server CPU per request %s",
		who, r.requests, r.elapsed.Round(time.Millisecond), benchConns, r.rate(), r.p50, r.p99, r.failures, cpu)
	if r.failures > 0 {
		b.Errorf("%s: %d of %d requests failed", who, r.failures, r.requests)
	}
}

// fetch GETs url and returns the body of a 200.
func fetch(url string) ([]byte, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d: %s", url, res.StatusCode, body)
	}
	return body, nil
}

// startKiln serves the bench spec with `kiln pxe serve` as its own process ($KILN_BIN, which
// `make bench` builds), or in this process when there is no such binary. It returns the
// server's base URL.
func startKiln(b *testing.B, f *fixture) (base string, pid int) {
	b.Helper()
	logFile, err := os.Create(filepath.Join(b.TempDir(), "kiln.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	if bin := os.Getenv("KILN_BIN"); bin != "" {
		if _, err := os.Stat(bin); err == nil {
			cmd := exec.Command(bin, "pxe", "serve", "-f", f.spec, "--listen", "127.0.0.1:0", "--assets", f.assets, "--pki", f.pki)
			cmd.Stderr = logFile
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			m := regexp.MustCompile(`at (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(line)
			if m == nil {
				b.Fatalf("kiln pxe serve did not say where it listens (%v): %q", err, line)
			}
			b.Logf("kiln: %s pxe serve (its own process), access log at info level to a file", bin)
			return m[1], cmd.Process.Pid
		}
	}
	cfg := f.config(slogTo(logFile))
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx, ln, "", "", time.Second) }()
	b.Cleanup(func() { cancel(); <-done; s.Close() })
	b.Logf("kiln: the pxe server in the benchmark's process (no $KILN_BIN), access log at info level to a file")
	return "http://" + ln.Addr().String(), 0
}

// BenchmarkPXEIgnition serves one node's Ignition config under load. Run it with
// -benchtime 1x: it sets its own bounds.
func BenchmarkPXEIgnition(b *testing.B) {
	f := benchSpec(b)
	base, pid := startKiln(b, f)
	url := base + "/ignition?mac=" + benchMAC
	got, err := fetch(url)
	if err != nil {
		b.Fatal(err)
	}
	if want := f.compiled(b).Node(benchNode).Ignition; string(got) != string(want) {
		b.Fatalf("kiln serves %d bytes that are not %s's config", len(got), benchNode)
	}
	load(url, benchConns, 2000, benchDuration) // warm up
	b.ResetTimer()
	cpu := cpuTime(pid)
	r := load(url, benchConns, 200000, benchDuration)
	r.cpu = cpuTime(pid) - cpu
	b.StopTimer()
	report(b, fmt.Sprintf("kiln (%d-byte config)", len(got)), r)
}

// BenchmarkMatchboxIgnition serves the same config from matchbox v0.11.0, built here from the
// Go module into a temporary folder: the node's Butane config as matchbox's Ignition template,
// which matchbox renders and translates on every request. Run it with -benchtime 1x.
func BenchmarkMatchboxIgnition(b *testing.B) {
	f := benchSpec(b)
	bin, err := buildMatchbox(b)
	if err != nil {
		b.Skipf("matchbox not measured: %v", err)
	}
	c := f.compiled(b)
	node := c.Node(benchNode)
	data := filepath.Join(b.TempDir(), "matchbox")
	writeFile(b, filepath.Join(data, "ignition", benchNode+".yaml"), string(node.Butane))
	writeFile(b, filepath.Join(data, "profiles", benchNode+".json"),
		fmt.Sprintf(`{"id": %q, "name": %q, "ignition_id": %q}`, benchNode, benchNode, benchNode+".yaml"))
	writeFile(b, filepath.Join(data, "groups", benchNode+".json"),
		fmt.Sprintf(`{"id": %q, "name": %q, "profile": %q, "selector": {"mac": %q}}`, benchNode, benchNode, benchNode, benchMAC))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logFile, err := os.Create(filepath.Join(b.TempDir(), "matchbox.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-address", addr, "-data-path", data, "-assets-path", "", "-log-level", "info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr + "/ignition?mac=" + benchMAC
	var got []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got, err = fetch(url); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			b.Fatalf("matchbox did not serve %s: %v\n%s", url, err, log)
		}
	}
	// The same config: both parse to equal Ignition 3.4 structures.
	a, _, errA := ign34.Parse(got)
	k, _, errK := ign34.Parse(node.Ignition)
	if errA != nil || errK != nil || !reflect.DeepEqual(a, k) {
		b.Fatalf("matchbox's config differs from kiln's (%v, %v): %.400s", errA, errK, got)
	}
	b.Logf("matchbox: %s built from the module; its config equals kiln's once parsed", matchboxModule)
	load(url, benchConns, 100, benchDuration) // warm up
	b.ResetTimer()
	cpu := cpuTime(cmd.Process.Pid)
	r := load(url, benchConns, 20000, benchDuration)
	r.cpu = cpuTime(cmd.Process.Pid) - cpu
	b.StopTimer()
	report(b, fmt.Sprintf("matchbox (%d-byte config)", len(got)), r)
}

// buildMatchbox builds matchbox's command from the module cache (or the module proxy) in a
// throwaway module, so that kiln's go.mod never requires it. $KILN_MATCHBOX_BIN skips the build.
func buildMatchbox(b *testing.B) (string, error) {
	if p := os.Getenv("KILN_MATCHBOX_BIN"); p != "" {
		return p, nil
	}
	dir := b.TempDir()
	mod, version, _ := strings.Cut(matchboxModule, "@")
	gomod := "module kiln.bench/matchbox\n\ngo 1.22\n\nrequire " + mod + " " + version + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "matchbox")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, mod+"/cmd/matchbox")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", matchboxModule, err, out)
	}
	b.Logf("built %s in %v", matchboxModule, time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// cpuTime is the user and system CPU time of process pid so far (from /proc; 0 for pid 0 or
// when /proc cannot tell).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	// The kernel counts in USER_HZ ticks, 100 per second on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// BenchmarkHandlerIgnition is the handler's own cost per config request, without the network.
func BenchmarkHandlerIgnition(b *testing.B) {
	f := benchSpec(b)
	s, err := New(f.config(slogTo(io.Discard)), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r, _ := http.NewRequest("GET", "http://pxe.test/ignition?mac="+benchMAC, nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		s.ServeHTTP(w, r)
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
