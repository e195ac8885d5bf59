package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/etcdconn"
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
	if len(waiting) > 0 {
		err := etcdconn.Pages(ctx, kv, keys.States, reportPage, func(_ int64, kvs []*mvccpb.KeyValue) bool {
			for _, kv := range kvs {
				m, u, ok := keys.SplitMachineUnit(string(kv.Key), keys.States)
				if !ok || !waiting[u] || (m == self && clientv3.LeaseID(kv.Lease) != lease) {
					continue
				}
				var rep keys.UnitReport
				if json.Unmarshal(kv.Value, &rep) == nil && rep.ActiveState == executor.Active {
					delete(waiting, u)
				}
			}
			return len(waiting) > 0
		})
		if err != nil {
			return fmt.Errorf("read unit states: %w", err)
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	return fmt.Errorf("units not running again yet: %s", strings.Join(slices.Sorted(maps.Keys(waiting)), ", "))
}
