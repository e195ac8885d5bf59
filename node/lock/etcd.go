package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/keys"
)

// KV is what the lock needs from etcd: reads and transactions (a *clientv3.Client has both).
type KV interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Txn(ctx context.Context) clientv3.Txn
}

// casAttempts bounds the compare-and-swap retries of one change.
const casAttempts = 16

// HolderInfo is kept beside a semaphore for each holder (keys.LockInfo): since when it holds.
type HolderInfo struct {
	Since  time.Time `json:"since"`
	BootID string    `json:"bootID,omitempty"`
}

// Manager applies a Policy to the semaphores in etcd. Every change is a compare-and-swap on the
// key's mod revision (or on its absence), retried when another writer got in first.
type Manager struct {
	kv     KV
	policy Policy
	log    *slog.Logger
}

// NewManager returns a Manager; log may be nil.
func NewManager(kv KV, p Policy, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{kv: kv, policy: p, log: log}
}

// Policy is the manager's policy.
func (m *Manager) Policy() Policy { return m.policy }

// Lock takes a slot of group for id. Taking it again while holding it succeeds and changes
// nothing. bootID, when set, is recorded with the holder.
func (m *Manager) Lock(ctx context.Context, group, id, bootID string) error {
	g, err := m.policy.Group(group)
	if err != nil {
		return err
	}
	info, _ := json.Marshal(HolderInfo{Since: m.policy.now().UTC(), BootID: bootID})
	var took bool
	err = update(ctx, m.kv, group, g.Max, func(s *Semaphore) (bool, error) {
		took = !s.Holds(id)
		return m.policy.Acquire(s, group, id)
	}, func() []clientv3.Op {
		if !took {
			return nil
		}
		return []clientv3.Op{clientv3.OpPut(keys.LockInfo(group, id), string(info))}
	})
	if err == nil && took {
		m.log.Info("reboot lock taken", "group", keys.GroupName(group), "holder", id)
	}
	return err
}

// Unlock frees id's slot in group; it is a no-op when id holds none.
func (m *Manager) Unlock(ctx context.Context, group, id string) error {
	if _, err := m.policy.Group(group); err != nil {
		return err
	}
	return Release(ctx, m.kv, group, id, m.log)
}

// Holding reports whether id holds a slot of group.
func (m *Manager) Holding(ctx context.Context, group, id string) (bool, error) {
	s, _, err := get(ctx, m.kv, group)
	if err != nil || s == nil {
		return false, err
	}
	return s.Holds(id), nil
}

// Release frees id's slot in group whatever the policy (kiln ctl unlock uses it).
func Release(ctx context.Context, kv KV, group, id string, log *slog.Logger) error {
	var freed bool
	err := update(ctx, kv, group, 0, func(s *Semaphore) (bool, error) {
		freed = s.Unlock(id)
		return freed, nil
	}, func() []clientv3.Op {
		return []clientv3.Op{clientv3.OpDelete(keys.LockInfo(group, id))}
	})
	if err == nil && freed && log != nil {
		log.Info("reboot lock released", "group", keys.GroupName(group), "holder", id)
	}
	return err
}

// get reads the group's semaphore; nil when there is none.
func get(ctx context.Context, kv KV, group string) (*Semaphore, *clientv3.GetResponse, error) {
	resp, err := kv.Get(ctx, keys.Semaphore(group))
	if err != nil {
		return nil, nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, resp, nil
	}
	s, err := ParseSemaphore(resp.Kvs[0].Value)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keys.Semaphore(group), err)
	}
	return s, resp, nil
}

// update reads the semaphore (a new one of slots slots, at least 1, if absent), lets change
// modify it, and writes it back only if nobody else did meanwhile, with the extra operations in
// the same transaction; it retries on a lost race.
func update(ctx context.Context, kv KV, group string, slots int, change func(*Semaphore) (bool, error), extra func() []clientv3.Op) error {
	key := keys.Semaphore(group)
	for range casAttempts {
		s, resp, err := get(ctx, kv, group)
		if err != nil {
			return err
		}
		var cmp clientv3.Cmp
		if s == nil {
			s = NewSemaphore(max(slots, 1))
			cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		} else {
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		}
		changed, err := change(s)
		if err != nil || !changed {
			return err
		}
		ops := append([]clientv3.Op{clientv3.OpPut(key, string(s.Marshal()))}, extra()...)
		tr, err := kv.Txn(ctx).If(cmp).Then(ops...).Commit()
		if err != nil {
			return err
		}
		if tr.Succeeded {
			return nil
		}
	}
	return ErrConflict
}

// GroupState is one group's semaphore with the details of its holders.
type GroupState struct {
	Group     string                `json:"group"`
	Key       string                `json:"key"`
	Semaphore Semaphore             `json:"semaphore"`
	Holders   map[string]HolderInfo `json:"holderInfo,omitempty"`
}

// List returns the semaphores of every group, sorted by group.
func List(ctx context.Context, kv KV) ([]GroupState, error) {
	resp, err := kv.Get(ctx, keys.SemaphorePrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	infos, err := kv.Get(ctx, keys.LockInfos, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []GroupState
	for _, kvp := range resp.Kvs {
		group, ok := keys.SemaphoreGroup(string(kvp.Key))
		if !ok {
			continue
		}
		s, err := ParseSemaphore(kvp.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kvp.Key, err)
		}
		st := GroupState{Group: group, Key: string(kvp.Key), Semaphore: *s, Holders: map[string]HolderInfo{}}
		for _, h := range s.Holders {
			for _, ikv := range infos.Kvs {
				if string(ikv.Key) == keys.LockInfo(group, h) {
					var hi HolderInfo
					if json.Unmarshal(ikv.Value, &hi) == nil {
						st.Holders[h] = hi
					}
				}
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// ReleaseAll frees every slot id holds, in every group, and returns the groups it was freed in.
func ReleaseAll(ctx context.Context, kv KV, id string, log *slog.Logger) ([]string, error) {
	groups, err := List(ctx, kv)
	if err != nil {
		return nil, err
	}
	var freed []string
	for _, g := range groups {
		if !slices.Contains(g.Semaphore.Holders, id) {
			continue
		}
		if err := Release(ctx, kv, g.Group, id, log); err != nil {
			return freed, err
		}
		freed = append(freed, g.Group)
	}
	return freed, nil
}
