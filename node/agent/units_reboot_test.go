package agent_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/unit"
)

// slowApp takes two seconds to start (activating, start-pre) and may run once per machine: a
// moved instance is not running yet for two seconds after it was placed.
const slowApp = `[Service]
ExecStartPre=/bin/sleep 2
ExecStart=/bin/sh -c 'trap "exit 0" TERM; while :; do sleep 0.1; done'

[X-Fleet]
Conflicts=app@*.service
`

// activeApps counts the app instances that some machine reports active.
func activeApps(cli *clientv3.Client) (int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, keys.States, clientv3.WithPrefix())
	if err != nil {
		return 0, false
	}
	n := 0
	for _, kv := range resp.Kvs {
		var r keys.UnitReport
		if json.Unmarshal(kv.Value, &r) == nil && strings.HasPrefix(r.Unit, "app@") && r.ActiveState == "active" {
			n++
		}
	}
	return n, true
}

// TestIntegrationRollingRebootKeepsAnInstance: three kiln-node processes (exec executor) run
// two instances of a slow-starting app that may not share a machine, and all need a reboot.
// A machine back from its reboot keeps its slot until the instance that moved away runs again,
// so that at every sampled moment at least one instance is active, while the machines reboot
// one at a time.
func TestIntegrationRollingRebootKeepsAnInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kiln-node processes")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	r := startRolling(t, c, func(int) []string { return []string{"--executor", "exec"} })
	ctx := r.ctx
	if _, err := submit.Submit(ctx, cli, []submit.File{{Name: "app@.service", Text: []byte(slowApp)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "app@1.service"}, {Name: "app@2.service"}}, unit.StateLaunched); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "both instances active", func() bool { n, ok := activeApps(cli); return ok && n == 2 })

	r.needReboot(t)
	var samples, silent atomic.Int64
	var s sampler
	r.wg.Go(func() { s.run(ctx, t, cli, r.nodes, 1) })
	r.wg.Go(func() {
		for ctx.Err() == nil {
			if n, ok := activeApps(cli); ok {
				samples.Add(1)
				if n == 0 {
					silent.Add(1)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	waitUntil(t, 2*time.Minute, "every machine rebooted, lock free", func() bool { return r.allRebooted(cli, 1) })
	waitUntil(t, 30*time.Second, "both instances active again", func() bool { n, ok := activeApps(cli); return ok && n == 2 })
	t.Logf("%d samples, %d with no instance active; peak %d holders, peak %d rebooting", samples.Load(), silent.Load(), s.peakHolders.Load(), s.peakRebooting.Load())
	if silent.Load() > 0 {
		t.Errorf("no instance active in %d of %d samples of the rolling reboot", silent.Load(), samples.Load())
	}
}
