package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/lock"
	"github.com/kiln-cluster/kiln/node/reboot"
	"github.com/kiln-cluster/kiln/node/registry"
)

// MachineRow is one machine of kiln ctl machines (and its alias list-machines): what the
// machine registers, and what the cluster holds about it.
type MachineRow struct {
	registry.Machine
	// Holds lists the groups whose reboot slot the machine holds.
	Holds []string `json:"holds,omitempty"`
	// RebootRequested: kiln ctl reboot asked this machine to reboot.
	RebootRequested bool `json:"rebootRequested,omitempty"`
	// Units counts the units placed on the machine.
	Units int `json:"units"`
	// Engine: the machine's kiln-node is the scheduler engine's leader now.
	Engine bool `json:"engine,omitempty"`
}

// Machines lists the registered machines, sorted by ID, with their reboot slots and requests,
// the number of units placed on each and which one leads the engine.
func (c *Client) Machines(ctx context.Context) ([]MachineRow, error) {
	kv := c.etcd
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
	counts, err := machineUnits(ctx, kv)
	if err != nil {
		return nil, err
	}
	leader, err := engine.Leader(ctx, kv)
	if err != nil {
		return nil, err
	}
	rows := []MachineRow{}
	for _, m := range ms {
		r := MachineRow{Machine: m, RebootRequested: requested[m.ID], Units: counts[m.ID], Engine: m.ID == leader}
		for _, g := range groups {
			if g.Semaphore.Holds(m.ID) {
				r.Holds = append(r.Holds, g.Group)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// LockRow is a line of kiln ctl locks: one holder of one group's reboot semaphore (or a group
// with none).
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

// Locks lists every group's semaphore and holders, holders sorted.
func (c *Client) Locks(ctx context.Context) ([]LockRow, error) {
	kv := c.etcd
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
	rows := []LockRow{}
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

// Unlocked is what kiln ctl unlock did.
type Unlocked struct {
	Machine string `json:"machine"`
	// Freed lists the groups whose slot was freed.
	Freed []string `json:"freed"`
}

// Unlock frees machine's reboot slot in group, or in every group when group is empty;
// ErrNotHolder when it held none.
func (c *Client) Unlock(ctx context.Context, machine, group string) (*Unlocked, error) {
	freed, err := c.unlock(ctx, machine, group)
	if err != nil {
		return nil, err
	}
	return &Unlocked{Machine: machine, Freed: freed}, nil
}

func (c *Client) unlock(ctx context.Context, machine, group string) ([]string, error) {
	kv := c.etcd
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

// RebootRequest is what kiln ctl reboot asks.
type RebootRequest struct {
	Machine string `json:"machine"`
	// By names who asks (the operator's user name); Reason is shown in the machine's log.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Force asks even when the machine is not in the registry now.
	Force bool `json:"force,omitempty"`
}

// RebootRequested is kiln ctl reboot's answer.
type RebootRequested struct {
	Machine   string `json:"machine"`
	Requested bool   `json:"requested"`
}

// RequestReboot asks a machine to reboot (through its reboot strategy: with etcd-lock it waits
// for a slot). Unless r.Force, the machine must be registered (else ErrUnknownMachine).
func (c *Client) RequestReboot(ctx context.Context, r RebootRequest) (*RebootRequested, error) {
	if !r.Force {
		m, err := registry.Get(ctx, c.etcd, r.Machine)
		if err != nil {
			return nil, err
		}
		if m == nil {
			return nil, fmt.Errorf("%w: %s (--force asks anyway)", ErrUnknownMachine, r.Machine)
		}
	}
	raw, err := json.Marshal(reboot.RequestValue{By: r.By, At: time.Now().UTC(), Reason: r.Reason})
	if err != nil {
		return nil, err
	}
	if _, err := c.etcd.Put(ctx, keys.RebootRequest(r.Machine), string(raw)); err != nil {
		return nil, err
	}
	return &RebootRequested{Machine: r.Machine, Requested: true}, nil
}
