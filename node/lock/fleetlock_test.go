package lock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/lock"
)

type fleetCase struct {
	name   string
	method string
	path   string
	header bool
	body   string
	status int
	kind   string
}

func body(id, group string) string {
	return fmt.Sprintf(`{"client_params":{"id":%q,"group":%q}}`, id, group)
}

func doFleet(t *testing.T, h http.Handler, tc fleetCase) {
	t.Helper()
	method := tc.method
	if method == "" {
		method = http.MethodPost
	}
	req := httptest.NewRequest(method, tc.path, strings.NewReader(tc.body))
	if tc.header {
		req.Header.Set(lock.ProtocolHeader, "true")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != tc.status {
		t.Fatalf("%s: status %d, want %d (body %s)", tc.name, rec.Code, tc.status, rec.Body)
	}
	if tc.status == http.StatusOK {
		return
	}
	var fe lock.FleetError
	if err := json.Unmarshal(rec.Body.Bytes(), &fe); err != nil {
		t.Fatalf("%s: error body is not JSON: %q", tc.name, rec.Body)
	}
	if fe.Kind != tc.kind || fe.Value == "" {
		t.Fatalf("%s: error %+v, want kind %q and a value", tc.name, fe, tc.kind)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: content type %q", tc.name, ct)
	}
}

// Malformed requests are refused before the semaphore is read: no etcd needed.
func TestFleetLockMalformedRequests(t *testing.T) {
	h := lock.NewFleetLock(lock.NewManager(nil, lock.Policy{Groups: map[string]lock.Group{"default": {Max: 1}}}, nil), nil)
	good := body("m1", "default")
	cases := []fleetCase{
		{"GET pre-reboot", http.MethodGet, lock.PreRebootPath, true, good, 405, lock.KindMethodNotAllowed},
		{"GET steady-state", http.MethodGet, lock.SteadyStatePath, true, good, 405, lock.KindMethodNotAllowed},
		{"unknown path", "", "/v1/whatever", true, good, 404, "not_found"},
		{"missing header", "", lock.PreRebootPath, false, good, 400, lock.KindMissingProtocolHeader},
		{"missing header on unlock", "", lock.SteadyStatePath, false, good, 400, lock.KindMissingProtocolHeader},
		{"empty body", "", lock.PreRebootPath, true, "", 400, lock.KindInvalidBody},
		{"bad JSON", "", lock.PreRebootPath, true, `{"client_params":`, 400, lock.KindInvalidBody},
		{"not an object", "", lock.PreRebootPath, true, `[1,2]`, 400, lock.KindInvalidBody},
		{"no client_params", "", lock.PreRebootPath, true, `{}`, 400, lock.KindInvalidBody},
		{"id of the wrong type", "", lock.PreRebootPath, true, `{"client_params":{"id":7,"group":"default"}}`, 400, lock.KindInvalidBody},
		{"empty id", "", lock.PreRebootPath, true, body("", "default"), 400, lock.KindInvalidClientIdentity},
		{"blank id", "", lock.SteadyStatePath, true, body("  ", "default"), 400, lock.KindInvalidClientIdentity},
		{"empty group", "", lock.PreRebootPath, true, body("m1", ""), 400, lock.KindInvalidGroup},
		{"bad group", "", lock.PreRebootPath, true, body("m1", "a/b"), 400, lock.KindInvalidGroup},
		{"bad group with space", "", lock.SteadyStatePath, true, body("m1", "a b"), 400, lock.KindInvalidGroup},
		{"unknown group", "", lock.PreRebootPath, true, body("m1", "workers"), 400, lock.KindUnknownGroup},
		{"unknown group on unlock", "", lock.SteadyStatePath, true, body("m1", "workers"), 400, lock.KindUnknownGroup},
		{"huge body", "", lock.PreRebootPath, true, `{"client_params":{"id":"` + strings.Repeat("x", 70<<10) + `","group":"default"}}`, 400, lock.KindInvalidBody},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { doFleet(t, h, tc) })
	}
}

func TestIntegrationFleetLock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	m := lock.NewManager(cli, lock.Policy{Groups: map[string]lock.Group{"default": {Max: 1}, "workers": {Max: 2}}}, nil)
	srv := httptest.NewServer(lock.NewFleetLock(m, nil))
	t.Cleanup(srv.Close)
	h := lock.NewFleetLock(m, nil)

	steps := []fleetCase{
		{"lock", "", lock.PreRebootPath, true, body("m1", "default"), 200, ""},
		{"recursive lock", "", lock.PreRebootPath, true, body("m1", "default"), 200, ""},
		{"lock busy", "", lock.PreRebootPath, true, body("m2", "default"), 409, lock.KindFailedLock},
		{"unlock by a stranger is a no-op", "", lock.SteadyStatePath, true, body("m2", "default"), 200, ""},
		{"still busy", "", lock.PreRebootPath, true, body("m2", "default"), 409, lock.KindFailedLock},
		{"unlock", "", lock.SteadyStatePath, true, body("m1", "default"), 200, ""},
		{"recursive unlock", "", lock.SteadyStatePath, true, body("m1", "default"), 200, ""},
		{"freed slot taken", "", lock.PreRebootPath, true, body("m2", "default"), 200, ""},
		{"group with two slots", "", lock.PreRebootPath, true, body("m1", "workers"), 200, ""},
		{"second slot", "", lock.PreRebootPath, true, body("m3", "workers"), 200, ""},
		{"group full", "", lock.PreRebootPath, true, body("m4", "workers"), 409, lock.KindFailedLock},
		{"unknown group", "", lock.PreRebootPath, true, body("m1", "nope"), 400, lock.KindUnknownGroup},
	}
	for _, tc := range steps {
		doFleet(t, h, tc)
	}

	// The stored values are locksmith's keys and JSON.
	ctx := context.Background()
	resp, err := cli.Get(ctx, "coreos.com/updateengine/rebootlock/semaphore")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("default semaphore: %v %v", resp, err)
	}
	if got, want := string(resp.Kvs[0].Value), `{"semaphore":0,"max":1,"holders":["m2"]}`; got != want {
		t.Fatalf("default semaphore %s, want %s", got, want)
	}
	resp, err = cli.Get(ctx, "coreos.com/updateengine/rebootlock/groups/workers/semaphore")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"semaphore":0,"max":2,"holders":["m1","m3"]}` {
		t.Fatalf("workers semaphore: %v %v", resp.Kvs, err)
	}

	// Over real HTTP too, as Zincati does it.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+lock.SteadyStatePath, strings.NewReader(body("m2", "default")))
	req.Header.Set(lock.ProtocolHeader, "true")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("steady-state over HTTP: %v %v", res, err)
	}
	res.Body.Close()

	// A value written by locksmith's tools is read, and kept in its shape.
	if _, err := cli.Put(ctx, keys.Semaphore("legacy"), `{"semaphore":1,"max":1,"holders":null}`); err != nil {
		t.Fatal(err)
	}
	legacy := lock.NewManager(cli, lock.Policy{}, nil)
	if err := legacy.Lock(ctx, "legacy", "old-machine", ""); err != nil {
		t.Fatal(err)
	}
	if err := legacy.Lock(ctx, "legacy", "other", ""); !errors.Is(err, lock.ErrBusy) {
		t.Fatalf("legacy busy: %v", err)
	}
	groups, err := lock.List(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Group)
	}
	if got := strings.Join(names, ","); got != "default,legacy,workers" {
		t.Fatalf("groups %s", got)
	}
	if freed, err := lock.ReleaseAll(ctx, cli, "m1", nil); err != nil || len(freed) != 1 || freed[0] != "workers" {
		t.Fatalf("release all: %v %v", freed, err)
	}
}

// TestIntegrationLockContention: many clients race for two slots through compare-and-swap;
// at no time do more than two hold one, and every client gets its turn.
func TestIntegrationLockContention(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c := etcdtest.Start(t)
	const clients, slots = 12, 2
	var holding, peak, rounds atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range clients {
		cli := c.Client(t) // one connection each, like separate machines
		m := lock.NewManager(cli, lock.Policy{Groups: map[string]lock.Group{"default": {Max: slots}}}, nil)
		id := fmt.Sprintf("m%02d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := m.Lock(ctx, "", id, "")
				if errors.Is(err, lock.ErrBusy) || errors.Is(err, lock.ErrConflict) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("%s: lock: %v", id, err)
					return
				}
				n := holding.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(10 * time.Millisecond)
				holding.Add(-1)
				if err := m.Unlock(ctx, "", id); err != nil {
					t.Errorf("%s: unlock: %v", id, err)
				}
				rounds.Add(1)
				return
			}
			t.Errorf("%s never got a slot", id)
		}()
	}
	wg.Wait()
	if peak.Load() > slots {
		t.Fatalf("%d holders at once, max %d", peak.Load(), slots)
	}
	if rounds.Load() != clients {
		t.Fatalf("%d of %d clients got the lock", rounds.Load(), clients)
	}
	t.Logf("%d clients, peak %d concurrent holders", clients, peak.Load())
}
