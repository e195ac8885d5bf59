package reboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/node/lock"
)

// memLocker applies the pure lock rules to semaphores in memory.
type memLocker struct {
	mu     sync.Mutex
	sems   map[string]*lock.Semaphore
	policy lock.Policy
	err    error // returned by every call when set (etcd down)
}

func (m *memLocker) sem(group string) *lock.Semaphore {
	if m.sems == nil {
		m.sems = map[string]*lock.Semaphore{}
	}
	if m.sems[group] == nil {
		m.sems[group] = lock.NewSemaphore(1)
	}
	return m.sems[group]
}

func (m *memLocker) Lock(_ context.Context, group, id, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	_, err := m.policy.Acquire(m.sem(group), group, id)
	return err
}

func (m *memLocker) Unlock(_ context.Context, group, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.sem(group).Unlock(id)
	return nil
}

func (m *memLocker) Holding(_ context.Context, group, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	return m.sem(group).Holds(id), nil
}

type countRebooter struct{ n int }

func (r *countRebooter) Reboot(context.Context) error { r.n++; return nil }

type machine struct {
	t        *testing.T
	dir      string
	locker   *memLocker
	rebooter *countRebooter
	health   error
}

func (m *machine) file() string { return filepath.Join(m.dir, "reboot-required") }

func (m *machine) coordinator(strategy, boot string) *Coordinator {
	m.t.Helper()
	c, err := New(Config{
		Strategy: strategy, MachineID: "m1", BootID: boot, Locker: m.locker,
		Needers: []Needer{RebootRequiredFile(m.file())}, Rebooter: m.rebooter,
		State:  StateFileIn(m.dir),
		Health: func(context.Context) error { return m.health },
	})
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

func newMachine(t *testing.T) *machine {
	return &machine{t: t, dir: t.TempDir(), locker: &memLocker{}, rebooter: &countRebooter{}}
}

func step(t *testing.T, c *Coordinator) {
	t.Helper()
	if err := c.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCoordinatorEtcdLock(t *testing.T) {
	m := newMachine(t)
	c := m.coordinator(StrategyEtcdLock, "boot-1")
	step(t, c)
	if m.rebooter.n != 0 {
		t.Fatal("rebooted with nothing asking")
	}
	os.WriteFile(m.file(), nil, 0o644)
	step(t, c)
	step(t, c)
	if m.rebooter.n != 1 || !m.locker.sem("default").Holds("m1") || c.status != StatusRebooting {
		t.Fatalf("after a need: %d reboots, holders %v, status %q", m.rebooter.n, m.locker.sem("default").Holders, c.status)
	}
	// The daemon restarts before the machine went down: it asks again, keeping its slot.
	step(t, m.coordinator(StrategyEtcdLock, "boot-1"))
	if m.rebooter.n != 2 {
		t.Fatalf("restarted daemon: %d reboots, want 2", m.rebooter.n)
	}
	// Back with a new boot ID but unhealthy: the slot stays held.
	os.Remove(m.file())
	m.health = errors.New("units not running")
	after := m.coordinator(StrategyEtcdLock, "boot-2")
	if err := after.Step(context.Background()); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("unhealthy: %v", err)
	}
	if !m.locker.sem("default").Holds("m1") {
		t.Fatal("released while unhealthy")
	}
	// etcd down: nothing changes, an error to back off on.
	m.health = nil
	m.locker.err = errors.New("etcd down")
	if err := after.Step(context.Background()); err == nil {
		t.Fatal("no error with etcd down")
	}
	m.locker.err = nil
	step(t, after)
	if m.locker.sem("default").Holds("m1") || m.rebooter.n != 2 {
		t.Fatalf("healthy after the reboot: holders %v, %d reboots", m.locker.sem("default").Holders, m.rebooter.n)
	}
	if st, _ := StateFileIn(m.dir).Load(); st.PendingBoot != "" {
		t.Fatalf("state left: %+v", st)
	}
}

func TestCoordinatorWaitsForASlot(t *testing.T) {
	m := newMachine(t)
	m.locker.Lock(context.Background(), "default", "other", "")
	os.WriteFile(m.file(), nil, 0o644)
	c := m.coordinator(StrategyEtcdLock, "boot-1")
	step(t, c)
	if m.rebooter.n != 0 || c.status != StatusWaiting {
		t.Fatalf("busy: %d reboots, status %q", m.rebooter.n, c.status)
	}
	m.locker.Unlock(context.Background(), "default", "other")
	step(t, c)
	if m.rebooter.n != 1 {
		t.Fatalf("slot freed: %d reboots", m.rebooter.n)
	}
}

func TestCoordinatorWindowWithClock(t *testing.T) {
	m := newMachine(t)
	w, _ := lock.ParseWindow("Sun 04:00", "1h")
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC) // Sunday 03:00
	m.locker.policy = lock.Policy{Groups: map[string]lock.Group{"default": {Max: 1, Window: w}}, Now: func() time.Time { return now }}
	os.WriteFile(m.file(), nil, 0o644)
	c := m.coordinator(StrategyEtcdLock, "boot-1")
	step(t, c)
	if m.rebooter.n != 0 {
		t.Fatal("rebooted before the window")
	}
	now = now.Add(90 * time.Minute)
	step(t, c)
	if m.rebooter.n != 1 {
		t.Fatal("no reboot inside the window")
	}
}

func TestCoordinatorReleasesAStaleSlot(t *testing.T) {
	m := newMachine(t)
	m.locker.Lock(context.Background(), "default", "m1", "")
	step(t, m.coordinator(StrategyEtcdLock, "boot-1"))
	if m.locker.sem("default").Holds("m1") {
		t.Fatal("a slot held with no reboot pending was kept")
	}
}

func TestCoordinatorSlotTakenAway(t *testing.T) {
	m := newMachine(t)
	os.WriteFile(m.file(), nil, 0o644)
	step(t, m.coordinator(StrategyEtcdLock, "boot-1"))
	m.locker.Unlock(context.Background(), "default", "m1") // kiln ctl unlock
	m.locker.Lock(context.Background(), "default", "other", "")
	c := m.coordinator(StrategyEtcdLock, "boot-1")
	step(t, c)
	if st, _ := StateFileIn(m.dir).Load(); st.PendingBoot != "" || m.rebooter.n != 1 {
		t.Fatalf("slot taken away: state %+v, %d reboots", st, m.rebooter.n)
	}
	step(t, c)
	if m.rebooter.n != 1 || c.status != StatusWaiting {
		t.Fatalf("waits again: %d reboots, status %q", m.rebooter.n, c.status)
	}
}

func TestCoordinatorOtherStrategies(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		reboots  int
		status   string
	}{
		{StrategyReboot, 1, StatusRebooting},
		{StrategyOff, 0, StatusNeeded},
		{StrategyFleetLock, 0, StatusNeeded},
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			m := newMachine(t)
			os.WriteFile(m.file(), nil, 0o644)
			c := m.coordinator(tc.strategy, "boot-1")
			step(t, c)
			step(t, c)
			if m.rebooter.n != tc.reboots || c.status != tc.status || len(m.locker.sem("default").Holders) != 0 {
				t.Fatalf("%d reboots, status %q, holders %v", m.rebooter.n, c.status, m.locker.sem("default").Holders)
			}
		})
	}
	if _, err := New(Config{Strategy: "sometimes", MachineID: "m", BootID: "b"}); !errors.Is(err, ErrUnknownStrategy) {
		t.Fatalf("unknown strategy: %v", err)
	}
}

// A machine back from a reboot keeps its slot until the units it ran before run again (on the
// machines they moved to), so that the next reboot cannot take down the last instance of a
// service; past UnitsWait it releases anyway.
func TestCoordinatorWaitsForItsUnits(t *testing.T) {
	m := newMachine(t)
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	var asked []string
	var back error
	coordinator := func(boot string) *Coordinator {
		c, err := New(Config{
			Strategy: StrategyEtcdLock, MachineID: "m1", BootID: boot, Locker: m.locker,
			Needers: []Needer{RebootRequiredFile(m.file())}, Rebooter: m.rebooter, State: StateFileIn(m.dir),
			Units: func() []string { return []string{"web@2.service", "web@1.service"} },
			UnitsBack: func(_ context.Context, units []string) error {
				asked = units
				return back
			},
			UnitsWait: time.Minute,
			Now:       func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	os.WriteFile(m.file(), nil, 0o644)
	before := coordinator("boot-1")
	step(t, before)
	step(t, before)
	st, err := StateFileIn(m.dir).Load()
	if err != nil || m.rebooter.n != 1 || !slices.Equal(st.Units, []string{"web@1.service", "web@2.service"}) {
		t.Fatalf("slot taken: %d reboots, state %+v, %v", m.rebooter.n, st, err)
	}
	os.Remove(m.file())
	after := coordinator("boot-2")
	back = errors.New("units not running again yet: web@1.service")
	now = now.Add(30 * time.Second)
	if err := after.Step(context.Background()); !errors.Is(err, ErrUnhealthy) || !m.locker.sem("default").Holds("m1") {
		t.Fatalf("units not back: %v, holders %v", err, m.locker.sem("default").Holders)
	}
	if !slices.Equal(asked, st.Units) {
		t.Fatalf("asked about %v, want %v", asked, st.Units)
	}
	back = nil
	step(t, after)
	if m.locker.sem("default").Holds("m1") {
		t.Fatal("units back, slot still held")
	}

	// A unit that never runs again: released once UnitsWait has passed since the slot was taken.
	os.WriteFile(m.file(), nil, 0o644)
	step(t, after)
	step(t, after)
	os.Remove(m.file())
	back = errors.New("units not running again yet: web@1.service")
	third := coordinator("boot-3")
	if err := third.Step(context.Background()); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("before UnitsWait: %v", err)
	}
	now = now.Add(time.Minute)
	step(t, third)
	if m.locker.sem("default").Holds("m1") {
		t.Fatal("still held past UnitsWait")
	}
}

func TestNextBackoff(t *testing.T) {
	failing, unhealthy := errors.New("etcd down"), fmt.Errorf("%w: units not running", ErrUnhealthy)
	var f, u time.Duration
	for range 12 {
		f, u = nextBackoff(f, failing), nextBackoff(u, unhealthy)
	}
	if f != time.Minute || u != unhealthyRetry {
		t.Fatalf("after 12 failures: %v for an error, %v for an unhealthy machine", f, u)
	}
	if b := nextBackoff(0, unhealthy); b != 250*time.Millisecond {
		t.Fatalf("first retry %v", b)
	}
}
