package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/unit"
)

const myApp = `[Unit]
Description=My app %i

[Service]
ExecStart=/bin/sleep infinity

[X-Fleet]
Conflicts=my-app@*.service
`

const logAgent = `[Service]
ExecStart=/bin/sleep infinity

[X-Fleet]
Global=true
MachineMetadata=role=worker
`

const onMars = `[Service]
ExecStart=/bin/true

[X-Fleet]
MachineMetadata=region=mars
`

// machine registers id with metadata under a lease of ttl seconds and keeps it alive until the
// returned function is called (which lets the lease expire, as a dead machine's would).
func machine(t *testing.T, cli *clientv3.Client, id string, md map[string]string, ttl int64) (lease clientv3.LeaseID, die func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: md, Health: registry.HealthHealthy})
	if _, err := cli.Put(ctx, keys.Machine(id), string(raw), clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	t.Cleanup(cancel)
	return g.ID, cancel
}

// placements reads every placement: unit → machines.
func placements(t *testing.T, cli *clientv3.Client) map[string][]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), keys.Schedule, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, kv := range resp.Kvs {
		m, u, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), keys.Schedule), "/")
		out[u] = append(out[u], m)
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runEngine(t *testing.T, cli *clientv3.Client, id string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e := engine.New(engine.Config{Client: cli, ID: id, Log: quietLog()})
	go func() { defer close(done); _ = e.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func start(t *testing.T, cli *clientv3.Client, state unit.State, files ...submit.File) {
	t.Helper()
	if _, err := submit.SetState(context.Background(), cli, files, state); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationEngine runs two engines against a real etcd cluster: the talk's two
// instances land on two machines, a global unit on every worker including a late one, an
// impossible unit is reported, a dead machine's unit moves once its lease expired, and the
// second engine takes over when the leader stops.
func TestIntegrationEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := context.Background()
	leases := map[string]clientv3.LeaseID{}
	dies := map[string]func(){}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("m%d", i)
		leases[id], dies[id] = machine(t, cli, id, map[string]string{"role": "worker"}, 2)
	}
	stopA := runEngine(t, cli, "engine-a")
	waitFor(t, 5*time.Second, "engine-a to lead", func() bool { l, _ := engine.Leader(ctx, cli); return l == "engine-a" })
	runEngine(t, cli, "engine-b")

	if _, err := submit.Submit(ctx, cli, []submit.File{{Name: "my-app@.service", Text: []byte(myApp)}}); err != nil {
		t.Fatal(err)
	}
	start(t, cli, unit.StateLaunched, submit.File{Name: "my-app@1.service"}, submit.File{Name: "my-app@2.service"})
	start(t, cli, unit.StateLaunched, submit.File{Name: "log-agent.service", Text: []byte(logAgent)})
	start(t, cli, unit.StateLaunched, submit.File{Name: "mars.service", Text: []byte(onMars)})

	waitFor(t, 5*time.Second, "two instances on two machines and the global unit on three", func() bool {
		p := placements(t, cli)
		return len(p["my-app@1.service"]) == 1 && len(p["my-app@2.service"]) == 1 &&
			p["my-app@1.service"][0] != p["my-app@2.service"][0] && len(p["log-agent.service"]) == 3
	})
	p := placements(t, cli)
	first := p["my-app@1.service"][0]
	resp, err := cli.Get(ctx, keys.Placement(first, "my-app@1.service"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(err)
	}
	var a keys.Assignment
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		t.Fatal(err)
	}
	if a.State != unit.StateLaunched || a.Lease != int64(leases[first]) || a.Unit != "my-app@1.service" {
		t.Fatalf("assignment %+v: want launched under lease %x", a, leases[first])
	}
	waitFor(t, 5*time.Second, "mars.service reported unplaced", func() bool {
		resp, err := cli.Get(ctx, keys.UnplacedUnit("mars.service"))
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), "MachineMetadata")
	})

	// a late worker gets the global unit
	machine(t, cli, "m4", map[string]string{"role": "worker"}, 2)
	waitFor(t, 5*time.Second, "the global unit on the late machine", func() bool {
		return slices.Contains(placements(t, cli)["log-agent.service"], "m4")
	})

	// the leader stops: the other engine takes over and goes on placing
	stopA()
	waitFor(t, 5*time.Second, "engine-b to lead", func() bool { l, _ := engine.Leader(ctx, cli); return l == "engine-b" })

	// the machine of my-app@1 dies: its unit moves only after the lease expired
	died := time.Now()
	dies[first]()
	waitFor(t, 10*time.Second, "my-app@1 on another machine", func() bool {
		ms := placements(t, cli)["my-app@1.service"]
		return len(ms) == 1 && ms[0] != first
	})
	if took := time.Since(died); took < time.Second {
		t.Fatalf("my-app@1 moved %s after its machine died: before the 2 s lease could expire", took)
	}
	p = placements(t, cli)
	if p["my-app@1.service"][0] == p["my-app@2.service"][0] {
		t.Fatalf("conflicting instances share %s", p["my-app@1.service"][0])
	}

	// an etcd member dies: the engine goes on (its client moves to another member)
	c.Kill(0)
	start(t, cli, unit.StateLaunched, submit.File{Name: "my-app@3.service"})
	waitFor(t, 10*time.Second, "my-app@3 placed with an etcd member down", func() bool {
		return len(placements(t, cli)["my-app@3.service"]) == 1
	})
	c.Restart(0)
	c.WaitHealthy()

	// stop: the unit stays placed, loaded
	start(t, cli, unit.StateLoaded, submit.File{Name: "my-app@1.service"})
	waitFor(t, 5*time.Second, "my-app@1 loaded", func() bool {
		m := placements(t, cli)["my-app@1.service"]
		resp, err := cli.Get(ctx, keys.Placement(m[0], "my-app@1.service"))
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"loaded"`)
	})
	// destroy: the placements go away
	if _, err := submit.Destroy(ctx, cli, []string{"my-app@1.service", "mars.service"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "my-app@1 unscheduled and mars forgotten", func() bool {
		resp, err := cli.Get(ctx, keys.Unplaced, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return len(placements(t, cli)["my-app@1.service"]) == 0 && err == nil && resp.Count == 0
	})
}
