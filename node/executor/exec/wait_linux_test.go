package exec

import (
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// TestWaitCmdHoldsNoThread: waiting for 40 running processes costs no thread each (cmd.Wait
// would block 40 threads in waitid), and each wait still returns the process's end.
func TestWaitCmdHoldsNoThread(t *testing.T) {
	const n = 40
	before := threads(t)
	var cmds []*osexec.Cmd
	done := make(chan error, n)
	for range n {
		cmd := osexec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		cmds = append(cmds, cmd)
		go func() { done <- waitCmd(cmd) }()
	}
	time.Sleep(300 * time.Millisecond)
	if grown := threads(t) - before; grown >= n/2 {
		t.Errorf("%d threads more while waiting for %d processes: a thread per wait", grown, n)
	}
	select {
	case err := <-done:
		t.Fatalf("a wait returned while its process runs: %v", err)
	default:
	}
	for _, cmd := range cmds {
		_ = cmd.Process.Kill()
	}
	for range n {
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Errorf("wait: %v, want signal: killed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a wait did not return after its process was killed")
		}
	}
}
