package etcdconn_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/etcdconn"
)

// TestIntegrationFollow: Follow passes on every change, and goes on after the whole cluster
// was down (its watch broke), until its context ends.
func TestIntegrationFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		etcdconn.Follow(ctx, cli, "/follow/", func(evs []*clientv3.Event) {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range evs {
				seen = append(seen, string(ev.Kv.Value))
			}
		}, slog.New(slog.DiscardHandler), clientv3.WithPrefix())
	}()
	has := func(v string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seen {
			if s == v {
				return true
			}
		}
		return false
	}
	putUntilSeen := func(v string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !has(v) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not seen; seen %v", v, seen)
			}
			pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = cli.Put(pctx, "/follow/a", v)
			pcancel()
			time.Sleep(300 * time.Millisecond)
		}
	}
	putUntilSeen("before")
	for i := range c.Size() {
		c.Kill(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.WaitHealthy()
	putUntilSeen("after")
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Follow did not return when its context ended")
	}
}
