package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

// UnitStatus is what the cluster knows of a unit (kiln ctl list-units -o json prints a list of
// them, kiln ctl status one): what the operator asked, where the engine placed it, what the
// agents report, or why it has no machine.
type UnitStatus struct {
	Name string `json:"name"`
	// Submitted is false for a unit that was destroyed and is still being taken down.
	Submitted    bool       `json:"submitted"`
	Hash         unit.Hash  `json:"hash"`
	DesiredState unit.State `json:"desiredState"`
	// State is what is placed: launched or loaded when some machine has the unit, else
	// inactive.
	State      unit.State  `json:"state"`
	Placements []Placement `json:"placements,omitempty"`
	// Unplaced is why the engine found no machine for the unit.
	Unplaced string `json:"unplaced,omitempty"`
}

// Placement is a unit on one machine, with the machine's report when there is one.
type Placement struct {
	Machine string           `json:"machine"`
	State   unit.State       `json:"state"`
	Lease   int64            `json:"lease,omitempty"`
	Report  *keys.UnitReport `json:"report,omitempty"`
}

// statuses reads every submitted unit's status at one revision, sorted by name. Placements and
// reports of units that are no longer submitted are listed too (they are being taken down).
func statuses(ctx context.Context, kv clientv3.KV) ([]UnitStatus, error) {
	resp, err := kv.Txn(ctx).Then(
		clientv3.OpGet(keys.Units, clientv3.WithPrefix()),
		clientv3.OpGet(keys.Schedule, clientv3.WithPrefix()),
		clientv3.OpGet(keys.States, clientv3.WithPrefix()),
		clientv3.OpGet(keys.Unplaced, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, err
	}
	byName := map[string]*UnitStatus{}
	get := func(name string) *UnitStatus {
		s, ok := byName[name]
		if !ok {
			s = &UnitStatus{Name: name, DesiredState: unit.StateInactive, State: unit.StateInactive}
			byName[name] = s
		}
		return s
	}
	for _, kvp := range resp.Responses[0].GetResponseRange().Kvs {
		var rec keys.Submitted
		if err := json.Unmarshal(kvp.Value, &rec); err != nil {
			return nil, fmt.Errorf("%s: %w", kvp.Key, err)
		}
		s := get(rec.Name)
		s.Hash, s.DesiredState, s.Submitted = rec.Hash, rec.DesiredState, true
	}
	reports := map[[2]string]*keys.UnitReport{}
	for _, kvp := range resp.Responses[2].GetResponseRange().Kvs {
		m, u, ok := keys.SplitMachineUnit(string(kvp.Key), keys.States)
		if !ok {
			continue
		}
		var r keys.UnitReport
		if json.Unmarshal(kvp.Value, &r) == nil {
			reports[[2]string{m, u}] = &r
		}
	}
	for _, kvp := range resp.Responses[1].GetResponseRange().Kvs {
		m, u, ok := keys.SplitMachineUnit(string(kvp.Key), keys.Schedule)
		if !ok {
			continue
		}
		var a keys.Assignment
		if err := json.Unmarshal(kvp.Value, &a); err != nil {
			continue
		}
		s := get(u)
		s.Placements = append(s.Placements, Placement{Machine: m, State: a.State, Lease: a.Lease, Report: reports[[2]string{m, u}]})
		if a.State == unit.StateLaunched || s.State == unit.StateInactive {
			s.State = a.State
		}
		if s.Hash.IsZero() {
			s.Hash = a.Hash
		}
	}
	for _, kvp := range resp.Responses[3].GetResponseRange().Kvs {
		var r keys.UnplacedReason
		if s, ok := byName[strings.TrimPrefix(string(kvp.Key), keys.Unplaced)]; ok && s.Submitted && json.Unmarshal(kvp.Value, &r) == nil {
			s.Unplaced = r.Reason
		}
	}
	out := make([]UnitStatus, 0, len(byName))
	for _, s := range byName {
		sort.Slice(s.Placements, func(i, j int) bool { return s.Placements[i].Machine < s.Placements[j].Machine })
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// machineUnits counts the units placed on each machine.
func machineUnits(ctx context.Context, kv clientv3.KV) (map[string]int, error) {
	resp, err := kv.Get(ctx, keys.Schedule, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, kvp := range resp.Kvs {
		if m, _, ok := keys.SplitMachineUnit(string(kvp.Key), keys.Schedule); ok {
			out[m]++
		}
	}
	return out, nil
}

// Reached tells whether a unit is as its desired state asks: launched, when every machine it is
// placed on reports it active (reloading counts); loaded, when every machine reports it loaded
// and not running; inactive, when it is placed nowhere. problem is set when it cannot get there now
// (no machine fits, or a machine reports it failed).
func Reached(u UnitStatus) (done bool, problem string) {
	if u.Unplaced != "" {
		return false, u.Unplaced
	}
	switch u.DesiredState {
	case unit.StateInactive:
		return len(u.Placements) == 0, ""
	}
	if len(u.Placements) == 0 {
		return false, ""
	}
	for _, p := range u.Placements {
		r := p.Report
		if p.State != u.DesiredState || r == nil {
			return false, ""
		}
		if r.ActiveState == "failed" && u.DesiredState == unit.StateLaunched {
			return false, "failed on " + p.Machine + ": " + r.SubState
		}
		if u.DesiredState == unit.StateLaunched && r.ActiveState != "active" && r.ActiveState != "reloading" {
			return false, ""
		}
		if u.DesiredState == unit.StateLoaded && !stopped(r.ActiveState) {
			return false, "" // still stopping
		}
		if r.LoadState != "loaded" {
			return false, ""
		}
	}
	return true, ""
}

// stopped tells whether systemd's ActiveState says the unit runs no process.
func stopped(active string) bool {
	return active == "inactive" || active == "failed" || active == ""
}
