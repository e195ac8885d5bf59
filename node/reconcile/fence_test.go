package reconcile

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/executor/exec"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// leaseSource stands for etcd's lease API: the test grants, renews and loses leases.
type leaseSource struct {
	ka chan *clientv3.LeaseKeepAliveResponse
}

func (s *leaseSource) Grant(context.Context, int64) (*clientv3.LeaseGrantResponse, error) {
	return &clientv3.LeaseGrantResponse{ID: 7, TTL: 10}, nil
}

func (s *leaseSource) KeepAlive(context.Context, clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	return s.ka, nil
}

func (s *leaseSource) Revoke(context.Context, clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	return &clientv3.LeaseRevokeResponse{}, nil
}

// The fence decision with an injected clock: with a 10 s lease and the default margin (3 s),
// units stop 7 s after the last renewal, not a moment before; a renewal moves the fence; a
// lost lease fences at once; nothing starts while fenced.
func TestFenceWithInjectedClock(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	src := &leaseSource{ka: make(chan *clientv3.LeaseKeepAliveResponse)}
	lease := registry.NewMachineLease(src, clock.Now)
	ctx := context.Background()
	if _, err := lease.Grant(ctx, 10); err != nil {
		t.Fatal(err)
	}
	kaCtx, stopKA := context.WithCancel(ctx)
	defer stopKA()
	ka, _ := lease.KeepAlive(kaCtx, 7)
	renew := func() {
		src.ka <- &clientv3.LeaseKeepAliveResponse{ID: 7, TTL: 10}
		<-ka
	}

	ex, err := exec.New(exec.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close(ctx)
	text := "[Service]\nExecStart=/bin/sleep 1000\n"
	u, _ := unit.Parse("", []byte(text))
	if err := ex.WriteFile("a.service", u.Hash(), []byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := ex.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{MachineID: "m1", KV: noKV{}, Executor: ex, Lease: lease, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	start := func() {
		t.Helper()
		if err := ex.Start(ctx, "a.service"); err != nil {
			t.Fatal(err)
		}
		r.started["a.service"] = u.Hash()
	}
	runs := func() bool {
		st, _ := ex.Status(ctx, []string{"a.service"})
		return st[0].Running()
	}
	t0 := clock.Now()
	start()

	steps := []struct {
		name   string
		at     time.Duration // after t0
		renew  bool          // a keep-alive answer arrives at that moment
		lose   bool          // the keep-alive stream ends
		runs   bool
		nextIn time.Duration // the loop's next wake-up without events (0: don't check)
	}{
		{name: "fresh lease", at: 0, runs: true, nextIn: DefaultInterval},
		{name: "just before the fence", at: 7*time.Second - time.Millisecond, runs: true, nextIn: time.Millisecond},
		{name: "renewed: the fence moves", at: 6 * time.Second, renew: true, runs: true},
		{name: "old fence passed, new one not", at: 12 * time.Second, runs: true, nextIn: time.Second},
		{name: "new fence", at: 13 * time.Second, runs: false},
	}
	for _, s := range steps {
		clock.Set(t0.Add(s.at))
		if s.renew {
			renew()
		}
		r.pass(ctx)
		if got := runs(); got != s.runs {
			t.Fatalf("%s: unit runs = %v, want %v", s.name, got, s.runs)
		}
		if s.nextIn != 0 {
			if got := r.nextWait(); got != s.nextIn {
				t.Errorf("%s: next pass in %v, want %v", s.name, got, s.nextIn)
			}
		}
	}
	if len(r.started) != 0 || !r.fenced {
		t.Fatalf("after the fence: started %v, fenced %v", r.started, r.fenced)
	}

	// Renewed again: unfenced (the pass would start what is placed; nothing is, here).
	clock.Set(t0.Add(14 * time.Second))
	renew()
	r.pass(ctx)
	if r.fenced {
		t.Errorf("still fenced after a renewal")
	}

	// A lost lease fences at once, whatever the clock says.
	start()
	stopKA()
	waitUntil(t, 5*time.Second, "lease lost", func() bool { return !lease.Info().Live })
	r.pass(ctx)
	if runs() {
		t.Fatalf("unit runs after the lease was lost")
	}
}

// noKV is never called: the test drives passes without the placement watch.
type noKV struct{ KV }
