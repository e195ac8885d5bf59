package schedule

import (
	"strconv"
	"strings"
)

// Finding the least-loaded machine. Scanning every candidate for every unit costs units ×
// machines (10^9 steps for 100,000 units on 10,000 machines); instead each MachineMetadata
// rule set that ordinary units use keeps its machines in a min-heap ordered by (load, index).
// A machine whose load changes is pushed again with its new load; the entries left behind are
// stale (their load is not the machine's any more) and are dropped when they come to the top.
// Placing a unit then pops machines until one is not blocked: a few steps, unless most
// machines hold a unit it must avoid.

// slot is a heap entry: a machine and its load when the entry was pushed.
type slot struct{ load, m int32 }

func (a slot) less(b slot) bool { return a.load < b.load || (a.load == b.load && a.m < b.m) }

type loadHeap = minHeap[slot]

// minHeap is a binary min-heap of entries that order themselves (Place's slots, Index's
// entries by machine ID).
type minHeap[S interface{ less(S) bool }] []S

func (h *minHeap[S]) push(s S) {
	*h = append(*h, s)
	x := *h
	for i := len(x) - 1; i > 0; {
		parent := (i - 1) / 2
		if !x[i].less(x[parent]) {
			break
		}
		x[i], x[parent] = x[parent], x[i]
		i = parent
	}
}

func (h *minHeap[S]) pop() S {
	x := *h
	top := x[0]
	last := len(x) - 1
	x[0] = x[last]
	x = x[:last]
	for i := 0; ; {
		l, r, least := 2*i+1, 2*i+2, i
		if l < len(x) && x[l].less(x[least]) {
			least = l
		}
		if r < len(x) && x[r].less(x[least]) {
			least = r
		}
		if least == i {
			break
		}
		x[i], x[least] = x[least], x[i]
		i = least
	}
	*h = x
	return top
}

// heapOf gives e's heap, building it from the current loads the first time.
func (p *planner) heapOf(e *eligibility) *loadHeap {
	if e.heaped {
		return &e.heap
	}
	e.heaped = true
	e.heap = make(loadHeap, 0, len(e.list))
	for _, m := range e.list {
		e.heap.push(slot{p.load[m], m})
		p.mHeaps[m] = append(p.mHeaps[m], e)
	}
	return &e.heap
}

// loadChanged pushes m with its new load into every heap that holds it.
func (p *planner) loadChanged(m int32) {
	for _, e := range p.mHeaps[m] {
		e.heap.push(slot{p.load[m], m})
	}
}

// leastLoaded gives the least-loaded machine of e (the smallest index among equals) where u is
// not blocked, or -1. The machine's entry leaves the heap: the caller puts u there, which
// pushes it again with its new load.
func (p *planner) leastLoaded(u *uState, e *eligibility) int32 {
	h := p.heapOf(e)
	p.scan++
	stash := p.stash[:0]
	best := int32(-1)
	for len(*h) > 0 {
		s := h.pop()
		if s.load != p.load[s.m] || p.seen[s.m] == p.scan {
			continue // stale, or a second entry of a machine already looked at
		}
		p.seen[s.m] = p.scan
		if p.blocked(u, s.m) {
			stash = append(stash, s)
			continue
		}
		best = s.m
		break
	}
	for _, s := range stash {
		h.push(s)
	}
	p.stash = stash[:0]
	return best
}

// signature identifies the units that every machine blocks alike: the same MachineMetadata
// rules, and the same Conflicts groups either way. Such a unit fails where another with its
// signature failed, for the same reason, as long as no unit left a machine since.
func (u *uState) signature() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(uint64(u.md.id), 10))
	for _, gs := range [][]int32{u.ownC, u.inC, u.inR} {
		b.WriteByte('|')
		for _, g := range gs {
			b.WriteString(strconv.Itoa(int(g)))
			b.WriteByte(',')
		}
	}
	return b.String()
}
