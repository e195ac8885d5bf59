// Package exec is the exec executor: a small emulation of systemd's service manager that runs
// a service's commands as child processes of kiln-node (ExecStartPre= to ExecStopPost=, each in
// its own process group), with systemd's states, Restart=, RestartSec=, TimeoutStopSec= and
// start limits. It implements executor.Executor, for development and for tests that run many
// machines on one host. exec.go holds the Executor API and the per-unit state machine,
// service.go reads a unit's [Service] settings, cmdline.go its command lines and specifiers,
// proc_*.go the process-group plumbing.
package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Config configures the exec executor.
type Config struct {
	// Dir holds the executor's files: units/ (unit files), state/ (one JSON file per unit,
	// see State), logs/ (each unit's output, appended).
	Dir string
	// MachineID, BootID and Hostname are %m, %b and %H.
	MachineID, BootID, Hostname string
	// RuntimeDir is %t (default /run).
	RuntimeDir string
	Log        *slog.Logger
}

// Executor runs services as child processes of kiln-node. Every command runs in its own process
// group (Setpgid), and is killed with its group; on Linux each command gets SIGKILL when the
// kiln-node thread that started it dies (Pdeathsig; Go never ends its threads here), so that a
// crashed kiln-node leaves no service behind. Processes that a command puts in the background
// stay in its group and die with it on stop; if kiln-node is killed, they are killed by the
// next Executor on the same Dir (New sweeps the groups its state files record).
//
// Tests (and people) see what runs in the state files: state/<unit>.json holds an State,
// rewritten atomically at every transition; States reads them all, and State.Running
// checks that the main process really exists.
type Executor struct {
	c   Config
	log *slog.Logger

	mu       sync.Mutex
	defs     map[string]*unit.Unit // file name → parsed unit, as of the last Reload
	loadErrs map[string]error
	units    map[string]*execUnit
	watchers map[int]func()
	nextW    int
	// trace, when set (tests), sees every state change, under mu.
	trace func(name, active, sub string)
}

// State is a unit's state file.
type State struct {
	Unit        string    `json:"unit"`
	ActiveState string    `json:"activeState"`
	SubState    string    `json:"subState"`
	Result      string    `json:"result,omitempty"`
	MainPID     int       `json:"mainPID,omitempty"`
	MainStart   uint64    `json:"mainStart,omitempty"` // the main process's start time (/proc/PID/stat field 22)
	Groups      []Group   `json:"groups,omitempty"`    // live process groups of the unit's commands
	BootID      string    `json:"bootID,omitempty"`
	Starts      int       `json:"starts"` // times the main command was started
	Since       time.Time `json:"since"`
}

// Group is a process group of a unit's command: its leader's PID (the group's ID) and start
// time.
type Group struct {
	PGID  int    `json:"pgid"`
	Start uint64 `json:"start"`
}

// Running tells whether the unit's main process runs now: the state says active and the
// process with that PID and start time exists (and is no zombie).
func (s State) Running() bool {
	if s.ActiveState != executor.Active || s.MainPID == 0 {
		return false
	}
	st, ok := procStat(s.MainPID)
	return ok && st.start == s.MainStart && st.state != 'Z'
}

// States reads every state file of the exec executor whose Dir is dir.
func States(dir string) (map[string]State, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "state"))
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]State{}, nil
		}
		return nil, err
	}
	out := map[string]State{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, "state", e.Name()))
		if err != nil {
			continue
		}
		var s State
		if json.Unmarshal(raw, &s) == nil {
			out[name] = s
		}
	}
	return out, nil
}

// New returns an exec executor on c.Dir, after killing the process groups that a previous
// executor on the same Dir left running (when kiln-node was killed).
func New(c Config) (*Executor, error) {
	if c.Dir == "" {
		return nil, errors.New("exec executor: no directory")
	}
	if c.RuntimeDir == "" {
		c.RuntimeDir = "/run"
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"units", "state", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	e := &Executor{c: c, log: log, defs: map[string]*unit.Unit{}, loadErrs: map[string]error{},
		units: map[string]*execUnit{}, watchers: map[int]func(){}}
	e.sweep()
	if err := e.Reload(context.Background()); err != nil {
		return nil, err
	}
	return e, nil
}

// sweep kills what the state files say still runs, and removes the files.
func (e *Executor) sweep() {
	states, _ := States(e.c.Dir)
	boot := currentBootID()
	for name, s := range states {
		for _, g := range s.Groups {
			if s.BootID != boot {
				break // another boot: the numbers mean nothing now
			}
			if leader, ok := procStat(g.PGID); ok && leader.start != g.Start {
				continue // the PID was reused: not ours
			}
			// The leader is ours, or dead while its group lives on: then the group's ID cannot
			// have been reused (Linux does not give a PID that is a live group's ID).
			if groupAlive(g.PGID) {
				e.log.Warn("exec executor: killing a process group left by a previous run", "unit", name, "pgid", g.PGID)
				_ = syscall.Kill(-g.PGID, syscall.SIGKILL)
			}
		}
		_ = os.Remove(e.statePath(name))
	}
}

func (e *Executor) statePath(name string) string {
	return filepath.Join(e.c.Dir, "state", name+".json")
}
func (e *Executor) unitsDir() string { return filepath.Join(e.c.Dir, "units") }

// Files implements executor.Executor.
func (e *Executor) Files() (map[string]unit.Hash, error) { return executor.ListMarked(e.unitsDir()) }

// WriteFile implements executor.Executor.
func (e *Executor) WriteFile(name string, hash unit.Hash, text []byte) error {
	return executor.WriteMarked(e.unitsDir(), name, hash, text)
}

// RemoveFile implements executor.Executor.
func (e *Executor) RemoveFile(name string) error { return executor.RemoveMarked(e.unitsDir(), name) }

// Reload implements executor.Executor: it parses every unit file again; running units keep the
// definition they were started with until they start again.
func (e *Executor) Reload(context.Context) error {
	files, err := e.Files()
	if err != nil {
		return err
	}
	defs, errs := map[string]*unit.Unit{}, map[string]error{}
	for name := range files {
		raw, err := os.ReadFile(filepath.Join(e.unitsDir(), name))
		if err != nil {
			errs[name] = err
			continue
		}
		u, err := unit.Parse(name, raw)
		if err != nil {
			errs[name] = err
			continue
		}
		defs[name] = u
	}
	e.mu.Lock()
	e.defs, e.loadErrs = defs, errs
	e.mu.Unlock()
	e.changed()
	return nil
}

// definition returns the unit file that defines name (itself or its template).
func (e *Executor) definition(name string) (*unit.Unit, string, error) {
	n, err := unit.ParseName(name)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s", executor.ErrName, name)
	}
	file := name
	if n.IsInstance() {
		file = n.Template()
	}
	if err := e.loadErrs[file]; err != nil {
		return nil, executor.LoadError, err
	}
	u := e.defs[file]
	if u == nil {
		return nil, executor.LoadNotFound, fmt.Errorf("%w: %s", executor.ErrNotFound, name)
	}
	return u, executor.LoadLoaded, nil
}

// executor.Status implements executor.Executor.
func (e *Executor) Status(_ context.Context, names []string) ([]executor.Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]executor.Status, 0, len(names))
	for _, name := range names {
		_, load, _ := e.definition(name)
		st := executor.Status{Name: name, LoadState: load, ActiveState: executor.Inactive, SubState: "dead"}
		if u := e.units[name]; u != nil {
			st.ActiveState, st.SubState = u.active, u.sub
			if load == executor.LoadNotFound && u.running() {
				st.LoadState = executor.LoadLoaded // a running unit stays loaded until it stops
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// Watch implements executor.Executor.
func (e *Executor) Watch(ctx context.Context, changed func()) error {
	notify := make(chan struct{}, 1)
	e.mu.Lock()
	id := e.nextW
	e.nextW++
	e.watchers[id] = func() {
		select {
		case notify <- struct{}{}:
		default:
		}
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.watchers, id)
		e.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
			changed()
		}
	}
}

// changed tells the watchers; it must not be called with e.mu held.
func (e *Executor) changed() {
	e.mu.Lock()
	ws := make([]func(), 0, len(e.watchers))
	for _, w := range e.watchers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	for _, w := range ws {
		w()
	}
}

// Start implements executor.Executor.
func (e *Executor) Start(ctx context.Context, name string) error {
	e.mu.Lock()
	def, _, err := e.definition(name)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	sp := specifiers{MachineID: e.c.MachineID, BootID: e.c.BootID, Hostname: e.c.Hostname, RuntimeDir: e.c.RuntimeDir}
	svc, err := readService(def, name, sp)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	u := e.units[name]
	if u == nil {
		u = &execUnit{e: e, name: name, active: executor.Inactive, sub: "dead", wake: make(chan struct{})}
		e.units[name] = u
	}
	for u.running() && (u.active == executor.Deactivating || isClosed(u.stopReq)) {
		// Stopping: as systemd queues a start after a stop, wait for the end of it.
		done := u.done
		e.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.mu.Lock()
	}
	if u.running() {
		if u.sub == "auto-restart" {
			u.restartNow()
		}
	} else {
		u.begin(svc)
	}
	e.mu.Unlock()
	return u.waitStarted(ctx)
}

// Stop implements executor.Executor.
func (e *Executor) Stop(ctx context.Context, name string) error {
	if _, err := unit.ParseName(name); err != nil {
		return fmt.Errorf("%w: %s", executor.ErrName, name)
	}
	e.mu.Lock()
	u := e.units[name]
	e.mu.Unlock()
	if u == nil {
		return nil
	}
	return u.stop(ctx)
}

// Close stops every unit (SIGKILL when ctx ends first) and returns when they are all gone.
func (e *Executor) Close(ctx context.Context) error {
	e.mu.Lock()
	names := make([]string, 0, len(e.units))
	for n := range e.units {
		names = append(names, n)
	}
	e.mu.Unlock()
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		errs = append(errs, e.Stop(ctx, n))
	}
	return errors.Join(errs...)
}

// execUnit is one unit's runtime. Its fields are guarded by e.mu; one activation goroutine
// (run) at a time owns the processes.
type execUnit struct {
	e      *Executor
	name   string
	active string
	sub    string
	result string
	since  time.Time
	main   *osexec.Cmd
	mainSt uint64
	groups map[int]uint64 // process group → its leader's start time
	starts int
	// restartTimes are the recent starts, for the start limit.
	restartTimes []time.Time

	// Per activation: stopReq is closed to ask run to stop, kill to skip the stop timeout,
	// done when run returned; skipWait ends an auto-restart delay.
	stopReq  chan struct{}
	stopOnce sync.Once
	kill     chan struct{}
	killOnce sync.Once
	done     chan struct{}
	skipWait chan struct{} // closed to end the current auto-restart delay
	// wake is closed (and replaced) at every state change, for waiters.
	wake chan struct{}
	// waiting is the process that the activation goroutine waits for, if any (waitProc).
	waiting *proc
}

func (u *execUnit) running() bool { return u.done != nil && !isClosed(u.done) }

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// begin starts an activation; e.mu is held.
func (u *execUnit) begin(svc *service) {
	u.stopReq, u.kill, u.done, u.skipWait = make(chan struct{}), make(chan struct{}), make(chan struct{}), nil
	u.stopOnce, u.killOnce = sync.Once{}, sync.Once{}
	u.result = ""
	u.restartTimes = nil
	u.setLocked(executor.Activating, "start-pre")
	go u.run(svc, u.stopReq, u.kill, u.done)
}

// restartNow ends an auto-restart delay; e.mu is held.
func (u *execUnit) restartNow() {
	if u.skipWait != nil {
		close(u.skipWait)
		u.skipWait = nil
	}
}

// set changes the state (taking e.mu), writes the state file and tells the watchers.
func (u *execUnit) set(active, sub string) {
	u.e.mu.Lock()
	u.setLocked(active, sub)
	u.e.mu.Unlock()
	u.e.changed()
}

func (u *execUnit) setLocked(active, sub string) {
	if u.active != active {
		u.since = time.Now()
	}
	u.active, u.sub = active, sub
	if u.e.trace != nil {
		u.e.trace(u.name, active, sub)
	}
	close(u.wake)
	u.wake = make(chan struct{})
	_ = u.writeStateLocked() // logged
}

func (u *execUnit) writeStateLocked() error {
	s := State{Unit: u.name, ActiveState: u.active, SubState: u.sub, Result: u.result, Since: u.since,
		Starts: u.starts, BootID: currentBootID()}
	if u.main != nil && u.main.Process != nil && u.active != executor.Inactive && u.active != executor.Failed {
		s.MainPID, s.MainStart = u.main.Process.Pid, u.mainSt
	}
	for g, start := range u.groups {
		s.Groups = append(s.Groups, Group{g, start})
	}
	sort.Slice(s.Groups, func(i, j int) bool { return s.Groups[i].PGID < s.Groups[j].PGID })
	raw, err := json.Marshal(s)
	if err == nil {
		err = atomicfile.Write(u.e.statePath(u.name), raw, 0o644)
	}
	if err != nil {
		// The state file is how a later run finds the processes to sweep: say it is stale.
		u.e.log.Error("exec executor: state file not written", "unit", u.name, "err", err)
	}
	return err
}

// waitStarted waits until the unit leaves the start: active, failed, inactive, or in
// auto-restart (systemd's job is done then too).
func (u *execUnit) waitStarted(ctx context.Context) error {
	for {
		u.e.mu.Lock()
		active, sub, result, wake := u.active, u.sub, u.result, u.wake
		u.e.mu.Unlock()
		switch {
		case active == executor.Active, active == executor.Activating && sub == "auto-restart":
			return nil
		case active == executor.Failed:
			return fmt.Errorf("%w: start %s: %s", executor.ErrJobFailed, u.name, result)
		case active == executor.Inactive && result != "":
			if result == "success" {
				return nil // a oneshot that ran and finished
			}
			return fmt.Errorf("%w: start %s: %s", executor.ErrJobFailed, u.name, result)
		case active == executor.Inactive:
			return fmt.Errorf("%w: start %s: stopped while starting", executor.ErrJobFailed, u.name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (u *execUnit) stop(ctx context.Context) error {
	u.e.mu.Lock()
	if !u.running() {
		u.e.mu.Unlock()
		return nil
	}
	stopReq, kill, done := u.stopReq, u.kill, u.done
	u.stopOnce.Do(func() { close(stopReq) })
	u.wakeWaiting()
	u.e.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	u.killOnce.Do(func() { close(kill) })
	u.e.mu.Lock()
	u.wakeWaiting()
	u.e.mu.Unlock()
	<-done // SIGKILL has been sent to every group: this is quick
	return nil
}

// run is one activation, from start to inactive or failed, restarts included.
func (u *execUnit) run(svc *service, stopReq, kill, done chan struct{}) {
	defer close(done)
	log := u.e.log.With("unit", u.name)
	for {
		result, signaled, stopped, m := u.activate(svc, stopReq, kill, log)
		if m != nil {
			// The main process runs: wait for it here, in run's small frame rather than
			// activate's, so that the garbage collector shrinks the stack that a running unit
			// keeps to 4 KiB (BenchmarkFootprint: 8 KiB a unit otherwise). The restart logic
			// is in methods of its own for the same reason.
			exited, err := u.waitProc(m.p, time.Time{}, stopReq, kill)
			result, signaled, stopped = u.afterMain(svc, m, exited, err, kill, log)
		}
		if stopped {
			u.finish(executor.Inactive, "dead", "success")
			log.Info("unit stopped")
			return
		}
		if !u.restartAfter(svc, result, signaled, stopReq, log) {
			return
		}
	}
}

// restartAfter ends an activation that ended with result, or waits to start it again (Restart=,
// the start limit, RestartSec=): it returns whether to start again.
func (u *execUnit) restartAfter(svc *service, result string, signaled bool, stopReq chan struct{}, log *slog.Logger) bool {
	success := result == "success"
	if !svc.restarts(success, signaled) {
		if success {
			u.finish(executor.Inactive, "dead", result)
		} else {
			u.finish(executor.Failed, "failed", result)
			log.Warn("unit failed", "result", result)
		}
		return false
	}
	// Start limit: StartBurst starts within StartLimit, as systemd counts them.
	now := time.Now()
	u.e.mu.Lock()
	u.restartTimes = append(u.restartTimes, now)
	var recent []time.Time
	for _, t := range u.restartTimes {
		if now.Sub(t) < svc.StartLimit {
			recent = append(recent, t)
		}
	}
	u.restartTimes = recent
	hit := svc.StartBurst > 0 && len(recent) >= svc.StartBurst
	u.e.mu.Unlock()
	if hit {
		u.finish(executor.Failed, "failed", "start-limit-hit")
		log.Warn("unit failed", "result", "start-limit-hit")
		return false
	}
	skipWait := make(chan struct{})
	u.e.mu.Lock()
	u.result = result
	u.skipWait = skipWait
	u.e.mu.Unlock()
	u.set(executor.Activating, "auto-restart")
	log.Info("unit scheduled for restart", "result", result, "in", svc.RestartSec)
	t := time.NewTimer(svc.RestartSec)
	select {
	case <-stopReq:
		t.Stop()
		u.finish(executor.Inactive, "dead", "success")
		return false
	case <-skipWait:
		t.Stop()
	case <-t.C:
	}
	u.e.mu.Lock()
	u.skipWait = nil
	u.e.mu.Unlock()
	u.set(executor.Activating, "start-pre")
	return true
}

func (u *execUnit) finish(active, sub, result string) {
	u.e.mu.Lock()
	u.result = result
	u.groups = nil
	u.setLocked(active, sub)
	u.e.mu.Unlock()
	u.e.changed()
}

// mainProc is a unit's main process once its start has succeeded: run waits for it.
type mainProc struct {
	pid     int
	p       *proc
	envMain map[string]string
}

// activate runs the commands of one start: pre, main, post. When the main process is left
// running it returns it (m), and run waits for it and calls afterMain. Otherwise it returns
// systemd's result (success, exit-code, signal, timeout, resources), whether the main process
// died of a signal, and whether it ended on a stop.
func (u *execUnit) activate(svc *service, stopReq, kill chan struct{}, log *slog.Logger) (result string, signaled, stopped bool, m *mainProc) {
	env, err := svc.environment(nil)
	if err != nil {
		log.Warn("unit start failed", "err", err)
		return "resources", false, false, nil
	}
	runAll := func(cmds []command, env map[string]string, sub string) (string, bool) {
		for _, c := range cmds {
			if sub != "" {
				u.set(executor.Activating, sub)
			}
			res, interrupted := u.runSync(svc, c, env, stopReq, kill, log)
			if interrupted {
				return res, true
			}
			if res != "success" && !c.IgnoreFailure {
				return res, false
			}
		}
		return "success", false
	}
	runStop := func(cmds []command, env map[string]string) { u.runStop(svc, cmds, env, kill, log) }
	cleanup := func(mainPID int) { u.cleanup(svc, env, mainPID, kill, log) }
	if res, intr := runAll(svc.StartPre, env, "start-pre"); intr || res != "success" {
		cleanup(0)
		return res, false, intr, nil
	}
	if svc.Type == "oneshot" {
		res, intr := runAll(svc.Start, env, "start")
		if intr || res != "success" {
			cleanup(0)
			return res, false, intr, nil
		}
		if res, intr := runAll(svc.StartPost, env, "start-post"); intr || res != "success" {
			cleanup(0)
			return res, false, intr, nil
		}
		if !svc.RemainAfterExit {
			cleanup(0)
			return "success", false, false, nil
		}
		u.set(executor.Active, "exited")
		select {
		case <-stopReq:
		case <-kill:
		}
		u.set(executor.Deactivating, "stop")
		runStop(svc.Stop, env)
		cleanup(0)
		return "success", false, true, nil
	}

	main, err := u.spawn(svc, svc.Start[0], env, log)
	if err != nil {
		log.Warn("unit start failed", "err", err)
		cleanup(0)
		return "exit-code", false, false, nil
	}
	pid := main.Process.Pid
	p := newProc(main)
	u.e.mu.Lock()
	u.main = main
	u.mainSt = 0
	if st, ok := procStat(pid); ok {
		u.mainSt = st.start
	}
	u.starts++
	u.e.mu.Unlock()
	envMain := withEnv(env, "MAINPID", fmt.Sprint(pid))
	log.Info("unit started", "pid", pid)
	if len(svc.StartPost) > 0 {
		u.set(executor.Activating, "start-post")
		if res, intr := runAll(svc.StartPost, envMain, ""); intr || res != "success" {
			u.terminate(svc, p, kill)
			cleanup(pid)
			return res, false, intr, nil
		}
	}
	u.set(executor.Active, "running")
	return "", false, false, &mainProc{pid: pid, p: p, envMain: envMain}
}

// afterMain ends an activation whose main process ran: after it exited (err is then its end)
// or after a stop was asked for, which ends it. It returns what activate returns.
func (u *execUnit) afterMain(svc *service, m *mainProc, exited bool, err error, kill chan struct{}, log *slog.Logger) (result string, signaled, stopped bool) {
	if exited {
		u.dropGroup(m.pid)
		result, signaled = exitResult(err, svc)
		log.Info("unit main process exited", "pid", m.pid, "result", result, "err", err)
		u.runStop(svc, svc.Stop, m.envMain, kill, log)
		u.cleanup(svc, m.envMain, m.pid, kill, log)
		return result, signaled, false
	}
	u.set(executor.Deactivating, "stop")
	u.runStop(svc, svc.Stop, m.envMain, kill, log)
	u.terminate(svc, m.p, kill)
	u.cleanup(svc, m.envMain, m.pid, kill, log)
	return "success", false, true
}

// runStop runs stop-phase commands (ExecStop=, ExecStopPost=) to completion once a stop was
// asked for: only the kill (the stop timeout) interrupts them, as in systemd.
func (u *execUnit) runStop(svc *service, cmds []command, env map[string]string, kill chan struct{}, log *slog.Logger) {
	for _, c := range cmds {
		if _, interrupted := u.runSync(svc, c, env, nil, kill, log); interrupted {
			return
		}
	}
}

// cleanup ends what is left of an activation: the processes left in its groups, then
// ExecStopPost=. mainPID, when not 0, is given to ExecStopPost= as $MAINPID.
func (u *execUnit) cleanup(svc *service, env map[string]string, mainPID int, kill chan struct{}, log *slog.Logger) {
	if mainPID != 0 {
		env = withEnv(env, "MAINPID", fmt.Sprint(mainPID))
	}
	u.killGroups(svc, kill)
	u.runStop(svc, svc.StopPost, env, kill, log)
	u.killGroups(svc, kill)
}

// terminate ends a process of the unit (its main process, or a command that a stop
// interrupted): SIGTERM to every group, SIGKILL after TimeoutStopSec or at once when kill is
// closed; it returns when the process has exited.
func (u *execUnit) terminate(svc *service, p *proc, kill chan struct{}) {
	pid := p.cmd.Process.Pid
	defer u.dropGroup(pid)
	if ended, _ := u.waitProc(p, time.Now(), nil, nil); ended {
		return
	}
	u.set(executor.Deactivating, "stop-sigterm")
	u.signalGroups(syscall.SIGTERM)
	var deadline time.Time
	if svc.TimeoutStop > 0 {
		deadline = time.Now().Add(svc.TimeoutStop)
	}
	if ended, _ := u.waitProc(p, deadline, nil, kill); ended {
		return
	}
	u.set(executor.Deactivating, "stop-sigkill")
	u.signalGroups(syscall.SIGKILL)
	u.waitProc(p, time.Time{}, nil, nil)
}

// killGroups ends what is left in the unit's process groups (background processes of its
// commands): SIGTERM, then SIGKILL after TimeoutStopSec (or at once on kill).
func (u *execUnit) killGroups(svc *service, kill chan struct{}) {
	if !u.anyAlive() {
		u.clearGroups()
		return
	}
	u.signalGroups(syscall.SIGTERM)
	deadline := time.Now().Add(svc.TimeoutStop)
	for u.anyAlive() {
		if svc.TimeoutStop > 0 && time.Now().After(deadline) || isClosed(kill) {
			u.signalGroups(syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	u.clearGroups()
}

func (u *execUnit) anyAlive() bool {
	u.e.mu.Lock()
	defer u.e.mu.Unlock()
	for g := range u.groups {
		if groupAlive(g) {
			return true
		}
	}
	return false
}

func (u *execUnit) clearGroups() {
	u.e.mu.Lock()
	u.groups = nil
	_ = u.writeStateLocked() // logged
	u.e.mu.Unlock()
}

func (u *execUnit) dropGroup(pid int) {
	if groupAlive(pid) {
		return // background processes are left in it; killGroups ends them
	}
	u.e.mu.Lock()
	delete(u.groups, pid)
	_ = u.writeStateLocked() // logged
	u.e.mu.Unlock()
}

func (u *execUnit) signalGroups(sig syscall.Signal) {
	u.e.mu.Lock()
	defer u.e.mu.Unlock()
	for g := range u.groups {
		_ = syscall.Kill(-g, sig)
	}
}

// runSync runs one command to its end; a stop request kills it (interrupted is then true).
func (u *execUnit) runSync(svc *service, c command, env map[string]string, stopReq, kill chan struct{}, log *slog.Logger) (result string, interrupted bool) {
	cmd, err := u.spawn(svc, c, env, log)
	if err != nil {
		log.Warn("command failed", "cmd", c.Path, "err", err)
		return "exit-code", false
	}
	p := newProc(cmd)
	if ended, err := u.waitProc(p, time.Time{}, stopReq, kill); ended {
		u.dropGroup(cmd.Process.Pid)
		res, _ := exitResult(err, svc)
		return res, false
	}
	u.terminate(svc, p, kill)
	return "success", true
}

// spawn starts a command in its own process group with Pdeathsig.
func (u *execUnit) spawn(svc *service, c command, env map[string]string, log *slog.Logger) (*osexec.Cmd, error) {
	path, argv := c.expand(env)
	if !strings.Contains(path, "/") {
		p, err := lookPath(path, env["PATH"])
		if err != nil {
			return nil, err
		}
		path = p
	}
	if len(argv) == 0 {
		argv = []string{path}
	}
	cmd := &osexec.Cmd{Path: path, Args: argv, Env: envList(env), Dir: svc.WorkingDir}
	if svc.WorkingDir != "" {
		if _, err := os.Stat(svc.WorkingDir); err != nil {
			if !svc.WorkingDirOpt {
				return nil, fmt.Errorf("working directory: %w", err)
			}
			cmd.Dir = ""
		}
	}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	out, err := os.OpenFile(filepath.Join(u.e.c.Dir, "logs", u.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	cmd.SysProcAttr = sysProcAttr()
	u.e.mu.Lock()
	defer u.e.mu.Unlock()
	// Under e.mu, so that a stop sees the group as soon as the process exists.
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if u.groups == nil {
		u.groups = map[int]uint64{}
	}
	st, _ := procStat(cmd.Process.Pid)
	u.groups[cmd.Process.Pid] = st.start
	_ = u.writeStateLocked() // logged
	log.Debug("command started", "cmd", path, "pid", cmd.Process.Pid)
	return cmd, nil
}

func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found in %s", osexec.ErrNotFound, name, path)
}

func withEnv(env map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(env)+1)
	for a, b := range env {
		out[a] = b
	}
	out[k] = v
	return out
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// exitResult is systemd's result for a process's end: success (exit 0, a SuccessExitStatus, or
// SIGHUP, SIGINT, SIGTERM, SIGPIPE, which systemd counts as clean), exit-code or signal.
func exitResult(err error, svc *service) (string, bool) {
	if err == nil {
		return "success", false
	}
	var ee *osexec.ExitError
	if !errors.As(err, &ee) {
		return "exit-code", false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return "exit-code", false
	}
	if ws.Signaled() {
		switch ws.Signal() {
		case syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE:
			return "success", true
		}
		return "signal", true
	}
	if svc.SuccessStatus[ws.ExitStatus()] {
		return "success", false
	}
	return "exit-code", false
}
