package engine

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/unit"
)

// benchState is a planned cluster of nm machines and 10 units per machine (templates of ten
// instances that conflict with their siblings, some of them only on two regions), every unit
// placed and the placements written, as the engine's state holds it.
type benchState struct {
	st  *state
	rev int64
}

func (b *benchState) put(key string, val []byte, lease int64) {
	b.rev++
	b.st.put(key, val, b.rev, lease)
}

func (b *benchState) del(key string) {
	b.rev++
	b.st.del(key, b.rev)
}

// file writes a unit file and gives its hash.
func (b *benchState) file(tb testing.TB, name, xfleet string) unit.Hash {
	u, err := unit.Parse(name, []byte("[Service]\nExecStart=/bin/app %i\n\n[X-Fleet]\n"+xfleet))
	if err != nil {
		tb.Fatal(err)
	}
	b.put(keys.UnitFile(u.Hash().String()), u.Bytes(), 0)
	return u.Hash()
}

func (b *benchState) submit(name string, h unit.Hash) {
	raw, _ := json.Marshal(keys.Submitted{Name: name, Hash: h, DesiredState: unit.StateLaunched})
	b.put(keys.Unit(name), raw, 0)
}

func (b *benchState) machine(i int) {
	id := fmt.Sprintf("m%05d", i)
	raw, _ := json.Marshal(registry.Machine{ID: id, Metadata: map[string]string{"region": []string{"east", "west", "north"}[i%3]}})
	b.put(keys.Machine(id), raw, int64(1000+i))
}

// plan plans (in full if full) and applies the writes; it gives how many there were.
func (b *benchState) plan(full bool) int {
	if full {
		b.st.inc.full = true
	}
	first, second, _ := b.st.plan()
	for _, o := range append(first, second...) {
		b.rev++
		b.st.applyWritten(written{op: o, rev: b.rev})
	}
	return len(first) + len(second)
}

func newBenchState(tb testing.TB, nm int) *benchState {
	b := &benchState{st: newState()}
	for i := range nm {
		b.machine(i)
	}
	for t := range nm {
		xfleet := fmt.Sprintf("Conflicts=app%d@*.service\n", t)
		if t%4 == 0 {
			xfleet += "MachineMetadata=region=east\nMachineMetadata=region=west\n"
		}
		h := b.file(tb, fmt.Sprintf("app%d@.service", t), xfleet)
		for i := range 10 {
			b.submit(fmt.Sprintf("app%d@%d.service", t, i), h)
		}
	}
	if n := b.plan(true); n < 10*nm {
		tb.Fatalf("the first plan wrote %d keys", n)
	}
	if n := b.plan(false); n != 0 {
		tb.Fatalf("planning again wrote %d keys", n)
	}
	return b
}

// BenchmarkChange is the cost of planning ONE change (and taking the engine's writes into
// its state) in clusters of 10,000 and 100,000 units: a unit submitted, or a machine that
// dies (its ten units move; the machine comes back, untimed, before the next). Incremental is
// what the engine does; full plans the whole cluster each time (as the engine did before).
// ns/op must not grow with the cluster for the incremental plan.
func BenchmarkChange(b *testing.B) {
	for _, nm := range []int{1000, 10000} {
		for _, mode := range []string{"incremental", "full"} {
			full := mode == "full"
			b.Run(fmt.Sprintf("units=%d/unit-added/%s", 10*nm, mode), func(b *testing.B) {
				bs := newBenchState(b, nm)
				h := bs.file(b, "extra@.service", "")
				add := func(i int) {
					bs.submit(fmt.Sprintf("extra@%d.service", i), h)
					if n := bs.plan(full); n != 1 {
						b.Fatalf("a unit added: %d writes", n)
					}
				}
				add(-1) // the first builds the index
				i := 0
				for b.Loop() {
					add(i)
					i++
				}
			})
			b.Run(fmt.Sprintf("units=%d/machine-dies/%s", 10*nm, mode), func(b *testing.B) {
				bs := newBenchState(b, nm)
				die := func(i int) {
					bs.del(keys.Machine(fmt.Sprintf("m%05d", i%nm)))
					if n := bs.plan(full); n < 2 {
						b.Fatalf("a machine died: %d writes", n)
					}
				}
				die(nm - 1) // the first builds the index
				bs.machine(nm - 1)
				bs.plan(full)
				i := 0
				for b.Loop() {
					die(i)
					b.StopTimer()
					bs.machine(i % nm)
					bs.plan(full)
					b.StartTimer()
					i++
				}
			})
		}
	}
}
