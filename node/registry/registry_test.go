package registry_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/registry"
)

func newClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), TLS: c.TLSConfig(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// waitFor polls cond every 50 ms until it holds or d passes; it returns how long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func TestIntegrationRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c := etcdtest.Start(t)
	reader := c.Client(t)
	const ttl = 2 * time.Second
	listed := func(id string) *registry.Machine {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m, err := registry.Get(ctx, reader, id)
		if err != nil {
			t.Logf("get %s: %v", id, err)
		}
		return m
	}

	// A machine that crashes (its client gone, no revoke) leaves within the TTL.
	crashing := newClient(t, c)
	p := registry.NewPublisher(crashing, crashing, registry.Machine{ID: "m-crash", Hostname: "h1", Health: registry.HealthStarting}, ttl, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 5*time.Second, "m-crash registered", func() bool { return listed("m-crash") != nil })
	p.Update(func(m *registry.Machine) { m.Health = registry.HealthHealthy })
	waitFor(t, 5*time.Second, "health update", func() bool { m := listed("m-crash"); return m != nil && m.Health == registry.HealthHealthy })
	time.Sleep(2 * ttl) // keep-alives hold it
	if listed("m-crash") == nil {
		t.Fatal("entry gone while its lease was kept alive")
	}
	crashing.Close()
	gone := waitFor(t, ttl+2*time.Second, "m-crash gone", func() bool { return listed("m-crash") == nil })
	t.Logf("crashed machine gone after %v (TTL %v)", gone.Round(10*time.Millisecond), ttl)
	cancel()
	<-done

	// A machine that stops gracefully leaves at once.
	cli := newClient(t, c)
	defer cli.Close()
	p = registry.NewPublisher(cli, cli, registry.Machine{ID: "m-stop"}, 30*time.Second, nil)
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 5*time.Second, "m-stop registered", func() bool { return listed("m-stop") != nil })
	ms, err := registry.List(context.Background(), reader)
	if err != nil || len(ms) != 1 || ms[0].ID != "m-stop" {
		t.Fatalf("list: %+v %v", ms, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "m-stop gone", func() bool { return listed("m-stop") == nil })

	// Survives a lost majority: it comes back when etcd does.
	p = registry.NewPublisher(cli, cli, registry.Machine{ID: "m-survivor"}, ttl, nil)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 5*time.Second, "m-survivor registered", func() bool { return listed("m-survivor") != nil })
	c.Kill(1)
	c.Kill(2)
	time.Sleep(2 * ttl)
	c.Restart(1)
	c.Restart(2)
	c.WaitHealthy()
	waitFor(t, 3*ttl+5*time.Second, "m-survivor back", func() bool { return listed("m-survivor") != nil })
}
