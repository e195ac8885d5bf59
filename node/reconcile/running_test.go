package reconcile

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

func TestIntegrationRunningSomewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	defer func(p int64) { reportPage = p }(reportPage)
	reportPage = 2 // several pages with four reports
	cli := etcdtest.Start(t).Client(t)
	ctx := context.Background()
	put := func(key string, v any, lease clientv3.LeaseID) {
		t.Helper()
		raw, _ := json.Marshal(v)
		var opts []clientv3.OpOption
		if lease != 0 {
			opts = append(opts, clientv3.WithLease(lease))
		}
		if _, err := cli.Put(ctx, key, string(raw), opts...); err != nil {
			t.Fatal(err)
		}
	}
	grant := func() clientv3.LeaseID {
		g, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		return g.ID
	}
	oldLease, newLease, other := grant(), grant(), grant()
	for _, u := range []string{"a.service", "b.service", "c.service", "gone.service"} {
		state := unit.StateLaunched
		if u == "c.service" {
			state = unit.StateLoaded
		}
		if u != "gone.service" {
			put(keys.Unit(u), keys.Submitted{Name: u, DesiredState: state}, 0)
		}
	}
	// a runs on m2; b is reported active by m1 only under the lease of m1's previous boot, and
	// activating on m3; c and gone.service are no longer to run.
	put(keys.UnitState("m2", "a.service"), keys.UnitReport{Unit: "a.service", ActiveState: "active"}, other)
	put(keys.UnitState("m1", "b.service"), keys.UnitReport{Unit: "b.service", ActiveState: "active"}, oldLease)
	put(keys.UnitState("m3", "b.service"), keys.UnitReport{Unit: "b.service", ActiveState: "activating"}, other)
	put(keys.UnitState("m3", "x.service"), keys.UnitReport{Unit: "x.service", ActiveState: "active"}, other)

	units := []string{"a.service", "b.service", "c.service", "gone.service"}
	err := RunningSomewhere(ctx, cli, units, "m1", newLease)
	if err == nil || !strings.HasSuffix(err.Error(), ": b.service") {
		t.Fatalf("b runs nowhere yet: %v", err)
	}
	put(keys.UnitState("m3", "b.service"), keys.UnitReport{Unit: "b.service", ActiveState: "active"}, other)
	if err := RunningSomewhere(ctx, cli, units, "m1", newLease); err != nil {
		t.Fatalf("b runs on m3: %v", err)
	}
	// m1's report under its current lease counts.
	if _, err := cli.Delete(ctx, keys.UnitState("m3", "b.service")); err != nil {
		t.Fatal(err)
	}
	put(keys.UnitState("m1", "b.service"), keys.UnitReport{Unit: "b.service", ActiveState: "active"}, newLease)
	if err := RunningSomewhere(ctx, cli, units, "m1", newLease); err != nil {
		t.Fatalf("b runs on m1 again: %v", err)
	}
}
