package main

import (
	"os"
	"runtime"
	"runtime/debug"
)

// The node daemon is small and mostly idle: it trades a little CPU for memory. Nobody reads
// its heap profiles, so the runtime keeps no profiling buckets (set before main's code
// allocates), and the garbage collector runs when the heap has grown by half (GOGC=50) rather
// than doubled. GOGC and GOMEMLIMIT in the environment still win.
var _ = func() int {
	runtime.MemProfileRate = 0
	return 0
}()

// tuneMemory applies the daemon's garbage-collector default; see above.
func tuneMemory() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
