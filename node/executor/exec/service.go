package exec

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

// systemd's defaults.
const (
	DefaultTimeoutStopSec = 90 * time.Second
	DefaultRestartSec     = 100 * time.Millisecond
	DefaultStartLimit     = 10 * time.Second
	DefaultStartBurst     = 5
	// DefaultPath is the PATH systemd gives services.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// service is a [Service] section read for one unit name (specifiers expanded).
type service struct {
	Type            string // simple, exec, notify (run as simple), oneshot
	RemainAfterExit bool
	StartPre        []command
	Start           []command
	StartPost       []command
	Stop            []command
	StopPost        []command
	Env             map[string]string
	EnvFiles        []envFile
	WorkingDir      string
	WorkingDirOpt   bool // '-' prefix: a missing directory is no error
	Restart         string
	RestartSec      time.Duration
	TimeoutStop     time.Duration // 0: infinity
	StartLimit      time.Duration
	StartBurst      int
	SuccessStatus   map[int]bool
}

type envFile struct {
	path     string
	optional bool
}

// readService reads the unit u (a plain unit, or the template of name) as the service name.
func readService(u *unit.Unit, name string, sp specifiers) (*service, error) {
	n, err := unit.ParseName(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", executor.ErrName, name)
	}
	if n.Type != "service" {
		return nil, fmt.Errorf("%w: %s (only services run as processes)", executor.ErrUnsupported, name)
	}
	if n.IsTemplate() {
		return nil, fmt.Errorf("%w: %s is a template; start an instance", executor.ErrName, name)
	}
	sp.Name = n
	s := &service{
		Type: "simple", Restart: "no", RestartSec: DefaultRestartSec, TimeoutStop: DefaultTimeoutStopSec,
		StartLimit: DefaultStartLimit, StartBurst: DefaultStartBurst, Env: map[string]string{},
		SuccessStatus: map[int]bool{0: true},
	}
	bad := func(key, v string, err error) error {
		return fmt.Errorf("%w: %s=%s: %w", executor.ErrBadSetting, key, v, err)
	}
	if v, ok := u.Value("Service", "Type"); ok && v != "" {
		switch v {
		case "simple", "exec", "notify", "notify-reload", "idle":
			s.Type = "simple"
		case "oneshot":
			s.Type = "oneshot"
		default:
			return nil, fmt.Errorf("%w: Type=%s", executor.ErrUnsupported, v)
		}
	}
	if v, ok := u.Value("Service", "RemainAfterExit"); ok && v != "" {
		if s.RemainAfterExit, err = unit.ParseBool(v); err != nil {
			return nil, bad("RemainAfterExit", v, err)
		}
	}
	cmds := func(key string) ([]command, error) {
		var out []command
		for _, v := range u.Values("Service", key) {
			c, err := parseCommands(v, sp)
			if err != nil {
				return nil, bad(key, v, err)
			}
			out = append(out, c...)
		}
		return out, nil
	}
	for key, dst := range map[string]*[]command{
		"ExecStartPre": &s.StartPre, "ExecStart": &s.Start, "ExecStartPost": &s.StartPost,
		"ExecStop": &s.Stop, "ExecStopPost": &s.StopPost,
	} {
		if *dst, err = cmds(key); err != nil {
			return nil, err
		}
	}
	switch {
	case len(s.Start) == 0 && !(s.Type == "oneshot" && s.RemainAfterExit):
		return nil, fmt.Errorf("%w: no ExecStart=", executor.ErrBadSetting)
	case len(s.Start) > 1 && s.Type != "oneshot":
		return nil, fmt.Errorf("%w: several ExecStart= need Type=oneshot", executor.ErrBadSetting)
	}
	for _, v := range u.Values("Service", "Environment") {
		v, err := sp.expand(v)
		if err != nil {
			return nil, bad("Environment", v, err)
		}
		env, err := parseEnvironment(v)
		if err != nil {
			return nil, bad("Environment", v, err)
		}
		for k, val := range env {
			s.Env[k] = val
		}
	}
	for _, v := range u.Values("Service", "EnvironmentFile") {
		v, err := sp.expand(v)
		if err != nil {
			return nil, bad("EnvironmentFile", v, err)
		}
		p, opt := strings.CutPrefix(v, "-")
		s.EnvFiles = append(s.EnvFiles, envFile{p, opt})
	}
	if v, ok := u.Value("Service", "WorkingDirectory"); ok && v != "" {
		if v, err = sp.expand(v); err != nil {
			return nil, bad("WorkingDirectory", v, err)
		}
		s.WorkingDir, s.WorkingDirOpt = strings.TrimPrefix(v, "-"), strings.HasPrefix(v, "-")
		if s.WorkingDir == "~" {
			s.WorkingDir = os.Getenv("HOME")
		}
	}
	if v, ok := u.Value("Service", "Restart"); ok && v != "" {
		switch v {
		case "no", "always", "on-failure", "on-success", "on-abnormal", "on-abort", "on-watchdog":
			s.Restart = v
		default:
			return nil, bad("Restart", v, fmt.Errorf("want no, always, on-failure, on-success, on-abnormal or on-abort"))
		}
	}
	span := func(key string, dst *time.Duration, infinity time.Duration) error {
		v, ok := u.Value("Service", key)
		if !ok || v == "" {
			return nil
		}
		d, inf, err := parseTimeSpan(v)
		if err != nil {
			return bad(key, v, err)
		}
		if inf {
			d = infinity
		}
		*dst = d
		return nil
	}
	if err := span("RestartSec", &s.RestartSec, 0); err != nil {
		return nil, err
	}
	if err := span("TimeoutStopSec", &s.TimeoutStop, 0); err != nil {
		return nil, err
	}
	if v, ok := u.Value("Service", "TimeoutSec"); ok && v != "" {
		if _, has := u.Value("Service", "TimeoutStopSec"); !has {
			if err := span("TimeoutSec", &s.TimeoutStop, 0); err != nil {
				return nil, err
			}
		}
	}
	if v, ok := u.Value("Unit", "StartLimitIntervalSec"); ok && v != "" {
		d, inf, err := parseTimeSpan(v)
		if err != nil {
			return nil, bad("StartLimitIntervalSec", v, err)
		}
		if inf || d == 0 {
			s.StartBurst = 0 // no limit
		}
		s.StartLimit = d
	}
	if v, ok := u.Value("Unit", "StartLimitBurst"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, bad("StartLimitBurst", v, fmt.Errorf("want a number"))
		}
		if s.StartBurst != 0 || s.StartLimit != 0 {
			s.StartBurst = n
		}
	}
	for _, v := range u.Values("Service", "SuccessExitStatus") {
		for _, f := range strings.Fields(v) {
			if n, err := strconv.Atoi(f); err == nil {
				s.SuccessStatus[n] = true
			}
		}
	}
	return s, nil
}

// environment is the service's environment for its commands: systemd's base (PATH, and
// INVOCATION_ID-like values are not set), the EnvironmentFile= files, then Environment=.
func (s *service) environment(extra map[string]string) (map[string]string, error) {
	env := map[string]string{"PATH": DefaultPath, "LANG": "C.UTF-8"}
	for _, f := range s.EnvFiles {
		vals, err := readEnvFile(f.path)
		if err != nil {
			if f.optional && os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("%w: EnvironmentFile=%s: %v", executor.ErrBadSetting, f.path, err)
		}
		for k, v := range vals {
			env[k] = v
		}
	}
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env, nil
}

// readEnvFile reads NAME=value lines (# and ; comments, optional quotes).
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out, sc.Err()
}

// restarts tells whether Restart= restarts after an exit that was (or not) a success.
func (s *service) restarts(success bool, killedBySignal bool) bool {
	switch s.Restart {
	case "always":
		return true
	case "on-success":
		return success
	case "on-failure":
		return !success
	case "on-abnormal", "on-abort":
		return killedBySignal && !success
	}
	return false
}
