package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/agent"
	"github.com/kiln-cluster/kiln/node/config"
	"github.com/kiln-cluster/kiln/node/etcdconn"
	"github.com/kiln-cluster/kiln/node/reboot"
)

func init() { register(newRunCmd) }

// runFlags are the flags of kiln-node run; each overrides its field of the config file.
type runFlags struct {
	configPath   string
	c            config.Config
	metadata     map[string]string
	windowStart  string
	windowLength string
	bootID       string
	updateEngine bool
	logFormat    string
	logLevel     string
}

func newRunCmd() *cobra.Command { return runCommand(&runFlags{}) }

// runCommand builds kiln-node run around f, which receives the flags.
func runCommand(f *runFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node daemon: machine registry, reboot coordination, FleetLock",
		Long: `Run the node daemon. Settings come from the config file (` + config.DefaultPath + `);
every setting can also be given as a flag, which wins over the file, so that several nodes can run
on one host for tests and development.`,
		Example: `  kiln-node run --config /etc/kiln/node.json
  kiln-node run --etcd-endpoints https://10.0.0.11:2379 --etcd-ca pki/ca.crt \
    --etcd-cert pki/nodes/node1/client.crt --etcd-key pki/nodes/node1/client.key \
    --machine-id node1 --data-dir /tmp/node1 --strategy etcd-lock --reboot-command 'systemctl reboot'`,
		Args: func(cmd *cobra.Command, a []string) error { return exitcode.UserErr(cobra.NoArgs(cmd, a)) },
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", config.DefaultPath, "the config file (\"\": none, flags only); a missing file at the default path is not an error")
	fl.StringSliceVar(&f.c.Etcd.Endpoints, "etcd-endpoints", nil, "etcd client URLs (https://HOST:2379,...)")
	fl.StringVar(&f.c.Etcd.CA, "etcd-ca", "", "CA certificate of etcd's servers")
	fl.StringVar(&f.c.Etcd.Cert, "etcd-cert", "", "client certificate for etcd")
	fl.StringVar(&f.c.Etcd.Key, "etcd-key", "", "client key for etcd")
	fl.StringVar(&f.c.MachineID, "machine-id", "", "machine ID (default: the contents of /etc/machine-id)")
	fl.StringVar(&f.c.Hostname, "hostname", "", "hostname to publish (default: the system's)")
	fl.StringToStringVar(&f.metadata, "metadata", nil, "machine metadata, k=v,...")
	fl.StringVar(&f.c.DataDir, "data-dir", "", "directory of the daemon's state (default "+agent.DefaultDataDir+")")
	fl.StringVar(&f.c.OS, "os", "", "OS reported in the registry (flatcar, fcos)")
	fl.StringVar(&f.c.Channel, "channel", "", "update channel reported in the registry")
	fl.StringVar(&f.c.FleetLockListen, "fleetlock-listen", "", "address of the FleetLock server (e.g. 127.0.0.1:8081); empty: off")
	fl.StringVar(&f.c.MetricsListen, "metrics-listen", "", "address of the Prometheus endpoint (e.g. 127.0.0.1:9100); empty: off")
	fl.StringVar(&f.c.Reboot.Strategy, "strategy", "", "reboot strategy: etcd-lock, fleetlock, reboot or off (default etcd-lock)")
	fl.StringVar(&f.c.Reboot.Group, "group", "", "reboot lock group (default \"default\")")
	fl.IntVar(&f.c.Reboot.MaxConcurrent, "max-concurrent", 0, "machines of the group that may reboot at once (default 1)")
	fl.StringVar(&f.windowStart, "reboot-window-start", "", "reboot window start, e.g. \"Sun 04:00\" or \"Mon,Wed 03:30\"")
	fl.StringVar(&f.windowLength, "reboot-window-length", "", "reboot window length, e.g. 2h")
	fl.StringVar(&f.c.Reboot.Command, "reboot-command", "", "shell command that reboots, instead of logind over D-Bus (development)")
	fl.StringVar(&f.c.Reboot.RequiredFile, "reboot-required-file", "", "file whose existence asks for a reboot (default /run/reboot-required)")
	fl.StringVar(&f.c.Reboot.BootMarker, "boot-marker", "", "file of this boot's random marker, on a tmpfs that every boot (and container start) begins empty; \"none\": the kernel's boot ID alone (default "+reboot.DefaultBootMarker+")")
	fl.StringVar(&f.c.Reboot.CheckInterval, "check-interval", "", "how often to check for a needed reboot (default 10s)")
	fl.StringVar(&f.c.Executor, "executor", "", "how units run: systemd (D-Bus, files in /run/systemd/system) or exec (child processes; units, logs and state files under DATA-DIR/exec) (default systemd)")
	fl.StringVar(&f.c.UnitsDir, "units-dir", "", "directory of the cluster's units to submit on first start")
	fl.StringVar(&f.c.LeaseTTL, "lease-ttl", "", "time to live of the machine's registry lease (default "+agent.DefaultLeaseTTL.String()+")")
	fl.BoolVar(&f.updateEngine, "update-engine", true, "ask Flatcar's update_engine (D-Bus) whether a reboot is needed")
	fl.StringVar(&f.bootID, "boot-id", "", "override the kernel's boot ID (development: several machines on one host)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	_ = fl.MarkHidden("boot-id")
	return cmd
}

// merged returns the config file's settings overridden by the flags that were set.
func (f *runFlags) merged(fl *pflag.FlagSet) (*config.Config, error) {
	c := &config.Config{}
	if f.configPath != "" {
		if loaded, err := config.Load(f.configPath); err == nil {
			c = loaded
		} else if !(errors.Is(err, fs.ErrNotExist) && !fl.Changed("config")) {
			return nil, err
		}
	}
	set := func(name string, apply func()) {
		if fl.Changed(name) {
			apply()
		}
	}
	set("etcd-endpoints", func() { c.Etcd.Endpoints = f.c.Etcd.Endpoints })
	set("etcd-ca", func() { c.Etcd.CA = f.c.Etcd.CA })
	set("etcd-cert", func() { c.Etcd.Cert = f.c.Etcd.Cert })
	set("etcd-key", func() { c.Etcd.Key = f.c.Etcd.Key })
	set("machine-id", func() { c.MachineID = f.c.MachineID })
	set("hostname", func() { c.Hostname = f.c.Hostname })
	set("metadata", func() { c.Metadata = f.metadata })
	set("data-dir", func() { c.DataDir = f.c.DataDir })
	set("os", func() { c.OS = f.c.OS })
	set("channel", func() { c.Channel = f.c.Channel })
	set("fleetlock-listen", func() { c.FleetLockListen = f.c.FleetLockListen })
	set("metrics-listen", func() { c.MetricsListen = f.c.MetricsListen })
	set("strategy", func() { c.Reboot.Strategy = f.c.Reboot.Strategy })
	set("group", func() { c.Reboot.Group = f.c.Reboot.Group })
	set("max-concurrent", func() { c.Reboot.MaxConcurrent = f.c.Reboot.MaxConcurrent })
	set("reboot-command", func() { c.Reboot.Command = f.c.Reboot.Command })
	set("reboot-required-file", func() { c.Reboot.RequiredFile = f.c.Reboot.RequiredFile })
	set("boot-marker", func() { c.Reboot.BootMarker = f.c.Reboot.BootMarker })
	set("check-interval", func() { c.Reboot.CheckInterval = f.c.Reboot.CheckInterval })
	set("executor", func() { c.Executor = f.c.Executor })
	set("units-dir", func() { c.UnitsDir = f.c.UnitsDir })
	set("lease-ttl", func() { c.LeaseTTL = f.c.LeaseTTL })
	if fl.Changed("reboot-window-start") || fl.Changed("reboot-window-length") {
		if f.windowStart == "" || f.windowLength == "" {
			return nil, errors.New("--reboot-window-start and --reboot-window-length go together")
		}
		c.Reboot.Window = &config.Window{Start: f.windowStart, Length: f.windowLength}
	}
	if c.Reboot.Strategy == "" {
		c.Reboot.Strategy = "etcd-lock"
	}
	if c.Reboot.MaxConcurrent == 0 {
		c.Reboot.MaxConcurrent = 1
	}
	if c.Executor == "" {
		c.Executor = "systemd"
	}
	if c.Executor != "systemd" && c.Executor != "exec" {
		return nil, fmt.Errorf("executor %q: want systemd or exec", c.Executor)
	}
	return c, nil
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func (f *runFlags) run(cmd *cobra.Command) error {
	c, err := f.merged(cmd.Flags())
	if err != nil {
		return exitcode.UserErr(err)
	}
	if err := agent.Check(c); err != nil {
		return exitcode.UserErr(err)
	}
	log, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		return exitcode.UserErr(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(agent.Collectors()...)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go trimMemory(ctx)
	err = agent.Run(ctx, agent.Options{
		Config:       *c,
		BootID:       f.bootID,
		UpdateEngine: f.updateEngine,
		Metrics:      reg,
		Log:          log,
	})
	if errors.Is(err, etcdconn.ErrTLS) {
		return exitcode.UserErr(err) // the certificates given are wrong: the user's to fix
	}
	return err
}
