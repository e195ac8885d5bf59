package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/node/submit"
)

func TestReadUnitArgs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "web.service")
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(good, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("[X-Fleet]\nMachineMetdata=region=east\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		needFile bool
		want     []string // unit names read
		withText []bool
		err      string
	}{
		{name: "a file and a name", args: []string{good, "my-app@1.service"}, want: []string{"web.service", "my-app@1.service"}, withText: []bool{true, false}},
		{name: "a name without a type is a service", args: []string{"foo", "my-app@2", "t.timer"}, want: []string{"foo.service", "my-app@2.service", "t.timer"}, withText: []bool{false, false, false}},
		{name: "a name where a file is needed", args: []string{"web.service"}, needFile: true, err: "give its path"},
		{name: "a missing path", args: []string{"./units/missing.service"}, err: "give its path"},
		{name: "a bad file", args: []string{bad}, err: "bad.service: 2:1: unknown key in [X-Fleet]"},
		{name: "a bad name", args: []string{"my app.service"}, err: "invalid unit name"},
		{name: "every problem at once", args: []string{bad, "my app.service"}, err: "invalid unit name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := ReadUnitArgs(tc.args, tc.needFile)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !IsUserError(err) {
					t.Fatalf("err = %v, want a user error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(tc.want) {
				t.Fatalf("read %v", files)
			}
			for i, f := range files {
				if f.Name != tc.want[i] || (len(f.Text) > 0) != tc.withText[i] {
					t.Errorf("unit %d: %s with %d bytes, want %s (text: %v)", i, f.Name, len(f.Text), tc.want[i], tc.withText[i])
				}
			}
		})
	}
}

func TestIsUserError(t *testing.T) {
	for _, err := range []error{ErrUnknownMachine, ErrNotHolder, ErrNotPlaced, ErrStuck, ErrNotReached, submit.ErrNotFound, submit.ErrChanged} {
		if !IsUserError(fmt.Errorf("x: %w", err)) {
			t.Errorf("%v is not a user error", err)
		}
	}
	if IsUserError(errors.New("etcdserver: request timed out")) {
		t.Error("an etcd failure is a user error")
	}
}
