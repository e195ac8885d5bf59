package etcdtest_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
)

func TestIntegrationClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	start := time.Now()
	c := etcdtest.Start(t)
	t.Logf("3-member cluster healthy in %v", time.Since(start).Round(time.Millisecond))
	cli := c.Client(t)
	put := func(k, v string) {
		t.Helper()
		// A put in flight when the leader dies fails ("request timed out"): retry, as clients must.
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := cli.Put(ctx, k, v)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("put %s: %v", k, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	put("a", "1")

	c.Kill(0)
	if c.Running(0) {
		t.Fatal("member 0 still running after Kill")
	}
	put("b", "2") // two of three keep a quorum
	c.Restart(0)
	c.WaitHealthy()

	c.Pause(1)
	put("c", "3")
	c.Resume(1)
	c.WaitHealthy()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "", clientWithPrefix()...)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 3 {
		t.Fatalf("got %d keys, want 3", resp.Count)
	}
	if len(c.Endpoints()) != 3 || len(c.MetricsURLs()) != 3 {
		t.Fatalf("endpoints %v metrics %v", c.Endpoints(), c.MetricsURLs())
	}
}

func clientWithPrefix() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }
