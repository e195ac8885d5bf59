package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestISOExitCodes(t *testing.T) {
	dir := t.TempDir()
	notISO := filepath.Join(dir, "zeros.iso")
	os.WriteFile(notISO, make([]byte, 64<<10), 0o644)
	cfg := filepath.Join(dir, "bad.ign")
	os.WriteFile(cfg, []byte("{"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"help has an example", []string{"iso", "embed", "--help"}, 0, "kiln iso embed -i"},
		{"not a live iso", []string{"iso", "show", notISO}, 1, "no ignition embed area found"},
		{"missing iso", []string{"iso", "kargs", "show", filepath.Join(dir, "missing.iso")}, 1, "no such file"},
		{"invalid config", []string{"iso", "embed", "-i", cfg, notISO}, 1, "invalid ignition config"},
		{"missing config", []string{"iso", "embed", "-i", filepath.Join(dir, "none.ign"), notISO}, 1, "reading the config"},
		{"no iso argument", []string{"iso", "remove"}, 1, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := kiln(t, tt.args...)
			if code != tt.code || !strings.Contains(out+errs, tt.msg) {
				t.Errorf("exit %d, want %d with %q\n%s%s", code, tt.code, tt.msg, out, errs)
			}
		})
	}
}
