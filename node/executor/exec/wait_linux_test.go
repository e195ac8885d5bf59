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

// TestWaitProcHoldsNoThread: waiting for 40 running processes costs no thread each (cmd.Wait
// would block 40 threads in waitid), and each wait still returns the process's end.
func TestWaitProcHoldsNoThread(t *testing.T) {
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
		u, p := &execUnit{e: &Executor{}}, newProc(cmd)
		if p.poll == nil {
			t.Fatal("no pidfd for a child process")
		}
		go func() {
			_, err := u.waitProc(p, time.Time{}, nil, nil)
			done <- err
		}()
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

// TestWaitProcWakes: a wait in the poller returns at its deadline and when a stop channel is
// closed and the unit's wait woken (as stop does), and a later wait still sees the end.
func TestWaitProcWakes(t *testing.T) {
	cmd := osexec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	u, p := &execUnit{e: &Executor{}}, newProc(cmd)
	if p.poll == nil {
		t.Fatal("no pidfd for a child process")
	}
	start := time.Now()
	if ended, err := u.waitProc(p, start.Add(100*time.Millisecond), nil, nil); ended || err != nil {
		t.Fatalf("deadline: ended %v, %v", ended, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("deadline wait took %v", d)
	}
	stop := make(chan struct{})
	res := make(chan bool, 1)
	go func() { ended, _ := u.waitProc(p, time.Time{}, stop, nil); res <- ended }()
	time.Sleep(100 * time.Millisecond)
	u.e.mu.Lock()
	close(stop)
	u.wakeWaiting()
	u.e.mu.Unlock()
	select {
	case ended := <-res:
		if ended {
			t.Fatal("the wait says the process ended; it was woken by the stop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the stop channel did not wake the wait")
	}
	_ = cmd.Process.Kill()
	ended, err := u.waitProc(p, time.Now().Add(10*time.Second), nil, nil)
	if !ended || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("after the kill: ended %v, %v", ended, err)
	}
	if ended, err2 := u.waitProc(p, time.Time{}, nil, nil); !ended || err2 != err {
		t.Fatalf("waiting again: %v, %v", ended, err2)
	}
}
