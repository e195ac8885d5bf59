package reboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/keys"
)

// Need is a reason to reboot.
type Need struct {
	// Source names what asks: update-engine, reboot-required-file, kiln-ctl.
	Source string
	Detail string
	// Revision is the mod revision of a kiln ctl request, so that it is cleared after the
	// reboot only if nobody asked again since.
	Revision int64
}

// Needer tells whether something asks this machine to reboot.
type Needer interface {
	RebootNeeded(ctx context.Context) (*Need, error)
}

// RebootRequiredFile is the Debian/Ubuntu convention: the file exists while a reboot is needed.
// /run is a tmpfs, so the reboot clears it.
type RebootRequiredFile string

// DefaultRebootRequiredFile is the file's usual place.
const DefaultRebootRequiredFile = "/run/reboot-required"

func (f RebootRequiredFile) RebootNeeded(context.Context) (*Need, error) {
	if _, err := os.Stat(string(f)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return &Need{Source: "reboot-required-file", Detail: string(f)}, nil
}

// UpdateEngine asks Flatcar's update_engine over the system D-Bus: a reboot is needed when its
// status is UPDATE_STATUS_UPDATED_NEED_REBOOT. Without update_engine (or D-Bus) it says nothing
// is needed and remembers the error once.
type UpdateEngine struct {
	mu   sync.Mutex
	conn *dbus.Conn
}

// Flatcar update_engine's D-Bus names.
const (
	updateEngineName   = "com.coreos.update1"
	updateEnginePath   = "/com/coreos/update1"
	updateEngineStatus = "com.coreos.update1.Manager.GetStatus"
	// UpdatedNeedReboot is the status of an update installed and waiting for a reboot.
	UpdatedNeedReboot = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
)

func (u *UpdateEngine) RebootNeeded(ctx context.Context) (*Need, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn == nil {
		c, err := dbus.ConnectSystemBus()
		if err != nil {
			return nil, fmt.Errorf("update_engine: system bus: %w", err)
		}
		u.conn = c
	}
	var (
		lastChecked int64
		progress    float64
		operation   string
		newVersion  string
		newSize     int64
	)
	call := u.conn.Object(updateEngineName, updateEnginePath).CallWithContext(ctx, updateEngineStatus, 0)
	if call.Err != nil {
		if !u.conn.Connected() {
			u.conn.Close()
			u.conn = nil
		}
		return nil, fmt.Errorf("update_engine: %w", call.Err)
	}
	if err := call.Store(&lastChecked, &progress, &operation, &newVersion, &newSize); err != nil {
		return nil, fmt.Errorf("update_engine: %w", err)
	}
	if operation != UpdatedNeedReboot {
		return nil, nil
	}
	return &Need{Source: "update-engine", Detail: "updated to " + newVersion}, nil
}

// Request is a reboot asked for with kiln ctl reboot: the key keys.RebootRequest(id).
type Request struct {
	KV interface {
		Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	}
	MachineID string
}

// RequestValue is the value of a reboot request.
type RequestValue struct {
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

func (r Request) RebootNeeded(ctx context.Context) (*Need, error) {
	resp, err := r.KV.Get(ctx, keys.RebootRequest(r.MachineID))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var v RequestValue
	_ = json.Unmarshal(resp.Kvs[0].Value, &v)
	detail := "kiln ctl reboot"
	if v.By != "" {
		detail += " by " + v.By
	}
	if v.Reason != "" {
		detail += ": " + v.Reason
	}
	return &Need{Source: "kiln-ctl", Detail: detail, Revision: resp.Kvs[0].ModRevision}, nil
}

// Rebooter reboots the machine. Reboot returns once the reboot has been asked for; the
// machine goes down some time later.
type Rebooter interface {
	Reboot(ctx context.Context) error
}

// Logind reboots through systemd-logind's Reboot method on the system D-Bus.
type Logind struct{}

func (Logind) Reboot(ctx context.Context) error {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return fmt.Errorf("logind: system bus: %w", err)
	}
	defer conn.Close()
	call := conn.Object("org.freedesktop.login1", "/org/freedesktop/login1").
		CallWithContext(ctx, "org.freedesktop.login1.Manager.Reboot", 0, false)
	if call.Err != nil {
		return fmt.Errorf("logind: reboot: %w", call.Err)
	}
	return nil
}

// Command reboots by running a shell command (development and tests: --reboot-command). The
// command sees KILN_MACHINE_ID and KILN_BOOT_ID in its environment.
type Command struct {
	Shell     string // the command line, run with /bin/sh -c
	MachineID string
	BootID    string
}

func (c Command) Reboot(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.Shell)
	cmd.Env = append(os.Environ(), "KILN_MACHINE_ID="+c.MachineID, "KILN_BOOT_ID="+c.BootID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("reboot command %q: %w: %s", c.Shell, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BootTime is when this boot began: when PID 1 started, which is the kernel's boot (btime in
// /proc/stat) plus PID 1's start time since then. On a machine that is init's start, moments
// after the kernel's; in a container (the docker driver's nodes) it is the container's start,
// where the kernel's boot is the host's and a container restart (a reboot) would not show.
func BootTime() (time.Time, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	var btime int64 = -1
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if btime, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
				return time.Time{}, fmt.Errorf("btime in /proc/stat: %w", err)
			}
			break
		}
	}
	if btime < 0 {
		return time.Time{}, errors.New("no btime in /proc/stat")
	}
	boot := time.Unix(btime, 0).UTC()
	raw, err = os.ReadFile("/proc/1/stat")
	if err != nil {
		return boot, nil // no PID 1 to see (a restricted /proc): the kernel's boot
	}
	start, err := startTicks(string(raw))
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/1/stat: %w", err)
	}
	return boot.Add(time.Duration(start) * time.Second / userHZ), nil
}

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on every Linux architecture
// Go supports).
const userHZ = 100

// startTicks reads a process's start time after boot, in USER_HZ ticks, from its
// /proc/PID/stat line: the 22nd field, counted after the command name, which is in parentheses
// and may itself hold spaces and parentheses.
func startTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (the state): field 22 is fields[19]
	if len(fields) < 20 {
		return 0, fmt.Errorf("%d fields, want at least 22", len(fields)+2)
	}
	return strconv.ParseInt(fields[19], 10, 64)
}
