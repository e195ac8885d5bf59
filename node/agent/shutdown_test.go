package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/unit"
)

// TestIntegrationShutdownWithEtcd stops three kiln-node processes running 100 units and the
// cluster's only etcd member at the same moment, as a reboot of machines that run both does:
// every kiln-node must exit promptly (its units stopped, its etcd calls given up), not wait on
// an etcd that is gone. Twice, since the race is a matter of timing.
func TestIntegrationShutdownWithEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kiln-node processes")
	}
	for round := range 2 {
		t.Run(fmt.Sprint("round", round+1), func(t *testing.T) { shutdownRound(t) })
	}
}

func shutdownRound(t *testing.T) {
	const units = 100
	// The bound: the units stop at once (a sleep dies on SIGTERM), the lease revoke and the
	// election's resign have a couple of seconds each; a loaded machine gets slack.
	const bound = 20 * time.Second
	c := etcdtest.Start(t, etcdtest.Members(1))
	cli := c.Client(t)
	ctx := context.Background()
	var nodes []*node
	for i := range 3 {
		n := newNode(t, c, fmt.Sprintf("sd%d", i+1), "--executor", "exec", "--strategy", "off", "--log-level", "info")
		n.start(t)
		t.Cleanup(n.stop)
		nodes = append(nodes, n)
	}
	tmpl, err := unit.Parse("sleeper@.service", []byte("[Service]\nExecStart=/bin/sleep 100000 %i\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := submit.Ensure(ctx, cli, tmpl, unit.StateInactive); err != nil {
		t.Fatal(err)
	}
	var files []submit.File
	for i := range units {
		files = append(files, submit.File{Name: fmt.Sprintf("sleeper@%d.service", i)})
	}
	if _, err := submit.SetState(ctx, cli, files, unit.StateLaunched); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for running := 0; running < units; {
		if time.Since(start) > 90*time.Second {
			t.Fatalf("%d of %d units running after %v", running, units, time.Since(start))
		}
		time.Sleep(500 * time.Millisecond)
		resp, err := cli.Get(ctx, keys.States, clientv3.WithPrefix())
		if err != nil {
			continue
		}
		running = 0
		for _, kv := range resp.Kvs {
			var r keys.UnitReport
			if json.Unmarshal(kv.Value, &r) == nil && r.SubState == "running" {
				running++
			}
		}
	}
	t.Logf("%d units running on 3 machines after %v", units, time.Since(start).Round(time.Millisecond))

	// SIGTERM to etcd and every kiln-node at once.
	var wg sync.WaitGroup
	took := make([]time.Duration, len(nodes))
	stopAt := time.Now()
	c.Terminate(0)
	for i, n := range nodes {
		n.mu.Lock()
		cmd, done := n.cmd, n.done
		n.mu.Unlock()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-done:
				took[i] = time.Since(stopAt)
			case <-time.After(bound):
				took[i] = -1
				_ = cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump into the log
				<-done
			}
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if took[i] < 0 {
			t.Errorf("%s still running %v after SIGTERM (etcd stopped at the same moment); its log ends:\n%s", n.id, bound, tailFile(n.logPath(), 200))
			continue
		}
		t.Logf("%s exited %v after SIGTERM", n.id, took[i].Round(time.Millisecond))
	}
}
