package registry_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/registry"
)

// flakyEtcd refuses the first grants, then grants a lease whose keep-alive stream ends at once
// (the lease is lost), then refuses again.
type flakyEtcd struct {
	mu     sync.Mutex
	grants int
	okAt   int
}

func (f *flakyEtcd) Grant(context.Context, int64) (*clientv3.LeaseGrantResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grants++
	if f.grants != f.okAt {
		return nil, errors.New("etcd down")
	}
	return &clientv3.LeaseGrantResponse{ID: 7, TTL: 2}, nil
}

func (f *flakyEtcd) KeepAlive(context.Context, clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ch := make(chan *clientv3.LeaseKeepAliveResponse)
	close(ch)
	return ch, nil
}

func (f *flakyEtcd) Revoke(context.Context, clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	return &clientv3.LeaseRevokeResponse{}, nil
}

func (f *flakyEtcd) Put(context.Context, string, string, ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return &clientv3.PutResponse{}, nil
}

// records keeps the publisher's warnings: message and retry.
type records struct {
	mu  sync.Mutex
	out []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return nil
	}
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry" {
			line += " retry=" + a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.out = append(r.out, line)
	r.mu.Unlock()
	return nil
}

func (r *records) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.out...)
}

// A publisher that never had a lease does not say it lost one, and its backoff starts from the
// bottom again once it was registered.
func TestPublisherLogsAndBackoff(t *testing.T) {
	etcd := &flakyEtcd{okAt: 3}
	rec := &records{}
	up := make(chan bool, 10)
	p := registry.NewPublisher(etcd, etcd, registry.Machine{ID: "m1"}, 2*time.Second, slog.New(rec))
	p.OnUp = func(v bool) { up <- v }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for len(rec.lines()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.lines()
	if len(got) < 4 {
		t.Fatalf("warnings %q", got)
	}
	want := []string{
		"machine registry: cannot register retry=200ms",
		"machine registry: cannot register retry=400ms",
		"machine registry: lease lost, registering again retry=200ms",
		"machine registry: cannot register retry=400ms",
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("warning %d: %q, want %q (all: %s)", i, got[i], w, strings.Join(got, "; "))
		}
	}
	if v := <-up; !v {
		t.Error("OnUp(false) before the first registration")
	}
}
