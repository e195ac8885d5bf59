package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

// reportPage is how many unit reports RunningSomewhere reads per request (a variable for the
// test of paging).
var reportPage int64 = 5000

// RunningSomewhere tells whether each of units runs on some machine of the cluster, as the
// machines' agents report it (keys.UnitState, ActiveState active): nil when each does or is no
// longer to run (destroyed, stopped or unloaded since), else an error that names the others.
// The reboot coordinator of machine self asks it before self, back from a reboot, releases its
// slot; self's reports under another lease than lease are from before the reboot and do not
// count.
func RunningSomewhere(ctx context.Context, kv clientv3.KV, units []string, self string, lease clientv3.LeaseID) error {
	waiting := map[string]bool{}
	for _, u := range units {
		resp, err := kv.Get(ctx, keys.Unit(u))
		if err != nil {
			return fmt.Errorf("read unit %s: %w", u, err)
		}
		if len(resp.Kvs) == 0 {
			continue
		}
		var rec keys.Submitted
		if json.Unmarshal(resp.Kvs[0].Value, &rec) != nil || rec.DesiredState != unit.StateLaunched {
			continue
		}
		waiting[u] = true
	}
	// The reports are keyed by machine first: read them all, a page at a time, at one revision.
	key, end := keys.States, clientv3.GetPrefixRangeEnd(keys.States)
	var rev int64
	for len(waiting) > 0 {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(reportPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := kv.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("read unit states: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			m, u, ok := keys.SplitMachineUnit(string(kv.Key), keys.States)
			if !ok || !waiting[u] || (m == self && clientv3.LeaseID(kv.Lease) != lease) {
				continue
			}
			var rep keys.UnitReport
			if json.Unmarshal(kv.Value, &rep) == nil && rep.ActiveState == executor.Active {
				delete(waiting, u)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if len(waiting) == 0 {
		return nil
	}
	names := make([]string, 0, len(waiting))
	for u := range waiting {
		names = append(names, u)
	}
	slices.Sort(names)
	return fmt.Errorf("units not running again yet: %s", strings.Join(names, ", "))
}
