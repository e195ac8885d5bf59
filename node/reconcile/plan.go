package reconcile

import (
	"fmt"
	"sort"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

// ActionKind is what an action does.
type ActionKind string

// The actions, in the order a plan applies them.
const (
	// Stop a unit the agent started (or found running) that is no longer wanted as it runs.
	Stop ActionKind = "stop"
	// Remove a unit file no wanted unit needs.
	Remove ActionKind = "remove"
	// Write a unit file (new, or of another hash).
	Write ActionKind = "write"
	// Reload the manager after writes and removals.
	Reload ActionKind = "reload"
	// Adopt a wanted unit that runs already (after a restart of kiln-node): no call, only
	// bookkeeping.
	Adopt ActionKind = "adopt"
	// Start a unit that should be launched and that the agent has not started.
	Start ActionKind = "start"
)

var kindOrder = map[ActionKind]int{Stop: 0, Remove: 1, Write: 2, Reload: 3, Adopt: 4, Start: 5}

// Action is one step of a plan. Name is a unit (Stop, Adopt, Start) or a unit file (Remove,
// Write); Hash is the file's or the started unit's hash.
type Action struct {
	Kind ActionKind
	Name string
	Hash unit.Hash
}

func (a Action) String() string {
	if a.Kind == Reload {
		return string(a.Kind)
	}
	return fmt.Sprintf("%s %s", a.Kind, a.Name)
}

// Want is a unit placed on the machine, as the plan needs it.
type Want struct {
	Hash unit.Hash
	// Launch: the unit runs (launched); else it is only loaded.
	Launch bool
}

// Current is what runs now.
type Current struct {
	// Files are the unit files the executor wrote, with their hashes.
	Files map[string]unit.Hash
	// Started are the units the agent started (and has not stopped), with the hash they
	// started with.
	Started map[string]unit.Hash
	// Status is the executor's state of the wanted and started units.
	Status map[string]executor.Status
}

// fileOf is the file that defines a unit: itself, or its template.
func fileOf(name string) string {
	if n, err := unit.ParseName(name); err == nil && n.IsInstance() {
		return n.Template()
	}
	return name
}

// Plan computes the actions that make the machine run what is wanted, sorted: stops first
// (so that a unit whose file changes stops under its old definition), then file removals and
// writes, one reload, adoptions and starts. It starts a unit only when the agent has not
// started it: a started unit that died is left to its Restart= (systemd's job, or the exec
// executor's), and reported as it is.
//
// Units in hold are left as they are (their file could not be fetched this time).
func Plan(want map[string]Want, cur Current, hold map[string]bool) []Action {
	var acts []Action
	started := make(map[string]unit.Hash, len(cur.Started))
	for n, h := range cur.Started {
		started[n] = h
	}
	for n, h := range cur.Started {
		if hold[n] {
			continue
		}
		w, ok := want[n]
		if !ok || !w.Launch || w.Hash != h {
			acts = append(acts, Action{Kind: Stop, Name: n, Hash: h})
			delete(started, n)
		}
	}
	// Files: one per plain unit or template; instances share their template's.
	files := map[string]unit.Hash{}
	held := map[string]bool{}
	for n, w := range want {
		f := fileOf(n)
		if hold[n] {
			held[f] = true
			continue
		}
		if prev, ok := files[f]; ok && prev != w.Hash {
			// Two instances of one template with different texts: the smaller hash wins,
			// the same on every pass; the other instance is reported by the reconciler.
			if w.Hash.String() > prev.String() {
				continue
			}
		}
		files[f] = w.Hash
	}
	// A wanted unit that runs though the agent did not start it (kiln-node restarted, or
	// someone ran systemctl): adopted when it runs the wanted file, else stopped (and started
	// again below if it should run).
	adopted := map[string]bool{}
	for n, w := range want {
		if _, ok := cur.Started[n]; ok || hold[n] {
			continue
		}
		st, ok := cur.Status[n]
		if !ok || !st.Running() {
			continue
		}
		f := fileOf(n)
		if w.Launch && cur.Files[f] == w.Hash && files[f] == w.Hash {
			acts = append(acts, Action{Kind: Adopt, Name: n, Hash: w.Hash})
			adopted[n] = true
		} else {
			acts = append(acts, Action{Kind: Stop, Name: n, Hash: cur.Files[f]})
		}
	}
	reload := false
	for f, h := range cur.Files {
		if _, ok := files[f]; !ok && !held[f] {
			acts = append(acts, Action{Kind: Remove, Name: f, Hash: h})
			reload = true
		}
	}
	for f, h := range files {
		if cur.Files[f] != h {
			acts = append(acts, Action{Kind: Write, Name: f, Hash: h})
			reload = true
		}
	}
	if reload {
		acts = append(acts, Action{Kind: Reload})
	}
	for n, w := range want {
		if hold[n] || !w.Launch || files[fileOf(n)] != w.Hash || adopted[n] {
			continue
		}
		if _, ok := started[n]; ok {
			continue
		}
		acts = append(acts, Action{Kind: Start, Name: n, Hash: w.Hash})
	}
	sort.SliceStable(acts, func(i, j int) bool {
		if kindOrder[acts[i].Kind] != kindOrder[acts[j].Kind] {
			return kindOrder[acts[i].Kind] < kindOrder[acts[j].Kind]
		}
		return acts[i].Name < acts[j].Name
	})
	return acts
}
