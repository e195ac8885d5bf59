// Package ctl is the client side of kiln ctl: how the operator reaches the cluster's etcd
// (flags, KILN_ETCD_* variables, the cluster context) and the reads and writes behind
// kiln ctl machines, locks, unlock and reboot.
package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/config"
	"github.com/kiln-cluster/kiln/node/etcdconn"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/lock"
	"github.com/kiln-cluster/kiln/node/reboot"
	"github.com/kiln-cluster/kiln/node/registry"
)

// Errors kiln ctl's users read.
var (
	ErrUnknownMachine = errors.New("no such machine in the registry")
	ErrNotHolder      = errors.New("machine holds no reboot slot")
)

// Environment variables that override the context (and are overridden by flags).
const (
	EnvEndpoints = "KILN_ETCD_ENDPOINTS"
	EnvCA        = "KILN_ETCD_CA"
	EnvCert      = "KILN_ETCD_CERT"
	EnvKey       = "KILN_ETCD_KEY"
	// EnvContext names a context file to use instead of the current one.
	EnvContext = "KILN_CONTEXT"
)

// Target is what the flags say (empty fields: not given).
type Target struct {
	Endpoints     []string
	CA, Cert, Key string
	// ContextPath is a context file (--context); empty: $KILN_CONTEXT, else the current context.
	ContextPath string
}

// Resolve fills every field from, in order: the flags, the KILN_ETCD_* variables, the context
// file (--context, $KILN_CONTEXT, else the current context). The context is read only when
// something is still missing.
func Resolve(flags Target, getenv func(string) string) (*config.Context, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	out := &config.Context{Endpoints: flags.Endpoints, CA: flags.CA, Cert: flags.Cert, Key: flags.Key}
	if len(out.Endpoints) == 0 && getenv(EnvEndpoints) != "" {
		for ep := range strings.SplitSeq(getenv(EnvEndpoints), ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				out.Endpoints = append(out.Endpoints, ep)
			}
		}
	}
	for _, f := range []struct {
		p   *string
		env string
	}{{&out.CA, EnvCA}, {&out.Cert, EnvCert}, {&out.Key, EnvKey}} {
		if *f.p == "" {
			*f.p = getenv(f.env)
		}
	}
	if len(out.Endpoints) > 0 && out.CA != "" && out.Cert != "" && out.Key != "" {
		return out, nil
	}
	path := flags.ContextPath
	if path == "" {
		path = getenv(EnvContext)
	}
	var ctxFile *config.Context
	var err error
	if path != "" {
		ctxFile, err = config.LoadContext(path)
	} else {
		ctxFile, _, err = config.LoadCurrentContext()
	}
	if errors.Is(err, config.ErrNoContext) && len(out.Missing()) < 4 {
		return nil, out.Incomplete() // some given: say which are missing
	}
	if err != nil {
		return nil, err
	}
	out.Name = ctxFile.Name
	if len(out.Endpoints) == 0 {
		out.Endpoints = ctxFile.Endpoints
	}
	for _, f := range [][2]*string{{&out.CA, &ctxFile.CA}, {&out.Cert, &ctxFile.Cert}, {&out.Key, &ctxFile.Key}} {
		if *f[0] == "" {
			*f[0] = *f[1]
		}
	}
	return out, nil
}

// Connect opens a client of the resolved target; settings that etcd's TLS refuses are an
// error at once (etcdconn.ErrTLS), not a timeout later.
func Connect(c *config.Context) (*clientv3.Client, error) {
	return etcdconn.Dial(context.Background(), c.Endpoints, c.CA, c.Cert, c.Key)
}

// KV is what kiln ctl needs from etcd.
type KV interface {
	lock.KV
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
}

// MachineRow is a line of kiln ctl machines.
type MachineRow struct {
	registry.Machine
	// Holds lists the groups whose reboot slot the machine holds.
	Holds []string `json:"holds,omitempty"`
	// RebootRequested: kiln ctl reboot asked this machine to reboot.
	RebootRequested bool `json:"rebootRequested,omitempty"`
}

// Machines lists the registered machines with their reboot slots and requests.
func Machines(ctx context.Context, kv KV) ([]MachineRow, error) {
	ms, err := registry.List(ctx, kv)
	if err != nil {
		return nil, err
	}
	groups, err := lock.List(ctx, kv)
	if err != nil {
		return nil, err
	}
	reqs, err := kv.Get(ctx, keys.RebootRequests, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	requested := map[string]bool{}
	for _, kvp := range reqs.Kvs {
		requested[strings.TrimPrefix(string(kvp.Key), keys.RebootRequests)] = true
	}
	var rows []MachineRow
	for _, m := range ms {
		r := MachineRow{Machine: m, RebootRequested: requested[m.ID]}
		for _, g := range groups {
			if g.Semaphore.Holds(m.ID) {
				r.Holds = append(r.Holds, g.Group)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// LockRow is a line of kiln ctl locks: one holder of one group (or a group with none).
type LockRow struct {
	Group  string    `json:"group"`
	Max    int       `json:"max"`
	Free   int       `json:"free"`
	Holder string    `json:"holder,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Alive: the holder is in the registry now; Rebooted: its boot ID differs from the one
	// it had when it took the slot (it is back and should release soon).
	Alive    bool   `json:"alive"`
	Rebooted bool   `json:"rebooted,omitempty"`
	BootID   string `json:"bootID,omitempty"`
}

// Locks lists every group's semaphore and holders.
func Locks(ctx context.Context, kv KV) ([]LockRow, error) {
	groups, err := lock.List(ctx, kv)
	if err != nil {
		return nil, err
	}
	ms, err := registry.List(ctx, kv)
	if err != nil {
		return nil, err
	}
	byID := map[string]registry.Machine{}
	for _, m := range ms {
		byID[m.ID] = m
	}
	var rows []LockRow
	for _, g := range groups {
		base := LockRow{Group: g.Group, Max: g.Semaphore.Max, Free: g.Semaphore.Semaphore}
		if len(g.Semaphore.Holders) == 0 {
			rows = append(rows, base)
			continue
		}
		hs := append([]string(nil), g.Semaphore.Holders...)
		sort.Strings(hs)
		for _, h := range hs {
			r := base
			r.Holder = h
			info := g.Holders[h]
			r.Since = info.Since
			m, alive := byID[h]
			r.Alive = alive
			if alive {
				r.BootID = m.BootID
				r.Rebooted = info.BootID != "" && m.BootID != info.BootID
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// Unlock frees machine's reboot slot in group, or in every group when group is empty; it
// returns the groups freed, and ErrNotHolder when there were none.
func Unlock(ctx context.Context, kv KV, machine, group string) ([]string, error) {
	if group != "" {
		groups, err := lock.List(ctx, kv)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			if g.Group == keys.GroupName(group) && g.Semaphore.Holds(machine) {
				return []string{g.Group}, lock.Release(ctx, kv, group, machine, nil)
			}
		}
		return nil, fmt.Errorf("%w: %s in group %s", ErrNotHolder, machine, keys.GroupName(group))
	}
	freed, err := lock.ReleaseAll(ctx, kv, machine, nil)
	if err == nil && len(freed) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotHolder, machine)
	}
	return freed, err
}

// RequestReboot asks machine to reboot (through its reboot strategy: with etcd-lock it waits
// for a slot). Unless force, the machine must be registered.
func RequestReboot(ctx context.Context, kv KV, machine, by, reason string, force bool) error {
	if !force {
		m, err := registry.Get(ctx, kv, machine)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("%w: %s (--force asks anyway)", ErrUnknownMachine, machine)
		}
	}
	raw, _ := json.Marshal(reboot.RequestValue{By: by, At: time.Now().UTC(), Reason: reason})
	_, err := kv.Put(ctx, keys.RebootRequest(machine), string(raw))
	return err
}
