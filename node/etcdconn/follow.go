package etcdconn

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Follow watches key (with opts, e.g. clientv3.WithPrefix()) until ctx ends, calling each with
// every response's events; when the watch breaks (etcd lost its leader, a compaction, a
// connection gone) it watches again after a jittered backoff from 250 ms up to 10 s, reset by
// every response. Events that happened while the watch was broken are not replayed: a caller
// that must not miss a change reads the key again when each is called after a break. It
// returns when ctx ends.
func Follow(ctx context.Context, w clientv3.Watcher, key string, each func([]*clientv3.Event), log *slog.Logger, opts ...clientv3.OpOption) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range w.Watch(wctx, key, opts...) {
			if err := resp.Err(); err != nil {
				log.Debug("watch broken", "key", key, "err", err)
				break
			}
			backoff = 250 * time.Millisecond
			each(resp.Events)
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
