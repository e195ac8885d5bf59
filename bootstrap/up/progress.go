package up

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress is the Reporter of `kiln up` and `kiln down`: on a terminal, a table of one line per
// node that is drawn again at each step; elsewhere, one plain line per step. Failures print the
// node's last log lines below.
type Progress struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu    sync.Mutex
	nodes []string          // in the spec's order; "" (the cluster) first
	last  map[string]string // node: its furthest step and detail
	step  map[string]Step   // node: its furthest step
	drawn int               // lines of the table on the terminal
}

// NewProgress reports on w for nodes; tty selects the redrawn table.
func NewProgress(w io.Writer, nodes []string, tty bool) *Progress {
	p := &Progress{w: w, tty: tty, start: time.Now(), last: map[string]string{}, step: map[string]Step{}}
	p.nodes = append([]string{""}, nodes...)
	return p
}

// Step implements Reporter.
func (p *Progress) Step(node string, step Step, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := string(step)
	if detail != "" {
		line += ": " + detail
	}
	at := time.Since(p.start).Seconds()
	if !p.tty {
		fmt.Fprintf(p.w, "%6.1fs  %-10s %s\n", at, label(node), line)
		return
	}
	// The table shows how far each node got: steps may be reported out of order (a kiln-node
	// registers through another member before its own member answers).
	if prev, ok := p.step[node]; ok && rank(prev) > rank(step) {
		return
	}
	p.step[node] = step
	p.last[node] = fmt.Sprintf("%-40s %5.1fs", line, at)
	p.draw()
}

// Failed implements Reporter.
func (p *Progress) Failed(node string, step Step, err error, log string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := time.Since(p.start).Seconds()
	if p.tty {
		p.last[node] = fmt.Sprintf("FAILED at %s: %v", step, err)
		p.draw()
		p.drawn = 0 // what follows stays below the table
	} else {
		fmt.Fprintf(p.w, "%6.1fs  %-10s FAILED at %s: %v\n", at, label(node), step, err)
	}
	if log = strings.TrimRight(log, "\n"); log != "" {
		fmt.Fprintf(p.w, "--- last lines of %s ---\n%s\n---\n", label(node), log)
	}
}

// draw writes the table again over the one drawn before.
func (p *Progress) draw() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	p.drawn = 0
	for _, n := range p.nodes {
		s, ok := p.last[n]
		if !ok && n == "" {
			continue
		}
		if !ok {
			s = "waiting"
		}
		fmt.Fprintf(p.w, "\x1b[2K%-10s %s\n", label(n), s)
		p.drawn++
	}
}

func label(node string) string {
	if node == "" {
		return "cluster"
	}
	return node
}

// steps is the order of the steps on a node's way up.
var steps = []Step{StepImage, StepNetwork, StepMachine, StepIgnition, StepEtcd, StepRegistered}

func rank(s Step) int {
	for i, x := range steps {
		if x == s {
			return i
		}
	}
	return -1
}
