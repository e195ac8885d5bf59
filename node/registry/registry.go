// Package registry is the cluster's machine registry: every machine publishes itself under
// keys.Machine(id) with a lease that it keeps alive, so that a machine that stops (or loses
// etcd) is gone within the lease's TTL. In the steady state the only traffic is one lease
// keep-alive every TTL/3; the entry is written again only when it changes.
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/keys"
)

// DefaultTTL is the lease's time to live when none is configured.
const DefaultTTL = 10 * time.Second

// Health values of a machine.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Machine is a registry entry.
type Machine struct {
	ID       string            `json:"id"`
	Hostname string            `json:"hostname,omitempty"`
	IPs      []string          `json:"ips,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Version  string            `json:"version,omitempty"`
	OS       string            `json:"os,omitempty"`
	Channel  string            `json:"channel,omitempty"`
	BootID   string            `json:"bootID,omitempty"`
	BootTime time.Time         `json:"bootTime,omitzero"`
	// Health is starting, healthy or unhealthy; HealthDetail says why when not healthy.
	Health       string `json:"health"`
	HealthDetail string `json:"healthDetail,omitempty"`
	// Strategy and Group are the machine's reboot strategy and lock group; Reboot its reboot
	// state (empty, needed, waiting, rebooting).
	Strategy string `json:"strategy,omitempty"`
	Group    string `json:"group,omitempty"`
	Reboot   string `json:"reboot,omitempty"`
}

// Lease is what the publisher needs from etcd's lease API (a *clientv3.Client has it).
type Lease interface {
	Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error)
	KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error)
	Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error)
}

// Putter writes a key.
type Putter interface {
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
}

// Publisher keeps one machine's entry in the registry.
type Publisher struct {
	kv    Putter
	lease Lease
	ttl   time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	current Machine
	changed chan struct{}

	// Explain, when set, is asked why a registration failed; it returns a better error (a TLS
	// handshake that etcd refuses, where the client only says "deadline exceeded") or nil.
	Explain func(ctx context.Context) error

	// OnUp is called (if set) with true when the entry is published under a live lease and
	// false when the lease is lost.
	OnUp func(up bool)
}

// NewPublisher returns a publisher of m with leases of ttl (at least 2 s; DefaultTTL when 0).
func NewPublisher(kv Putter, lease Lease, m Machine, ttl time.Duration, log *slog.Logger) *Publisher {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	ttl = max(ttl, 2*time.Second)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{kv: kv, lease: lease, ttl: ttl, log: log, current: m, changed: make(chan struct{}, 1)}
}

// Update changes the entry; it is written at once when the lease is live.
func (p *Publisher) Update(f func(m *Machine)) {
	p.mu.Lock()
	before, _ := json.Marshal(p.current)
	f(&p.current)
	after, _ := json.Marshal(p.current)
	p.mu.Unlock()
	if string(before) != string(after) {
		select {
		case p.changed <- struct{}{}:
		default:
		}
	}
}

// Machine returns a copy of the entry.
func (p *Publisher) Machine() Machine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

func (p *Publisher) value() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	raw, _ := json.Marshal(p.current)
	return string(raw)
}

// Run publishes the entry until ctx ends: it grants a lease, writes the entry under it, keeps
// the lease alive and writes again on change. When the lease is lost (etcd unreachable for
// longer than the TTL) it starts over, backing off up to the TTL (the backoff starts again
// from the bottom once registered). At the end it revokes the lease so that the machine leaves
// the registry at once. It returns nil when ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	const minBackoff = 200 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		registered, err := p.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if registered {
			backoff = minBackoff
			p.log.Warn("machine registry: lease lost, registering again", "err", err, "retry", backoff)
			if p.OnUp != nil {
				p.OnUp(false)
			}
		} else {
			if p.Explain != nil {
				if why := p.Explain(ctx); why != nil {
					err = why
				}
			}
			p.log.Warn("machine registry: cannot register", "err", err, "retry", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)/2+1))):
		}
		backoff = min(backoff*2, p.ttl)
	}
	return nil
}

// RevokeTimeout bounds the revocation of the lease at shutdown: etcd may be going away at the
// same moment (a reboot stops the etcd member and kiln-node together), and then the lease
// simply expires.
const RevokeTimeout = 2 * time.Second

// session is one lease's life; registered tells whether the entry was written under it.
func (p *Publisher) session(ctx context.Context) (registered bool, err error) {
	key := keys.Machine(p.Machine().ID)
	gctx, cancel := context.WithTimeout(ctx, p.ttl)
	g, err := p.lease.Grant(gctx, int64(p.ttl/time.Second))
	cancel()
	if err != nil {
		return false, fmt.Errorf("grant lease: %w", err)
	}
	defer func() {
		// Leave the registry at once on shutdown; best effort when etcd is gone.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RevokeTimeout)
		_, _ = p.lease.Revoke(rctx, g.ID)
		cancel()
	}()
	kactx, stop := context.WithCancel(ctx)
	defer stop()
	ka, err := p.lease.KeepAlive(kactx, g.ID)
	if err != nil {
		return false, fmt.Errorf("keep lease alive: %w", err)
	}
	put := func() error {
		pctx, cancel := context.WithTimeout(ctx, p.ttl)
		defer cancel()
		_, err := p.kv.Put(pctx, key, p.value(), clientv3.WithLease(g.ID))
		return err
	}
	if err := put(); err != nil {
		return false, fmt.Errorf("write %s: %w", key, err)
	}
	p.log.Info("machine registered", "key", key, "lease", fmt.Sprintf("%x", g.ID), "ttl", p.ttl)
	if p.OnUp != nil {
		p.OnUp(true)
	}
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case _, ok := <-ka:
			if !ok {
				return true, fmt.Errorf("lease %x expired", g.ID)
			}
		case <-p.changed:
			if err := put(); err != nil {
				return true, fmt.Errorf("write %s: %w", key, err)
			}
		}
	}
}

// Getter reads keys.
type Getter interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
}

// List returns every registered machine, sorted by ID.
func List(ctx context.Context, kv Getter) ([]Machine, error) {
	resp, err := kv.Get(ctx, keys.Machines, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Machine
	for _, kvp := range resp.Kvs {
		var m Machine
		if err := json.Unmarshal(kvp.Value, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", kvp.Key, err)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns machine id's entry; nil when it is not registered.
func Get(ctx context.Context, kv Getter, id string) (*Machine, error) {
	resp, err := kv.Get(ctx, keys.Machine(id))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var m Machine
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", resp.Kvs[0].Key, err)
	}
	return &m, nil
}
