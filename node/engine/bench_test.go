package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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
	lease  clientv3.LeaseID
	cancel context.CancelFunc
}

// simCluster registers machines and simulates their agents over one client.
type simCluster struct {
	cli      *clientv3.Client
	ctx      context.Context
	machines sync.Map // id → *simMachine
	// running counts the reports written; onReport is called after each.
	reports  atomic.Int64
	onReport func(machine, unit string)
}

func newSimCluster(ctx context.Context, cli *clientv3.Client) *simCluster {
	return &simCluster{cli: cli, ctx: ctx}
}

// add registers a machine and starts its agent; kill makes it die (no revoke: its lease
// expires, as a crashed machine's does).
func (s *simCluster) add(tb testing.TB, id string, md map[string]string) *simMachine {
	ctx, cancel := context.WithCancel(s.ctx)
	g, err := s.cli.Grant(ctx, benchLeaseTTL)
	if err != nil {
		tb.Fatal(err)
	}
	raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: md, Health: registry.HealthHealthy})
	if _, err := s.cli.Put(ctx, keys.Machine(id), string(raw), clientv3.WithLease(g.ID)); err != nil {
		tb.Fatal(err)
	}
	ka, err := s.cli.KeepAlive(ctx, g.ID)
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	m := &simMachine{id: id, lease: g.ID, cancel: cancel}
	s.machines.Store(id, m)
	go s.agent(ctx, m)
	return m
}

func (s *simCluster) agent(ctx context.Context, m *simMachine) {
	for resp := range s.cli.Watch(ctx, keys.MachineSchedule(m.id), clientv3.WithPrefix()) {
		for _, ev := range resp.Events {
			u := strings.TrimPrefix(string(ev.Kv.Key), keys.MachineSchedule(m.id))
			if ev.Type == mvccpb.DELETE {
				_, _ = s.cli.Delete(ctx, keys.UnitState(m.id, u))
				continue
			}
			var a keys.Assignment
			if json.Unmarshal(ev.Kv.Value, &a) != nil || a.Lease != int64(m.lease) {
				continue
			}
			raw, _ := json.Marshal(keys.UnitReport{Unit: u, Hash: a.Hash, LoadState: "loaded", ActiveState: "active", SubState: "running"})
			if _, err := s.cli.Put(ctx, keys.UnitState(m.id, u), string(raw), clientv3.WithLease(m.lease)); err == nil {
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
	var ops []clientv3.Op
	for t := range templates {
		name := fmt.Sprintf("app%d@.service", t)
		u, err := unit.Parse(name, []byte(fmt.Sprintf("[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nConflicts=app%d@*.service\n", t)))
		if err != nil {
			tb.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(keys.UnitFile(u.Hash().String()), string(u.Bytes())))
		for i := range perTemplate {
			inst := fmt.Sprintf("app%d@%d.service", t, i)
			raw, _ := json.Marshal(keys.Submitted{Name: inst, Hash: u.Hash(), DesiredState: unit.StateLaunched})
			ops = append(ops, clientv3.OpPut(keys.Unit(inst), string(raw)))
		}
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
	return templates * perTemplate
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
// their leases, agents simulated in-process, against a real etcd cluster. Reported: placements
// per second from the engine's start to the 10,000th placement in etcd, units running per
// second (the agents' reports), and etcd's writes per second in the steady state that follows.
func BenchmarkPlacement10kOn1k(b *testing.B) {
	const nm, templates, per = 1000, 10, 1000
	for range b.N {
		c := etcdtest.Start(b)
		cli := c.Client(b)
		// the load generator and its agents, the engine and the observer each have their own client,
		// as they would on different machines
		engineCli, observer := c.Client(b), c.Client(b)
		ctx, cancel := context.WithCancel(context.Background())
		sim := newSimCluster(ctx, cli)
		for i := range nm {
			sim.add(b, fmt.Sprintf("m%04d", i), map[string]string{"region": []string{"east", "west"}[i%2]})
		}
		n := submitInstances(b, cli, templates, per)

		var placed atomic.Int64
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
		allRunning := make(chan time.Time, 1)
		sim.onReport = func(string, string) {
			if sim.reports.Load() == int64(n) {
				allRunning <- time.Now()
			}
		}
		b.ResetTimer()
		start := time.Now()
		led := make(chan time.Time, 1)
		e := engine.New(engine.Config{Client: engineCli, ID: "bench", Log: quietLog(), OnLead: func(leading bool) {
			if leading {
				led <- time.Now()
			}
		}})
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		var tPlaced, tRunning time.Time
		select {
		case tPlaced = <-allPlaced:
		case <-time.After(2 * time.Minute):
			b.Fatalf("only %d of %d placements after 2 minutes", placed.Load(), n)
		}
		select {
		case tRunning = <-allRunning:
		case <-time.After(2 * time.Minute):
			b.Fatalf("only %d of %d units running after 2 minutes", sim.reports.Load(), n)
		}
		b.StopTimer()
		// from the engine taking the lead (it then reads the cluster, plans and writes); the
		// election before is not placement
		tLed := <-led
		placeRate := float64(n) / tPlaced.Sub(tLed).Seconds()
		runRate := float64(n) / tRunning.Sub(tLed).Seconds()

		// steady state: 1,000 machines keeping their leases, 10,000 units running, nothing
		// changing. etcd's writes are counted from its own metrics on every member.
		time.Sleep(2 * time.Second)
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

		b.ReportMetric(placeRate, "placements/s")
		b.ReportMetric(runRate, "running/s")
		b.ReportMetric(puts+txns, "steady-writes/s")
		b.ReportMetric(props, "steady-proposals/s")
		b.ReportMetric(keepalives, "keepalives/s")
		b.Logf("placed %d units on %d machines in %s from taking the lead (%.0f placements/s; %s from the engine's start, election included); all running after %s (%.0f/s)",
			n, nm, tPlaced.Sub(tLed).Round(time.Millisecond), placeRate, tPlaced.Sub(start).Round(time.Millisecond),
			tRunning.Sub(tLed).Round(time.Millisecond), runRate)
		b.Logf("steady state: %.1f key writes/s (puts, deletes, txns), %.1f raft proposals/s; lease keep-alives received %.0f/s (1,000 machines, TTL %ds)",
			puts+txns, props, keepalives, benchLeaseTTL)
		cancel()
		<-done
	}
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
