package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The node daemon is small and mostly idle: it trades a little CPU for memory. Nobody reads
// its heap profiles, so the runtime keeps no profiling buckets (set before main's code
// allocates); the garbage collector runs when the heap has grown by half (GOGC=50) rather
// than doubled; and Go code runs on one CPU at a time (GOMAXPROCS=1): each of the runtime's
// Ps keeps its own partly used span of every size class it allocates and its own caches of
// stacks, which a second P doubles for a daemon that is idle nearly all the time and should
// leave the machine's other CPUs to its workloads. Blocking system calls still run beside it
// on threads of their own. GOGC, GOMAXPROCS and GOMEMLIMIT in the environment still win.
var _ = func() int {
	runtime.MemProfileRate = 0
	return 0
}()

// tuneRuntime applies the daemon's runtime defaults; see above.
func tuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

// The runtime's background scavenger returns free heap pages to the OS slowly, and not at all
// from a 4 MiB chunk of the heap that is mostly in use (it keeps those whole for huge pages).
// A daemon whose whole heap is a couple of such chunks therefore keeps the pages of its last
// burst of work (starting units, a full plan) resident for good: BenchmarkFootprint measured
// 0.9 MB of free heap pages still resident per kiln-node in the steady state (returning them
// took the mean RSS down by 0.3-0.6 MB). So once the daemon
// has allocated trimAfter bytes since it last looked, and at most every trimEvery, it collects
// and returns every free page (debug.FreeOSMemory): a collection of a heap of about 1 MB,
// about a millisecond of CPU.
const (
	trimEvery = 10 * time.Second
	trimAfter = 64 << 10
)

// trimMemory returns the heap's free pages to the OS after each trimAfter bytes allocated,
// until ctx ends.
func trimMemory(ctx context.Context) {
	allocs := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(allocs)
		if allocs[0].Value.Kind() != metrics.KindUint64 {
			return 0 // a runtime without the metric: never trims
		}
		return allocs[0].Value.Uint64()
	}
	last := read()
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if read()-last < trimAfter {
			continue
		}
		debug.FreeOSMemory()
		last = read()
	}
}
