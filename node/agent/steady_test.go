package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/registry"
)

// scrape sums, over etcd's members, the samples of each metric whose line contains every filter.
func scrape(t *testing.T, urls []string, metrics map[string][]string) (perMember []map[string]float64) {
	t.Helper()
	// A fresh connection each time: a pooled one may point at an earlier test's server that had
	// the same port.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, u := range urls {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("scrape %s: %v", u, err)
		}
		vals := map[string]float64{}
		s := bufio.NewScanner(resp.Body)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			line := s.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
		metric:
			for name, filters := range metrics {
				metricName, _, _ := strings.Cut(line, "{")
				metricName, _, _ = strings.Cut(metricName, " ")
				if metricName != strings.SplitN(name, "|", 2)[0] {
					continue
				}
				for _, f := range filters {
					if !strings.Contains(line, f) {
						continue metric
					}
				}
				fields := strings.Fields(line)
				v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
				if err == nil {
					vals[name] += v
				}
			}
		}
		resp.Body.Close()
		perMember = append(perMember, vals)
	}
	return perMember
}

// TestIntegrationSteadyStateWrites measures what idle machines cost etcd, with the daemon's
// defaults (10 s lease, 10 s checks): writes (raft proposals, puts, txns), lease keep-alives
// and reads, per machine per minute. It logs the figures; it asserts only that an idle machine
// writes nothing but keep-alives. KILN_STEADY_DURATION (default 30s) sets the window.
func TestIntegrationSteadyStateWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kiln-node processes")
	}
	const machines = 10
	window := 30 * time.Second
	if v := os.Getenv("KILN_STEADY_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		window = d
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var nodes []*node
	for i := range machines {
		n := newNode(t, c, fmt.Sprintf("idle-%02d", i), "--check-interval", "10s", "--lease-ttl", "10s")
		nodes = append(nodes, n)
		n.start(t)
		wg.Go(func() {
			n.supervise(ctx, t, func() time.Duration { return 0 }, func() time.Duration { return 0 })
		})
	}
	waitUntil(t, 20*time.Second, "all registered and healthy", func() bool {
		ms, err := registry.List(context.Background(), cli)
		if err != nil || len(ms) != machines {
			return false
		}
		for _, m := range ms {
			if m.Health != registry.HealthHealthy {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * time.Second) // start-up writes settle

	metrics := map[string][]string{
		"etcd_server_proposals_committed_total": nil,
		"etcd_mvcc_put_total":                   nil,
		"etcd_mvcc_txn_total":                   nil,
		"etcd_mvcc_delete_total":                nil,
		"grpc_server_msg_received_total|ka":     {`grpc_method="LeaseKeepAlive"`},
		"grpc_server_handled_total|range":       {`grpc_method="Range"`},
	}
	before := scrape(t, c.MetricsURLs(), metrics)
	start := time.Now()
	time.Sleep(window)
	after := scrape(t, c.MetricsURLs(), metrics)
	elapsed := time.Since(start)

	perMachineMinute := func(d float64) float64 { return d / machines / elapsed.Minutes() }
	// Replicated counts (proposals, puts, txns) are the same on every member: take the largest
	// delta. Requests (keep-alives, ranges) are served by the member a client talks to: sum them.
	delta := func(name string, sum bool) float64 {
		var out float64
		for i := range before {
			d := after[i][name] - before[i][name]
			if sum {
				out += d
			} else {
				out = max(out, d)
			}
		}
		return out
	}
	proposals := delta("etcd_server_proposals_committed_total", false)
	puts := delta("etcd_mvcc_put_total", false)
	txns := delta("etcd_mvcc_txn_total", false)
	dels := delta("etcd_mvcc_delete_total", false)
	ka := delta("grpc_server_msg_received_total|ka", true)
	ranges := delta("grpc_server_handled_total|range", true)
	t.Logf("%d idle machines for %v, per machine per minute: %.2f raft proposals (writes), %.2f puts, %.2f txns, %.2f deletes, %.2f lease keep-alives, %.2f reads",
		machines, elapsed.Round(time.Second), perMachineMinute(proposals), perMachineMinute(puts), perMachineMinute(txns), perMachineMinute(dels), perMachineMinute(ka), perMachineMinute(ranges))
	if puts+txns+dels > 0 {
		t.Errorf("idle machines wrote keys: %v puts, %v txns, %v deletes", puts, txns, dels)
	}
	if before[0]["etcd_server_proposals_committed_total"] == 0 {
		t.Errorf("metric etcd_server_proposals_committed_total not found: the figures mean nothing")
	}
	if ka == 0 {
		t.Errorf("no lease keep-alive seen: is the metric still %q?", "grpc_server_msg_received_total")
	}
	for _, n := range nodes {
		if !n.running() {
			t.Errorf("%s is not running", n.id)
		}
	}
}
