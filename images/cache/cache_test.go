package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/images/cache"
	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/images/feed"
	"github.com/kiln-cluster/kiln/internal/mirrortest"
)

func newCache(t *testing.T, m *mirrortest.Mirror, dir string) *cache.Cache {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return &cache.Cache{Dir: dir, Feed: &feed.Client{BaseURL: m.URL}, Keys: m.Keys}
}

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (loopback mirror)")
	}
}

// checkPulled asserts that every artifact of the platform is in the cache, as the mirror made
// it, under <os>/<channel>/<name>, linked into the content-addressed store.
func checkPulled(t *testing.T, c *cache.Cache, m *mirrortest.Mirror, osName, platform string) {
	t.Helper()
	paths, err := c.Lookup(osName, "stable", platform)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range catalog.Of(osName).Platforms[platform].Artifacts {
		p := paths[a.Role]
		if p != filepath.Join(c.Dir, osName, "stable", a.Name) {
			t.Errorf("%s: path %s", a.Name, p)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := m.Stored(osName, a.Name); len(want) == 0 || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes in the cache, %d published", a.Name, len(got), len(want))
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || filepath.Dir(real) != filepath.Join(c.Dir, "store", "sha256") {
			t.Errorf("%s: resolves to %s (%v), not into the store", a.Name, real, err)
		}
	}
}

// assertEmpty asserts that a refused pull left no file and no link in the cache.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left in the cache: %s", p)
		}
		return nil
	})
}

func TestIntegrationPull(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	for _, osName := range []string{"flatcar", "fcos"} {
		for _, platform := range []string{"pxe", "qemu"} {
			t.Run(osName+"/"+platform, func(t *testing.T) {
				c := newCache(t, m, "")
				var out bytes.Buffer
				c.Progress = cache.NewProgress(&out)
				e, err := c.Pull(context.Background(), osName, "stable", platform, "")
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"flatcar": mirrortest.FlatcarVersion, "fcos": mirrortest.FCOSVersion}[osName]
				if e.Version != want || !e.Current {
					t.Errorf("entry %+v", e)
				}
				checkPulled(t, c, m, osName, platform)
				// Progress to a pipe: plain lines, per tenth, and the end.
				lines := out.String()
				for _, a := range catalog.Of(osName).Platforms[platform].Artifacts {
					if !strings.Contains(lines, a.Name+": downloading") || !strings.Contains(lines, a.Name+": done") {
						t.Errorf("progress lines lack %s:\n%s", a.Name, lines)
					}
				}
				if !regexp.MustCompile(`(?m): [1-9][0-9]?% \(`).MatchString(lines) || strings.Contains(lines, "\r") {
					t.Errorf("progress lines:\n%s", lines)
				}
				entries, err := c.Entries()
				if err != nil || len(entries) != 1 || entries[0].Platform != platform || !entries[0].Current {
					t.Errorf("entries %+v, %v", entries, err)
				}
				if probs, err := c.Verify(context.Background()); err != nil || len(probs) > 0 {
					t.Errorf("verify: %v %v", probs, err)
				}
				// Pulling again fetches nothing.
				before := len(m.Ranges(mirrortest.FlatcarPath("flatcar_production_pxe.vmlinuz")))
				if _, err := c.Pull(context.Background(), osName, "stable", platform, ""); err != nil {
					t.Fatal(err)
				}
				if after := len(m.Ranges(mirrortest.FlatcarPath("flatcar_production_pxe.vmlinuz"))); after != before {
					t.Errorf("a second pull downloaded again (%d → %d requests)", before, after)
				}
			})
		}
	}
}

// A connection cut mid-file is resumed with a Range request from where it broke.
func TestIntegrationResume(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	p := mirrortest.FlatcarPath("flatcar_production_pxe.vmlinuz")
	m.CutOnce(p, 65536)
	c := newCache(t, m, "")
	var out bytes.Buffer
	c.Progress = cache.NewProgress(&out)
	if _, err := c.Pull(context.Background(), "flatcar", "stable", "pxe", ""); err != nil {
		t.Fatal(err)
	}
	if got := m.Ranges(p); !slices.Equal(got, []string{"", "bytes=65536-"}) {
		t.Errorf("requests of the kernel: %q, want a whole one then a resume at 65536", got)
	}
	if !strings.Contains(out.String(), "resuming at 64.0 KiB") {
		t.Errorf("progress does not say it resumed:\n%s", out.String())
	}
	checkPulled(t, c, m, "flatcar", "pxe")
}

// A connection on which nothing arrives is given up after the stall timeout and resumed.
func TestIntegrationStalledConnection(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	p := mirrortest.FCOSPath("fedora-coreos-live-rootfs.x86_64.img")
	m.StallOnce(p, 100000)
	c := newCache(t, m, "")
	c.StallTimeout = 300 * time.Millisecond
	if _, err := c.Pull(context.Background(), "fcos", "stable", "pxe", ""); err != nil {
		t.Fatal(err)
	}
	// The resume starts where the bytes that arrived end (all 100000 unless the machine is slow).
	if got := m.Ranges(p); len(got) != 2 || got[0] != "" || !strings.HasPrefix(got[1], "bytes=") || got[1] == "bytes=0-" {
		t.Errorf("requests of the rootfs: %q, want a whole one then a resume", got)
	}
	checkPulled(t, c, m, "fcos", "pxe")
}

// Every refusal names its reason and leaves nothing in the cache.
func TestIntegrationRefusals(t *testing.T) {
	integration(t)
	kernel := mirrortest.FlatcarPath("flatcar_production_pxe.vmlinuz")
	for _, tc := range []struct {
		name         string
		os, platform string
		breakIt      func(m *mirrortest.Mirror)
		embedded     bool // the embedded keys, not the test key
		want         error
	}{
		{"wrong checksum", "flatcar", "pxe", func(m *mirrortest.Mirror) {
			b := bytes.Clone(m.File(kernel))
			b[1000] ^= 1
			m.Set(kernel, b)
		}, false, feed.ErrChecksum},
		{"wrong checksum fcos", "fcos", "pxe", func(m *mirrortest.Mirror) {
			p := mirrortest.FCOSPath("fedora-coreos-live-rootfs.x86_64.img")
			b := bytes.Clone(m.File(p))
			b[len(b)-1] ^= 1
			m.Set(p, b)
		}, false, feed.ErrChecksum},
		{"wrong signature", "flatcar", "pxe", func(m *mirrortest.Mirror) {
			m.Set(kernel+".sig", m.Sign([]byte("something else")))
		}, false, feed.ErrSignature},
		{"missing signature", "fcos", "pxe", func(m *mirrortest.Mirror) {
			m.Delete(mirrortest.FCOSPath("fedora-coreos-live-initramfs.x86_64.img") + ".sig")
		}, false, feed.ErrSignature},
		{"signed by another key", "flatcar", "pxe", func(*mirrortest.Mirror) {}, true, feed.ErrSignature},
		{"truncated xz", "fcos", "qemu", func(m *mirrortest.Mirror) {
			m.Truncate(mirrortest.FCOSPath("fedora-coreos-qemu.x86_64.qcow2.xz"), true)
		}, false, cache.ErrCorrupt},
		{"truncated bz2", "flatcar", "qemu", func(m *mirrortest.Mirror) {
			m.Truncate(mirrortest.FlatcarPath("flatcar_production_qemu_image.img.bz2"), false)
		}, false, cache.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mirrortest.New(t)
			tc.breakIt(m)
			c := newCache(t, m, "")
			if tc.embedded {
				c.Keys = nil
			}
			_, err := c.Pull(context.Background(), tc.os, "stable", tc.platform, "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			assertEmpty(t, c.Dir)
			if _, err := c.Lookup(tc.os, "stable", tc.platform); !errors.Is(err, cache.ErrNotCached) {
				t.Errorf("lookup after a refusal: %v", err)
			}
		})
	}
}

// Parallel pulls of the same artifacts into one cache take turns and store one good copy.
func TestIntegrationParallelPulls(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = newCache(t, m, dir).Pull(context.Background(), "fcos", "stable", "pxe", "")
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c := newCache(t, m, dir)
	checkPulled(t, c, m, "fcos", "pxe")
	if probs, err := c.Verify(context.Background()); err != nil || len(probs) > 0 {
		t.Errorf("verify: %v %v", probs, err)
	}
	blobs, _ := filepath.Glob(filepath.Join(dir, "store", "sha256", "*"))
	if len(blobs) != 3 {
		t.Errorf("%d stored files, want 3", len(blobs))
	}
}

// Verify finds a stored file that changed; prune keeps the newest versions and the current one.
func TestIntegrationVerifyPrune(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	c := newCache(t, m, "")
	ctx := context.Background()
	if _, err := c.Pull(ctx, "flatcar", "stable", "pxe", ""); err != nil {
		t.Fatal(err)
	}
	m.NewFlatcarRelease(t, "4230.3.0", 77)
	if _, err := c.Pull(ctx, "flatcar", "stable", "pxe", ""); err != nil {
		t.Fatal(err)
	}
	checkPulled(t, c, m, "flatcar", "pxe")
	entries, err := c.Entries()
	if err != nil || len(entries) != 2 || entries[0].Version != "4230.3.0" || !entries[0].Current || entries[1].Current {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	removed, freed, err := c.Prune(1)
	if err != nil || len(removed) != 1 || filepath.Base(removed[0]) != mirrortest.FlatcarVersion || freed < 200<<10 {
		t.Errorf("prune: %v, %d bytes, %v", removed, freed, err)
	}
	checkPulled(t, c, m, "flatcar", "pxe")
	if probs, err := c.Verify(ctx); err != nil || len(probs) > 0 {
		t.Errorf("verify after prune: %v %v", probs, err)
	}
	// A changed stored file is found.
	p, _ := c.Lookup("flatcar", "stable", "pxe")
	real, _ := filepath.EvalSymlinks(p[catalog.Kernel])
	if err := os.WriteFile(real, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	probs, err := c.Verify(ctx)
	if err != nil || len(probs) != 1 || !strings.Contains(probs[0].Path, real) {
		t.Errorf("verify after a change: %v %v", probs, err)
	}
}

func TestLookupNotCached(t *testing.T) {
	c := &cache.Cache{Dir: t.TempDir()}
	if _, err := c.Lookup("flatcar", "stable", "pxe"); !errors.Is(err, cache.ErrNotCached) || !strings.Contains(err.Error(), "kiln images pull --os flatcar --channel stable --platform pxe") {
		t.Errorf("err = %v", err)
	}
	if _, err := c.Lookup("flatcar", "next", "pxe"); !errors.Is(err, catalog.ErrUnknownChannel) {
		t.Errorf("err = %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"4230.2.3", "4230.10.0", -1},
		{"42.20250901.3.0", "41.20251201.3.0", 1},
		{"1.0", "1.0", 0},
		{"1.0", "1.0.1", -1},
	} {
		if got := cache.CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%s, %s) = %d", tc.a, tc.b, got)
		}
	}
}

// An artifact the feed republishes with other digests under the same version is fetched again;
// one it still publishes as pulled is not.
func TestIntegrationRepublished(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	c := newCache(t, m, "")
	ctx := context.Background()
	if _, err := c.Pull(ctx, "flatcar", "stable", "pxe", ""); err != nil {
		t.Fatal(err)
	}
	kernel := mirrortest.FlatcarPath("flatcar_production_pxe.vmlinuz")
	initrd := mirrortest.FlatcarPath("flatcar_production_pxe_image.cpio.gz")
	m.Publish(kernel, []byte("a rebuilt kernel"))
	if _, err := c.Pull(ctx, "flatcar", "stable", "pxe", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Ranges(kernel)); n != 2 {
		t.Errorf("kernel fetched %d times, want 2", n)
	}
	if n := len(m.Ranges(initrd)); n != 1 {
		t.Errorf("initrd fetched %d times, want 1", n)
	}
	p, _ := c.Lookup("flatcar", "stable", "pxe")
	if b, _ := os.ReadFile(p[catalog.Kernel]); string(b) != "a rebuilt kernel" {
		t.Errorf("kernel in the cache: %d bytes", len(b))
	}
}
