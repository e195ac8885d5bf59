package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunFlagsOverrideTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	os.WriteFile(path, []byte(`machineID: from-file
metadata: {region: east}
etcd: {endpoints: ["https://10.0.0.11:2379"], ca: /ca, cert: /c, key: /k}
reboot: {strategy: reboot, maxConcurrent: 3, window: {start: "Sun 04:00", length: 1h}}
`), 0o600)
	rf := &runFlags{}
	cmd := runCommand(rf)
	f := cmd.flags
	if err := f.Parse([]string{"--config", path, "--machine-id", "from-flag", "--metadata", "disk=ssd", "--strategy", "etcd-lock"}); err != nil {
		t.Fatal(err)
	}
	c, err := rf.merged(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.MachineID != "from-flag" || c.Metadata["disk"] != "ssd" || c.Metadata["region"] != "" || c.Reboot.Strategy != "etcd-lock" ||
		c.Reboot.MaxConcurrent != 3 || c.Etcd.Endpoints[0] != "https://10.0.0.11:2379" || c.Reboot.Window.Start != "Sun 04:00" || c.Executor != "systemd" {
		t.Fatalf("merged: %+v", c)
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"explicit config missing", []string{"--config", "/does/not/exist.yaml"}, "no such file"},
		{"no etcd", []string{"--config="}, "no etcd endpoints"},
		{"plain http", []string{"--config=", "--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-ca", "a", "--etcd-cert", "b", "--etcd-key", "c"}, "https://"},
		{"bad strategy", []string{"--config=", "--strategy", "sometimes"}, "unknown reboot strategy"},
		{"bad window", []string{"--config=", "--reboot-window-start", "Funday 04:00", "--reboot-window-length", "1h"}, "invalid reboot window"},
		{"half a window", []string{"--config=", "--reboot-window-start", "Sun 04:00"}, "go together"},
		{"bad executor", []string{"--config=", "--executor", "docker"}, "executor"},
		{"bad group", []string{"--config=", "--group", "a/b"}, "invalid group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := execute(append([]string{"run"}, tc.args...), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if _, ok := err.(userError); !ok {
				t.Fatalf("%T is not a user error (exit 1)", err)
			}
		})
	}
}

// The list and map flags read as pflag's did: comma-separated, CSV quotes, repeatable.
func TestListAndMapFlags(t *testing.T) {
	rf := &runFlags{}
	cmd := runCommand(rf)
	err := cmd.flags.Parse([]string{"--etcd-endpoints", "https://a:2379,https://b:2379", "--etcd-endpoints=https://c:2379",
		"--metadata", `region=east,"note=a,b"`, "--metadata", "disk=ssd"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rf.c.Etcd.Endpoints, " "); got != "https://a:2379 https://b:2379 https://c:2379" {
		t.Fatalf("endpoints %q", got)
	}
	if len(rf.metadata) != 3 || rf.metadata["region"] != "east" || rf.metadata["note"] != "a,b" || rf.metadata["disk"] != "ssd" {
		t.Fatalf("metadata %v", rf.metadata)
	}
	if err := runCommand(&runFlags{}).flags.Parse([]string{"--metadata", "novalue"}); err == nil {
		t.Fatal("metadata without = accepted")
	}
}

// --help prints the command's text, example and flags (not the hidden ones) and succeeds;
// an unknown command or argument is the user's error.
func TestHelpAndUnknownCommands(t *testing.T) {
	var out strings.Builder
	if err := execute([]string{"run", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kiln-node run --config /etc/kiln/node.yaml", "--etcd-endpoints value", "--update-engine"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("run --help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "boot-id") {
		t.Fatalf("run --help shows the hidden --boot-id:\n%s", out.String())
	}
	out.Reset()
	if err := execute(nil, &out, io.Discard); err != nil || !strings.Contains(out.String(), "enrol") {
		t.Fatalf("no command: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{{"frobnicate"}, {"version", "extra"}, {"run", "--no-such-flag"}} {
		err := execute(args, io.Discard, io.Discard)
		if _, ok := err.(userError); !ok {
			t.Fatalf("%v: %v (%T), want a user error", args, err, err)
		}
	}
	out.Reset()
	if err := execute([]string{"version"}, &out, io.Discard); err != nil || strings.TrimSpace(out.String()) == "" {
		t.Fatalf("version: %v %q", err, out.String())
	}
}
