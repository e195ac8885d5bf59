package engine

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

const appText = "[Service]\nExecStart=/bin/app %i\n\n[X-Fleet]\nConflicts=app@*.service\n"

var appHash = func() string {
	u, err := unit.Parse("app@.service", []byte(appText))
	if err != nil {
		panic(err)
	}
	return u.Hash().String()
}()

// cluster builds a state the way load does, from keys and values.
type cluster struct {
	st  *state
	rev int64
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{st: newState()}
	u, err := unit.Parse("app@.service", []byte(appText))
	if err != nil {
		t.Fatal(err)
	}
	c.put(keys.UnitFile(u.Hash().String()), string(u.Bytes()), 0)
	return c
}

func (c *cluster) put(key, val string, lease int64) {
	c.rev++
	c.st.put(key, []byte(val), c.rev, lease)
}

func (c *cluster) machine(id string, lease int64, md map[string]string) {
	raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: md})
	c.put(keys.Machine(id), string(raw), lease)
}

func hashOf(t *testing.T, name, text string) unit.Hash {
	u, err := unit.Parse(name, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return u.Hash()
}

func (c *cluster) submit(t *testing.T, name string, state unit.State) {
	raw, _ := json.Marshal(keys.Submitted{Name: name, Hash: hashOf(t, "app@.service", appText), DesiredState: state})
	c.put(keys.Unit(name), string(raw), 0)
}

func (c *cluster) place(t *testing.T, machine, name string, state unit.State, lease int64) {
	raw, _ := json.Marshal(keys.Assignment{Unit: name, Hash: hashOf(t, "app@.service", appText), State: state, Lease: lease})
	c.put(keys.Placement(machine, name), string(raw), 0)
}

func (c *cluster) report(machine, name, active string) {
	raw, _ := json.Marshal(keys.UnitReport{Unit: name, ActiveState: active})
	c.put(keys.UnitState(machine, name), string(raw), 7)
}

// describe writes ops as "put KEY (new|@rev) STATE" or "del KEY", for comparing.
func describe(ops []op) []string {
	var out []string
	for _, o := range ops {
		key := strings.ReplaceAll(strings.TrimPrefix(o.key, keys.Prefix), appHash, "APP")
		switch {
		case o.del:
			out = append(out, "del "+key)
		case o.rev == 0:
			out = append(out, "new "+key+" "+summarize(o.val))
		default:
			out = append(out, "cas "+key+" "+summarize(o.val))
		}
	}
	return out
}

func summarize(val string) string {
	var a keys.Assignment
	if json.Unmarshal([]byte(val), &a) == nil && a.State != "" {
		return string(a.State) + " lease=" + itoa(a.Lease)
	}
	var r keys.UnplacedReason
	if json.Unmarshal([]byte(val), &r) == nil && r.Reason != "" {
		return "unplaced"
	}
	return val
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestPlan(t *testing.T) {
	cases := []struct {
		name          string
		setup         func(t *testing.T, c *cluster)
		first, second []string
	}{
		{
			name: "new instances on two machines, with the machine's lease",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				c.machine("m2", 12, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.submit(t, "app@2.service", unit.StateLaunched)
			},
			second: []string{"new schedule/m1/app@1.service launched lease=11", "new schedule/m2/app@2.service launched lease=12"},
		},
		{
			name: "nothing to do when placements match",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.place(t, "m1", "app@1.service", unit.StateLaunched, 11)
			},
		},
		{
			name: "a new lease on the machine rewrites its placements",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 21, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.place(t, "m1", "app@1.service", unit.StateLaunched, 11)
			},
			second: []string{"cas schedule/m1/app@1.service launched lease=21"},
		},
		{
			name: "stop keeps the placement, loaded",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				c.submit(t, "app@1.service", unit.StateLoaded)
				c.place(t, "m1", "app@1.service", unit.StateLaunched, 11)
			},
			second: []string{"cas schedule/m1/app@1.service loaded lease=11"},
		},
		{
			name: "unload and destroy take units off",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				c.submit(t, "app@1.service", unit.StateInactive)
				c.place(t, "m1", "app@1.service", unit.StateLaunched, 11)
				c.place(t, "m1", "app@9.service", unit.StateLaunched, 11) // destroyed
			},
			first: []string{"del schedule/m1/app@1.service", "del schedule/m1/app@9.service"},
		},
		{
			name: "a dead machine's unit moves (its reports went with its lease)",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m2", 12, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.place(t, "gone", "app@1.service", unit.StateLaunched, 10)
			},
			first:  []string{"del schedule/gone/app@1.service"},
			second: []string{"new schedule/m2/app@1.service launched lease=12"},
		},
		{
			name: "a unit still reported running elsewhere waits",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m2", 12, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.report("m1", "app@1.service", "deactivating")
			},
		},
		{
			name: "a unit reported failed elsewhere does not wait",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m2", 12, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.report("m1", "app@1.service", "failed")
			},
			second: []string{"new schedule/m2/app@1.service launched lease=12"},
		},
		{
			name: "a unit that fits nowhere is recorded, and forgotten once placed",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				c.submit(t, "app@1.service", unit.StateLaunched)
				c.submit(t, "app@2.service", unit.StateLaunched)
				c.place(t, "m1", "app@1.service", unit.StateLaunched, 11)
				raw, _ := json.Marshal(keys.UnplacedReason{Unit: "app@1.service", Reason: "old"})
				c.put(keys.UnplacedUnit("app@1.service"), string(raw), 0)
			},
			first:  []string{"del unplaced/app@1.service"},
			second: []string{"new unplaced/app@2.service unplaced"},
		},
		{
			name: "a unit whose file is missing is reported, not placed",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				raw, _ := json.Marshal(keys.Submitted{Name: "web.service", DesiredState: unit.StateLaunched})
				c.put(keys.Unit("web.service"), string(raw), 0)
			},
			first:  []string{"del unit-files/APP"}, // no record refers to it
			second: []string{"new unplaced/web.service unplaced"},
		},
		{
			name: "a destroyed unit's file goes once nothing refers to it",
			setup: func(t *testing.T, c *cluster) {
				c.machine("m1", 11, nil)
				c.place(t, "m1", "app@9.service", unit.StateLaunched, 11) // destroyed, still placed
			},
			first: []string{"del schedule/m1/app@9.service"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			tc.setup(t, c)
			first, second, _ := c.st.plan()
			if got := describe(first); !slices.Equal(got, tc.first) {
				t.Errorf("first phase:\n got %q\nwant %q", got, tc.first)
			}
			if got := describe(second); !slices.Equal(got, tc.second) {
				t.Errorf("second phase:\n got %q\nwant %q", got, tc.second)
			}
			// applying the plan converges: nothing to do after the next round at most (a file
			// goes once the placements that referred to it are gone)
			for round := 0; len(first)+len(second) > 0; round++ {
				if round == 2 {
					t.Fatalf("plan after applying twice: %q %q", describe(first), describe(second))
				}
				for _, o := range append(first, second...) {
					c.rev++
					c.st.applyWritten(written{op: o, rev: c.rev})
				}
				first, second, _ = c.st.plan()
			}
		})
	}
}

// TestStaleEvents: a watch event older than the engine's own write does not undo it.
func TestStaleEvents(t *testing.T) {
	c := newCluster(t)
	c.machine("m1", 11, nil)
	c.submit(t, "app@1.service", unit.StateLaunched)
	_, second, _ := c.st.plan()
	if len(second) != 1 {
		t.Fatalf("plan: %q", describe(second))
	}
	c.st.applyWritten(written{op: second[0], rev: 100})
	c.st.del(second[0].key, 50) // an old delete arriving late
	if _, s, _ := c.st.plan(); len(s) != 0 {
		t.Fatalf("a stale event undid the write: %q", describe(s))
	}
}

// TestDirty: only a change the plan reads asks for a new plan; a machine's health, a reboot
// lock, a journal request or a report of a placed unit does not (each would cost a plan of the
// whole cluster).
func TestDirty(t *testing.T) {
	c := newCluster(t)
	c.machine("m1", 11, map[string]string{"region": "east"})
	c.submit(t, "app@1.service", unit.StateLaunched)
	c.place(t, "m1", "app@1.service", unit.StateLaunched, 11)
	clean := func() { c.st.dirty = false }
	sick, _ := json.Marshal(registry.Machine{ID: "m1", Metadata: map[string]string{"region": "east"}, Health: registry.HealthUnhealthy})
	cases := []struct {
		name  string
		do    func()
		dirty bool
	}{
		{"health", func() { c.put(keys.Machine("m1"), string(sick), 11) }, false},
		{"reboot lock", func() { c.put(keys.LockInfo("", "m1"), "{}", 0) }, false},
		{"journal request", func() { c.put(keys.JournalRequests+"r1", "{}", 0) }, false},
		{"report of a placed unit", func() { c.report("m1", "app@1.service", "active") }, false},
		{"metadata", func() { c.machine("m1", 11, map[string]string{"region": "west"}) }, true},
		{"lease", func() { c.machine("m1", 12, map[string]string{"region": "west"}) }, true},
		{"new machine", func() { c.machine("m2", 13, nil) }, true},
		{"machine gone", func() { c.rev++; c.st.del(keys.Machine("m2"), c.rev) }, true},
		{"unit", func() { c.submit(t, "app@2.service", unit.StateLaunched) }, true},
		{"report of an unplaced unit", func() { c.report("m2", "app@2.service", "active") }, true},
	}
	for _, tc := range cases {
		clean()
		tc.do()
		if c.st.dirty != tc.dirty {
			t.Errorf("%s: dirty %v, want %v", tc.name, c.st.dirty, tc.dirty)
		}
	}
}
