package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/node/ctl"
	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/registry"
)

const ctlAppUnit = `[Unit]
Description=My app %i

[Service]
ExecStart=/bin/sleep infinity

[X-Fleet]
Conflicts=my-app@*.service
`

// TestCtlUnitsUserErrors: bad arguments and bad files are the user's errors (exit 1), found
// before etcd is asked anything.
func TestCtlUnitsUserErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(bad, []byte("[X-Fleet]\nMachineMetdata=region=east\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreachable := []string{"--etcd-endpoints", "https://127.0.0.1:1", "--etcd-ca", "x", "--etcd-cert", "x", "--etcd-key", "x", "--timeout", "1s"}
	cases := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"submit without files", []string{"submit"}, "requires at least 1 arg"},
		{"submit a name, not a file", []string{"submit", "my-app@.service"}, "give its path"},
		{"submit a missing path", []string{"submit", "./units/missing.service"}, "give its path"},
		{"submit a bad file", []string{"submit", bad}, "bad.service: 2:1: unknown key in [X-Fleet]"},
		{"start a bad file", []string{"start", bad}, "unknown key"},
		{"start a bad name", []string{"start", "my app.service"}, "invalid unit name"},
		{"status needs one unit", []string{"status"}, "accepts 1 arg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := kiln(t, append(append([]string{"ctl"}, tc.args...), unreachable...)...)
			if code != 1 || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.stderr)
			}
		})
	}
}

// TestIntegrationCtlUnits runs the unit commands against a real etcd with an engine and two
// registered machines (no agents: placements, no reports).
func TestIntegrationCtlUnits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	_, cli := ctlCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"m1", "m2"} {
		p := registry.NewPublisher(cli, cli, registry.Machine{ID: id, Health: registry.HealthHealthy, Metadata: map[string]string{"region": "east"}}, 5*time.Second, nil)
		go p.Run(ctx)
	}
	eng := engine.New(engine.Config{Client: cli, ID: "m1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go eng.Run(ctx)

	dir := t.TempDir()
	path := filepath.Join(dir, "my-app@.service")
	if err := os.WriteFile(path, []byte(ctlAppUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := kiln(t, append([]string{"ctl"}, args...)...)
		if code != 0 {
			t.Fatalf("kiln ctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	if out := ok("submit", path); out != "my-app@.service submitted\n" {
		t.Fatalf("submit: %q", out)
	}
	if out := ok("submit", path); !strings.Contains(out, "unchanged") {
		t.Fatalf("submit again: %q", out)
	}
	if out := ok("start", "my-app@1.service", "my-app@2.service"); strings.Count(out, "launched") != 2 {
		t.Fatalf("start: %q", out)
	}
	var units []ctl.UnitStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		units = nil
		if err := json.Unmarshal([]byte(ok("list-units", "-o", "json")), &units); err != nil {
			t.Fatal(err)
		}
		if len(units) == 3 && len(units[1].Placements) == 1 && len(units[2].Placements) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list-units: %+v", units)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// two machines, two placed: a third instance conflicts everywhere
	ok("start", "my-app@3.service")
	for {
		units = nil
		if err := json.Unmarshal([]byte(ok("list-units", "-o", "json")), &units); err != nil {
			t.Fatal(err)
		}
		placed := 0
		for _, u := range units {
			placed += len(u.Placements)
		}
		if placed == 2 && len(units) == 4 && units[3].Unplaced != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list-units: %+v", units)
		}
		time.Sleep(100 * time.Millisecond)
	}
	table := ok("list-units")
	for _, want := range []string{"UNIT", "my-app@1.service", "launched", "unplaced"} {
		if !strings.Contains(table, want) {
			t.Fatalf("list-units table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "my-app@.service") {
		t.Fatalf("list-units shows the template:\n%s", table)
	}
	if out := ok("status", "my-app@3.service", "--lines", "0"); !strings.Contains(out, "Unplaced: all 2 matching machines run a conflicting unit") {
		t.Fatalf("status of the unplaced unit:\n%s", out)
	}
	if out := ok("list-unit-files"); !strings.Contains(out, "HASH") || !strings.Contains(out, "my-app@.service") {
		t.Fatalf("list-unit-files:\n%s", out)
	}
	if out := ok("list-machines"); !strings.Contains(out, "m1 (engine)") || !strings.Contains(out, "region=east") {
		t.Fatalf("list-machines:\n%s", out)
	}
	// list-machines is machines under fleetctl's name: one shape.
	var machines []ctl.MachineRow
	if err := json.Unmarshal([]byte(ok("list-machines", "-o", "json")), &machines); err != nil {
		t.Fatal(err)
	}
	if len(machines) != 2 || !machines[0].Engine || machines[0].Units+machines[1].Units != 2 || machines[0].Metadata["region"] != "east" {
		t.Fatalf("list-machines -o json: %+v", machines)
	}
	if a, b := ok("machines", "-o", "json"), ok("list-machines", "-o", "json"); a != b {
		t.Fatalf("machines and list-machines differ:\n%s\n%s", a, b)
	}
	if out := ok("cat", "my-app@2.service"); !strings.Contains(out, "Conflicts=my-app@*.service") {
		t.Fatalf("cat:\n%s", out)
	}
	if out := ok("stop", "my-app@1.service"); out != "my-app@1.service loaded\n" {
		t.Fatalf("stop: %q", out)
	}
	ok("unload", "my-app@2.service")
	ok("destroy", "my-app@3.service")
	if code, _, stderr := kiln(t, "ctl", "start", "other@1.service"); code != 1 || !strings.Contains(stderr, "unit not found") {
		t.Fatalf("start an unknown unit: exit %d, %s", code, stderr)
	}
	if code, _, _ := kiln(t, "ctl", "cat", "nope.service"); code != 1 {
		t.Fatalf("cat an unknown unit: exit %d", code)
	}
	out := ok("list-unit-files", "-o", "json")
	for _, want := range []string{`"name": "my-app@1.service"`, `"desiredState": "loaded"`, `"name": "my-app@2.service"`, `"desiredState": "inactive"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("list-unit-files -o json lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "my-app@3.service") {
		t.Fatalf("destroyed unit still listed:\n%s", out)
	}
}
