// Package uptest is what the tests of kiln up's drivers share: a plan compiled from a test spec
// and a Reporter that records what a driver reported.
package uptest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/bootstrap/up"
)

// emptySHA512 is the SHA-512 of nothing: a kiln-node hash that needs no file.
const emptySHA512 = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

// Node is a test node: name, MAC and address with prefix length.
type Node struct{ Name, MAC, IP string }

// SpecText is a cluster spec of nodes, named cluster, on os (flatcar or fcos), gateway gw.
func SpecText(cluster, os, gw string, nodes []Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, `cluster:
  name: %s
  os: %s
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  network: {gateway: %s}
  kilnNode: {url: "http://%s/kiln-node", sha512: "%s"}
nodes:
`, cluster, os, gw, gw, emptySHA512)
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - {name: %s, mac: %q, ip: %s}\n", n.Name, n.MAC, n.IP)
	}
	return b.String()
}

// Plan writes spec into a new folder, compiles it and returns the plan, whose state folder
// is in that folder.
func Plan(t testing.TB, spec string) *up.Plan { return PlanFiles(t, spec, nil) }

// PlanFiles is Plan with more files (snippets, units) beside the spec, by name.
func PlanFiles(t testing.TB, spec string, files map[string]string) *up.Plan {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	files = maps.Clone(files)
	if files == nil {
		files = map[string]string{}
	}
	files["cluster.yaml"] = spec
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, rep, err := render.Compile(path, render.CompileOptions{PKIDir: filepath.Join(dir, "out", "pki"), CreatePKI: true})
	if err != nil {
		var b strings.Builder
		rep.Print(&b, false)
		t.Fatalf("compile: %v\n%s", err, b.String())
	}
	return &up.Plan{Compiled: c, StateDir: filepath.Join(dir, "out")}
}

// Event is one call a driver made on the Reporter.
type Event struct {
	Node   string
	Step   up.Step
	Detail string
	Err    error
	Log    string
}

// Reporter records the driver's reports; it logs them to the test too.
type Reporter struct {
	T      testing.TB
	mu     sync.Mutex
	start  time.Time
	Events []Event
}

// since is the time since the first report, for the log.
func (r *Reporter) since() time.Duration {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	return time.Since(r.start).Round(10 * time.Millisecond)
}

// Step records a step.
func (r *Reporter) Step(node string, step up.Step, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.T.Logf("+%s %s %s: %s", r.since(), node, step, detail)
	r.Events = append(r.Events, Event{Node: node, Step: step, Detail: detail})
}

// Failed records a failure.
func (r *Reporter) Failed(node string, step up.Step, err error, log string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.T.Logf("+%s %s %s failed: %v\n%s", r.since(), node, step, err, log)
	r.Events = append(r.Events, Event{Node: node, Step: step, Err: err, Log: log})
}

// Reached tells whether node reported step without failing it.
func (r *Reporter) Reached(node string, step up.Step) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.Events {
		if e.Node == node && e.Step == step && e.Err == nil {
			return true
		}
	}
	return false
}

// CancelAfter is a Reporter that cancels a context once Node reports its machine: an up cut
// off half-way.
type CancelAfter struct {
	*Reporter
	Node   string
	Cancel func()
}

// Step records the step and cancels after Node's machine step.
func (c *CancelAfter) Step(node string, step up.Step, detail string) {
	c.Reporter.Step(node, step, detail)
	if node == c.Node && step == up.StepMachine {
		c.Cancel()
	}
}
