// Package engine is kiln's scheduler engine: one per cluster at a time, chosen by etcd leader
// election among every kiln-node. The leader reads the cluster from etcd (submitted units,
// their files, the machine registry, the current placements and what the agents report),
// computes the placements with schedule.Place and writes the difference as compare-and-swap
// transactions, many operations per transaction and several transactions in flight. After
// that first plan, and between the ticks that plan everything again, it plans only the units
// that each change concerns (incremental.go), so that a change costs the same in a cluster of
// any size. It keeps nothing on disk: a new leader, or the same one after a restart, reads
// everything again.
//
// The rules that keep a unit from running twice:
//   - every write is fenced by the leader's election key (a deposed leader's writes fail) and
//     compares the key's mod revision, or its absence;
//   - a machine's units are placed elsewhere only once its registry entry is gone, that is once
//     its lease expired (its agent stopped them before, when it could not renew the lease);
//   - a unit that an agent still reports active somewhere is not placed on another machine
//     until that report goes away (a move between live machines waits for the stop);
//   - every placement carries the machine's lease (keys.Assignment.Lease): an agent runs it only
//     under that lease.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-cluster/kiln/node/keys"
)

// Defaults of the engine.
const (
	// DefaultSessionTTL is the election session's lease: a leader that dies is replaced
	// within this long.
	DefaultSessionTTL = 3 * time.Second
	// DefaultInterval is how often the leader reconciles without being woken by a change.
	DefaultInterval = 30 * time.Second
	// DefaultSettle is how long the leader waits for more changes after one arrives, so that
	// a burst is planned once.
	DefaultSettle = 20 * time.Millisecond
	// DefaultBatch is the number of keys written per transaction (etcd allows 128 operations
	// per transaction by default; one compare goes to the leader's fence).
	DefaultBatch = 127
	// DefaultInFlight is the number of transactions in flight at once.
	DefaultInFlight = 32
)

// Clock gives timers; tests inject their own.
type Clock interface {
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config are the engine's settings.
type Config struct {
	Client *clientv3.Client
	// ID is this candidate's name in the election (its machine ID).
	ID         string
	SessionTTL time.Duration
	Interval   time.Duration
	Settle     time.Duration
	Batch      int
	InFlight   int
	Clock      Clock
	Log        *slog.Logger
	// MachineLease, when set, gives the machine's registry lease and whether it is live: the
	// engine campaigns under it instead of a lease of its own, so that a candidate costs etcd
	// no keep-alive of its own and the engine goes with its machine. A new leader then takes
	// over within the machine lease's TTL.
	MachineLease func() (clientv3.LeaseID, bool)
	// OnLead is called (if set) with true when this engine becomes the leader and false when
	// it stops being the leader.
	OnLead func(leading bool)
	// OnReconciled is called (if set) after each pass of planning and writing, with the number
	// of keys written and the pass's error: benchmarks see when a new leader has caught up.
	OnReconciled func(written int, err error)
}

// Engine runs the election and, while it leads, the reconcile loop.
type Engine struct {
	c   Config
	log *slog.Logger
}

// New returns an engine with c's settings, defaults filled in.
func New(c Config) *Engine {
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Settle <= 0 {
		c.Settle = DefaultSettle
	}
	if c.Batch <= 0 || c.Batch > DefaultBatch {
		c.Batch = DefaultBatch
	}
	if c.InFlight <= 0 {
		c.InFlight = DefaultInFlight
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return &Engine{c: c, log: c.Log.With("component", "engine")}
}

// errResync asks the loop to read the cluster again (a compare failed or a watch broke).
var errResync = errors.New("resync")

// errDeposed means another engine leads now.
var errDeposed = errors.New("no longer the leader")

// Run campaigns and leads until ctx ends, campaigning again whenever the session is lost; it
// returns nil when ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := e.term(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = 250 * time.Millisecond // a long term: the trouble is new
		}
		if err != nil {
			e.log.Warn("engine term ended", "err", err)
		} else {
			// the session's lease ended (the registry says why): campaign again under the next
			e.log.Info("engine term ended with the machine's lease, campaigning again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.c.Clock.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// term is one session: campaign, then lead until the session or leadership is lost.
func (e *Engine) term(ctx context.Context) error {
	sess, err := e.session(ctx)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if e.c.MachineLease != nil {
		defer sess.Orphan() // the lease is the machine's: its registry entry lives on
	} else {
		defer sess.Close() // revokes the lease: the next candidate takes over at once
	}
	el := concurrency.NewElection(sess, keys.Election)
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
		case <-cctx.Done():
		}
		cancel()
	}()
	defer cancel()
	if err := campaign(cctx, el, e.c.ID); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	e.log.Info("engine leading", "key", el.Key(), "rev", el.Rev())
	leading.Set(1)
	defer leading.Set(0)
	if e.c.OnLead != nil {
		e.c.OnLead(true)
		defer e.c.OnLead(false)
	}
	fence := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	err = e.lead(cctx, fence, el.Key())
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = el.Resign(rctx)
	rcancel()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// campaign is el.Campaign bounded by ctx. When ctx ends while it waits, etcd's Campaign
// resigns with the client's own context, which only the client's Close ends: with etcd gone at
// that moment (a reboot stops etcd and kiln-node together) it would never return. So the call
// runs apart and is left behind when ctx ends; it returns when the daemon closes the client.
func campaign(ctx context.Context, el *concurrency.Election, id string) error {
	done := make(chan error, 1)
	go func() { done <- el.Campaign(ctx, id) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// session is the election's session: under the machine's lease (waiting until it is live), or
// under a lease of SessionTTL.
func (e *Engine) session(ctx context.Context) (*concurrency.Session, error) {
	if e.c.MachineLease == nil {
		ttl := int(e.c.SessionTTL.Round(time.Second) / time.Second)
		return concurrency.NewSession(e.c.Client, concurrency.WithTTL(max(ttl, 1)), concurrency.WithContext(ctx))
	}
	for {
		if id, live := e.c.MachineLease(); live && id != clientv3.NoLease {
			return concurrency.NewSession(e.c.Client, concurrency.WithLease(id), concurrency.WithContext(ctx))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.c.Clock.After(100 * time.Millisecond):
		}
	}
}

// lead reconciles until ctx ends or leadership is lost.
func (e *Engine) lead(ctx context.Context, fence clientv3.Cmp, leaderKey string) error {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := e.leadOnce(ctx, fence, leaderKey)
		if !errors.Is(err, errResync) {
			return err
		}
		// read the cluster again; back off when that keeps happening
		if time.Since(started) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		e.log.Debug("engine reads the cluster again", "after", backoff)
		select {
		case <-ctx.Done():
		case <-e.c.Clock.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

// leadOnce reads the cluster, then reconciles on changes and ticks until something asks for a
// full read again.
func (e *Engine) leadOnce(ctx context.Context, fence clientv3.Cmp, leaderKey string) error {
	start := time.Now()
	st, err := load(ctx, e.c.Client)
	if err != nil {
		return fmt.Errorf("read cluster: %w", err)
	}
	e.log.Info("engine read the cluster", "units", len(st.units), "machines", len(st.machines), "rev", st.rev,
		"took", time.Since(start).Round(time.Millisecond))
	if !st.election[leaderKey] {
		return errDeposed
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := e.c.Client.Watch(wctx, keys.Prefix, clientv3.WithPrefix(), clientv3.WithRev(st.rev+1))
	tick := e.c.Clock.After(e.c.Interval)
	for {
		if err := e.reconcile(ctx, st, fence); err != nil {
			return err
		}
		// wait for a change that matters, or the tick (which plans whatever happened)
		for !st.dirty {
			select {
			case <-ctx.Done():
				return nil
			case <-tick:
				tick = e.c.Clock.After(e.c.Interval)
				st.dirty = true
				st.inc.full = true // the safety net: a full plan now and then
			case resp, ok := <-events:
				if err := st.applyWatch(resp, ok, leaderKey); err != nil {
					return err
				}
			}
		}
		// settle: take every change that follows closely
		for settled := false; !settled; {
			select {
			case <-ctx.Done():
				return nil
			case resp, ok := <-events:
				if err := st.applyWatch(resp, ok, leaderKey); err != nil {
					return err
				}
			case <-e.c.Clock.After(e.c.Settle):
				settled = true
			}
		}
	}
}

// reconcile plans and applies; it returns errResync when a write's compare failed.
func (e *Engine) reconcile(ctx context.Context, st *state, fence clientv3.Cmp) error {
	start := time.Now()
	st.dirty = false
	first, second, sum := st.plan()
	planned := time.Since(start)
	kind := "incremental"
	if sum.full {
		kind = "full"
	}
	plans.WithLabelValues(kind).Observe(planned.Seconds())
	unplacedUnits.Set(float64(sum.reasons))
	if len(first)+len(second) == 0 {
		if e.c.OnReconciled != nil {
			e.c.OnReconciled(0, nil)
		}
		return nil
	}
	n := 0
	var err error
	for _, ops := range [][]op{first, second} {
		var results []written
		results, err = e.apply(ctx, ops, fence)
		for _, r := range results {
			st.applyWritten(r)
		}
		n += len(results)
		if err != nil {
			break
		}
	}
	if err == nil {
		st.dirty = false // the engine's own writes need no new plan
		writes.WithLabelValues("schedule").Add(float64(sum.schedule))
		writes.WithLabelValues("unschedule").Add(float64(sum.unschedule))
		writes.WithLabelValues("update").Add(float64(sum.update))
		writes.WithLabelValues("unplaced").Add(float64(sum.unplaced))
		writes.WithLabelValues("file-removal").Add(float64(sum.files))
	} else if errors.Is(err, errResync) {
		conflicts.Inc()
	}
	e.log.Info("engine applied", "schedule", sum.schedule, "unschedule", sum.unschedule, "update", sum.update,
		"unplaced", sum.unplaced, "files", sum.files, "full", sum.full, "written", n, "plan", planned.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond), "err", err)
	if e.c.OnReconciled != nil {
		e.c.OnReconciled(n, err)
	}
	return err
}

// written is one operation that etcd accepted, at revision rev.
type written struct {
	op  op
	rev int64
}

// apply writes ops in transactions of Batch operations, InFlight at a time. It returns what was
// written and errResync if a compare failed (errDeposed if the fence did).
func (e *Engine) apply(ctx context.Context, ops []op, fence clientv3.Cmp) ([]written, error) {
	type chunk struct {
		ops  []op
		rev  int64
		fail bool
	}
	// etcd takes at most 128 compares and 128 operations per transaction (its default
	// --max-txn-ops): one compare is the fence, each op has one or two
	var chunks []*chunk
	for start := 0; start < len(ops); {
		end, cmps := start, 1
		for end < len(ops) && end-start < e.c.Batch {
			n := 1
			if ops[end].guard != nil {
				n++
			}
			if cmps+n > DefaultBatch+1 {
				break
			}
			cmps += n
			end++
		}
		chunks = append(chunks, &chunk{ops: ops[start:end]})
		start = end
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.c.InFlight)
	for _, c := range chunks {
		g.Go(func() error {
			cmps := make([]clientv3.Cmp, 0, len(c.ops)+1)
			puts := make([]clientv3.Op, 0, len(c.ops))
			cmps = append(cmps, fence)
			for _, o := range c.ops {
				if o.rev == 0 {
					cmps = append(cmps, clientv3.Compare(clientv3.Version(o.key), "=", 0))
				} else {
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(o.key), "=", o.rev))
				}
				if o.guard != nil {
					cmps = append(cmps, *o.guard)
				}
				if o.del {
					puts = append(puts, clientv3.OpDelete(o.key))
				} else {
					puts = append(puts, clientv3.OpPut(o.key, o.val))
				}
			}
			resp, err := e.c.Client.Txn(gctx).If(cmps...).Then(puts...).Commit()
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				c.fail = true
				return nil
			}
			c.rev = resp.Header.Revision
			return nil
		})
	}
	err := g.Wait()
	var out []written
	failed := false
	for _, c := range chunks {
		if c.fail {
			failed = true
		}
		if c.rev == 0 {
			continue
		}
		for _, o := range c.ops {
			out = append(out, written{op: o, rev: c.rev})
		}
	}
	if err != nil {
		return out, err
	}
	if failed {
		return out, errResync
	}
	return out, nil
}

// Leader returns the ID of the engine that leads now, "" when none does.
func Leader(ctx context.Context, kv clientv3.KV) (string, error) {
	resp, err := kv.Get(ctx, keys.Election+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

func decode[T any](raw []byte) (T, error) {
	var v T
	err := json.Unmarshal(raw, &v)
	return v, err
}

func encode(v any) (string, error) {
	raw, err := json.Marshal(v)
	return string(raw), err
}
