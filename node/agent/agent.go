// Package agent is kiln-node's daemon: it registers the machine, runs the units the scheduler
// places on it (node/reconcile, with the systemd or exec executor), coordinates its reboots
// through the cluster's reboot lock, serves FleetLock and Prometheus metrics, and keeps going
// while etcd is down (every part retries with backoff).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-cluster/kiln/node/config"
	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/etcdconn"
	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/executor/exec"
	"github.com/kiln-cluster/kiln/node/journal"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/lock"
	"github.com/kiln-cluster/kiln/node/reboot"
	"github.com/kiln-cluster/kiln/node/reconcile"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/version"
)

// Defaults of the daemon.
const (
	DefaultDataDir       = "/var/lib/kiln-node"
	DefaultCheckInterval = 10 * time.Second
	DefaultMachineIDFile = "/etc/machine-id"
	// DefaultLeaseTTL is the machine lease's TTL: a dead machine's units are placed elsewhere
	// within about this long (the engine waits for the lease to expire).
	DefaultLeaseTTL = 5 * time.Second
	// unitsSubmittedFile, in the data dir, remembers which of the generator's units were
	// submitted (first start).
	unitsSubmittedFile = "units-submitted"
)

// Options are the daemon's settings: the config file merged with flags, and what only
// development needs.
type Options struct {
	Config config.Config
	// BootID overrides the kernel's boot ID (development: several "machines" on one host).
	BootID string
	// UpdateEngine asks Flatcar's update_engine over D-Bus whether a reboot is needed.
	UpdateEngine bool
	// Health, when set, must pass before a reboot slot is released (the scheduler's units).
	Health func(ctx context.Context) error
	// Metrics is the registry served on MetricsListen; the caller registers Collectors() in it once.
	Metrics *prometheus.Registry
	Log     *slog.Logger
}

// Collectors are every metric of the daemon's packages, to register once per process.
func Collectors() []prometheus.Collector {
	return append(append(append(reboot.Collectors(), lock.Collectors()...), engine.Collectors()...), registryUp)
}

var registryUp = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "kiln_node_registered", Help: "1 while the machine is in the registry under a live lease."})

// MachineID returns the configured machine ID, else the contents of /etc/machine-id.
func MachineID(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	raw, err := os.ReadFile(DefaultMachineIDFile)
	if err != nil {
		return "", fmt.Errorf("machine id: %w (set --machine-id)", err)
	}
	id := strings.TrimSpace(string(raw))
	if id == "" {
		return "", errors.New("machine id: " + DefaultMachineIDFile + " is empty (set --machine-id)")
	}
	return id, nil
}

// Check validates the settings; its errors are the user's.
func Check(c *config.Config) error {
	var errs []error
	if err := etcdconn.Check(c.Etcd.Endpoints, c.Etcd.CA, c.Etcd.Cert, c.Etcd.Key); err != nil {
		errs = append(errs, err)
	}
	if err := reboot.ValidStrategy(c.Reboot.Strategy); err != nil {
		errs = append(errs, err)
	}
	if c.Reboot.Group != "" {
		if err := lock.ValidGroup(c.Reboot.Group); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Reboot.MaxConcurrent < 0 {
		errs = append(errs, errors.New("max concurrent reboots must be at least 1"))
	}
	if w := c.Reboot.Window; w != nil {
		if _, err := lock.ParseWindow(w.Start, w.Length); err != nil {
			errs = append(errs, err)
		}
	}
	for name, d := range map[string]string{"lease TTL": c.LeaseTTL, "check interval": c.Reboot.CheckInterval} {
		if d == "" {
			continue
		}
		if v, err := time.ParseDuration(d); err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("%s %q: want a positive duration such as 10s", name, d))
		}
	}
	return errors.Join(errs...)
}

// NewClient returns an etcd client of the endpoints; it does not wait for etcd to answer.
func NewClient(e config.Etcd) (*clientv3.Client, error) {
	return etcdconn.New(e.Endpoints, e.CA, e.Cert, e.Key)
}

// bootMarker is the boot marker's path of a setting: the default when empty, none when "none".
func bootMarker(setting string) string {
	switch setting {
	case "":
		return reboot.DefaultBootMarker
	case "none":
		return ""
	}
	return setting
}

func duration(s string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	return def
}

// Run runs the daemon until ctx ends (SIGTERM). A held reboot slot is kept on purpose: it is
// released after the reboot, by the next boot's daemon.
func Run(ctx context.Context, o Options) error {
	c := o.Config
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if err := Check(&c); err != nil {
		return err
	}
	id, err := MachineID(c.MachineID)
	if err != nil {
		return err
	}
	bootID, bootTime := o.BootID, time.Now().UTC()
	if bootID == "" {
		if bootID, err = reboot.Boot(bootMarker(c.Reboot.BootMarker)); err != nil {
			return err
		}
		if bt, err := reboot.BootTime(); err == nil {
			bootTime = bt
		}
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	group := keys.GroupName(c.Reboot.Group)
	log = log.With("machine", id)

	cli, err := NewClient(c.Etcd)
	if err != nil {
		return err
	}
	defer cli.Close()
	tlsCfg, err := etcdconn.TLSConfig(c.Etcd.CA, c.Etcd.Cert, c.Etcd.Key)
	if err != nil {
		return err
	}
	// Settings that etcd's TLS refuses are the user's to fix: say so now rather than retry
	// (an etcd that does not answer yet is not an error: at first boot the members come up
	// together).
	if err := etcdconn.Probe(ctx, c.Etcd.Endpoints, tlsCfg); err != nil {
		return err
	}

	hostname := c.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	// The reconciler follows the registry's lease: it reports under it and fences on it.
	lease := registry.NewMachineLease(cli, nil)
	pub := registry.NewPublisher(cli, lease, registry.Machine{
		ID: id, Hostname: hostname, IPs: addresses(), Metadata: c.Metadata, Version: version.Version,
		OS: c.OS, Channel: c.Channel, BootID: bootID, BootTime: bootTime,
		Health: registry.HealthStarting, Strategy: c.Reboot.Strategy, Group: group,
	}, duration(c.LeaseTTL, DefaultLeaseTTL), log)
	pub.Explain = func(ctx context.Context) error { return etcdconn.Probe(ctx, c.Etcd.Endpoints, tlsCfg) }
	pub.OnUp = func(up bool) {
		if up {
			registryUp.Set(1)
		} else {
			registryUp.Set(0)
		}
	}

	var window *lock.Window
	if w := c.Reboot.Window; w != nil {
		window, _ = lock.ParseWindow(w.Start, w.Length)
	}
	mgr := lock.NewManager(cli, lock.Policy{Groups: map[string]lock.Group{group: {Max: c.Reboot.MaxConcurrent, Window: window}}}, log)

	var rebooter reboot.Rebooter = reboot.Logind{}
	if c.Reboot.Command != "" {
		rebooter = reboot.Command{Shell: c.Reboot.Command, MachineID: id, BootID: bootID}
	}
	requiredFile := c.Reboot.RequiredFile
	if requiredFile == "" {
		requiredFile = reboot.DefaultRebootRequiredFile
	}
	needers := []reboot.Needer{reboot.RebootRequiredFile(requiredFile)}
	if o.UpdateEngine {
		needers = append([]reboot.Needer{&reboot.UpdateEngine{}}, needers...)
	}
	ex, closeEx, err := newExecutor(c.Executor, c.DataDir, id, bootID, hostname, log)
	if err != nil {
		return err
	}
	defer closeEx()
	rec, err := reconcile.New(reconcile.Config{MachineID: id, KV: cli, Executor: ex, Lease: lease,
		StateFile: filepath.Join(c.DataDir, "units-started.json"), Log: log.With("part", "reconcile")})
	if err != nil {
		return err
	}
	// Healthy: the caller's check passes and the units placed here run.
	health := func(ctx context.Context) error {
		var errs []error
		if o.Health != nil {
			errs = append(errs, o.Health(ctx))
		}
		return errors.Join(append(errs, rec.Health(ctx))...)
	}
	coord, err := reboot.New(reboot.Config{
		Strategy: c.Reboot.Strategy, MachineID: id, BootID: bootID, Group: group,
		Locker: mgr, Needers: needers, Requests: &reboot.Request{KV: cli, MachineID: id}, ClearRequests: cli,
		Rebooter: rebooter, State: reboot.StateFileIn(c.DataDir), Health: health,
		// the units that move away while the machine is down run again before the next
		// machine may reboot
		Units: rec.Launched,
		UnitsBack: func(ctx context.Context, units []string) error {
			return reconcile.RunningSomewhere(ctx, cli, units, id, lease.Info().ID)
		},
		Interval: duration(c.Reboot.CheckInterval, DefaultCheckInterval),
		OnStatus: func(s string) { pub.Update(func(m *registry.Machine) { m.Reboot = s }) },
		Log:      log,
	})
	if err != nil {
		return err
	}

	log.Info("kiln-node starting", "version", version.Version, "boot", bootID, "strategy", c.Reboot.Strategy,
		"group", group, "maxConcurrent", c.Reboot.MaxConcurrent, "endpoints", c.Etcd.Endpoints)
	g, ctx := errgroup.WithContext(ctx)
	// The lease outlives the reconciler: the units stop before the registry entry goes (the
	// engine places them elsewhere as soon as it has gone).
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	g.Go(func() error {
		err := pub.Run(pubCtx)
		// Shutting down: the units have stopped and the lease is revoked (or given up on),
		// nothing needs etcd any more. Closing the client ends every call still waiting for an
		// etcd that went away at the same moment (a reboot stops etcd and kiln-node together).
		cli.Close()
		return err
	})
	g.Go(func() error { defer stopPub(); return rec.Run(ctx) })
	g.Go(func() error { return coord.Run(ctx) })
	g.Go(func() error { return watchKey(ctx, cli, keys.Semaphore(group), coord.Wake, log) })
	g.Go(func() error { return watchKey(ctx, cli, keys.RebootRequest(id), coord.Wake, log) })
	g.Go(func() error { return healthLoop(ctx, pub, health) })
	// every kiln-node is a candidate for the cluster's one scheduler engine
	// (campaigning under the machine's lease: no keep-alive of its own)
	g.Go(func() error {
		return engine.New(engine.Config{Client: cli, ID: id, Log: log, MachineLease: func() (clientv3.LeaseID, bool) {
			l := lease.Info()
			return l.ID, l.Live
		}}).Run(ctx)
	})
	if c.UnitsDir != "" {
		g.Go(func() error {
			return submit.FirstStart(ctx, cli, c.UnitsDir, filepath.Join(c.DataDir, unitsSubmittedFile), log)
		})
	}
	// kiln ctl journal: this machine's units' log lines, asked and answered through etcd
	logs := journal.JournalctlSource()
	if c.Executor == "exec" {
		logs = journal.FileSource(filepath.Join(c.DataDir, "exec", "logs"))
	}
	g.Go(func() error { return journal.Serve(ctx, cli, id, logs, log) })
	if c.FleetLockListen != "" {
		// FleetLock serves this machine's own group, with its limits; a request for another
		// group is refused (unknown_group). Zincati's group is "default" unless configured.
		h := lock.NewFleetLock(mgr, log)
		if err := serve(ctx, g, "fleetlock", c.FleetLockListen, h, log); err != nil {
			return err
		}
	}
	if c.MetricsListen != "" && o.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{}))
		if err := serve(ctx, g, "metrics", c.MetricsListen, mux, log); err != nil {
			return err
		}
	}
	err = g.Wait()
	log.Info("kiln-node stopped")
	return err
}

// newExecutor returns the executor of units: systemd over D-Bus, or exec (child processes,
// files under DATA-DIR/exec: units/, logs/, and state/<unit>.json saying what runs).
func newExecutor(kind, dataDir, id, bootID, hostname string, log *slog.Logger) (executor.Executor, func(), error) {
	if kind == "exec" {
		ex, err := exec.New(exec.Config{Dir: filepath.Join(dataDir, "exec"), MachineID: id,
			BootID: bootID, Hostname: hostname, Log: log.With("part", "exec")})
		if err != nil {
			return nil, nil, fmt.Errorf("exec executor: %w", err)
		}
		return ex, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = ex.Close(ctx)
		}, nil
	}
	sd := executor.NewSystemd(executor.SystemdConfig{Log: log.With("part", "systemd")})
	return sd, sd.Close, nil
}

// healthLoop publishes the machine's health every few seconds (only changes are written).
func healthLoop(ctx context.Context, pub *registry.Publisher, health func(context.Context) error) error {
	for {
		err := health(ctx)
		pub.Update(func(m *registry.Machine) {
			if err != nil {
				m.Health, m.HealthDetail = registry.HealthUnhealthy, err.Error()
			} else {
				m.Health, m.HealthDetail = registry.HealthHealthy, ""
			}
		})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// serve listens on addr now (so that a bad address fails the start) and serves h until ctx ends.
func serve(ctx context.Context, g *errgroup.Group, name, addr string, h http.Handler, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info(name+" server listening", "addr", l.Addr().String())
	g.Go(func() error {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return nil
}

// watchKey calls wake on every change of key, watching again (with backoff) when the watch
// breaks; it returns nil when ctx ends.
func watchKey(ctx context.Context, cli *clientv3.Client, key string, wake func(), log *slog.Logger) error {
	etcdconn.Follow(ctx, cli, key, func(evs []*clientv3.Event) {
		if len(evs) > 0 {
			wake()
		}
	}, log)
	return nil
}

// addresses are the machine's global unicast addresses.
func addresses() []string {
	addrs, _ := net.InterfaceAddrs()
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}
