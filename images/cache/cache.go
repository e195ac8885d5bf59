// Package cache downloads OS images from their release feeds, checks them (published digest,
// OpenPGP signature, uncompressed digest) and keeps them in a content-addressed store with a
// readable layout that `kiln pxe serve --assets` serves as it is:
//
//	<dir>/store/sha256/<hex>                  the content, named by its SHA-256
//	<dir>/<os>/<channel>/<version>/<name>     a link into the store
//	<dir>/<os>/<channel>/<version>/<platform>.json   what was pulled, from where, with digests
//	<dir>/<os>/<channel>/<name>               a link to the last pulled version's file
//
// Downloads go to <dir>/.partial/ and enter the store only once every artifact of the
// platform has passed its checks; a failed or refused pull leaves nothing behind. Pulls of the
// same artifact by several processes take turns on a lock of its partial file.
package cache

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/images/feed"
	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// EnvDir names the environment variable that sets the cache folder.
const EnvDir = "KILN_CACHE_DIR"

// DefaultDir is the cache folder when none is given: $KILN_CACHE_DIR, else
// ~/.cache/kiln/images (under $XDG_CACHE_HOME when set).
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("the image cache folder: %w (set %s or --cache-dir)", err, EnvDir)
	}
	return filepath.Join(d, "kiln", "images"), nil
}

// Cache is an image cache folder and how it downloads.
type Cache struct {
	// Dir is the cache folder.
	Dir string
	// Feed reads the release feeds (its BaseURL points at a mirror).
	Feed *feed.Client
	// Keys replaces the embedded signing keys when not nil (--keyring).
	Keys feed.Keyring
	// HTTP downloads artifacts; nil means a client without an overall timeout.
	HTTP *http.Client
	// Progress reports downloads; nil reports nothing.
	Progress Progress
	// Log receives one line per side effect; nil discards.
	Log *slog.Logger
	// Retries is how often a download resumes after the connection breaks (default 5).
	Retries int
	// StallTimeout gives up a connection on which nothing arrived for that long, and resumes
	// (default one minute).
	StallTimeout time.Duration
}

// File is one artifact in the cache.
type File struct {
	Role string `json:"role"`
	Name string `json:"name"`
	// SHA256 is the digest of the content in the store (decompressed when the download was).
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Source is the URL it was downloaded from; SourceSHA256 and SourceSHA512 the digests the
	// feed published for the download.
	Source       string `json:"source"`
	SourceSHA256 string `json:"sourceSHA256,omitempty"`
	SourceSHA512 string `json:"sourceSHA512,omitempty"`
}

// Entry is one pulled platform of one version: <os>/<channel>/<version>/<platform>.json.
type Entry struct {
	OS       string    `json:"os"`
	Channel  string    `json:"channel"`
	Version  string    `json:"version"`
	Platform string    `json:"platform"`
	Pulled   time.Time `json:"pulled"`
	Files    []File    `json:"files"`
	// Current: the <os>/<channel>/<name> links point at this version's files.
	Current bool `json:"-"`
}

// Size is the entry's total size.
func (e Entry) Size() int64 {
	var n int64
	for _, f := range e.Files {
		n += f.Size
	}
	return n
}

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Cache) storePath(sum string) string { return filepath.Join(c.Dir, "store", "sha256", sum) }
func (c *Cache) partialDir() string          { return filepath.Join(c.Dir, ".partial") }
func (c *Cache) channelDir(os, channel string) string {
	return filepath.Join(c.Dir, os, channel)
}
func (c *Cache) versionDir(os, channel, version string) string {
	return filepath.Join(c.Dir, os, channel, version)
}

// keys are the signing keys for an OS: --keyring's, else the embedded ones.
func (c *Cache) keys(o *catalog.OS) (feed.Keyring, error) {
	if c.Keys != nil {
		return c.Keys, nil
	}
	return feed.EmbeddedKeys(o)
}

// Lookup returns where the cached artifacts of a platform are, by role (catalog.Kernel, ...):
// the files of the last pulled version, under the readable layout.
func (c *Cache) Lookup(osName, channel, platform string) (map[string]string, error) {
	o, err := catalog.Get(osName)
	if err != nil {
		return nil, err
	}
	if err := o.Channel(channel); err != nil {
		return nil, err
	}
	p, err := o.Platform(platform)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range p.Artifacts {
		path := filepath.Join(c.Dir, filepath.FromSlash(o.AssetPath(channel, a)))
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%w: %s %s %s (%s): run kiln images pull --os %s --channel %s --platform %s",
				ErrNotCached, o.Name, channel, platform, a.Name, o.Name, channel, platform)
		}
		out[a.Role] = path
	}
	return out, nil
}

// Lookup is Cache.Lookup on the default cache folder.
func Lookup(osName, channel, platform string) (map[string]string, error) {
	dir, err := DefaultDir()
	if err != nil {
		return nil, err
	}
	return (&Cache{Dir: dir}).Lookup(osName, channel, platform)
}

// Entries lists what the cache holds, sorted by OS, channel, version (newest first) and
// platform.
func (c *Cache) Entries() ([]Entry, error) {
	matches, err := filepath.Glob(filepath.Join(c.Dir, "*", "*", "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, m := range matches {
		raw, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		var e Entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		e.Current = c.isCurrent(e)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.OS, b.OS), cmp.Compare(a.Channel, b.Channel), -CompareVersions(a.Version, b.Version), cmp.Compare(a.Platform, b.Platform))
	})
	return out, nil
}

// isCurrent says whether the channel's links point at the entry's files.
func (c *Cache) isCurrent(e Entry) bool {
	for _, f := range e.Files {
		dst, err := os.Readlink(filepath.Join(c.channelDir(e.OS, e.Channel), f.Name))
		if err != nil || dst != filepath.Join(e.Version, f.Name) {
			return false
		}
	}
	return len(e.Files) > 0
}

// CompareVersions orders release versions (4230.2.3, 41.20250105.3.0) by their numeric parts,
// then as strings.
func CompareVersions(a, b string) int {
	as, bs := strings.FieldsFunc(a, isSep), strings.FieldsFunc(b, isSep)
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, err1 := strconv.ParseUint(as[i], 10, 64)
		y, err2 := strconv.ParseUint(bs[i], 10, 64)
		if err1 == nil && err2 == nil {
			if x != y {
				return cmp.Compare(x, y)
			}
			continue
		}
		if c := cmp.Compare(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(as), len(bs))
}

func isSep(r rune) bool { return r == '.' || r == '-' || r == '+' }

// Problem is something verify found.
type Problem struct {
	Path, Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// Verify re-checks the cache: every stored file against the digest it is named by, and every
// pulled entry's links against the digests it recorded.
func (c *Cache) Verify(ctx context.Context) ([]Problem, error) {
	var probs []Problem
	blobs, err := filepath.Glob(c.storePath("*"))
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sum, _, err := hashFile(b)
		if err != nil {
			probs = append(probs, Problem{b, err.Error()})
		} else if sum != filepath.Base(b) {
			probs = append(probs, Problem{b, "content digest is sha256:" + sum})
		}
	}
	entries, err := c.Entries()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		vdir := c.versionDir(e.OS, e.Channel, e.Version)
		for _, f := range e.Files {
			p := filepath.Join(vdir, f.Name)
			dst, err := os.Readlink(p)
			switch {
			case err != nil:
				probs = append(probs, Problem{p, err.Error()})
			case filepath.Base(dst) != f.SHA256:
				probs = append(probs, Problem{p, "points at " + dst + ", pulled as sha256:" + f.SHA256})
			default:
				if _, err := os.Stat(p); err != nil {
					probs = append(probs, Problem{p, err.Error()})
				}
			}
		}
	}
	return probs, nil
}

// Prune removes, per OS and channel, all but the keep newest versions (never the version the
// channel's links point at), then the stored files no version refers to any more. It returns
// the removed version folders and the bytes freed.
func (c *Cache) Prune(keep int) (removed []string, freed int64, err error) {
	entries, err := c.Entries()
	if err != nil {
		return nil, 0, err
	}
	type key struct{ os, channel string }
	versions := map[key][]string{}
	current := map[string]bool{}
	for _, e := range entries {
		k := key{e.OS, e.Channel}
		vd := c.versionDir(e.OS, e.Channel, e.Version)
		if !slices.Contains(versions[k], e.Version) {
			versions[k] = append(versions[k], e.Version) // newest first, as Entries sorts
		}
		if e.Current {
			current[vd] = true
		}
	}
	for k, vs := range versions {
		for i, v := range vs {
			vd := c.versionDir(k.os, k.channel, v)
			if i < keep || current[vd] {
				continue
			}
			if err := os.RemoveAll(vd); err != nil {
				return removed, freed, err
			}
			c.log().Info("removed", "version", vd)
			removed = append(removed, vd)
		}
	}
	// Stored files that no link refers to.
	used := map[string]bool{}
	err = filepath.WalkDir(c.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (p == filepath.Join(c.Dir, "store") || p == c.partialDir()) {
			return fs.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if dst, err := filepath.EvalSymlinks(p); err == nil {
				used[filepath.Base(dst)] = true
			}
		}
		return nil
	})
	if err != nil {
		return removed, freed, err
	}
	blobs, err := filepath.Glob(c.storePath("*"))
	if err != nil {
		return removed, freed, err
	}
	for _, b := range blobs {
		if used[filepath.Base(b)] {
			continue
		}
		if fi, err := os.Stat(b); err == nil {
			freed += fi.Size()
		}
		if err := os.Remove(b); err != nil {
			return removed, freed, err
		}
		c.log().Info("removed", "file", b)
	}
	return removed, freed, nil
}

// hashFile returns a file's SHA-256 and size.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// writeEntry records a pulled entry, atomically.
func (c *Cache) writeEntry(e *Entry) error {
	raw, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.versionDir(e.OS, e.Channel, e.Version), e.Platform+".json"), append(raw, '\n'), 0o644)
}

// link makes name a symbolic link to target, replacing what is there atomically (a new link
// under a temporary name, renamed over it).
func link(target, name string) error {
	if dst, err := os.Readlink(name); err == nil && dst == target {
		return nil
	}
	tmp := fmt.Sprintf("%s.kiln-%d-%d", name, os.Getpid(), time.Now().UnixNano())
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(name))
}
