package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/node/ctl"
	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// binary is the built kiln or kiln-node: $KILN_BIN / $KILN_NODE_BIN, else built once.
func binary(t testing.TB, name, env string) string {
	t.Helper()
	return testkit.Binary(t, env, "github.com/kiln-cluster/kiln/cmd/"+name)
}

// kilnNode is one machine: a kiln-node process with the exec executor, its own data dir,
// machine ID and metadata, and the default lease and engine settings.
type kilnNode struct {
	id   string
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

func newKilnNode(t testing.TB, c *etcdtest.Cluster, id string, extra ...string) *kilnNode {
	t.Helper()
	dir := t.TempDir()
	tl := c.ClientTLS()
	n := &kilnNode{id: id, dir: dir}
	n.args = append([]string{"run", "--config=",
		"--etcd-endpoints", strings.Join(c.Endpoints(), ","),
		"--etcd-ca", tl.CA, "--etcd-cert", tl.Cert, "--etcd-key", tl.Key,
		"--machine-id", id, "--data-dir", filepath.Join(dir, "data"),
		"--executor", "exec", "--strategy", "off", "--update-engine=false",
		"--reboot-required-file", filepath.Join(dir, "reboot-required"),
		"--log-level", "debug",
	}, extra...)
	t.Cleanup(func() { n.kill(syscall.SIGKILL) })
	return n
}

func (n *kilnNode) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(n.dir, "kiln-node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(binary(t, "kiln-node", "KILN_NODE_BIN"), append(n.args, "--boot-id", n.id+"-boot")...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(n.cmd, n.done)
}

// kill sends sig and waits for the process to end (SIGKILL: a crash; the exec executor's
// processes die with it, through Pdeathsig, as a machine's would).
func (n *kilnNode) kill(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(40 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *kilnNode) logTail() string {
	raw, _ := os.ReadFile(filepath.Join(n.dir, "kiln-node.log"))
	if len(raw) > 3000 {
		raw = raw[len(raw)-3000:]
	}
	return string(raw)
}

// ctlRun runs the built kiln ctl against the cluster and returns its stdout.
func ctlRun(t testing.TB, c *etcdtest.Cluster, args ...string) string {
	t.Helper()
	tl := c.ClientTLS()
	cmd := exec.Command(binary(t, "kiln", "KILN_BIN"), append([]string{"ctl",
		"--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-ca", tl.CA, "--etcd-cert", tl.Cert, "--etcd-key", tl.Key,
	}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kiln ctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// appUnit is the talk's unit: "always keep two of these running, but not on the same
// machine". Its shell carries a tag with the instance and the machine (%i, %m) in its command
// line, so that the test finds every copy in the host's process list.
func appUnit(tag string) string {
	return `[Unit]
Description=My app %i

[Service]
ExecStart=/bin/sh -c 'echo "my-app %i up on %m"; while :; do sleep 0.2; done' ` + tag + `-%i-%m
Restart=always

[X-Fleet]
Conflicts=my-app@*.service
`
}

// copies lists, per instance, the machines whose processes carry the tag now.
func copies(tag string) map[string][]string {
	out := map[string][]string{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(raw, []byte{0}) {
			if rest, ok := strings.CutPrefix(string(arg), tag+"-"); ok {
				// the shell forks for each sleep: a child may show the same command line
				// until it execs, so a machine counts once
				inst, machine, _ := strings.Cut(rest, "-")
				if !slices.Contains(out[inst], machine) {
					out[inst] = append(out[inst], machine)
				}
			}
		}
	}
	return out
}

// reported lists, per unit, the machines whose agents report it as possibly running.
func reported(cli *clientv3.Client) (map[string][]string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, keys.States, clientv3.WithPrefix())
	if err != nil {
		return nil, false
	}
	out := map[string][]string{}
	for _, kv := range resp.Kvs {
		m, u, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), keys.States), "/")
		var r keys.UnitReport
		if json.Unmarshal(kv.Value, &r) == nil && r.ActiveState != "inactive" && r.ActiveState != "failed" {
			out[u] = append(out[u], m)
		}
	}
	return out, true
}

// sampler checks continuously, from the process list and from the agents' reports, that no
// instance runs twice and that the two instances never share a machine.
type sampler struct {
	samples    atomic.Int64
	violations atomic.Int64
	mu         sync.Mutex
	first      string
}

func (s *sampler) fail(format string, args ...any) {
	s.violations.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == "" {
		s.first = fmt.Sprintf(format, args...)
	}
}

func (s *sampler) run(ctx context.Context, cli *clientv3.Client, tag string) {
	for ctx.Err() == nil {
		procs := copies(tag)
		on := map[string]string{}
		for inst, ms := range procs {
			if len(ms) > 1 {
				s.fail("my-app@%s.service runs %d times: on %v", inst, len(ms), ms)
			}
			for _, m := range ms {
				if other, ok := on[m]; ok {
					s.fail("my-app@%s and my-app@%s share machine %s", inst, other, m)
				}
				on[m] = inst
			}
		}
		if reps, ok := reported(cli); ok {
			for u, ms := range reps {
				if strings.HasPrefix(u, "my-app@") && len(ms) > 1 {
					s.fail("%s reported running on %v", u, ms)
				}
			}
		}
		s.samples.Add(1)
		time.Sleep(25 * time.Millisecond)
	}
}

func waitCond(t testing.TB, d time.Duration, what string, nodes []*kilnNode, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			for _, n := range nodes {
				t.Logf("--- %s log tail:\n%s", n.id, n.logTail())
			}
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// running tells where each instance runs now: one process and one report each.
func runningOn(cli *clientv3.Client, tag string, instances ...string) (map[string]string, bool) {
	procs := copies(tag)
	reps, ok := reported(cli)
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for _, i := range instances {
		ms := procs[i]
		rs := reps["my-app@"+i+".service"]
		if len(ms) != 1 || len(rs) != 1 || ms[0] != rs[0] {
			return nil, false
		}
		out[i] = ms[0]
	}
	return out, true
}

// TestIntegrationScheduler: five kiln-node processes (exec executor) on a real three-member
// etcd. The talk's my-app@.service with Conflicts, two instances: on two machines. A machine
// dies: its instance runs elsewhere once the lease expired. The engine's leader dies: another
// takes over and placement goes on. Everything restarts (etcd included): the same units come
// back. All along, no instance runs twice and the two never share a machine, sampled from the
// host's process list and from the agents' reports.
func TestIntegrationScheduler(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: etcd and kiln-node processes")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := context.Background()
	tag := fmt.Sprintf("kiln-it-%d", time.Now().UnixNano())
	regions := []string{"east", "west", "east", "west", "north"}
	var nodes []*kilnNode
	byID := map[string]*kilnNode{}
	for i := range 5 {
		n := newKilnNode(t, c, fmt.Sprintf("node%d", i+1), "--metadata", "region="+regions[i])
		n.start(t)
		nodes = append(nodes, n)
		byID[n.id] = n
	}
	waitCond(t, 20*time.Second, "five machines and an engine", nodes, func() bool {
		resp, err := cli.Get(ctx, keys.Machines, clientv3.WithPrefix(), clientv3.WithCountOnly())
		l, _ := engine.Leader(ctx, cli)
		return err == nil && resp.Count == 5 && l != ""
	})

	sctx, stopSampling := context.WithCancel(ctx)
	var s sampler
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); s.run(sctx, cli, tag) }()
	defer func() {
		stopSampling()
		<-samplerDone
		t.Logf("%d samples of the process list and the reports, %d violations", s.samples.Load(), s.violations.Load())
		if s.violations.Load() > 0 {
			t.Errorf("%d violations; first: %s", s.violations.Load(), s.first)
		}
	}()

	unitFile := filepath.Join(t.TempDir(), "my-app@.service")
	if err := os.WriteFile(unitFile, []byte(appUnit(tag)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctlRun(t, c, "submit", unitFile)
	if out := ctlRun(t, c, "start", "--wait", "20s", "my-app@1.service", "my-app@2.service"); !strings.Contains(out, "2 units reported as asked") {
		t.Fatalf("start --wait: %q", out)
	}
	took := waitCond(t, 20*time.Second, "two instances running on two machines", nodes, func() bool {
		on, ok := runningOn(cli, tag, "1", "2")
		return ok && on["1"] != on["2"]
	})
	t.Logf("two instances running %s after kiln ctl start", took.Round(time.Millisecond))

	var listed []ctl.UnitStatus
	if err := json.Unmarshal([]byte(ctlRun(t, c, "list-units", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 || listed[1].Name != "my-app@1.service" || len(listed[1].Placements) != 1 || listed[1].Placements[0].Report == nil {
		t.Fatalf("list-units: %+v", listed)
	}
	if out := ctlRun(t, c, "journal", "my-app@1.service"); !strings.Contains(out, "my-app 1 up on "+listed[1].Placements[0].Machine) {
		t.Fatalf("journal: %q", out)
	}
	if out := ctlRun(t, c, "cat", "my-app@2.service"); !strings.Contains(out, "Conflicts=my-app@*.service") {
		t.Fatalf("cat: %q", out)
	}

	// a machine that runs an instance (not the engine's) dies
	on, _ := runningOn(cli, tag, "1", "2")
	leader, _ := engine.Leader(ctx, cli)
	victim := on["1"]
	if victim == leader {
		victim = on["2"]
	}
	moving := "1"
	if victim == on["2"] {
		moving = "2"
	}
	died := time.Now()
	byID[victim].kill(syscall.SIGKILL)
	waitCond(t, 20*time.Second, "my-app@"+moving+" running elsewhere", nodes, func() bool {
		now, ok := runningOn(cli, tag, "1", "2")
		return ok && now[moving] != victim && now["1"] != now["2"]
	})
	t.Logf("machine %s died: my-app@%s running elsewhere after %s", victim, moving, time.Since(died).Round(time.Millisecond))

	// the engine's leader dies: another takes over, placement goes on
	leader, _ = engine.Leader(ctx, cli)
	died = time.Now()
	byID[leader].kill(syscall.SIGKILL)
	waitCond(t, 15*time.Second, "a new engine leader", nodes, func() bool {
		l, _ := engine.Leader(ctx, cli)
		return l != "" && l != leader
	})
	t.Logf("engine leader %s died: a new leader after %s", leader, time.Since(died).Round(time.Millisecond))
	waitCond(t, 20*time.Second, "the dead leader's machine gone and both instances running", nodes, func() bool {
		resp, err := cli.Get(ctx, keys.Machines, clientv3.WithPrefix(), clientv3.WithCountOnly())
		now, ok := runningOn(cli, tag, "1", "2")
		return err == nil && resp.Count == 3 && ok && now["1"] != now["2"]
	})
	// three live machines: a third instance fits, a fourth does not (Conflicts)
	ctlRun(t, c, "start", "my-app@3.service", "my-app@4.service")
	waitCond(t, 20*time.Second, "three instances on the three live machines", nodes, func() bool {
		on, ok := runningOn(cli, tag, "1", "2", "3")
		return ok && on["1"] != on["2"] && on["2"] != on["3"] && on["1"] != on["3"]
	})
	waitCond(t, 10*time.Second, "my-app@4 reported unplaced", nodes, func() bool {
		return strings.Contains(ctlRun(t, c, "status", "my-app@4.service", "--lines", "0"), "Unplaced: all 3 matching machines run a conflicting unit")
	})
	ctlRun(t, c, "stop", "my-app@4.service")
	before := ctlRun(t, c, "list-unit-files", "-o", "json")

	// everything restarts: every kiln-node crashes, etcd restarts, they all come back
	for _, n := range nodes {
		n.kill(syscall.SIGKILL)
	}
	for i := range c.Size() {
		c.Kill(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.WaitHealthy()
	for _, n := range nodes {
		n.start(t)
	}
	took = waitCond(t, 40*time.Second, "three instances running again on three machines", nodes, func() bool {
		on, ok := runningOn(cli, tag, "1", "2", "3")
		return ok && on["1"] != on["2"] && on["2"] != on["3"] && on["1"] != on["3"]
	})
	t.Logf("after a restart of everything, the three instances run again after %s", took.Round(time.Millisecond))
	var b0, b1 []map[string]any
	_ = json.Unmarshal([]byte(before), &b0)
	_ = json.Unmarshal([]byte(ctlRun(t, c, "list-unit-files", "-o", "json")), &b1)
	desired := func(rows []map[string]any) []string {
		var out []string
		for _, r := range rows {
			out = append(out, fmt.Sprint(r["name"], r["hash"], r["desiredState"]))
		}
		return out
	}
	if !slices.Equal(desired(b0), desired(b1)) {
		t.Fatalf("units before the restart:\n%v\nafter:\n%v", desired(b0), desired(b1))
	}
	if u := unit.StateLoaded; !strings.Contains(ctlRun(t, c, "status", "my-app@4.service", "--lines", "0"), "Desired: "+string(u)) {
		t.Fatal("my-app@4 lost its desired state")
	}
}

// TestIntegrationSchedulerGlobal: the generator's units reach the cluster through kiln-node's
// first start (every node submits the same manifest; the first wins, the rest change nothing);
// a Global unit runs on every matching machine, and lands on a machine that joins after it
// was submitted; a machine whose metadata does not match never gets it.
func TestIntegrationSchedulerGlobal(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: etcd and kiln-node processes")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := context.Background()
	tag := fmt.Sprintf("kiln-global-%d", time.Now().UnixNano())

	unitsDir := t.TempDir()
	files := map[string]string{
		"log-agent.service": `[Service]
ExecStart=/bin/sh -c 'echo "log agent on %m"; while :; do sleep 0.2; done' ` + tag + `-agent-%m

[X-Fleet]
Global=true
MachineMetadata=role=worker
`,
		"my-app@.service": appUnit(tag),
		"units.json": `{"units": [
  {"name": "log-agent.service", "state": "launched"},
  {"name": "my-app@.service", "instances": 2, "state": "launched"}
]}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(unitsDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var nodes []*kilnNode
	add := func(id, role string) *kilnNode {
		n := newKilnNode(t, c, id, "--metadata", "role="+role, "--units-dir", unitsDir)
		n.start(t)
		nodes = append(nodes, n)
		return n
	}
	add("w1", "worker")
	add("w2", "worker")
	add("db1", "db")
	agents := func() []string {
		var out []string
		for inst, ms := range copies(tag) {
			if inst == "agent" {
				out = append(out, ms...)
			}
		}
		slices.Sort(out)
		return out
	}
	waitCond(t, 30*time.Second, "the log agent on both workers and the two instances running", nodes, func() bool {
		_, ok := runningOn(cli, tag, "1", "2")
		return ok && slices.Equal(agents(), []string{"w1", "w2"})
	})
	// the three nodes submitted the same manifest: one record per unit, the instances launched
	recs, err := cli.Get(ctx, keys.Units, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, kv := range recs.Kvs {
		names = append(names, strings.TrimPrefix(string(kv.Key), keys.Units))
		if kv.Version != 1 {
			t.Errorf("%s written %d times: a later first start overwrote it", kv.Key, kv.Version)
		}
	}
	if want := []string{"log-agent.service", "my-app@.service", "my-app@1.service", "my-app@2.service"}; !slices.Equal(names, want) {
		t.Fatalf("submitted units %v, want %v", names, want)
	}
	// an operator's stop survives a restart of kiln-node (the first start happened already)
	ctlRun(t, c, "stop", "my-app@2.service")
	nodes[0].kill(syscall.SIGTERM)
	nodes[0].start(t)

	add("w3", "worker")
	took := waitCond(t, 20*time.Second, "the log agent on the late worker", nodes, func() bool {
		return slices.Equal(agents(), []string{"w1", "w2", "w3"})
	})
	t.Logf("the global unit runs on the late worker %s after it started", took.Round(time.Millisecond))
	// steady state: nothing changes, so nothing is written (the leases' keep-alives are not
	// writes); one write is allowed for a registry entry's health settling
	time.Sleep(6 * time.Second)
	urls := c.MetricsURLs()[:1]
	writes := func() float64 {
		return metric(t, urls, "etcd_mvcc_put_total") + metric(t, urls, "etcd_mvcc_delete_total") + metric(t, urls, "etcd_mvcc_txn_total")
	}
	w0 := writes()
	time.Sleep(10 * time.Second)
	if n := writes() - w0; n > 1 {
		t.Errorf("%.0f etcd writes in 10 s of steady state with 4 kiln-nodes and 5 units", n)
	} else {
		t.Logf("%.0f etcd writes in 10 s of steady state with 4 kiln-nodes and 5 units", n)
	}
	out := ctlRun(t, c, "status", "my-app@2.service", "--lines", "0")
	if !strings.Contains(out, "Desired: loaded") {
		t.Fatalf("my-app@2 after a kiln-node restart:\n%s", out)
	}
	var units []ctl.UnitStatus
	if err := json.Unmarshal([]byte(ctlRun(t, c, "list-units", "-o", "json")), &units); err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		if u.Name != "log-agent.service" {
			continue
		}
		var ms []string
		for _, p := range u.Placements {
			ms = append(ms, p.Machine)
		}
		if !slices.Equal(ms, []string{"w1", "w2", "w3"}) {
			t.Fatalf("log-agent.service placed on %v", ms)
		}
	}
}

// BenchmarkRescheduleProcesses: the reschedule latency with kiln-node processes and their
// default settings (lease TTL, engine, exec executor): 20 times, the kiln-node that runs
// my-app@1 is killed (SIGKILL: its units die with it) and the time until the unit's process
// runs on another machine is measured; the dead machine then comes back, so the cluster
// keeps four.
func BenchmarkRescheduleProcesses(b *testing.B) {
	const trials = 20
	for range b.N {
		c := etcdtest.Start(b)
		cli := c.Client(b)
		tag := fmt.Sprintf("kiln-bench-%d", time.Now().UnixNano())
		byID := map[string]*kilnNode{}
		var nodes []*kilnNode
		for i := range 4 {
			n := newKilnNode(b, c, fmt.Sprintf("node%d", i+1))
			n.start(b)
			byID[n.id] = n
			nodes = append(nodes, n)
		}
		unitFile := filepath.Join(b.TempDir(), "my-app@.service")
		if err := os.WriteFile(unitFile, []byte(appUnit(tag)), 0o644); err != nil {
			b.Fatal(err)
		}
		ctlRun(b, c, "submit", unitFile)
		ctlRun(b, c, "start", "my-app@1.service")
		b.ResetTimer()
		var lat []time.Duration
		for trial := range trials {
			var victim string
			waitCond(b, 30*time.Second, "my-app@1 running", nodes, func() bool {
				on, ok := runningOn(cli, tag, "1")
				victim = on["1"]
				return ok
			})
			killed := time.Now()
			byID[victim].kill(syscall.SIGKILL)
			waitCond(b, 30*time.Second, "my-app@1 running elsewhere", nodes, func() bool {
				ms := copies(tag)["1"]
				return len(ms) == 1 && ms[0] != victim
			})
			lat = append(lat, time.Since(killed))
			byID[victim].start(b)
			// the next death at another point of the keep-alive period
			time.Sleep(time.Duration(300+trial%5*350) * time.Millisecond)
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(lat[len(lat)-1].Seconds(), "p99-s")
		b.ReportMetric(lat[len(lat)/2].Seconds(), "p50-s")
		b.Logf("reschedule latency with kiln-node processes over %d trials: p50 %s, p99 %s", trials,
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
}
