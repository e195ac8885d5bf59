package exec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

// The executor contract: what the reconciler relies on, checked against both executors (Exec
// here, Systemd inside a container by TestIntegrationSystemdExecutor). dir is where the
// executor writes unit files; names are prefixed so that runs do not collide.

func hashOf(text string) unit.Hash {
	u, err := unit.Parse("", []byte(text))
	if err != nil {
		panic(err)
	}
	return u.Hash()
}

func writeUnit(t *testing.T, ex executor.Executor, name, text string) {
	t.Helper()
	if err := ex.WriteFile(name, hashOf(text), []byte(text)); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := ex.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

func status(t *testing.T, ex executor.Executor, name string) executor.Status {
	t.Helper()
	st, err := ex.Status(context.Background(), []string{name})
	if err != nil || len(st) != 1 {
		t.Fatalf("status %s: %v %v", name, st, err)
	}
	return st[0]
}

// waitFor polls the unit's status until ok says yes, failing after timeout.
func waitFor(t *testing.T, ex executor.Executor, name string, timeout time.Duration, what string, ok func(executor.Status) bool) executor.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := status(t, ex, name)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s after %v: %+v", name, what, timeout, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isState(active, sub string) func(executor.Status) bool {
	return func(s executor.Status) bool { return s.ActiveState == active && (sub == "" || s.SubState == sub) }
}

func waitFile(t *testing.T, path string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if raw, err := os.ReadFile(path); err == nil && len(raw) > 0 {
			return string(raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written after %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runContract(t *testing.T, ex executor.Executor, dir, prefix string) {
	out := t.TempDir()
	ctx := context.Background()
	name := func(s string) string { return prefix + s }

	t.Run("files are kiln's own", func(t *testing.T) {
		text := "[Service]\nExecStart=/bin/sleep 1000\n"
		writeUnit(t, ex, name("files.service"), text)
		raw, err := os.ReadFile(filepath.Join(dir, name("files.service")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(raw), executor.MarkerPrefix+hashOf(text).String()+"\n") || !strings.HasSuffix(string(raw), text) {
			t.Fatalf("file text:\n%s", raw)
		}
		foreign := filepath.Join(dir, name("foreign.service"))
		if err := os.WriteFile(foreign, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(foreign)
		files, err := ex.Files()
		if err != nil {
			t.Fatal(err)
		}
		if files[name("files.service")] != hashOf(text) {
			t.Errorf("Files: %v", files)
		}
		if _, ok := files[name("foreign.service")]; ok {
			t.Errorf("Files lists a file kiln did not write")
		}
		if err := ex.WriteFile(name("foreign.service"), hashOf(text), []byte(text)); !errors.Is(err, executor.ErrNotOwned) {
			t.Errorf("overwriting a foreign file: %v", err)
		}
		if err := ex.RemoveFile(name("foreign.service")); !errors.Is(err, executor.ErrNotOwned) {
			t.Errorf("removing a foreign file: %v", err)
		}
		if err := ex.WriteFile(name("t@1.service"), hashOf(text), []byte(text)); !errors.Is(err, executor.ErrName) {
			t.Errorf("writing an instance's file: %v", err)
		}
		if err := ex.RemoveFile(name("files.service")); err != nil {
			t.Fatal(err)
		}
		if err := ex.RemoveFile(name("files.service")); err != nil {
			t.Errorf("removing a missing file: %v", err)
		}
		if err := ex.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if st := status(t, ex, name("files.service")); st.LoadState != executor.LoadNotFound {
			t.Errorf("removed unit: %+v", st)
		}
	})

	t.Run("start, status, stop", func(t *testing.T) {
		n := name("simple.service")
		if st := status(t, ex, n); st.LoadState != executor.LoadNotFound || st.ActiveState != executor.Inactive {
			t.Fatalf("unknown unit: %+v", st)
		}
		if err := ex.Start(ctx, n); err == nil {
			t.Fatalf("starting an unknown unit succeeded")
		}
		writeUnit(t, ex, n, "[Service]\nExecStart=/bin/sh -c 'echo $$ > "+out+"/simple.pid; exec sleep 1000'\n")
		if st := status(t, ex, n); st.LoadState != executor.LoadLoaded || st.ActiveState != executor.Inactive {
			t.Fatalf("loaded unit: %+v", st)
		}
		if err := ex.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ex, n, 5*time.Second, "active", isState(executor.Active, "running"))
		pid := strings.TrimSpace(waitFile(t, out+"/simple.pid", 5*time.Second))
		if err := ex.Start(ctx, n); err != nil {
			t.Fatalf("starting an active unit: %v", err)
		}
		if got := strings.TrimSpace(waitFile(t, out+"/simple.pid", time.Second)); got != pid {
			t.Fatalf("starting an active unit started it again (%s, then %s)", pid, got)
		}
		if err := ex.Stop(ctx, n); err != nil {
			t.Fatal(err)
		}
		if st := status(t, ex, n); st.ActiveState != executor.Inactive {
			t.Fatalf("after Stop: %+v", st)
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Fatalf("process %s still runs after Stop", pid)
		}
		if err := ex.Stop(ctx, n); err != nil {
			t.Errorf("stopping an inactive unit: %v", err)
		}
		if err := ex.Stop(ctx, name("never-loaded.service")); err != nil {
			t.Errorf("stopping an unknown unit: %v", err)
		}
	})

	t.Run("template instances", func(t *testing.T) {
		tpl := name("app@.service")
		writeUnit(t, ex, tpl, "[Unit]\nDescription=app %i\n[Service]\nEnvironment=WHO=%i\nExecStart=/bin/sh -c 'echo \"$WHO %n %p\" > "+out+"/%i.out; exec sleep 1000'\n")
		for _, i := range []string{"1", "2"} {
			inst := name("app@" + i + ".service")
			if err := ex.Start(ctx, inst); err != nil {
				t.Fatalf("start %s: %v", inst, err)
			}
		}
		for _, i := range []string{"1", "2"} {
			inst := name("app@" + i + ".service")
			waitFor(t, ex, inst, 5*time.Second, "active", isState(executor.Active, "running"))
			got := strings.TrimSpace(waitFile(t, out+"/"+i+".out", 5*time.Second))
			if want := i + " " + inst + " " + name("app"); got != want {
				t.Errorf("%s wrote %q, want %q", inst, got, want)
			}
		}
		if st := status(t, ex, tpl); st.ActiveState != executor.Inactive {
			t.Errorf("template: %+v", st)
		}
		for _, i := range []string{"1", "2"} {
			if err := ex.Stop(ctx, name("app@"+i+".service")); err != nil {
				t.Fatal(err)
			}
		}
		if err := ex.RemoveFile(tpl); err != nil {
			t.Fatal(err)
		}
		if err := ex.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("failure and Restart=no", func(t *testing.T) {
		n := name("fails.service")
		writeUnit(t, ex, n, "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 3'\n")
		_ = ex.Start(ctx, n) // Type=simple: the job is done when the process runs
		waitFor(t, ex, n, 5*time.Second, "failed", isState(executor.Failed, "failed"))
		time.Sleep(300 * time.Millisecond)
		if st := status(t, ex, n); st.ActiveState != executor.Failed {
			t.Errorf("Restart=no restarted the unit: %+v", st)
		}
		// A failed unit starts again on request.
		writeUnit(t, ex, n, "[Service]\nExecStart=/bin/sleep 1000\n")
		if err := ex.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ex, n, 5*time.Second, "active", isState(executor.Active, "running"))
		_ = ex.Stop(ctx, n)
	})

	t.Run("Restart=on-failure until the start limit", func(t *testing.T) {
		n := name("crashloop.service")
		writeUnit(t, ex, n, "[Unit]\nStartLimitIntervalSec=30\nStartLimitBurst=3\n[Service]\nRestart=on-failure\nRestartSec=300ms\n"+
			"ExecStart=/bin/sh -c 'echo x >> "+out+"/crash.count; sleep 0.1; exit 1'\n")
		_ = ex.Start(ctx, n)
		waitFor(t, ex, n, 10*time.Second, "in auto-restart", isState(executor.Activating, "auto-restart"))
		waitFor(t, ex, n, 15*time.Second, "failed", isState(executor.Failed, ""))
		if got := strings.Count(waitFile(t, out+"/crash.count", time.Second), "x"); got != 3 {
			t.Errorf("started %d times, want 3 (StartLimitBurst)", got)
		}
		_ = ex.Stop(ctx, n)
	})

	t.Run("Restart=always after a clean exit", func(t *testing.T) {
		n := name("always.service")
		writeUnit(t, ex, n, "[Service]\nRestart=always\nRestartSec=200ms\nExecStart=/bin/sh -c 'echo x >> "+out+"/always.count; sleep 0.3'\n")
		if err := ex.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			raw, _ := os.ReadFile(out + "/always.count")
			if strings.Count(string(raw), "x") >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not restarted: %q", raw)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := ex.Stop(ctx, n); err != nil {
			t.Fatal(err)
		}
		if st := status(t, ex, n); st.Running() {
			t.Fatalf("after Stop: %+v", st)
		}
	})

	t.Run("stop kills when the context ends", func(t *testing.T) {
		n := name("stubborn.service")
		writeUnit(t, ex, n, "[Service]\nTimeoutStopSec=60\nExecStart=/bin/sh -c 'trap \"\" TERM; echo $$ > "+out+"/stubborn.pid; while :; do sleep 0.05; done'\n")
		if err := ex.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(waitFile(t, out+"/stubborn.pid", 5*time.Second))
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := ex.Stop(sctx, n); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second || d < 400*time.Millisecond {
			t.Errorf("Stop took %v, want about the context's 500ms", d)
		}
		if st := status(t, ex, n); st.Running() {
			t.Errorf("after Stop: %+v", st)
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Errorf("process %s survived", pid)
		}
	})

	t.Run("watch reports changes", func(t *testing.T) {
		n := name("watched.service")
		writeUnit(t, ex, n, "[Service]\nExecStart=/bin/sleep 1000\n")
		wctx, cancel := context.WithCancel(ctx)
		var calls atomic.Int64
		done := make(chan error, 1)
		go func() { done <- ex.Watch(wctx, func() { calls.Add(1) }) }()
		time.Sleep(300 * time.Millisecond) // the subscription is in place
		before := calls.Load()
		if err := ex.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for calls.Load() == before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if calls.Load() == before {
			t.Errorf("no change reported after a start")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Watch did not return after its context ended")
		}
		_ = ex.Stop(ctx, n)
	})

	t.Run("oneshot", func(t *testing.T) {
		n := name("once.service")
		writeUnit(t, ex, n, "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo one >> "+out+"/once'\nExecStart=/bin/sh -c 'echo two >> "+out+"/once'\n")
		if err := ex.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		if got := waitFile(t, out+"/once", time.Second); got != "one\ntwo\n" {
			t.Errorf("oneshot wrote %q", got)
		}
		if st := status(t, ex, n); st.ActiveState != executor.Inactive {
			t.Errorf("oneshot after its job: %+v", st)
		}
	})
}

func TestContractExec(t *testing.T) {
	dir := t.TempDir()
	ex, err := New(Config{Dir: dir, MachineID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close(context.Background()) })
	runContract(t, ex, filepath.Join(dir, "units"), "kiln-test-")
}

// TestContractSystemd runs the contract against the machine's systemd. It runs only inside
// the container of TestIntegrationSystemdExecutor, which sets KILN_SYSTEMD_CONTRACT=1.
func TestContractSystemd(t *testing.T) {
	if os.Getenv("KILN_SYSTEMD_CONTRACT") != "1" {
		t.Skip("runs inside a systemd container (TestIntegrationSystemdExecutor)")
	}
	ex := executor.NewSystemd(executor.SystemdConfig{})
	t.Cleanup(ex.Close)
	runContract(t, ex, executor.DefaultSystemdDir, "kiln-test-")
	// Left running for the outer test to see from outside with systemctl.
	writeUnit(t, ex, "kiln-left@.service", "[Service]\nExecStart=/bin/sleep 1000\n")
	if err := ex.Start(context.Background(), "kiln-left@x.service"); err != nil {
		t.Fatal(err)
	}
}
