package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/keys"
)

// TestIntegrationFence: a deposed leader's writes fail as a whole (its election key is gone),
// a write whose compare fails asks for a resync, and a large plan is cut into transactions
// that etcd accepts (at most 128 compares each).
func TestIntegrationFence(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := context.Background()
	e := New(Config{Client: cli, ID: "test", Log: quiet()})

	leaderKey := keys.Election + "/test"
	put, err := cli.Put(ctx, leaderKey, "test")
	if err != nil {
		t.Fatal(err)
	}
	fence := clientv3.Compare(clientv3.CreateRevision(leaderKey), "=", put.Header.Revision)

	var ops []op
	for i := range 300 {
		guard := clientv3.Compare(clientv3.ModRevision(keys.Units), "<", put.Header.Revision+1).WithPrefix()
		o := op{key: keys.Placement("m1", fmt.Sprintf("u%03d.service", i)), val: "{}"}
		if i%2 == 0 {
			o.guard = &guard
		}
		ops = append(ops, o)
	}
	done, err := e.apply(ctx, ops, fence)
	if err != nil || len(done) != 300 {
		t.Fatalf("apply: %d written, %v", len(done), err)
	}
	// the same puts again: their keys exist now, so the compares fail
	if _, err := e.apply(ctx, ops[:1], fence); !errors.Is(err, errResync) {
		t.Fatalf("a failed compare: %v, want a resync", err)
	}
	// deposed: another candidate's key replaced ours
	if _, err := cli.Delete(ctx, leaderKey); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, leaderKey, "other"); err != nil {
		t.Fatal(err)
	}
	late := []op{{key: keys.Placement("m2", "late.service"), val: "{}"}}
	if done, err := e.apply(ctx, late, fence); !errors.Is(err, errResync) || len(done) != 0 {
		t.Fatalf("a deposed leader's write: %d written, %v", len(done), err)
	}
	if resp, err := cli.Get(ctx, keys.Placement("m2", "late.service")); err != nil || len(resp.Kvs) != 0 {
		t.Fatal("a deposed leader wrote a placement")
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
