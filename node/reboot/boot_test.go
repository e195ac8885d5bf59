package reboot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// host is a stand-in for the kernel's boot ID file and the /run tmpfs: a container restart
// keeps the first and empties the second; a machine reboot changes both.
type host struct {
	t      *testing.T
	kernel string // the boot_id file
	run    string // the tmpfs
}

func newHost(t *testing.T, bootID string) *host {
	dir := t.TempDir()
	h := &host{t: t, kernel: filepath.Join(dir, "boot_id"), run: filepath.Join(dir, "run")}
	old := kernelBootID
	kernelBootID = h.kernel
	t.Cleanup(func() { kernelBootID = old })
	h.kernelBoots(bootID)
	return h
}

func (h *host) kernelBoots(id string) {
	if err := os.WriteFile(h.kernel, []byte(id+"\n"), 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.emptyRun()
}

// emptyRun is a container restart: a new /run tmpfs, the host's kernel unchanged.
func (h *host) emptyRun() {
	os.RemoveAll(h.run)
	if err := os.MkdirAll(h.run, 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) marker() string { return filepath.Join(h.run, "kiln-node", "boot-marker") }

func (h *host) boot() string {
	h.t.Helper()
	id, err := Boot(h.marker())
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func TestBootIdentity(t *testing.T) {
	h := newHost(t, "k1")
	first := h.boot()
	if again := h.boot(); again != first {
		t.Fatalf("same boot, two identities: %q then %q", first, again)
	}
	h.emptyRun()
	restarted := h.boot()
	if restarted == first {
		t.Fatalf("a container restart (same kernel boot ID, new /run) kept the identity %q", first)
	}
	h.kernelBoots("k2")
	if rebooted := h.boot(); rebooted == restarted || rebooted == first {
		t.Fatalf("a machine reboot kept the identity %q", rebooted)
	}
	// A marker left in place with a new kernel boot (a /run that is not a tmpfs) still counts
	// as a reboot: the kernel's boot ID is part of the identity.
	before := h.boot()
	if err := os.WriteFile(h.kernel, []byte("k3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if after := h.boot(); after == before {
		t.Fatal("a new kernel boot ID with the old marker kept the identity")
	}
	if id, err := Boot(""); err != nil || id != "k3" {
		t.Fatalf("no marker: %q, %v; want the kernel's boot ID", id, err)
	}
}

func TestBootMarkerRefusesForeignContent(t *testing.T) {
	h := newHost(t, "k1")
	os.MkdirAll(filepath.Dir(h.marker()), 0o700)
	os.WriteFile(h.marker(), []byte("hello\n"), 0o644)
	if _, err := Boot(h.marker()); !errors.Is(err, ErrNoBootID) {
		t.Fatalf("a marker file kiln-node did not write: %v", err)
	}
	kernelBootID = filepath.Join(t.TempDir(), "missing")
	if _, err := Boot(""); !errors.Is(err, ErrNoBootID) {
		t.Fatalf("no kernel boot ID: %v", err)
	}
}

// The slot of the reboot lock is released after a container restart (a reboot of the node
// that the kernel's boot ID does not show), and only once the node is healthy; a restart of
// kiln-node alone in the same container keeps it.
func TestCoordinatorReleasesAfterAContainerRestart(t *testing.T) {
	h := newHost(t, "host-boot")
	m := newMachine(t)
	os.WriteFile(m.file(), nil, 0o644)
	step(t, m.coordinator(StrategyEtcdLock, h.boot()))
	if m.rebooter.n != 1 || !m.locker.sem("default").Holds("m1") {
		t.Fatalf("need: %d reboots, holders %v", m.rebooter.n, m.locker.sem("default").Holders)
	}
	// kiln-node restarts in the same container: not a reboot, the slot stays.
	os.Remove(m.file())
	step(t, m.coordinator(StrategyEtcdLock, h.boot()))
	if !m.locker.sem("default").Holds("m1") {
		t.Fatal("slot released after a restart of kiln-node alone")
	}
	// The container restarts (the reboot): released once healthy.
	h.emptyRun()
	m.health = errors.New("units not running")
	c := m.coordinator(StrategyEtcdLock, h.boot())
	if err := c.Step(t.Context()); !errors.Is(err, ErrUnhealthy) || !m.locker.sem("default").Holds("m1") {
		t.Fatalf("unhealthy after the restart: %v, holders %v", err, m.locker.sem("default").Holders)
	}
	m.health = nil
	step(t, c)
	if m.locker.sem("default").Holds("m1") {
		t.Fatal("slot kept after the container's reboot")
	}
}

func TestStartTicks(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want int64
		ok   bool
	}{
		{"1 (systemd) S 0 1 1 0 -1 4194560 10417 1013545 110 1180 38 46 2569 1339 20 0 1 0 52 22712320 2802 18446744073709551615", 52, true},
		// a command name with spaces and a parenthesis
		{"77 (a b) c)) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0", 123456, true},
		{"1 (systemd) S 0 1", 0, false},
		{"no name here", 0, false},
	} {
		got, err := startTicks(tc.stat)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("startTicks(%q) = %d, %v; want %d (ok %v)", tc.stat, got, err, tc.want, tc.ok)
		}
	}
}

func TestBootTimeIsBeforeNow(t *testing.T) {
	bt, err := BootTime()
	if err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); bt.After(now) || now.Sub(bt) > 10*365*24*time.Hour {
		t.Fatalf("boot time %v, now %v", bt, now)
	}
}
