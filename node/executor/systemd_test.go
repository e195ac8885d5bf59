package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/kiln-cluster/kiln/node/unit"
)

func TestOwnService(t *testing.T) {
	tests := []struct{ name, cgroup, want string }{
		{"cgroup v2 service", "0::/system.slice/kiln-node.service\n", "kiln-node.service"},
		{"hybrid, named systemd line", "12:memory:/x\n1:name=systemd:/system.slice/kiln-node.service\n0::/\n", "kiln-node.service"},
		{"nested cgroup under the service", "0::/system.slice/kiln-node.service/payload\n", "kiln-node.service"},
		{"a scope (docker exec, a login)", "0::/system.slice/docker-abc.scope\n", ""},
		{"root", "0::/\n", ""},
		{"transient service of systemd-run", "0::/system.slice/run-u42.service\n", "run-u42.service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cgroup")
			if err := os.WriteFile(p, []byte(tt.cgroup), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := ownService(p); got != tt.want {
				t.Errorf("ownService = %q, want %q", got, tt.want)
			}
		})
	}
	if got := ownService("/nonexistent"); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

// The systemd executor binds every unit it writes to kiln-node's service with a drop-in, and
// removes the drop-in with the unit.
func TestSystemdDropIn(t *testing.T) {
	dir := t.TempDir()
	noBus := func(context.Context) (*sddbus.Conn, error) { return nil, errors.New("no bus here") }
	s := NewSystemd(SystemdConfig{Dir: dir, BindsTo: "kiln-node.service", Connect: noBus})
	text := "[Service]\nExecStart=/bin/true\n"
	u, err := unit.Parse("", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile("a@.service", u.Hash(), []byte(text)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "a@.service.d", dropIn))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[Unit]\n", "BindsTo=kiln-node.service\n", "After=kiln-node.service\n"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("drop-in lacks %q:\n%s", want, raw)
		}
	}
	if files, _ := s.Files(); len(files) != 1 {
		t.Errorf("Files: %v", files)
	}
	if err := s.RemoveFile("a@.service"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(s.dropInPath("a@.service"))); !os.IsNotExist(err) {
		t.Errorf("drop-in directory left: %v", err)
	}
	none := NewSystemd(SystemdConfig{Dir: t.TempDir(), BindsTo: "-", Connect: noBus})
	if err := none.WriteFile("b.service", u.Hash(), []byte(text)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(none.dropInPath("b.service")); !os.IsNotExist(err) {
		t.Errorf("a drop-in without BindsTo: %v", err)
	}
}
