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
	last  map[string]string // node: its last step and detail
	drawn int               // lines of the table on the terminal
}

// NewProgress reports on w for nodes; tty selects the redrawn table.
func NewProgress(w io.Writer, nodes []string, tty bool) *Progress {
	p := &Progress{w: w, tty: tty, start: time.Now(), last: map[string]string{}}
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
