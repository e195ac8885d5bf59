package reconcile

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/executor/exec"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

// agent is one machine's agent in a test: registry publisher with the lease tracker, exec
// executor, reconciler, all stopped at cleanup.
type agent struct {
	id     string
	dir    string
	lease  *registry.MachineLease
	rec    *Reconciler
	ex     *exec.Executor
	cancel context.CancelFunc
	done   chan struct{}
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func startAgent(t *testing.T, cli *clientv3.Client, id string, ttl time.Duration) *agent {
	t.Helper()
	log := testLog(t).With("machine", id)
	dir := t.TempDir()
	ex, err := exec.New(exec.Config{Dir: dir, MachineID: id, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	lease := registry.NewMachineLease(cli, nil)
	pub := registry.NewPublisher(cli, lease, registry.Machine{ID: id, Health: registry.HealthHealthy}, ttl, log)
	rec, err := New(Config{MachineID: id, KV: cli, Executor: ex, Lease: lease, Interval: 500 * time.Millisecond,
		StateFile: filepath.Join(dir, "started.json"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{id: id, dir: dir, lease: lease, rec: rec, ex: ex, cancel: cancel, done: make(chan struct{})}
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); _ = pub.Run(pubCtx) }()
	go func() {
		defer close(a.done)
		_ = rec.Run(ctx)
		stopPub() // as the agent does: the lease goes only once the units are stopped
		<-pubDone
	}()
	t.Cleanup(func() {
		a.stop(t)
		_ = ex.Close(context.Background())
	})
	waitUntil(t, 10*time.Second, "lease granted", func() bool { return lease.Info().Live })
	return a
}

func (a *agent) stop(t *testing.T) {
	t.Helper()
	a.cancel()
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("agent %s did not stop", a.id)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %v", what, timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// submitFile stores a unit file's text as the engine does and returns its hash.
func submitFile(t *testing.T, cli *clientv3.Client, name, text string) unit.Hash {
	t.Helper()
	u, err := unit.Parse(name, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), keys.UnitFile(u.Hash().String()), string(u.Bytes())); err != nil {
		t.Fatal(err)
	}
	return u.Hash()
}

func place(t *testing.T, cli *clientv3.Client, machine, name string, hash unit.Hash, state unit.State, lease clientv3.LeaseID) {
	t.Helper()
	raw, _ := json.Marshal(keys.Assignment{Unit: name, Hash: hash, State: state, Lease: int64(lease)})
	if _, err := cli.Put(context.Background(), keys.Placement(machine, name), string(raw)); err != nil {
		t.Fatal(err)
	}
}

func unplace(t *testing.T, cli *clientv3.Client, machine, name string) {
	t.Helper()
	if _, err := cli.Delete(context.Background(), keys.Placement(machine, name)); err != nil {
		t.Fatal(err)
	}
}

func (a *agent) running(t *testing.T, name string) bool {
	t.Helper()
	states, err := exec.States(a.dir)
	if err != nil {
		t.Fatal(err)
	}
	return states[name].Running()
}

// report reads the unit's state as the agent reported it, with the lease it is under.
func report(t *testing.T, cli *clientv3.Client, machine, name string) (*keys.UnitReport, *clientv3.GetResponse) {
	t.Helper()
	resp, err := cli.Get(context.Background(), keys.UnitState(machine, name))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, resp
	}
	var r keys.UnitReport
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		t.Fatal(err)
	}
	return &r, resp
}

const appTemplate = "[Unit]\nDescription=my app %i\n[Service]\nExecStart=/bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 0.05; done'\n[X-Fleet]\nConflicts=my-app@*.service\n"

func TestIntegrationReconcile(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	a := startAgent(t, cli, "m1", 3*time.Second)
	lease := a.lease.Info().ID
	hash := submitFile(t, cli, "my-app@.service", appTemplate)

	t.Run("assigned: running, reported under the lease", func(t *testing.T) {
		placed := time.Now()
		place(t, cli, "m1", "my-app@1.service", hash, unit.StateLaunched, lease)
		place(t, cli, "m1", "my-app@2.service", hash, unit.StateLaunched, 0)
		waitUntil(t, 10*time.Second, "both instances running", func() bool {
			return a.running(t, "my-app@1.service") && a.running(t, "my-app@2.service")
		})
		t.Logf("placement to running processes: %v", time.Since(placed).Round(time.Millisecond))
		raw, err := os.ReadFile(filepath.Join(a.dir, "units", "my-app@.service"))
		if err != nil || !strings.Contains(string(raw), "Conflicts=my-app@*.service") {
			t.Fatalf("template file: %q %v", raw, err)
		}
		waitUntil(t, 10*time.Second, "reported active", func() bool {
			r, _ := report(t, cli, "m1", "my-app@1.service")
			return r != nil && r.ActiveState == executor.Active
		})
		waitUntil(t, 5*time.Second, "healthy", func() bool { return a.rec.Health(context.Background()) == nil })
		r, resp := report(t, cli, "m1", "my-app@1.service")
		if clientv3.LeaseID(resp.Kvs[0].Lease) != lease || r.Hash != hash || r.SubState != "running" || r.LoadState != "loaded" || r.Since.IsZero() {
			t.Errorf("report %+v under lease %x, want lease %x", r, resp.Kvs[0].Lease, lease)
		}
	})

	t.Run("reports only on change", func(t *testing.T) {
		_, before := report(t, cli, "m1", "my-app@1.service")
		time.Sleep(2 * time.Second) // four ticks and several lease renewals
		_, after := report(t, cli, "m1", "my-app@1.service")
		if before.Kvs[0].ModRevision != after.Kvs[0].ModRevision {
			t.Errorf("state rewritten without a change (revision %d, then %d)", before.Kvs[0].ModRevision, after.Kvs[0].ModRevision)
		}
	})

	t.Run("loaded: stopped, file kept", func(t *testing.T) {
		place(t, cli, "m1", "my-app@2.service", hash, unit.StateLoaded, 0)
		waitUntil(t, 10*time.Second, "stopped", func() bool { return !a.running(t, "my-app@2.service") })
		waitUntil(t, 10*time.Second, "reported inactive", func() bool {
			r, _ := report(t, cli, "m1", "my-app@2.service")
			return r != nil && r.ActiveState == executor.Inactive
		})
		if !a.running(t, "my-app@1.service") {
			t.Errorf("the other instance stopped")
		}
	})

	t.Run("unassigned: stopped, removed, report deleted", func(t *testing.T) {
		unplace(t, cli, "m1", "my-app@2.service")
		waitUntil(t, 10*time.Second, "report deleted", func() bool {
			r, _ := report(t, cli, "m1", "my-app@2.service")
			return r == nil
		})
		if _, err := os.Stat(filepath.Join(a.dir, "units", "my-app@.service")); err != nil {
			t.Errorf("template removed while an instance still needs it: %v", err)
		}
		unplaced := time.Now()
		unplace(t, cli, "m1", "my-app@1.service")
		waitUntil(t, 10*time.Second, "stopped", func() bool { return !a.running(t, "my-app@1.service") })
		t.Logf("unassignment to stopped process: %v", time.Since(unplaced).Round(time.Millisecond))
		waitUntil(t, 10*time.Second, "template removed", func() bool {
			_, err := os.Stat(filepath.Join(a.dir, "units", "my-app@.service"))
			return os.IsNotExist(err)
		})
	})

	t.Run("a crashed unit is left to its Restart=", func(t *testing.T) {
		h := submitFile(t, cli, "crash.service", "[Service]\nExecStart=/bin/sh -c 'sleep 0.3; exit 7'\n")
		place(t, cli, "m1", "crash.service", h, unit.StateLaunched, lease)
		waitUntil(t, 10*time.Second, "reported failed", func() bool {
			r, _ := report(t, cli, "m1", "crash.service")
			return r != nil && r.ActiveState == executor.Failed
		})
		time.Sleep(1500 * time.Millisecond) // three ticks
		states, _ := exec.States(a.dir)
		if s := states["crash.service"]; s.Starts != 1 || s.ActiveState != executor.Failed {
			t.Errorf("the agent restarted a failed unit: %+v", s)
		}
		if err := a.rec.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "crash.service (failed)") {
			t.Errorf("health with a failed unit: %v", err)
		}
		unplace(t, cli, "m1", "crash.service")
		waitUntil(t, 5*time.Second, "healthy again", func() bool { return a.rec.Health(context.Background()) == nil })
	})

	t.Run("a new text is applied: stop, write, start", func(t *testing.T) {
		h1 := submitFile(t, cli, "web.service", "[Service]\nEnvironment=V=1\nExecStart=/bin/sh -c 'echo $V > "+a.dir+"/web.out; exec sleep 1000'\n")
		place(t, cli, "m1", "web.service", h1, unit.StateLaunched, lease)
		waitUntil(t, 10*time.Second, "v1 running", func() bool {
			raw, _ := os.ReadFile(a.dir + "/web.out")
			return a.running(t, "web.service") && string(raw) == "1\n"
		})
		h2 := submitFile(t, cli, "web.service", "[Service]\nEnvironment=V=2\nExecStart=/bin/sh -c 'echo $V > "+a.dir+"/web.out; exec sleep 1000'\n")
		place(t, cli, "m1", "web.service", h2, unit.StateLaunched, lease)
		waitUntil(t, 10*time.Second, "v2 running", func() bool {
			raw, _ := os.ReadFile(a.dir + "/web.out")
			return a.running(t, "web.service") && string(raw) == "2\n"
		})
		waitUntil(t, 10*time.Second, "v2 reported", func() bool {
			r, _ := report(t, cli, "m1", "web.service")
			return r != nil && r.Hash == h2 && r.ActiveState == executor.Active
		})
		unplace(t, cli, "m1", "web.service")
		waitUntil(t, 10*time.Second, "stopped", func() bool { return !a.running(t, "web.service") })
	})

	t.Run("shutdown stops every unit before the lease goes", func(t *testing.T) {
		place(t, cli, "m1", "my-app@3.service", hash, unit.StateLaunched, lease)
		waitUntil(t, 10*time.Second, "running", func() bool { return a.running(t, "my-app@3.service") })
		a.stop(t)
		if a.running(t, "my-app@3.service") {
			t.Fatalf("unit still runs after the agent stopped")
		}
		waitUntil(t, 5*time.Second, "machine gone from the registry", func() bool {
			m, err := registry.Get(context.Background(), cli, "m1")
			return err == nil && m == nil
		})
	})
}

// An agent cut off from etcd stops its units before its lease can expire, and does not run
// them again under its next lease until the engine places them under that lease.
func TestIntegrationReconcileFencing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	const ttl = 4 * time.Second
	a := startAgent(t, cli, "m1", ttl)
	old := a.lease.Info().ID
	hash := submitFile(t, cli, "my-app@.service", appTemplate)
	place(t, cli, "m1", "my-app@1.service", hash, unit.StateLaunched, old)
	waitUntil(t, 10*time.Second, "running", func() bool { return a.running(t, "my-app@1.service") })

	for i := 0; i < c.Size(); i++ {
		c.Pause(i)
	}
	paused := time.Now()
	renewed := a.lease.Info().Renewed
	waitUntil(t, 2*ttl, "fenced", func() bool { return !a.running(t, "my-app@1.service") })
	stopped := time.Now()
	expiry := renewed.Add(ttl)
	t.Logf("lease renewed %v before the pause; unit stopped %v after the pause, %v before the lease could expire",
		paused.Sub(renewed).Round(time.Millisecond), stopped.Sub(paused).Round(time.Millisecond), expiry.Sub(stopped).Round(time.Millisecond))
	if !stopped.Before(expiry) {
		t.Fatalf("unit stopped at %v, after the lease could expire (%v)", stopped, expiry)
	}

	// Past the TTL: the lease is gone on the client side; etcd comes back.
	time.Sleep(time.Until(expiry.Add(time.Second)))
	for i := 0; i < c.Size(); i++ {
		c.Resume(i)
	}
	waitUntil(t, 30*time.Second, "a new lease", func() bool {
		l := a.lease.Info()
		return l.Live && l.ID != old
	})
	waitUntil(t, 10*time.Second, "the stale placement reported", func() bool {
		r, _ := report(t, cli, "m1", "my-app@1.service")
		return r != nil && strings.Contains(r.Error, "another lease")
	})
	if a.running(t, "my-app@1.service") {
		t.Fatalf("a placement made under the old lease runs under the new one")
	}
	// The engine places the unit again under the machine's new lease.
	place(t, cli, "m1", "my-app@1.service", hash, unit.StateLaunched, a.lease.Info().ID)
	waitUntil(t, 10*time.Second, "running again", func() bool { return a.running(t, "my-app@1.service") })
}
