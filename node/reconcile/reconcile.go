// Package reconcile is the agent side of kiln's scheduler: on each machine it makes the
// executor (systemd, or plain processes) run what the engine placed on the machine, and
// reports what runs.
//
// The loop runs on a tick, on changes of the machine's placements (an etcd watch of
// keys.MachineSchedule), on the executor's state changes and on lease changes. Each pass reads
// the placements, fetches the unit files it lacks by hash (keys.UnitFile), computes a sorted
// plan (Plan) and applies it, then writes each placed unit's state (keys.UnitReport) to
// keys.UnitState under the machine's registry lease, only when it changed.
//
// Self-fencing: the engine moves a machine's units only after the machine's lease has
// expired. When the agent has not seen its lease renewed for TTL less FenceMargin, it stops
// every unit it runs (SIGKILL at the latest when only a third of the margin is left), and
// starts nothing until the lease is renewed again, so that a unit never runs on two machines
// at once. A placement that carries a lease (keys.Assignment.Lease) runs only under that lease.
//
// When Run ends (kiln-node stops), every unit the agent started is stopped before Run returns,
// since the registry lease is revoked next and the engine then places the units elsewhere.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	// DefaultStopTimeout bounds the stop of every unit when kiln-node shuts down.
	DefaultStopTimeout = 30 * time.Second
	// etcdTimeout bounds each etcd call of a pass, so that a pass never blocks the fence.
	etcdTimeout = 2 * time.Second
)

// KV is what the reconciler needs of etcd (a *clientv3.Client has it).
type KV interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
	Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error)
	Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan
}

// Clock is the reconciler's time; tests drive it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config is a reconciler's settings.
type Config struct {
	MachineID string
	KV        KV
	Executor  executor.Executor
	// Lease is the machine lease, as the registry's Publisher keeps it.
	Lease *registry.MachineLease
	// Clock defaults to the real one; it must be the one Lease uses.
	Clock Clock
	// Interval is the tick (DefaultInterval when 0).
	Interval time.Duration
	// FenceMargin is how long before the lease could expire the agent stops its units
	// (default: 30% of the TTL, at least one second).
	FenceMargin time.Duration
	// StopTimeout bounds the stop of every unit at shutdown (DefaultStopTimeout when 0).
	StopTimeout time.Duration
	// StateFile, when set, records the units the agent started, so that after a restart of
	// kiln-node it stops those no longer placed on the machine.
	StateFile string
	Log       *slog.Logger
}

// Reconciler is one machine's agent.
type Reconciler struct {
	c   Config
	log *slog.Logger

	wake chan struct{}

	mu       sync.Mutex
	assigned map[string]keys.Assignment // the machine's placements, from etcd
	synced   bool                       // assigned was read at least once
	passed   bool                       // a pass ran with the placements
	unwell   []string                   // launched units that do not run, as of the last pass
	launched []string                   // units placed here to run, as of the last pass

	// Owned by the loop goroutine.
	started  map[string]unit.Hash
	texts    map[unit.Hash][]byte
	reported map[string]string // unit → JSON written
	repLease clientv3.LeaseID  // lease the reports were written under
	since    map[string]sinceState
	errs     map[string]string
	fenced   bool
	// uncertain are starts that returned an error after which the unit may run anyway (a
	// timeout): they count as started until a status shows the unit not running.
	uncertain map[string]bool
}

type sinceState struct {
	active string
	at     time.Time
}

// New returns a reconciler.
func New(c Config) (*Reconciler, error) {
	if c.MachineID == "" || c.KV == nil || c.Executor == nil || c.Lease == nil {
		return nil, errors.New("reconcile: machine ID, etcd, executor and lease are required")
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		c: c, log: log, wake: make(chan struct{}, 1), assigned: map[string]keys.Assignment{},
		started: map[string]unit.Hash{}, texts: map[unit.Hash][]byte{}, reported: map[string]string{},
		since: map[string]sinceState{}, errs: map[string]string{}, uncertain: map[string]bool{},
	}
	r.loadStarted()
	return r, nil
}

// Wake asks for a pass soon.
func (r *Reconciler) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends, then stops every unit it started and returns. Its
// goroutines (the placement watch, the executor watch, the loop) all end with ctx.
func (r *Reconciler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.watchSchedule(ctx) }()
	go func() { defer wg.Done(); r.watchExecutor(ctx) }()
	r.loop(ctx)
	wg.Wait()
	r.stopAll(context.WithoutCancel(ctx), "shutdown", r.c.StopTimeout)
	return nil
}

func (r *Reconciler) loop(ctx context.Context) {
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-r.c.Lease.Changes():
		case <-r.c.Clock.After(r.nextWait()):
		}
	}
}

// nextWait is the time to the next pass without a wake-up: the tick, or the fence when it
// comes first, or a short retry when a fence could not stop everything.
func (r *Reconciler) nextWait() time.Duration {
	wait := r.c.Interval
	if len(r.started) == 0 {
		return wait
	}
	l := r.c.Lease.Info()
	now := r.c.Clock.Now()
	if !r.leaseOK(l, now) {
		return min(wait, 250*time.Millisecond)
	}
	return min(wait, max(r.fenceAt(l).Sub(now), time.Millisecond))
}

// fenceAt is when the agent must have stopped everything: the lease's last renewal plus its
// TTL less the margin.
func (r *Reconciler) fenceAt(l registry.LeaseInfo) time.Time {
	return l.Renewed.Add(l.TTL - r.margin(l))
}

func (r *Reconciler) margin(l registry.LeaseInfo) time.Duration {
	if r.c.FenceMargin > 0 {
		return r.c.FenceMargin
	}
	return max(l.TTL*3/10, time.Second)
}

// leaseOK tells whether units may run: the lease is live and was renewed recently enough.
func (r *Reconciler) leaseOK(l registry.LeaseInfo, now time.Time) bool {
	return l.Live && l.ID != 0 && now.Before(r.fenceAt(l))
}

func (r *Reconciler) pass(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	l := r.c.Lease.Info()
	now := r.c.Clock.Now()
	if !r.leaseOK(l, now) {
		if len(r.started) > 0 {
			// Stop before the lease can expire: SIGKILL when a third of the margin is left.
			var budget time.Duration
			if l.ID != 0 {
				budget = l.Renewed.Add(l.TTL - r.margin(l)/3).Sub(now)
			}
			if l.ID == 0 {
				r.log.Info("no machine lease yet: stopping the units a previous run started")
			} else {
				r.log.Warn("lease not renewed: fencing, stopping every unit", "lease", fmt.Sprintf("%x", l.ID),
					"live", l.Live, "renewed", l.Renewed, "ttl", l.TTL)
			}
			r.stopAll(ctx, "fence", max(budget, 100*time.Millisecond))
			r.fenced = true
		}
		return
	}
	// Every call of the pass ends at the fence: a start that would run past it is cut short
	// (the next pass fences).
	ctx, cancel := context.WithDeadline(ctx, r.fenceAt(l))
	defer cancel()
	if r.fenced {
		r.log.Info("lease renewed: running units again", "lease", fmt.Sprintf("%x", l.ID))
		r.fenced = false
	}
	r.mu.Lock()
	synced := r.synced
	assigned := make(map[string]keys.Assignment, len(r.assigned))
	for n, a := range r.assigned {
		assigned[n] = a
	}
	r.mu.Unlock()
	if !synced {
		return // nothing known yet: do not stop what may be wanted
	}

	want := map[string]Want{}
	notes := map[string]string{} // this pass's reasons for leaving a unit alone
	for n, a := range assigned {
		if a.Lease != 0 && clientv3.LeaseID(a.Lease) != l.ID {
			notes[n] = "placed under another lease of the machine: waiting for the engine"
			continue
		}
		if !a.State.Scheduled() {
			continue
		}
		want[n] = Want{Hash: a.Hash, Launch: a.State == unit.StateLaunched}
	}
	files, err := r.c.Executor.Files()
	if err != nil {
		r.log.Warn("executor: listing unit files", "err", err)
		return
	}
	// Fetch the texts the plan will write; a unit whose text cannot be had is held.
	hold := map[string]bool{}
	for n, w := range want {
		if files[fileOf(n)] == w.Hash {
			continue
		}
		if _, err := r.text(ctx, w.Hash); err != nil {
			hold[n] = true
			notes[n] = err.Error()
			r.log.Warn("unit file unavailable", "unit", n, "hash", w.Hash.Short(), "err", err)
		}
	}
	names := r.names(want)
	sctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	statuses, err := r.c.Executor.Status(sctx, names)
	cancel()
	if err != nil {
		r.log.Warn("executor: unit states", "err", err)
		return
	}
	cur := Current{Files: files, Started: r.started, Status: map[string]executor.Status{}}
	for _, st := range statuses {
		cur.Status[st.Name] = st
		if r.uncertain[st.Name] {
			delete(r.uncertain, st.Name)
			if !st.Running() {
				delete(r.started, st.Name) // the start did not happen: try again
			}
		}
	}
	for _, a := range Plan(want, cur, hold) {
		r.apply(ctx, a)
	}
	r.report(ctx, l, assigned, want, notes)
	var unwell, launched []string
	for _, n := range names {
		w, ok := want[n]
		if !ok || !w.Launch {
			continue
		}
		launched = append(launched, n)
		switch st, seen := cur.Status[n]; {
		case hold[n] || notes[n] != "":
			unwell = append(unwell, n+" (held)")
		case r.started[n] != w.Hash:
			unwell = append(unwell, n+" (not started)")
		case seen && st.ActiveState == executor.Failed:
			unwell = append(unwell, n+" (failed)")
		}
	}
	r.mu.Lock()
	r.passed, r.unwell, r.launched = true, unwell, launched
	r.mu.Unlock()
}

// Launched returns the units placed on the machine to run, as of the last pass, sorted.
func (r *Reconciler) Launched() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.launched)
}

// Health tells whether the units placed on the machine to run do: an error names those that
// failed or were not started (as of the last pass), or says that no pass has run yet while
// etcd is reachable. The reboot coordinator releases a reboot slot only once it is nil.
func (r *Reconciler) Health(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.passed {
		if r.c.Lease.Info().Live {
			return errors.New("units: placements not reconciled yet")
		}
		return nil
	}
	if len(r.unwell) > 0 {
		return fmt.Errorf("units not running: %s", strings.Join(r.unwell, ", "))
	}
	return nil
}

// names are the units the pass looks at: wanted and started, sorted.
func (r *Reconciler) names(want map[string]Want) []string {
	set := map[string]bool{}
	for n := range want {
		set[n] = true
	}
	for n := range r.started {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// apply carries out one action, logging it once (done or failed).
func (r *Reconciler) apply(ctx context.Context, a Action) {
	var err error
	switch a.Kind {
	case Stop:
		sctx, cancel := context.WithTimeout(ctx, r.c.StopTimeout)
		err = r.c.Executor.Stop(sctx, a.Name)
		cancel()
		if err == nil {
			delete(r.started, a.Name)
			_ = r.saveStarted() // logged
		}
	case Remove:
		err = r.c.Executor.RemoveFile(a.Name)
	case Write:
		var text []byte
		if text, err = r.text(ctx, a.Hash); err == nil {
			err = r.c.Executor.WriteFile(a.Name, a.Hash, text)
		}
	case Reload:
		err = r.c.Executor.Reload(ctx)
	case Adopt:
		r.started[a.Name] = a.Hash
		_ = r.saveStarted() // logged
	case Start:
		// Counted as started before the call, so that a fence stops it whatever happens; not
		// started at all when that cannot be recorded (a restarted daemon would not know it).
		r.started[a.Name] = a.Hash
		if err = r.saveStarted(); err != nil {
			delete(r.started, a.Name)
			break
		}
		err = r.c.Executor.Start(ctx, a.Name)
		switch {
		case err == nil, errors.Is(err, executor.ErrJobFailed):
			// Started, though maybe failed: its Restart= decides what comes next, not kiln.
		case errors.Is(err, executor.ErrNotFound), errors.Is(err, executor.ErrName), errors.Is(err, executor.ErrBadSetting),
			errors.Is(err, executor.ErrUnsupported):
			delete(r.started, a.Name) // nothing was started
			_ = r.saveStarted()       // logged
		default:
			r.uncertain[a.Name] = true // may run: the next status tells
		}
	}
	if err != nil {
		if a.Kind == Start || a.Kind == Stop {
			r.errs[a.Name] = err.Error()
		}
		r.log.Warn("unit action failed", "action", string(a.Kind), "name", a.Name, "err", err)
		return
	}
	if a.Kind == Start || a.Kind == Stop {
		delete(r.errs, a.Name)
	}
	r.log.Info("unit action done", "action", string(a.Kind), "name", a.Name, "hash", a.Hash.Short())
}

// text returns a unit file's text by hash, from the cache or etcd, checked against its hash.
func (r *Reconciler) text(ctx context.Context, h unit.Hash) ([]byte, error) {
	if t, ok := r.texts[h]; ok {
		return t, nil
	}
	gctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := r.c.KV.Get(gctx, keys.UnitFile(h.String()))
	if err != nil {
		return nil, fmt.Errorf("fetch unit file %s: %w", h.Short(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("unit file %s: not in etcd", h.Short())
	}
	raw := resp.Kvs[0].Value
	u, err := unit.Parse("", raw)
	if err != nil {
		return nil, fmt.Errorf("unit file %s: %w", h.Short(), err)
	}
	if u.Hash() != h {
		return nil, fmt.Errorf("unit file %s: text has hash %s", h.Short(), u.Hash().Short())
	}
	r.texts[h] = raw
	return raw, nil
}

// stopAll stops every unit the agent started, all at once, within budget.
func (r *Reconciler) stopAll(ctx context.Context, why string, budget time.Duration) {
	if len(r.started) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := map[string]bool{}
	for n := range r.started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.c.Executor.Stop(sctx, n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.log.Error("unit stop failed", "why", why, "unit", n, "err", err)
				return
			}
			stopped[n] = true
			r.log.Info("unit stopped", "why", why, "unit", n)
		}()
	}
	wg.Wait()
	for n := range stopped {
		delete(r.started, n)
		delete(r.uncertain, n)
	}
	_ = r.saveStarted() // logged
}

// report writes the state of every placed unit under the lease, when it changed, and deletes
// the reports of units no longer placed.
func (r *Reconciler) report(ctx context.Context, l registry.LeaseInfo, assigned map[string]keys.Assignment, want map[string]Want, notes map[string]string) {
	names := make([]string, 0, len(assigned))
	for n := range assigned {
		names = append(names, n)
	}
	sort.Strings(names)
	sctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	statuses, err := r.c.Executor.Status(sctx, names)
	cancel()
	if err != nil {
		return
	}
	if r.repLease != l.ID {
		r.reported, r.repLease = map[string]string{}, l.ID // the old lease took its keys with it
	}
	now := r.c.Clock.Now()
	for _, st := range statuses {
		a := assigned[st.Name]
		s := r.since[st.Name]
		if s.active != st.ActiveState || s.at.IsZero() {
			s = sinceState{active: st.ActiveState, at: now}
			r.since[st.Name] = s
		}
		msg := notes[st.Name]
		if msg == "" {
			msg = r.errs[st.Name]
		}
		rep := keys.UnitReport{Unit: st.Name, Hash: a.Hash, LoadState: st.LoadState, ActiveState: st.ActiveState,
			SubState: st.SubState, Since: s.at.UTC(), Error: msg}
		if _, ok := want[st.Name]; !ok && msg == "" {
			continue // inactive placement: nothing to say
		}
		raw, _ := json.Marshal(rep)
		if r.reported[st.Name] == string(raw) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		_, err := r.c.KV.Put(pctx, keys.UnitState(r.c.MachineID, st.Name), string(raw), clientv3.WithLease(l.ID))
		cancel()
		if err != nil {
			r.log.Warn("unit state not reported", "unit", st.Name, "err", err)
			return // etcd is away: the next pass tries again
		}
		r.reported[st.Name] = string(raw)
	}
	for n := range r.reported {
		if _, ok := assigned[n]; ok {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		_, err := r.c.KV.Delete(dctx, keys.UnitState(r.c.MachineID, n))
		cancel()
		if err != nil {
			return
		}
		delete(r.reported, n)
		delete(r.since, n)
		delete(r.errs, n)
	}
	for n := range r.errs {
		if _, ok := assigned[n]; !ok {
			delete(r.errs, n)
		}
	}
}

// watchSchedule keeps r.assigned equal to the machine's placements: a read, then a watch from
// the read's revision; it reads again when the watch breaks (etcd away, compaction).
func (r *Reconciler) watchSchedule(ctx context.Context) {
	prefix := keys.MachineSchedule(r.c.MachineID)
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		if err := r.syncSchedule(ctx, prefix); err != nil && ctx.Err() == nil {
			r.log.Debug("placements: watch broken", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (r *Reconciler) syncSchedule(ctx context.Context, prefix string) error {
	gctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	resp, err := r.c.KV.Get(gctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return err
	}
	fresh := map[string]keys.Assignment{}
	for _, kv := range resp.Kvs {
		if n, a, ok := r.parseAssignment(prefix, kv.Key, kv.Value); ok {
			fresh[n] = a
		}
	}
	r.mu.Lock()
	r.assigned, r.synced = fresh, true
	r.mu.Unlock()
	r.Wake()
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	for wr := range r.c.KV.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		r.mu.Lock()
		for _, ev := range wr.Events {
			name := strings.TrimPrefix(string(ev.Kv.Key), prefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(r.assigned, name)
				continue
			}
			if n, a, ok := r.parseAssignment(prefix, ev.Kv.Key, ev.Kv.Value); ok {
				r.assigned[n] = a
			} else {
				delete(r.assigned, name)
			}
		}
		r.mu.Unlock()
		r.Wake()
	}
	return ctx.Err()
}

func (r *Reconciler) parseAssignment(prefix string, key, val []byte) (string, keys.Assignment, bool) {
	name := strings.TrimPrefix(string(key), prefix)
	var a keys.Assignment
	if err := json.Unmarshal(val, &a); err != nil {
		r.log.Warn("placement unreadable", "key", string(key), "err", err)
		return "", a, false
	}
	if a.Unit == "" {
		a.Unit = name
	}
	if a.Unit != name || unit.ValidateName(name) != nil {
		r.log.Warn("placement does not match its key", "key", string(key), "unit", a.Unit)
		return "", a, false
	}
	return name, a, true
}

// watchExecutor wakes the loop on the executor's state changes, watching again when the
// executor's watch fails.
func (r *Reconciler) watchExecutor(ctx context.Context) {
	for ctx.Err() == nil {
		if err := r.c.Executor.Watch(ctx, r.Wake); err != nil {
			r.log.Warn("executor: watch failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

type startedFile struct {
	Started map[string]unit.Hash `json:"started"`
}

func (r *Reconciler) loadStarted() {
	if r.c.StateFile == "" {
		return
	}
	raw, err := os.ReadFile(r.c.StateFile)
	if err != nil {
		return
	}
	var f startedFile
	if json.Unmarshal(raw, &f) == nil && f.Started != nil {
		r.started = f.Started
	}
}

// saveStarted records the units started here (the file decides what a restarted daemon stops),
// atomically and durably; a failure is logged and returned.
func (r *Reconciler) saveStarted() error {
	if r.c.StateFile == "" {
		return nil
	}
	raw, err := json.Marshal(startedFile{Started: r.started})
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(r.c.StateFile), 0o700); err == nil {
			err = atomicfile.Write(r.c.StateFile, raw, 0o600)
		}
	}
	if err != nil {
		err = fmt.Errorf("record the started units in %s: %w", r.c.StateFile, err)
		r.log.Error("started units not recorded", "file", r.c.StateFile, "err", err)
	}
	return err
}
