package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/node/executor"
)

// TestMain doubles as a stand-in for kiln-node: with KILN_EXEC_HELPER_DIR set, the test binary
// starts the unit named by KILN_EXEC_HELPER_UNIT with an exec executor on that directory,
// prints "started", and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("KILN_EXEC_HELPER_DIR"); dir != "" {
		ex, err := New(Config{Dir: dir})
		if err == nil {
			err = ex.Start(context.Background(), os.Getenv("KILN_EXEC_HELPER_UNIT"))
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println("started")
		select {}
	}
	os.Exit(m.Run())
}

func newExec(t *testing.T) (*Executor, string) {
	t.Helper()
	dir := t.TempDir()
	ex, err := New(Config{Dir: dir, MachineID: "m1", BootID: "b1", Hostname: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close(context.Background()) })
	return ex, dir
}

// alive tells whether a process exists and is no zombie.
func alive(pid int) bool {
	st, ok := procStat(pid)
	return ok && st.state != 'Z'
}

func readPids(t *testing.T, path string, n int) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(waitFile(t, path, 5*time.Second)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		pids = append(pids, p)
	}
	if len(pids) < n {
		time.Sleep(200 * time.Millisecond)
		return readPids(t, path, n)
	}
	return pids
}

func TestExecCommandsAndSettings(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the exec executor's tests read /proc")
	}
	tests := []struct {
		name   string
		unit   string
		text   string // %OUT is the output file
		start  error  // the error Start wraps, if any
		want   string // the output file's text once the unit ran and stopped
		active string // the ActiveState after Start settled
	}{
		{
			name: "pre, main, post, stop, stop-post in order with MAINPID",
			unit: "order.service",
			text: "[Service]\nExecStartPre=/bin/sh -c 'echo pre >> %OUT'\nExecStart=/bin/sh -c 'echo main >> %OUT; exec sleep 1000'\n" +
				"ExecStartPost=/bin/sh -c 'echo post >> %OUT'\nExecStop=/bin/sh -c 'test -n \"$MAINPID\" && echo stop >> %OUT'\n" +
				"ExecStopPost=/bin/sh -c 'echo stop-post >> %OUT'\n",
			want: "pre\nmain\npost\nstop\nstop-post\n", active: executor.Active,
		},
		{
			name: "several ExecStartPre, an empty one resets the list",
			unit: "reset.service",
			text: "[Service]\nExecStartPre=/bin/sh -c 'echo dropped >> %OUT'\nExecStartPre=\nExecStartPre=/bin/sh -c 'echo kept >> %OUT'\n" +
				"ExecStartPre=/bin/sh -c 'echo kept2 >> %OUT'\nExecStart=/bin/sleep 1000\n",
			want: "kept\nkept2\n", active: executor.Active,
		},
		{
			name: "'-' ignores a failing command",
			unit: "dash.service",
			text: "[Service]\nExecStartPre=-/bin/sh -c 'exit 5'\nExecStartPre=-/nonexistent/binary\nExecStart=/bin/sh -c 'echo ran >> %OUT; exec sleep 1000'\n",
			want: "ran\n", active: executor.Active,
		},
		{
			name:  "a failing ExecStartPre fails the start, ExecStopPost still runs",
			unit:  "prefail.service",
			text:  "[Service]\nExecStartPre=/bin/sh -c 'exit 5'\nExecStart=/bin/sh -c 'echo never >> %OUT'\nExecStopPost=/bin/sh -c 'echo cleanup >> %OUT'\n",
			start: executor.ErrJobFailed, want: "cleanup\n", active: executor.Failed,
		},
		{
			name:  "a missing executable fails the start",
			unit:  "missing.service",
			text:  "[Service]\nExecStart=/nonexistent/binary\n",
			start: executor.ErrJobFailed, active: executor.Failed,
		},
		{
			name: "'@' sets argv[0]",
			unit: "argv0.service",
			text: "[Service]\nExecStart=@/bin/sh kiln-argv0 -c 'echo $0 >> %OUT; exec sleep 1000'\n",
			want: "kiln-argv0\n", active: executor.Active,
		},
		{
			name: "Environment= with quotes, EnvironmentFile=, $VAR and ${VAR}",
			unit: "env.service",
			text: "[Service]\nEnvironment=\"GREETING=hello world\" NAME=%n\nEnvironmentFile=%OUT.env\nEnvironmentFile=-/nonexistent/env\n" +
				"ExecStart=/bin/sh -c 'echo \"${GREETING}|$NAME|$FROMFILE|$PATH\" >> %OUT; exec sleep 1000'\n",
			want: "hello world|env.service|file value|" + DefaultPath + "\n", active: executor.Active,
		},
		{
			name: "a bare variable word splits into arguments",
			unit: "split.service",
			text: "[Service]\nEnvironment=\"ARGS=-c echo\"\nExecStart=/bin/sh -c 'echo $# \"$@\" >> %OUT; exec sleep 1000' sh $ARGS ${ARGS}\n",
			want: "3 -c echo -c echo\n", active: executor.Active,
		},
		{
			name: "WorkingDirectory=",
			unit: "wd.service",
			text: "[Service]\nWorkingDirectory=%OUTDIR\nExecStart=/bin/sh -c 'pwd >> %OUT; exec sleep 1000'\n",
			want: "%OUTDIR\n", active: executor.Active,
		},
		{
			name:  "a missing WorkingDirectory= fails, '-' makes it optional",
			unit:  "wdmissing.service",
			text:  "[Service]\nWorkingDirectory=/nonexistent/dir\nExecStart=/bin/sleep 1000\n",
			start: executor.ErrJobFailed, active: executor.Failed,
		},
		{
			name: "optional WorkingDirectory=",
			unit: "wdoptional.service",
			text: "[Service]\nWorkingDirectory=-/nonexistent/dir\nExecStart=/bin/sh -c 'pwd >> %OUT; exec sleep 1000'\n",
			want: "/\n", active: executor.Active,
		},
		{
			name: "a bare command name is looked up in PATH",
			unit: "bare.service",
			text: "[Service]\nExecStart=sh -c 'echo bare >> %OUT; exec sleep 1000'\n",
			want: "bare\n", active: executor.Active,
		},
		{
			name: "instance specifiers",
			unit: "inst@web-1.service",
			text: "[Service]\nExecStart=/bin/sh -c 'echo %i %I %n %N %p %m %b %H >> %OUT; exec sleep 1000'\n",
			want: "web-1 web/1 inst@web-1.service inst@web-1 inst m1 b1 h1\n", active: executor.Active,
		},
		{
			name:  "an unknown specifier fails the start",
			unit:  "badspec.service",
			text:  "[Service]\nExecStart=/bin/echo %Z\n",
			start: executor.ErrSpecifier, active: executor.Inactive,
		},
		{
			name:  "Type=forking is not supported",
			unit:  "forking.service",
			text:  "[Service]\nType=forking\nExecStart=/bin/true\n",
			start: executor.ErrUnsupported, active: executor.Inactive,
		},
		{
			name: "SuccessExitStatus= makes an exit code clean",
			unit: "success.service",
			text: "[Service]\nSuccessExitStatus=42\nExecStart=/bin/sh -c 'echo x >> %OUT; sleep 0.1; exit 42'\n",
			want: "x\n", active: executor.Inactive,
		},
		{
			name: "oneshot with RemainAfterExit= stays active",
			unit: "remain.service",
			text: "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'echo up >> %OUT'\nExecStop=/bin/sh -c 'echo down >> %OUT'\n",
			want: "up\ndown\n", active: executor.Active,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, dir := newExec(t)
			outDir := t.TempDir()
			out := filepath.Join(outDir, "out")
			if err := os.WriteFile(out+".env", []byte("# comment\nFROMFILE=\"file value\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			file := fileOfName(t, tt.unit)
			text := strings.NewReplacer("%OUTDIR", outDir, "%OUT", out).Replace(tt.text)
			writeUnit(t, ex, file, text)
			err := ex.Start(context.Background(), tt.unit)
			if !errors.Is(err, tt.start) || (tt.start == nil && err != nil) {
				t.Fatalf("Start: %v, want %v", err, tt.start)
			}
			time.Sleep(300 * time.Millisecond)
			st := waitFor(t, ex, tt.unit, 5*time.Second, tt.active, isState(tt.active, ""))
			if tt.active == executor.Active && st.SubState != "running" && st.SubState != "exited" {
				t.Errorf("substate %s", st.SubState)
			}
			if err := ex.Stop(context.Background(), tt.unit); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(out)
			if want := strings.ReplaceAll(tt.want, "%OUTDIR", outDir); string(raw) != want {
				t.Errorf("output %q, want %q (log: %s)", raw, want, readLog(dir, tt.unit))
			}
		})
	}
}

func fileOfName(t *testing.T, name string) string {
	t.Helper()
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[:i+1] + name[strings.LastIndexByte(name, '.'):]
	}
	return name
}

func readLog(dir, name string) string {
	raw, _ := os.ReadFile(filepath.Join(dir, "logs", name+".log"))
	return string(raw)
}

// watchStates records every (active, sub) state the unit goes through.
func watchStates(t *testing.T, ex *Executor, name string) func() []string {
	var mu sync.Mutex
	var seen []string
	ex.mu.Lock()
	ex.trace = func(n, active, sub string) {
		if n != name {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if s := active + "/" + sub; len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
	}
	ex.mu.Unlock()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func containsInOrder(seen []string, want ...string) bool {
	i := 0
	for _, s := range seen {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestExecStateTransitions(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		stopAt string // stop the unit once it is in this state
		want   []string
	}{
		{
			name:   "start and stop",
			text:   "[Service]\nExecStartPre=/bin/true\nExecStart=/bin/sleep 1000\nExecStartPost=/bin/true\n",
			stopAt: "active/running",
			want:   []string{"activating/start-pre", "activating/start-post", "active/running", "deactivating/stop", "deactivating/stop-sigterm", "inactive/dead"},
		},
		{
			name: "clean exit",
			text: "[Service]\nExecStart=/bin/sh -c 'sleep 0.2'\n",
			want: []string{"active/running", "inactive/dead"},
		},
		{
			name: "failure",
			text: "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 1'\n",
			want: []string{"active/running", "failed/failed"},
		},
		{
			name: "killed by a signal is a failure",
			text: "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; kill -KILL $$'\n",
			want: []string{"active/running", "failed/failed"},
		},
		{
			name: "Restart=on-failure goes through auto-restart",
			text: "[Unit]\nStartLimitBurst=2\n[Service]\nRestart=on-failure\nRestartSec=100ms\nExecStart=/bin/sh -c 'sleep 0.2; exit 1'\n",
			want: []string{"active/running", "activating/auto-restart", "active/running", "failed/failed"},
		},
		{
			name: "Restart=on-failure does not restart a clean exit",
			text: "[Service]\nRestart=on-failure\nRestartSec=100ms\nExecStart=/bin/sh -c 'sleep 0.2'\n",
			want: []string{"active/running", "inactive/dead"},
		},
		{
			name:   "stop during auto-restart",
			text:   "[Service]\nRestart=always\nRestartSec=1h\nExecStart=/bin/sh -c 'sleep 0.2'\n",
			stopAt: "activating/auto-restart",
			want:   []string{"active/running", "activating/auto-restart", "inactive/dead"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, _ := newExec(t)
			writeUnit(t, ex, "u.service", tt.text)
			seen := watchStates(t, ex, "u.service")
			_ = ex.Start(context.Background(), "u.service")
			last := tt.want[len(tt.want)-1]
			if tt.stopAt != "" {
				waitFor(t, ex, "u.service", 5*time.Second, tt.stopAt, func(s executor.Status) bool { return s.ActiveState+"/"+s.SubState == tt.stopAt })
				if err := ex.Stop(context.Background(), "u.service"); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, ex, "u.service", 10*time.Second, last, func(s executor.Status) bool { return s.ActiveState+"/"+s.SubState == last })
			time.Sleep(100 * time.Millisecond)
			if got := seen(); !containsInOrder(got, tt.want...) {
				t.Errorf("states %v, want in order %v", got, tt.want)
			}
		})
	}
}

func TestExecStopTimeout(t *testing.T) {
	ex, _ := newExec(t)
	out := t.TempDir() + "/pid"
	writeUnit(t, ex, "stubborn.service", "[Service]\nTimeoutStopSec=400ms\nExecStart=/bin/sh -c 'trap \"\" TERM; echo $$ > "+out+"; while :; do sleep 0.05; done'\n")
	seen := watchStates(t, ex, "stubborn.service")
	if err := ex.Start(context.Background(), "stubborn.service"); err != nil {
		t.Fatal(err)
	}
	pid := readPids(t, out, 1)[0]
	start := time.Now()
	if err := ex.Stop(context.Background(), "stubborn.service"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("stop took %v, want TimeoutStopSec (400ms) then SIGKILL", took)
	}
	if alive(pid) {
		t.Errorf("process %d survived", pid)
	}
	if got := seen(); !containsInOrder(got, "deactivating/stop-sigterm", "deactivating/stop-sigkill", "inactive/dead") {
		t.Errorf("states %v", got)
	}
}

// No orphans: background processes of a unit's commands die with the unit, whether it is
// stopped or its main process exits on its own.
func TestExecNoOrphans(t *testing.T) {
	tests := []struct {
		name string
		text string
		stop bool
	}{
		{"stopped", "[Service]\nExecStart=/bin/sh -c 'sleep 1000 & echo $! >> %OUT; sleep 1000 & echo $! >> %OUT; wait'\n", true},
		{"main exits, children left behind", "[Service]\nTimeoutStopSec=300ms\nExecStart=/bin/sh -c 'sleep 1000 & echo $! >> %OUT; sleep 1000 & echo $! >> %OUT; sleep 0.3'\n", false},
		{"children that ignore SIGTERM", "[Service]\nTimeoutStopSec=300ms\nExecStart=/bin/sh -c \"sh -c 'trap \\\"\\\" TERM; echo \\$\\$ >> %OUT; while :; do sleep 0.05; done' & sh -c 'trap \\\"\\\" TERM; echo \\$\\$ >> %OUT; while :; do sleep 0.05; done' & wait\"\n", true},
		{"ExecStartPost leaves a child", "[Service]\nExecStart=/bin/sh -c 'echo $$ >> %OUT; exec sleep 1000'\nExecStartPost=/bin/sh -c 'sleep 1000 & echo $! >> %OUT'\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, _ := newExec(t)
			out := t.TempDir() + "/pids"
			writeUnit(t, ex, "bg.service", strings.ReplaceAll(tt.text, "%OUT", out))
			if err := ex.Start(context.Background(), "bg.service"); err != nil {
				t.Fatal(err)
			}
			pids := readPids(t, out, 2)
			for _, p := range pids {
				if !alive(p) {
					t.Fatalf("background process %d not running", p)
				}
			}
			if tt.stop {
				if err := ex.Stop(context.Background(), "bg.service"); err != nil {
					t.Fatal(err)
				}
			} else {
				waitFor(t, ex, "bg.service", 5*time.Second, "inactive", isState(executor.Inactive, "dead"))
			}
			for _, p := range pids {
				if alive(p) {
					t.Errorf("process %d left behind", p)
				}
			}
			states, _ := States(ex.c.Dir)
			if s := states["bg.service"]; len(s.Groups) != 0 || s.Running() {
				t.Errorf("state file after the end: %+v", s)
			}
		})
	}
}

// When kiln-node dies (SIGKILL), its units' main processes die with it (Pdeathsig), and the
// next executor on the same directory kills what they left in their process groups.
func TestExecKilnNodeDies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux's")
	}
	dir := t.TempDir()
	out := t.TempDir() + "/pids"
	// The main process and a background child that would outlive it.
	text := "[Service]\nExecStart=/bin/sh -c 'sleep 1000 & echo $! >> " + out + "; echo $$ >> " + out + "; wait'\n"
	if err := executor.WriteMarked(filepath.Join(dir, "units"), "orphan.service", hashOf(text), []byte(text)); err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KILN_EXEC_HELPER_DIR="+dir, "KILN_EXEC_HELPER_UNIT=orphan.service")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "started\n" {
		t.Fatalf("helper: %q", line)
	}
	pids := readPids(t, out, 2)
	child, main := pids[0], pids[1]
	states, _ := States(dir)
	if !states["orphan.service"].Running() || states["orphan.service"].MainPID != main {
		t.Fatalf("state file: %+v", states["orphan.service"])
	}

	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(main) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(main) {
		t.Fatalf("main process %d outlived kiln-node", main)
	}
	if states, _ := States(dir); states["orphan.service"].Running() {
		t.Errorf("state file says running after its process died")
	}
	// The background child is an orphan now; it does not get Pdeathsig (the kernel resets it
	// in children), so the next executor on the directory ends it.
	if !alive(child) {
		t.Logf("background child %d already gone", child)
	}
	ex, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close(context.Background())
	deadline = time.Now().Add(5 * time.Second)
	for alive(child) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(child) {
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("orphan %d survived the next executor's sweep", child)
	}
}

// The state files tell tests which units run.
func TestExecStates(t *testing.T) {
	ex, dir := newExec(t)
	writeUnit(t, ex, "a@.service", "[Service]\nExecStart=/bin/sleep 1000\n")
	for _, n := range []string{"a@1.service", "a@2.service"} {
		if err := ex.Start(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := ex.Stop(context.Background(), "a@2.service"); err != nil {
		t.Fatal(err)
	}
	states, err := States(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s := states["a@1.service"]; !s.Running() || s.MainPID == 0 || s.Starts != 1 || s.ActiveState != executor.Active {
		t.Errorf("a@1: %+v", s)
	}
	if s := states["a@2.service"]; s.Running() || s.ActiveState != executor.Inactive || s.MainPID != 0 {
		t.Errorf("a@2: %+v", s)
	}
	// A PID that another process took is not "running".
	s := states["a@1.service"]
	s.MainStart++
	if s.Running() {
		t.Errorf("a state whose process start time differs counts as running")
	}
}

// A start while the unit stops waits for the stop, then starts it, as systemd queues it.
func TestExecStartWhileStopping(t *testing.T) {
	ex, _ := newExec(t)
	out := t.TempDir() + "/pids"
	writeUnit(t, ex, "slow.service", "[Service]\nTimeoutStopSec=10\nExecStart=/bin/sh -c 'echo $$ >> "+out+"; trap \"sleep 0.5; exit 0\" TERM; while :; do sleep 0.05; done'\n")
	if err := ex.Start(context.Background(), "slow.service"); err != nil {
		t.Fatal(err)
	}
	first := readPids(t, out, 1)[0]
	stopped := make(chan error, 1)
	go func() { stopped <- ex.Stop(context.Background(), "slow.service") }()
	waitFor(t, ex, "slow.service", 5*time.Second, "deactivating", isState(executor.Deactivating, ""))
	if err := ex.Start(context.Background(), "slow.service"); err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	pids := readPids(t, out, 2)
	if st := status(t, ex, "slow.service"); st.ActiveState != executor.Active || pids[1] == first || alive(first) {
		t.Errorf("after a start during a stop: %+v, pids %v", st, pids)
	}
}
