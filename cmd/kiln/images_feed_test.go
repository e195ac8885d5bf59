package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/internal/mirrortest"
)

// The README's walk through kiln images, against a loopback mirror signed by a test key.
func TestIntegrationImagesCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (loopback mirror)")
	}
	m := mirrortest.New(t)
	dir := t.TempDir()
	t.Setenv("KILN_CACHE_DIR", dir)
	feedFlags := []string{"--base-url", m.URL, "--keyring", m.KeyringFile}

	// Nothing cached, the mirror answers for the stable channels.
	code, out, errs := kiln(t, append([]string{"images", "list", "--channel", "stable"}, feedFlags[:2]...)...)
	if code != 0 || !hasRow(out, "flatcar", "stable", mirrortest.FlatcarVersion, "feed", m.URL+"/stable/amd64-usr") ||
		!hasRow(out, "fcos", "stable", mirrortest.FCOSVersion, "feed", m.URL) || !strings.Contains(out, "(empty)") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}

	// Pull to a pipe: plain progress lines, then where the files are.
	code, out, errs = kiln(t, append([]string{"images", "pull", "--os", "flatcar", "--channel", "stable", "--platform", "pxe"}, feedFlags...)...)
	if code != 0 || !strings.Contains(out, "flatcar_production_pxe.vmlinuz: downloading 200.0 KiB") ||
		!strings.Contains(out, "flatcar_production_pxe.vmlinuz: done") ||
		!strings.Contains(out, "kernel\t"+filepath.Join(dir, "flatcar/stable/flatcar_production_pxe.vmlinuz")) {
		t.Fatalf("pull: exit %d\n%s%s", code, out, errs)
	}

	// Offline: the cache stands in for the feed.
	code, out, errs = kiln(t, "images", "list", "--os", "flatcar", "--channel", "stable", "--offline")
	if code != 0 || !hasRow(out, "flatcar", "stable", mirrortest.FlatcarVersion, "cache", "(offline)") ||
		!hasRow(out, "flatcar", "stable", mirrortest.FlatcarVersion, "pxe", "400.1", "KiB", "yes") {
		t.Fatalf("list --offline: exit %d\n%s%s", code, out, errs)
	}

	if code, out, errs = kiln(t, "images", "verify"); code != 0 || !strings.Contains(out, "ok: 2 files of 1 pulls") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}
	// A stored file changed: verify says which and exits 1.
	real, _ := filepath.EvalSymlinks(filepath.Join(dir, "flatcar/stable/flatcar_production_pxe.vmlinuz"))
	os.WriteFile(real, []byte("changed"), 0o644)
	if code, _, errs = kiln(t, "images", "verify"); code != 1 || !strings.Contains(errs, real) {
		t.Fatalf("verify of a changed file: exit %d\n%s", code, errs)
	}
	if code, out, errs = kiln(t, "images", "prune", "--keep", "1"); code != 0 || !strings.Contains(out, "freed") {
		t.Fatalf("prune: exit %d\n%s%s", code, out, errs)
	}

	// Refusals exit 1 and say why: the embedded Flatcar key did not sign the mirror's files.
	code, _, errs = kiln(t, "images", "pull", "--os", "fcos", "--platform", "pxe", "--base-url", m.URL)
	if code != 1 || !strings.Contains(errs, "bad signature") {
		t.Fatalf("pull with the embedded keys: exit %d\n%s", code, errs)
	}
	if code, _, errs = kiln(t, "images", "pull", "--os", "fcos", "--platform", "aws"); code != 1 || !strings.Contains(errs, "unknown platform") {
		t.Fatalf("unknown platform: exit %d\n%s", code, errs)
	}
}

// hasRow says whether a line of a table starts with these fields.
func hasRow(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}

// Without --assets, kiln pxe serve takes the boot files from the image cache, and says what to
// pull when they are not there.
func TestPXEServeWithoutAssetsAsksForAPull(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if code, _, errs := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("render: exit %d\n%s", code, errs)
	}
	t.Setenv("KILN_CACHE_DIR", t.TempDir())
	code, _, errs := kiln(t, "pxe", "serve", "-f", example, "--pki", filepath.Join(out, "pki"), "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errs, "not in the image cache") || !strings.Contains(errs, "kiln images pull --os flatcar --channel stable --platform pxe") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
}
