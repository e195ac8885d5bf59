// Package reboot decides when this machine reboots: it watches what asks for a reboot
// (update_engine, /run/reboot-required, kiln ctl reboot), takes a slot of the cluster's reboot
// lock, reboots (logind over D-Bus, or a command in development), and releases the slot only
// once the machine is back with a new boot ID and healthy.
package reboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/lock"
)

// Strategies.
const (
	StrategyEtcdLock  = "etcd-lock"
	StrategyFleetLock = "fleetlock"
	StrategyReboot    = "reboot"
	StrategyOff       = "off"
)

// ValidStrategy checks a strategy name.
func ValidStrategy(s string) error {
	switch s {
	case StrategyEtcdLock, StrategyFleetLock, StrategyReboot, StrategyOff:
		return nil
	}
	return fmt.Errorf("%w: %q", ErrUnknownStrategy, s)
}

// Reboot states reported to the registry.
const (
	StatusNone      = ""
	StatusNeeded    = "needed"
	StatusWaiting   = "waiting"
	StatusRebooting = "rebooting"
)

// Locker is what the coordinator needs of the reboot lock (*lock.Manager has it).
type Locker interface {
	Lock(ctx context.Context, group, id, bootID string) error
	Unlock(ctx context.Context, group, id string) error
	Holding(ctx context.Context, group, id string) (bool, error)
}

// Config configures a Coordinator.
type Config struct {
	Strategy  string
	MachineID string
	BootID    string
	Group     string
	Locker    Locker
	// Needers are asked, in order, whether a reboot is needed.
	Needers []Needer
	// Requests, when set, is also a Needer, and the request is cleared after the reboot.
	Requests *Request
	// ClearRequests deletes a kiln ctl request if its revision is still rev (nil: never).
	ClearRequests lock.KV
	Rebooter      Rebooter
	State         StateFile
	// Health, when set, must pass before the slot is released after a reboot.
	Health func(ctx context.Context) error
	// Units, when set, lists the units this machine runs; they are recorded with the slot.
	Units func() []string
	// UnitsBack, when set, must pass for the recorded units before the slot is released
	// after a reboot: each runs again somewhere (the units that moved away while this machine
	// was down run on their new machines), so that the next machine's reboot does not take
	// down the only other instance of a service. Past UnitsWait after the slot was taken the
	// slot is released anyway, with a warning: a unit that runs nowhere must not stop every
	// later reboot of the cluster.
	UnitsBack func(ctx context.Context, units []string) error
	// UnitsWait bounds the wait for UnitsBack (default DefaultUnitsWait).
	UnitsWait time.Duration
	// Interval between checks (default 10 s); Wake checks at once.
	Interval time.Duration
	// RetryReboot is how long to wait for a reboot that was asked for before asking again.
	RetryReboot time.Duration
	// OnStatus is told the reboot state when it changes.
	OnStatus func(status string)
	Now      func() time.Time
	Log      *slog.Logger
}

// nextBackoff doubles the wait after a failed check, from 250 ms up to a minute; a machine back
// from its reboot that waits to be healthy (ErrUnhealthy) is not failing: it looks again every
// unhealthyRetry at most, so that its slot goes as soon as it may.
func nextBackoff(prev time.Duration, err error) time.Duration {
	limit := time.Minute
	if errors.Is(err, ErrUnhealthy) {
		limit = unhealthyRetry
	}
	return min(max(2*prev, 250*time.Millisecond), limit)
}

// unhealthyRetry bounds the backoff between the checks of a machine that waits, back from its
// reboot, to be healthy and to see its units run again.
const unhealthyRetry = 4 * time.Second

// DefaultUnitsWait is how long a machine back from a reboot waits for the units it ran to run
// again before it releases its slot anyway.
const DefaultUnitsWait = 5 * time.Minute

// Coordinator runs the reboot strategy of one machine.
type Coordinator struct {
	cfg        Config
	wake       chan struct{}
	lastReboot time.Time
	status     string
	lastNote   string
	// staleChecked: this process has looked for a slot held with no reboot pending (a crash
	// between taking the slot and saving the state) and released it.
	staleChecked bool
}

// New checks cfg and returns a Coordinator.
func New(cfg Config) (*Coordinator, error) {
	if err := ValidStrategy(cfg.Strategy); err != nil {
		return nil, err
	}
	if cfg.MachineID == "" {
		return nil, errors.New("reboot: no machine id")
	}
	if cfg.BootID == "" {
		return nil, ErrNoBootID
	}
	if cfg.Strategy == StrategyEtcdLock && cfg.Locker == nil {
		return nil, errors.New("reboot: strategy etcd-lock needs the lock")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.UnitsWait <= 0 {
		cfg.UnitsWait = DefaultUnitsWait
	}
	if cfg.RetryReboot <= 0 {
		cfg.RetryReboot = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Requests != nil {
		cfg.Needers = append(cfg.Needers, cfg.Requests)
	}
	cfg.Group = keys.GroupName(cfg.Group)
	return &Coordinator{cfg: cfg, wake: make(chan struct{}, 1), status: "-"}, nil
}

var (
	rebootNeeded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kiln_node_reboot_needed", Help: "1 while something asks this machine to reboot."})
	lockHeld = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kiln_node_reboot_lock_held", Help: "1 while this machine holds a slot of the reboot lock."})
	rebootsAsked = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kiln_node_reboots_total", Help: "Reboots this daemon asked for."})
	lockAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kiln_node_reboot_lock_attempts_total", Help: "Attempts to take a reboot slot, by result."}, []string{"result"})
	checkErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kiln_node_reboot_check_errors_total", Help: "Reboot checks that failed (etcd unreachable...)."})
)

// Collectors are the package's metrics, for the daemon to register once.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{rebootNeeded, lockHeld, rebootsAsked, lockAttempts, checkErrors}
}

// Wake makes Run check at once.
func (c *Coordinator) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run checks every Interval (and on Wake) until ctx ends; after a failed check it backs off
// exponentially up to a minute. It returns nil when ctx ends.
func (c *Coordinator) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		wait := c.cfg.Interval
		if err := c.Step(ctx); err != nil && ctx.Err() == nil {
			checkErrors.Inc()
			backoff = nextBackoff(backoff, err)
			wait = backoff + time.Duration(rand.Int64N(int64(backoff)/2+1))
			level := slog.LevelWarn
			if errors.Is(err, ErrUnhealthy) {
				level = slog.LevelInfo
			}
			c.cfg.Log.Log(ctx, level, "reboot check failed", "err", err, "retry", wait.Round(time.Millisecond))
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-time.After(wait):
		}
	}
}

func (c *Coordinator) setStatus(s string) {
	if s == c.status {
		return
	}
	c.status = s
	if c.cfg.OnStatus != nil {
		c.cfg.OnStatus(s)
	}
}

// note logs msg at info level when it differs from the last note (no log per tick).
func (c *Coordinator) note(msg string, args ...any) {
	key := fmt.Sprint(append([]any{msg}, args...)...)
	if key == c.lastNote {
		return
	}
	c.lastNote = key
	c.cfg.Log.Info(msg, args...)
}

// need asks every needer; a needer's error is logged and does not hide the others.
func (c *Coordinator) need(ctx context.Context) (*Need, error) {
	var firstErr error
	for _, n := range c.cfg.Needers {
		need, err := n.RebootNeeded(ctx)
		if err != nil {
			if _, isReq := n.(*Request); isReq {
				return nil, err // etcd unreachable: decide nothing
			}
			c.note("cannot tell whether a reboot is needed", "err", err)
			firstErr = err
			continue
		}
		if need != nil {
			rebootNeeded.Set(1)
			return need, nil
		}
	}
	_ = firstErr
	rebootNeeded.Set(0)
	return nil, nil
}

// Step is one check of the strategy.
func (c *Coordinator) Step(ctx context.Context) error {
	st, err := c.cfg.State.Load()
	if err != nil {
		return fmt.Errorf("reboot state: %w", err)
	}
	switch c.cfg.Strategy {
	case StrategyEtcdLock:
		return c.stepLock(ctx, st)
	case StrategyReboot:
		return c.stepReboot(ctx, st)
	default: // off; fleetlock: Zincati reboots, this machine only serves the lock
		need, err := c.need(ctx)
		if err != nil {
			return err
		}
		if need != nil {
			c.setStatus(StatusNeeded)
		} else {
			c.setStatus(StatusNone)
		}
		return nil
	}
}

func (c *Coordinator) stepReboot(ctx context.Context, st State) error {
	if st.PendingBoot != "" && st.PendingBoot != c.cfg.BootID {
		if err := c.clearRequest(ctx, st); err != nil {
			return err
		}
		c.cfg.Log.Info("rebooted", "source", st.Source, "since", st.Since)
		return c.cfg.State.Save(State{})
	}
	need, err := c.need(ctx)
	if err != nil {
		return err
	}
	if st.PendingBoot == c.cfg.BootID {
		return c.reboot(ctx, st)
	}
	if need == nil {
		c.setStatus(StatusNone)
		return nil
	}
	st = State{PendingBoot: c.cfg.BootID, Source: need.Source, RequestRevision: need.Revision, Since: c.cfg.Now().UTC()}
	if err := c.cfg.State.Save(st); err != nil {
		return fmt.Errorf("reboot state: %w", err)
	}
	return c.reboot(ctx, st)
}

func (c *Coordinator) stepLock(ctx context.Context, st State) error {
	id, boot := c.cfg.MachineID, c.cfg.BootID
	if st.PendingBoot != "" && st.PendingBoot != boot {
		// Back from the reboot: release once healthy. Until then the slot stays held.
		if c.cfg.Health != nil {
			if err := c.cfg.Health(ctx); err != nil {
				return fmt.Errorf("%w: %v", ErrUnhealthy, err)
			}
		}
		if err := c.unitsBack(ctx, st); err != nil {
			return err
		}
		// The request that caused this reboot goes first: a slot released with the request
		// still there would reboot the machine a second time.
		if err := c.clearRequest(ctx, st); err != nil {
			return err
		}
		if err := c.cfg.Locker.Unlock(ctx, st.Group, id); err != nil {
			return fmt.Errorf("release the reboot lock: %w", err)
		}
		lockHeld.Set(0)
		if err := c.cfg.State.Save(State{}); err != nil {
			return fmt.Errorf("reboot state: %w", err)
		}
		c.cfg.Log.Info("healthy after the reboot, reboot lock released", "group", st.Group, "source", st.Source,
			"took", c.cfg.Now().Sub(st.Since).Round(time.Second))
		c.setStatus(StatusNone)
		return nil
	}
	need, err := c.need(ctx)
	if err != nil {
		return err
	}
	if need == nil && st.PendingBoot == "" && c.staleChecked {
		// Idle: nothing to take, nothing held (checked once at start): no read of the lock.
		c.setStatus(StatusNone)
		return nil
	}
	holding, err := c.cfg.Locker.Holding(ctx, c.cfg.Group, id)
	if err != nil {
		return fmt.Errorf("read the reboot lock: %w", err)
	}
	c.staleChecked = true
	if holding {
		lockHeld.Set(1)
	} else {
		lockHeld.Set(0)
	}
	if st.PendingBoot == boot {
		if !holding {
			// kiln ctl unlock took the slot away before the reboot happened: start over.
			c.cfg.Log.Warn("reboot slot released by someone else before the reboot; asking again")
			return c.cfg.State.Save(State{})
		}
		return c.reboot(ctx, st)
	}
	if need == nil {
		c.setStatus(StatusNone)
		if holding {
			// A slot taken before a crash, with nothing left to reboot for.
			if err := c.cfg.Locker.Unlock(ctx, c.cfg.Group, id); err != nil {
				return fmt.Errorf("release an unused reboot slot: %w", err)
			}
			lockHeld.Set(0)
			c.cfg.Log.Info("released a reboot slot held with no reboot pending", "group", c.cfg.Group)
		}
		return nil
	}
	c.setStatus(StatusWaiting)
	// Whatever the answer, a slot may now be held (a lost reply, a failed state write): look
	// again next time even if the need has gone.
	c.staleChecked = false
	err = c.cfg.Locker.Lock(ctx, c.cfg.Group, id, boot)
	switch {
	case errors.Is(err, lock.ErrBusy), errors.Is(err, lock.ErrOutsideWindow):
		lockAttempts.WithLabelValues("refused").Inc()
		c.note("reboot needed, waiting for the lock", "source", need.Source, "reason", err.Error())
		return nil
	case err != nil:
		lockAttempts.WithLabelValues("error").Inc()
		return fmt.Errorf("take the reboot lock: %w", err)
	}
	lockAttempts.WithLabelValues("taken").Inc()
	lockHeld.Set(1)
	st = State{PendingBoot: boot, Group: c.cfg.Group, Source: need.Source, RequestRevision: need.Revision, Since: c.cfg.Now().UTC()}
	if c.cfg.Units != nil {
		st.Units = slices.Sorted(slices.Values(c.cfg.Units()))
	}
	if err := c.cfg.State.Save(st); err != nil {
		return fmt.Errorf("reboot state: %w", err)
	}
	return c.reboot(ctx, st)
}

// unitsBack tells whether the units the machine ran before its reboot run again: nil when
// they do, when there were none, or when UnitsWait has passed (logged); else ErrUnhealthy.
func (c *Coordinator) unitsBack(ctx context.Context, st State) error {
	if c.cfg.UnitsBack == nil || len(st.Units) == 0 {
		return nil
	}
	err := c.cfg.UnitsBack(ctx, st.Units)
	if err == nil {
		return nil
	}
	if waited := c.cfg.Now().Sub(st.Since); waited >= c.cfg.UnitsWait {
		c.cfg.Log.Warn("units of this machine do not run again; releasing the reboot lock anyway",
			"err", err, "waited", waited.Round(time.Second))
		return nil
	}
	return fmt.Errorf("%w: %v", ErrUnhealthy, err)
}

// reboot asks for the reboot, at most once per RetryReboot in this process.
func (c *Coordinator) reboot(ctx context.Context, st State) error {
	if !c.lastReboot.IsZero() && c.cfg.Now().Sub(c.lastReboot) < c.cfg.RetryReboot {
		return nil
	}
	c.setStatus(StatusRebooting)
	c.lastReboot = c.cfg.Now()
	c.cfg.Log.Info("rebooting", "source", st.Source, "group", st.Group, "boot", st.PendingBoot)
	rebootsAsked.Inc()
	if err := c.cfg.Rebooter.Reboot(ctx); err != nil {
		c.lastReboot = time.Time{}
		return err
	}
	return nil
}

// clearRequest deletes the kiln ctl request that caused the reboot, unless it was made again.
func (c *Coordinator) clearRequest(ctx context.Context, st State) error {
	if st.RequestRevision == 0 || c.cfg.ClearRequests == nil {
		return nil
	}
	key := keys.RebootRequest(c.cfg.MachineID)
	_, err := c.cfg.ClearRequests.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", st.RequestRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("clear the reboot request %s: %w", key, err)
	}
	return nil
}
