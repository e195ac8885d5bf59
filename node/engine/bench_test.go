package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/agent"
	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

// benchLeaseTTL is kiln-node's default machine lease, in seconds.
const benchLeaseTTL = int64(agent.DefaultLeaseTTL / time.Second)

// simMachine is a machine of the load generator: a registry entry under a kept-alive lease
// and an agent that reports every unit placed on it as running (under the same lease), and
// forgets the report when the placement goes.
type simMachine struct {
	id     string
	cli    *clientv3.Client
	lease  clientv3.LeaseID
	cancel context.CancelFunc
}

// simCluster registers machines and simulates their agents over one client.
type simCluster struct {
	cli *clientv3.Client
	// more are further clients that addMany spreads the machines over (one connection per
	// thousand machines, as real machines each have their own); ttl is the leases' TTL
	more     []*clientv3.Client
	ttl      int64
	ctx      context.Context
	machines sync.Map // id → *simMachine
	// running counts the reports written; onReport is called after each.
	reports  atomic.Int64
	onReport func(machine, unit string)
}

func newSimCluster(ctx context.Context, cli *clientv3.Client) *simCluster {
	return &simCluster{cli: cli, ctx: ctx, ttl: benchLeaseTTL}
}

// add registers a machine and starts its agent; kill makes it die (no revoke: its lease
// expires, as a crashed machine's does).
func (s *simCluster) add(tb testing.TB, id string, md map[string]string) *simMachine {
	m, err := s.register(id, md)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// addMany registers machines m00000.. (n of them, md(i) their metadata), many at once.
func (s *simCluster) addMany(tb testing.TB, n int, md func(i int) map[string]string) {
	var g errgroup.Group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			cli := s.cli
			if k := i / 1000; k > 0 && k <= len(s.more) {
				cli = s.more[k-1]
			}
			_, err := s.registerOn(cli, fmt.Sprintf("m%05d", i), md(i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
}

func (s *simCluster) register(id string, md map[string]string) (*simMachine, error) {
	return s.registerOn(s.cli, id, md)
}

func (s *simCluster) registerOn(cli *clientv3.Client, id string, md map[string]string) (*simMachine, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	g, err := cli.Grant(ctx, s.ttl)
	if err != nil {
		cancel()
		return nil, err
	}
	raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: md, Health: registry.HealthHealthy})
	if _, err := cli.Put(ctx, keys.Machine(id), string(raw), clientv3.WithLease(g.ID)); err != nil {
		cancel()
		return nil, err
	}
	ka, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		for range ka {
		}
	}()
	m := &simMachine{id: id, cli: cli, lease: g.ID, cancel: cancel}
	s.machines.Store(id, m)
	go s.agent(ctx, m)
	return m, nil
}

func (s *simCluster) agent(ctx context.Context, m *simMachine) {
	for resp := range m.cli.Watch(ctx, keys.MachineSchedule(m.id), clientv3.WithPrefix()) {
		for _, ev := range resp.Events {
			u := strings.TrimPrefix(string(ev.Kv.Key), keys.MachineSchedule(m.id))
			if ev.Type == mvccpb.DELETE {
				_, _ = m.cli.Delete(ctx, keys.UnitState(m.id, u))
				continue
			}
			var a keys.Assignment
			if json.Unmarshal(ev.Kv.Value, &a) != nil || a.Lease != int64(m.lease) {
				continue
			}
			raw, _ := json.Marshal(keys.UnitReport{Unit: u, Hash: a.Hash, LoadState: "loaded", ActiveState: "active", SubState: "running"})
			if _, err := m.cli.Put(ctx, keys.UnitState(m.id, u), string(raw), clientv3.WithLease(m.lease)); err == nil {
				s.reports.Add(1)
				if s.onReport != nil {
					s.onReport(m.id, u)
				}
			}
		}
	}
}

// submitInstances writes templates app0@..appN@ (each with Conflicts on its siblings) and
// their instances, launched, in batched transactions (the load generator's side: as kiln ctl
// would, many at once).
func submitInstances(tb testing.TB, cli *clientv3.Client, templates, perTemplate int) int {
	for t := range templates {
		submitTemplate(tb, cli, fmt.Sprintf("app%d@.service", t),
			fmt.Sprintf("[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nConflicts=app%d@*.service\n", t), perTemplate)
	}
	return templates * perTemplate
}

// submitTemplate writes the template's file and n instances (0..n-1) of it, launched.
func submitTemplate(tb testing.TB, cli *clientv3.Client, name, text string, n int) {
	u, err := unit.Parse(name, []byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	ops := []clientv3.Op{clientv3.OpPut(keys.UnitFile(u.Hash().String()), string(u.Bytes()))}
	prefix := strings.TrimSuffix(name, "@.service") + "@"
	for i := range n {
		inst := fmt.Sprintf("%s%d.service", prefix, i)
		raw, _ := json.Marshal(keys.Submitted{Name: inst, Hash: u.Hash(), DesiredState: unit.StateLaunched})
		ops = append(ops, clientv3.OpPut(keys.Unit(inst), string(raw)))
	}
	var g errgroup.Group
	g.SetLimit(16)
	for i := 0; i < len(ops); i += 100 {
		batch := ops[i:min(i+100, len(ops))]
		g.Go(func() error {
			_, err := cli.Txn(context.Background()).Then(batch...).Commit()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
}

const keepAliveMetric = `grpc_server_msg_received_total{grpc_method="LeaseKeepAlive"`

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// metric sums a Prometheus counter over etcd's members (name: the metric with the start of its
// labels, if any).
func metric(tb testing.TB, urls []string, name string) float64 {
	var sum float64
	for _, u := range urls {
		resp, err := http.Get(u)
		if err != nil {
			tb.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.SplitSeq(string(body), "\n") {
			if i := strings.LastIndexByte(line, ' '); i > 0 && strings.HasPrefix(line[:i], name) {
				v, _ := strconv.ParseFloat(line[i+1:], 64)
				sum += v
			}
		}
	}
	return sum
}

// BenchmarkPlacement10kOn1k: 10,000 launched units (ten templates of 1,000 instances, each
// conflicting with its siblings) onto 1,000 machines registered by a load generator that keeps
// their leases, agents simulated in-process, against a real etcd cluster. See benchPlacement
// for what is reported.
func BenchmarkPlacement10kOn1k(b *testing.B) {
	benchPlacement(b, 1000, 10, 1000, benchLeaseTTL, 2*time.Minute)
}

// BenchmarkPlacement100kOn10k is the same at ten times the size: 100,000 units (ten templates
// of 10,000 instances) onto 10,000 machines, whose leases have a TTL of 300 s (--lease-ttl=5m).
// With shorter leases, on the shared test machine whose etcd stalls for many seconds at a time
// under other loads, thousands of machines expired mid-run (the etcd client gives a lease up
// when no keep-alive answer came within its TTL); keep-alives cost etcd machines × 3 / TTL a
// second whatever the engine does. It takes minutes and is run by make bench only.
func BenchmarkPlacement100kOn10k(b *testing.B) {
	benchPlacement(b, 10000, 10, 10000, 300, 10*time.Minute)
}

// benchPlacement places templates × per units onto nm simulated machines and reports:
// placements per second from the engine taking the lead to the last placement in etcd, units
// running per second (the agents' reports); the engine's heap (what the Go heap grew by from
// before the engine started to the steady state, collected both times); etcd's database size;
// etcd's writes per second in the steady state; and the takeover: a second engine campaigns, the
// first dies (its client closes: no resign, its session lease expires), and the time from the
// death to the second engine's first complete pass over the cluster, which must write nothing.
func benchPlacement(b *testing.B, nm, templates, per int, ttl int64, wait time.Duration) {
	for range b.N {
		c := etcdtest.Start(b)
		cli := c.Client(b)
		// the load generator and its agents, each engine and the observer have their own client,
		// as they would on different machines
		engineCli, standbyCli, observer := c.Client(b), c.Client(b), c.Client(b)
		ctx, cancel := context.WithCancel(context.Background())
		sim := newSimCluster(ctx, cli)
		sim.ttl = ttl
		for range nm/1000 - 1 {
			sim.more = append(sim.more, c.Client(b))
		}
		sim.addMany(b, nm, func(i int) map[string]string { return map[string]string{"region": []string{"east", "west"}[i%2]} })
		n := submitInstances(b, cli, templates, per)

		var placed, lost atomic.Int64
		allPlaced := make(chan time.Time, 1)
		go func() {
			for resp := range observer.Watch(ctx, keys.Schedule, clientv3.WithPrefix()) {
				for _, ev := range resp.Events {
					if ev.Type == mvccpb.PUT && ev.Kv.Version == 1 && placed.Add(1) == int64(n) {
						allPlaced <- time.Now()
					}
				}
			}
		}()
		go func() {
			for resp := range observer.Watch(ctx, keys.Machines, clientv3.WithPrefix()) {
				for _, ev := range resp.Events {
					if ev.Type == mvccpb.DELETE {
						lost.Add(1)
					}
				}
			}
		}()
		allRunning := make(chan time.Time, 1)
		sim.onReport = func(string, string) {
			if sim.reports.Load() == int64(n) {
				allRunning <- time.Now()
			}
		}
		heap0 := heapAfterGC()
		b.ResetTimer()
		start := time.Now()
		led := make(chan time.Time, 1)
		var terms atomic.Int64
		e := engine.New(engine.Config{Client: engineCli, ID: "bench", Log: quietLog(), OnLead: func(leading bool) {
			if leading {
				terms.Add(1)
				select {
				case led <- time.Now(): // the first time it leads
				default:
				}
			}
		}})
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		var tPlaced, tRunning time.Time
		select {
		case tPlaced = <-allPlaced:
		case <-time.After(wait):
			b.Fatalf("only %d of %d placements after %s (%d machines lost their lease)", placed.Load(), n, wait, lost.Load())
		}
		select {
		case tRunning = <-allRunning:
		case <-time.After(wait):
			b.Fatalf("only %d of %d units running after %s (%d machines lost their lease)", sim.reports.Load(), n, wait, lost.Load())
		}
		if lost.Load() > 0 {
			b.Fatalf("%d machines lost their lease while the units were placed: the figures would not be of %d machines", lost.Load(), nm)
		}
		b.StopTimer()
		// from the engine taking the lead (it then reads the cluster, plans and writes); the
		// election before is not placement
		tLed := <-led
		placeRate := float64(n) / tPlaced.Sub(tLed).Seconds()
		runRate := float64(n) / tRunning.Sub(tLed).Seconds()

		// steady state: the machines keeping their leases, every unit running, nothing
		// changing. etcd's writes are counted from its own metrics on every member.
		time.Sleep(2 * time.Second)
		engineHeap := heapAfterGC() - heap0
		urls := c.MetricsURLs()
		const window = 10 * time.Second
		puts0 := metric(b, urls[:1], "etcd_mvcc_put_total") + metric(b, urls[:1], "etcd_mvcc_delete_total")
		props0 := metric(b, urls[:1], "etcd_server_proposals_committed_total")
		txn0 := metric(b, urls[:1], "etcd_mvcc_txn_total")
		ka0 := metric(b, urls, keepAliveMetric)
		time.Sleep(window)
		puts := (metric(b, urls[:1], "etcd_mvcc_put_total") + metric(b, urls[:1], "etcd_mvcc_delete_total") - puts0) / window.Seconds()
		props := (metric(b, urls[:1], "etcd_server_proposals_committed_total") - props0) / window.Seconds()
		txns := (metric(b, urls[:1], "etcd_mvcc_txn_total") - txn0) / window.Seconds()
		keepalives := (metric(b, urls, keepAliveMetric) - ka0) / window.Seconds()
		status, err := cli.Status(ctx, c.Endpoints()[0])
		if err != nil {
			b.Fatal(err)
		}

		// takeover: a standby engine campaigns; the leader dies
		type pass struct {
			at      time.Time
			written int
			err     error
		}
		passes := make(chan pass, 16)
		standby := engine.New(engine.Config{Client: standbyCli, ID: "standby", Log: quietLog(),
			OnReconciled: func(written int, err error) {
				select {
				case passes <- pass{time.Now(), written, err}:
				default:
				}
			}})
		standbyDone := make(chan struct{})
		go func() { defer close(standbyDone); _ = standby.Run(ctx) }()
		time.Sleep(time.Second) // the standby's campaign is in
		// a crash: the engine's connection goes at once, so it can neither resign nor revoke
		// its session's lease, which etcd expires after the session TTL
		died := time.Now()
		_ = engineCli.ActiveConnection().Close()
		var first pass
		select {
		case first = <-passes:
		case <-time.After(wait):
			b.Fatalf("the standby engine did not take over in %s", wait)
		}
		takeover := first.at.Sub(died)
		if first.err != nil || first.written != 0 {
			b.Errorf("the new leader's first pass wrote %d keys (err %v): want none, the cluster is as planned", first.written, first.err)
		}

		b.ReportMetric(placeRate, "placements/s")
		b.ReportMetric(runRate, "running/s")
		b.ReportMetric(puts+txns, "steady-writes/s")
		b.ReportMetric(props, "steady-proposals/s")
		b.ReportMetric(keepalives, "keepalives/s")
		b.ReportMetric(float64(engineHeap)/1e6, "engine-heap-MB")
		b.ReportMetric(float64(status.DbSize)/1e6, "etcd-db-MB")
		b.ReportMetric(takeover.Seconds(), "takeover-s")
		b.Logf("placed %d units on %d machines in %s from taking the lead (%.0f placements/s; %s from the engine's start, election included); all running after %s (%.0f/s)",
			n, nm, tPlaced.Sub(tLed).Round(time.Millisecond), placeRate, tPlaced.Sub(start).Round(time.Millisecond),
			tRunning.Sub(tLed).Round(time.Millisecond), runRate)
		b.Logf("steady state: %.1f key writes/s (puts, deletes, txns), %.1f raft proposals/s; lease keep-alives received %.0f/s (%d machines, TTL %ds)",
			puts+txns, props, keepalives, nm, ttl)
		b.Logf("engine heap %.1f MB; etcd database %.1f MB (%.1f MB in use)", float64(engineHeap)/1e6,
			float64(status.DbSize)/1e6, float64(status.DbSizeInUse)/1e6)
		if terms.Load() > 1 {
			b.Logf("the engine lost and took the lead again %d times during placement (etcd stalled longer than its session TTL): placements/s counts from its first term", terms.Load()-1)
		}
		b.Logf("takeover: the leader died; the standby finished its first pass (read the cluster, planned, nothing to write) after %s",
			takeover.Round(time.Millisecond))
		cancel()
		<-done
		<-standbyDone
	}
}

// heapAfterGC is the Go heap's live bytes after a collection.
func heapAfterGC() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkReschedule: the p99 of 20 trials of the time from a machine's death (its
// keep-alives stop, as when it crashes) to its unit reported running on another machine, with
// the default lease TTL and engine settings.
func BenchmarkReschedule(b *testing.B) {
	const nm, trials = 6, 20
	for range b.N {
		c := etcdtest.Start(b)
		cli := c.Client(b)
		ctx, cancel := context.WithCancel(context.Background())
		sim := newSimCluster(ctx, cli)
		machines := map[string]*simMachine{}
		for i := range nm {
			id := fmt.Sprintf("m%02d", i)
			machines[id] = sim.add(b, id, nil)
		}
		var mu sync.Mutex
		runningOn := map[string]string{}
		moved := make(chan string, 16)
		sim.onReport = func(m, u string) {
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := runningOn[u]; ok && prev != m {
				moved <- m
			}
			runningOn[u] = m
		}
		submitInstances(b, cli, 1, 1) // app0@0.service
		e := engine.New(engine.Config{Client: cli, ID: "bench", Log: quietLog()})
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			_, ok := runningOn["app0@0.service"]
			mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("app0@0.service never ran")
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.ResetTimer()
		var lat []time.Duration
		for trial := range trials {
			mu.Lock()
			victim := runningOn["app0@0.service"]
			mu.Unlock()
			killed := time.Now()
			machines[victim].cancel()
			select {
			case <-moved:
			case <-time.After(30 * time.Second):
				b.Fatalf("trial %d: the unit did not move off %s in 30 s", trial, victim)
			}
			lat = append(lat, time.Since(killed))
			id := fmt.Sprintf("m%02d", nm+trial)
			machines[id] = sim.add(b, id, nil) // keep the cluster's size
			// start the next trial at a random point of the keep-alive period
			time.Sleep(time.Duration(trial%5) * 330 * time.Millisecond)
		}
		b.StopTimer()
		slices.Sort(lat)
		p99 := lat[len(lat)-1] // of 20 samples, the 99th percentile is the worst
		p50 := lat[len(lat)/2]
		b.ReportMetric(p99.Seconds(), "p99-s")
		b.ReportMetric(p50.Seconds(), "p50-s")
		b.Logf("reschedule latency over %d trials (lease TTL %ds): p50 %s, p99 %s, max %s", trials, benchLeaseTTL,
			p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		cancel()
		<-done
	}
}
