package etcdconn

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pages reads every key under prefix at one revision (the first request's), page keys per
// request, so that neither etcd nor the reader holds a whole large prefix in one message. It
// calls each with the revision and every page in key order; each returns false to stop early.
func Pages(ctx context.Context, kv clientv3.KV, prefix string, page int64, each func(rev int64, kvs []*mvccpb.KeyValue) bool) error {
	from, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := kv.Get(ctx, from, opts...)
		if err != nil {
			return err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if !each(rev, resp.Kvs) || !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
