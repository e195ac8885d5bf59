package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func TestRunFlagsOverrideTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.json")
	os.WriteFile(path, []byte(`{"machineID": "from-file",
"metadata": {"region": "east"},
"etcd": {"endpoints": ["https://10.0.0.11:2379"], "ca": "/ca", "cert": "/c", "key": "/k"},
"reboot": {"strategy": "reboot", "maxConcurrent": 3, "window": {"start": "Sun 04:00", "length": "1h"}}}
`), 0o600)
	rf := &runFlags{}
	cmd := runCommand(rf)
	f := cmd.Flags()
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
		{"explicit config missing", []string{"--config", "/does/not/exist.json"}, "no such file"},
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
			root := newRootCmd()
			root.SetArgs(append([]string{"run"}, tc.args...))
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if exitcode.Of(err) != exitcode.User {
				t.Fatalf("%T is not a user error (exit 1)", err)
			}
		})
	}
}
