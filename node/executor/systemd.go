package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/node/unit"
)

// DefaultSystemdDir is where the systemd executor writes unit files: systemd's runtime
// directory, emptied at every boot (fleet wrote there too).
const DefaultSystemdDir = "/run/systemd/system"

// SystemdConfig configures the systemd executor.
type SystemdConfig struct {
	// Dir is where unit files go (default DefaultSystemdDir).
	Dir string
	// Connect opens the D-Bus connection (default: the system bus, or systemd's private socket
	// for root, as go-systemd's NewWithContext does).
	Connect func(ctx context.Context) (*sddbus.Conn, error)
	// BindsTo is the unit the placed units are bound to (a drop-in with BindsTo= and After=
	// beside each unit file), so that they stop when it stops or dies: kiln-node's own
	// service, so that units never outlive the agent that fences them. Empty: the service
	// kiln-node runs in, from /proc/self/cgroup (none when it runs outside a service); "-":
	// none.
	BindsTo string
	Log     *slog.Logger
}

// Systemd drives the machine's systemd over D-Bus. It connects lazily and again after the
// connection breaks (systemd re-executing itself, dbus restarting), so that kiln-node starts
// even when systemd is not reachable yet.
type Systemd struct {
	c   SystemdConfig
	log *slog.Logger

	mu   sync.Mutex
	conn *sddbus.Conn
}

// NewSystemd returns a systemd executor; it does not connect yet.
func NewSystemd(c SystemdConfig) *Systemd {
	if c.Dir == "" {
		c.Dir = DefaultSystemdDir
	}
	if c.Connect == nil {
		c.Connect = sddbus.NewWithContext
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch c.BindsTo {
	case "":
		c.BindsTo = ownService("/proc/self/cgroup")
	case "-":
		c.BindsTo = ""
	}
	return &Systemd{c: c, log: log}
}

// ownService is the systemd service whose cgroup holds this process, from a /proc/PID/cgroup
// file ("" when none: a shell, a container's exec).
func ownService(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(raw), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || (parts[0] != "0" && parts[1] != "name=systemd") {
			continue
		}
		for _, elem := range slices.Backward(strings.Split(parts[2], "/")) {
			if strings.HasSuffix(elem, ".service") {
				return elem
			}
		}
	}
	return ""
}

// dropIn is the drop-in that binds a unit to kiln-node's service.
const dropIn = "50-kiln-node.conf"

func (s *Systemd) dropInPath(name string) string {
	return filepath.Join(s.c.Dir, name+".d", dropIn)
}

// connection returns the open connection, connecting when there is none or it broke.
func (s *Systemd) connection(ctx context.Context) (*sddbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	conn, err := s.c.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	s.conn = conn
	return conn, nil
}

// Close closes the D-Bus connection.
func (s *Systemd) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Files implements Executor.
func (s *Systemd) Files() (map[string]unit.Hash, error) { return ListMarked(s.c.Dir) }

// WriteFile implements Executor, with the BindsTo= drop-in (see SystemdConfig.BindsTo).
func (s *Systemd) WriteFile(name string, hash unit.Hash, text []byte) error {
	if err := WriteMarked(s.c.Dir, name, hash, text); err != nil {
		return err
	}
	if s.c.BindsTo == "" || s.c.BindsTo == name {
		return nil
	}
	body := MarkerPrefix + hash.String() + "\n# units die with the kiln-node that runs them\n[Unit]\nBindsTo=" +
		s.c.BindsTo + "\nAfter=" + s.c.BindsTo + "\n"
	if err := os.MkdirAll(filepath.Dir(s.dropInPath(name)), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(s.dropInPath(name), []byte(body), 0o644)
}

// RemoveFile implements Executor; a failed unit of that name is reset, so that it leaves
// systemd's lists at the next reload.
func (s *Systemd) RemoveFile(name string) error {
	if err := RemoveMarked(s.c.Dir, name); err != nil {
		return err
	}
	if err := os.Remove(s.dropInPath(name)); err == nil {
		_ = os.Remove(filepath.Dir(s.dropInPath(name))) // only when empty
	}
	if conn, err := s.connection(context.Background()); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = conn.ResetFailedUnitContext(ctx, name)
		cancel()
	}
	return nil
}

// Reload implements Executor (daemon-reload).
func (s *Systemd) Reload(ctx context.Context) error {
	conn, err := s.connection(ctx)
	if err != nil {
		return err
	}
	if err := conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	return nil
}

// Start implements Executor (StartUnit, mode "replace").
func (s *Systemd) Start(ctx context.Context, name string) error {
	if _, err := unit.ParseName(name); err != nil {
		return fmt.Errorf("%w: %s", ErrName, name)
	}
	conn, err := s.connection(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, name, "replace", done); err != nil {
		if isNoSuchUnit(err) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return fmt.Errorf("start %s: %w", name, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("%w: start %s: %s", ErrJobFailed, name, res)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop implements Executor (StopUnit, mode "replace"; SIGKILL to the whole unit when ctx
// ends first).
func (s *Systemd) Stop(ctx context.Context, name string) error {
	if _, err := unit.ParseName(name); err != nil {
		return fmt.Errorf("%w: %s", ErrName, name)
	}
	conn, err := s.connection(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, name, "replace", done); err != nil {
		if isNoSuchUnit(err) {
			return nil // not loaded: nothing runs
		}
		if ctx.Err() == nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
	} else {
		select {
		case res := <-done:
			if res == "done" || res == "skipped" {
				return nil
			}
			return fmt.Errorf("%w: stop %s: %s", ErrJobFailed, name, res)
		case <-ctx.Done():
		}
	}
	// Out of time: kill everything of the unit, then wait (briefly) until systemd sees it
	// gone.
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := conn.KillUnitWithTarget(kctx, name, sddbus.All, int32(syscall.SIGKILL)); err != nil && !isNoSuchUnit(err) {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	for kctx.Err() == nil {
		st, err := s.Status(kctx, []string{name})
		if err == nil && len(st) == 1 && !st[0].Running() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%w: stop %s: still running after SIGKILL", ErrJobFailed, name)
}

// Status implements Executor (ListUnitsByNames).
func (s *Systemd) Status(ctx context.Context, names []string) ([]Status, error) {
	if len(names) == 0 {
		return nil, nil
	}
	conn, err := s.connection(ctx)
	if err != nil {
		return nil, err
	}
	// systemd has no state for a template (and refuses its name): ask only for the others.
	var ask []string
	for _, n := range names {
		if pn, err := unit.ParseName(n); err == nil && !pn.IsTemplate() {
			ask = append(ask, n)
		}
	}
	list, err := conn.ListUnitsByNamesContext(ctx, ask)
	if err != nil {
		return nil, fmt.Errorf("list units: %w", err)
	}
	by := make(map[string]sddbus.UnitStatus, len(list))
	for _, u := range list {
		by[u.Name] = u
	}
	out := make([]Status, 0, len(names))
	for _, n := range names {
		st := Status{Name: n, LoadState: LoadNotFound, ActiveState: Inactive, SubState: "dead"}
		if u, ok := by[n]; ok {
			st.LoadState, st.ActiveState, st.SubState = u.LoadState, u.ActiveState, u.SubState
		} else if _, err := os.Stat(filepath.Join(s.c.Dir, n)); err == nil {
			st.LoadState = LoadLoaded // a template's file
		}
		out = append(out, st)
	}
	return out, nil
}

// Watch implements Executor: systemd's PropertiesChanged signals of units (any unit: the
// reconciler looks at its own), on a connection of its own; it reconnects when the
// connection breaks and calls changed then too.
func (s *Systemd) Watch(ctx context.Context, changed func()) error {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := s.watchOnce(ctx, changed)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("systemd executor: watch broken, retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

func (s *Systemd) watchOnce(ctx context.Context, changed func()) error {
	conn, err := s.c.Connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()
	updates := make(chan *sddbus.PropertiesUpdate, 1024)
	errs := make(chan error, 1)
	conn.SetPropertiesSubscriber(updates, errs)
	if err := conn.Subscribe(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	changed() // whatever happened while not watching
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			if _, ok := u.Changed["ActiveState"]; ok {
				changed()
			} else if _, ok := u.Changed["SubState"]; ok {
				changed()
			}
		case <-errs:
			// The channel overflowed: some changes were dropped, so look at everything.
			changed()
		case <-check.C:
			if !conn.Connected() {
				return errors.New("d-bus connection closed")
			}
		}
	}
}

func isNoSuchUnit(err error) bool {
	var de godbus.Error
	if errors.As(err, &de) {
		return de.Name == "org.freedesktop.systemd1.NoSuchUnit" || de.Name == "org.freedesktop.systemd1.LoadFailed"
	}
	var dp *godbus.Error
	if errors.As(err, &dp) {
		return dp.Name == "org.freedesktop.systemd1.NoSuchUnit" || dp.Name == "org.freedesktop.systemd1.LoadFailed"
	}
	return false
}
