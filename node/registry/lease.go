package registry

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MachineLease follows the machine's registry lease for the parts that live under it: it wraps
// the lease API that the Publisher uses (pass it to NewPublisher instead of the client), and
// records which lease is current and when etcd last renewed it. The reconciler writes its
// reports under that lease and fences itself on it; the engine campaigns under it.
type MachineLease struct {
	inner Lease
	now   func() time.Time

	mu      sync.Mutex
	info    LeaseInfo
	changed chan struct{}
}

// LeaseInfo is the machine lease as last seen.
type LeaseInfo struct {
	// ID is the current lease; 0 before the first grant.
	ID clientv3.LeaseID
	// TTL is the lease's time to live, as granted.
	TTL time.Duration
	// Renewed is when etcd last granted or renewed it: the time of the request for a grant,
	// of the answer for a keep-alive (the fence margin covers the round trip).
	Renewed time.Time
	// Live is false once the lease was revoked or its keep-alive stream ended (etcd said it
	// expired, or the client gave up on it).
	Live bool
}

// NewMachineLease wraps inner; now is the clock (time.Now when nil).
func NewMachineLease(inner Lease, now func() time.Time) *MachineLease {
	if now == nil {
		now = time.Now
	}
	return &MachineLease{inner: inner, now: now, changed: make(chan struct{}, 1)}
}

// Info returns the current lease.
func (l *MachineLease) Info() LeaseInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

// Changes receives a value when a lease is granted or lost (not on every renewal).
func (l *MachineLease) Changes() <-chan struct{} { return l.changed }

func (l *MachineLease) update(f func(*LeaseInfo) bool) {
	l.mu.Lock()
	notify := f(&l.info)
	l.mu.Unlock()
	if notify {
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
}

// Grant implements Lease.
func (l *MachineLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	start := l.now()
	resp, err := l.inner.Grant(ctx, ttl)
	if err != nil {
		return resp, err
	}
	l.update(func(i *LeaseInfo) bool {
		*i = LeaseInfo{ID: resp.ID, TTL: time.Duration(resp.TTL) * time.Second, Renewed: start, Live: true}
		return true
	})
	return resp, nil
}

// KeepAlive implements Lease: the responses go through to the caller, and each one
// counts as a renewal. The forwarding goroutine ends when the inner stream does (which the
// caller's ctx ends) or when ctx ends.
func (l *MachineLease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	in, err := l.inner.KeepAlive(ctx, id)
	if err != nil {
		return in, err
	}
	out := make(chan *clientv3.LeaseKeepAliveResponse)
	go func() {
		defer close(out)
		defer l.update(func(i *LeaseInfo) bool {
			if i.ID != id || !i.Live {
				return false
			}
			i.Live = false
			return true
		})
		for {
			var r *clientv3.LeaseKeepAliveResponse
			var ok bool
			select {
			case r, ok = <-in:
			case <-ctx.Done():
				return
			}
			if !ok {
				return
			}
			at := l.now()
			l.update(func(i *LeaseInfo) bool {
				if i.ID == id && r.TTL > 0 {
					i.Renewed, i.TTL = at, time.Duration(r.TTL)*time.Second
				}
				return false
			})
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Revoke implements Lease.
func (l *MachineLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	l.update(func(i *LeaseInfo) bool {
		if i.ID != id || !i.Live {
			return false
		}
		i.Live = false
		return true
	})
	return l.inner.Revoke(ctx, id)
}
