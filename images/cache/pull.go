package cache

import (
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/images/feed"
	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// Pull downloads the artifacts of a platform of a channel at a version ("" for the current
// one), checks each (published digest, signature, uncompressed digest), and only when all pass
// puts them in the store, links them under <os>/<channel>/<version>/, records the entry and
// points <os>/<channel>/<name> at them.
func (c *Cache) Pull(ctx context.Context, osName, channel, platform, version string) (*Entry, error) {
	o, err := catalog.Get(osName)
	if err != nil {
		return nil, err
	}
	keys, err := c.keys(o)
	if err != nil {
		return nil, err
	}
	fc := c.Feed
	if fc == nil {
		fc = &feed.Client{}
	}
	rel, err := fc.Release(ctx, o, channel, platform, version)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(rel.Version, `/\`) || rel.Version == "." || rel.Version == ".." || rel.Version == "" {
		return nil, fmt.Errorf("%w: version %q", feed.ErrFeed, rel.Version)
	}
	if err := os.MkdirAll(c.partialDir(), 0o755); err != nil {
		return nil, err
	}
	// Every artifact is fetched and checked into its locked partial file first; the store is
	// touched only when all have passed. Locks are taken in the catalog's order, so that
	// parallel pulls cannot deadlock.
	var parts []*partial
	defer func() {
		for _, p := range parts {
			p.discard()
		}
	}()
	e := &Entry{OS: o.Name, Channel: channel, Version: rel.Version, Platform: platform}
	vdir := c.versionDir(o.Name, channel, rel.Version)
	for _, r := range rel.Artifacts {
		p, err := c.lock(r.URL)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
		// Another pull may have stored it while this one waited for the lock.
		if f, ok := c.stored(vdir, r); ok {
			p.done = &f
			continue
		}
		f, err := c.fetch(ctx, fc, keys, p, r)
		if err != nil {
			return nil, fmt.Errorf("%s %s %s %s: %w", o.Name, channel, rel.Version, r.Name, err)
		}
		p.done = &f
	}
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return nil, err
	}
	for _, p := range parts {
		if err := c.commit(vdir, p); err != nil {
			return nil, err
		}
		e.Files = append(e.Files, *p.done)
	}
	e.Pulled = time.Now().UTC().Truncate(time.Second)
	if err := c.writeEntry(e); err != nil {
		return nil, err
	}
	for _, f := range e.Files {
		if err := link(filepath.Join(rel.Version, f.Name), filepath.Join(c.channelDir(o.Name, channel), f.Name)); err != nil {
			return nil, err
		}
	}
	e.Current = true
	c.log().Info("pulled", "os", o.Name, "channel", channel, "version", rel.Version, "platform", platform, "dir", vdir)
	return e, nil
}

// stored returns the file an earlier pull recorded for the artifact in this version, when the
// feed still publishes the same digests for it and its link still leads into the store.
func (c *Cache) stored(vdir string, r feed.Remote) (File, bool) {
	entries, _ := filepath.Glob(filepath.Join(vdir, "*.json"))
	for _, path := range entries {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var e Entry
		if json.Unmarshal(raw, &e) != nil {
			continue
		}
		for _, f := range e.Files {
			if f.Name != r.Name || f.SourceSHA256 != r.SHA256 || f.SourceSHA512 != r.SHA512 {
				continue
			}
			dst, err := os.Readlink(filepath.Join(vdir, f.Name))
			if err != nil || filepath.Base(dst) != f.SHA256 {
				continue
			}
			if fi, err := os.Stat(c.storePath(f.SHA256)); err == nil && fi.Size() == f.Size {
				f.Role, f.Source = r.Role, r.URL
				return f, true
			}
		}
	}
	return File{}, false
}

// partial is a download in progress: its file under .partial/, locked, and once checked what
// it becomes in the store.
type partial struct {
	f    *os.File
	path string
	// final is the checked content when it differs from the download (decompressed).
	final string
	done  *File
}

// lock opens and locks the partial file of a URL, waiting for another pull that holds it.
func (c *Cache) lock(u string) (*partial, error) {
	sum := sha256.Sum256([]byte(u))
	p := filepath.Join(c.partialDir(), hex.EncodeToString(sum[:12])+".part")
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
		// The holder before us removes the file when done: lock the one that is there now.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(p)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			// A file left by a pull that died is started over.
			if err := f.Truncate(0); err != nil {
				f.Close()
				return nil, err
			}
			return &partial{f: f, path: p}, nil
		}
		f.Close()
	}
}

// discard removes the partial files and releases the lock.
func (p *partial) discard() {
	os.Remove(p.path)
	if p.final != "" {
		os.Remove(p.final)
	}
	p.f.Close()
}

// fetch downloads an artifact into its partial file and checks it: digest, signature, and for
// a compressed one, that it decompresses to the published uncompressed digest.
func (c *Cache) fetch(ctx context.Context, fc *feed.Client, keys feed.Keyring, p *partial, r feed.Remote) (File, error) {
	if r.SignatureURL == "" {
		return File{}, fmt.Errorf("%w: the feed publishes no signature", feed.ErrSignature)
	}
	if err := c.download(ctx, p.f, r.URL, r.Name); err != nil {
		return File{}, err
	}
	if err := checkDigests(p.f, r); err != nil {
		return File{}, err
	}
	sig, err := fc.Get(ctx, r.SignatureURL)
	if err != nil {
		return File{}, fmt.Errorf("%w: %v", feed.ErrSignature, err)
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return File{}, err
	}
	if err := feed.CheckSignature(keys, p.f, sig); err != nil {
		return File{}, err
	}
	c.log().Info("verified", "url", r.URL, "signature", r.SignatureURL)
	content := p.path
	if r.Decompress {
		p.final = p.path + ".out"
		if err := decompress(p.f, r, p.final); err != nil {
			return File{}, err
		}
		content = p.final
	}
	sum, size, err := hashFile(content)
	if err != nil {
		return File{}, err
	}
	if r.Decompress && r.UncompressedSHA256 != "" && sum != r.UncompressedSHA256 {
		return File{}, fmt.Errorf("%w: decompressed sha256 %s, published %s", ErrCorrupt, sum, r.UncompressedSHA256)
	}
	return File{Role: r.Role, Name: r.Name, SHA256: sum, Size: size, Source: r.URL, SourceSHA256: r.SHA256, SourceSHA512: r.SHA512}, nil
}

// commit puts a checked artifact in the store (unless it is there) and links it from vdir.
func (c *Cache) commit(vdir string, p *partial) error {
	f := p.done
	blob := c.storePath(f.SHA256)
	if _, err := os.Stat(blob); err != nil {
		src := p.path
		if p.final != "" {
			src = p.final
		}
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			return err
		}
		err := atomicfile.WriteFunc(blob, 0o644, func(w io.Writer) error {
			in, err := os.Open(src)
			if err != nil {
				return err
			}
			defer in.Close()
			h := sha256.New()
			if _, err := io.Copy(io.MultiWriter(w, h), in); err != nil {
				return err
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
				return fmt.Errorf("%w: %s changed while stored", ErrCorrupt, src)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(vdir, blob)
	if err != nil {
		return err
	}
	return link(rel, filepath.Join(vdir, f.Name))
}

// download fetches u into f, resuming with a Range request when the connection breaks.
func (c *Cache) download(ctx context.Context, f *os.File, u, name string) error {
	client := c.HTTP
	if client == nil {
		client = &http.Client{}
	}
	retries := c.Retries
	if retries == 0 {
		retries = 5
	}
	var bar ProgressBar
	defer func() {
		if bar != nil {
			bar.Close()
		}
	}()
	for attempt := 0; ; attempt++ {
		off, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		done, total, err := c.get(ctx, client, f, u, off, name, &bar)
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm permanent
		if errors.As(err, &perm) || attempt >= retries {
			return fmt.Errorf("%w: %s: %v", ErrDownload, u, err)
		}
		now, _ := f.Seek(0, io.SeekEnd)
		c.log().Warn("download interrupted, resuming", "url", u, "at", now, "of", total, "error", err)
		if bar != nil {
			bar.Resume(now)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

// errStalled: no byte arrived for the stall timeout.
var errStalled = errors.New("the connection stalled")

func (c *Cache) stallTimeout() time.Duration {
	if c.StallTimeout > 0 {
		return c.StallTimeout
	}
	return time.Minute
}

// watchdog pushes back the stall timer on every write.
type watchdog struct {
	w     io.Writer
	timer *time.Timer
	d     time.Duration
}

func (w watchdog) Write(b []byte) (int, error) {
	w.timer.Reset(w.d)
	return w.w.Write(b)
}

// permanent marks an answer that retrying will not change.
type permanent struct{ error }

// get does one request from offset off; done says the file is complete.
func (c *Cache) get(ctx context.Context, client *http.Client, f *os.File, u string, off int64, name string, bar *ProgressBar) (done bool, total int64, err error) {
	// A connection that stalls for stallTimeout is given up (and resumed by the caller).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(c.stallTimeout(), func() { cancel(errStalled) })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, -1, permanent{err}
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, -1, err
	}
	defer resp.Body.Close()
	total = -1
	switch resp.StatusCode {
	case http.StatusOK:
		if off > 0 { // the server ignored the range: start over
			if err := f.Truncate(0); err != nil {
				return false, -1, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return false, -1, err
			}
			off = 0
		}
		total = resp.ContentLength
	case http.StatusPartialContent:
		start, size, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			return false, -1, permanent{fmt.Errorf("unexpected Content-Range %q for a resume at %d", resp.Header.Get("Content-Range"), off)}
		}
		total = size
	case http.StatusRequestedRangeNotSatisfiable:
		if _, size, ok := contentRange(resp.Header.Get("Content-Range")); ok && size == off {
			return true, size, nil
		}
		return false, -1, permanent{fmt.Errorf("%s", resp.Status)}
	case http.StatusNotFound:
		return false, -1, permanent{fmt.Errorf("%w: %s", feed.ErrNotPublished, resp.Status)}
	default:
		if resp.StatusCode >= 500 {
			return false, -1, fmt.Errorf("%s", resp.Status)
		}
		return false, -1, permanent{fmt.Errorf("%s", resp.Status)}
	}
	var w io.Writer = watchdog{f, stall, c.stallTimeout()}
	if c.Progress != nil {
		if *bar == nil {
			*bar = c.Progress.Start(name, total, off)
		}
		w = io.MultiWriter(w, *bar)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			err = cause
		}
		return false, total, err
	}
	if total >= 0 && off+n < total {
		return false, total, io.ErrUnexpectedEOF
	}
	return true, total, nil
}

// contentRange parses "bytes <start>-<end>/<size>" or "bytes */<size>".
func contentRange(h string) (start, size int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, false
	}
	size, err := strconv.ParseInt(sz, 10, 64)
	if err != nil {
		size = -1
	}
	if rng == "*" {
		return 0, size, err == nil
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err = strconv.ParseInt(s, 10, 64)
	return start, size, err == nil
}

// checkDigests compares the download with the published digests (every one published).
func checkDigests(f *os.File, r feed.Remote) error {
	if r.SHA256 == "" && r.SHA512 == "" {
		return fmt.Errorf("%w: the feed publishes no digest", feed.ErrChecksum)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h256, h512 := sha256.New(), sha512.New()
	if _, err := io.Copy(io.MultiWriter(h256, h512), f); err != nil {
		return err
	}
	for _, c := range []struct {
		name, want string
		h          hash.Hash
	}{{"sha256", r.SHA256, h256}, {"sha512", r.SHA512, h512}} {
		if got := hex.EncodeToString(c.h.Sum(nil)); c.want != "" && got != c.want {
			return fmt.Errorf("%w: %s %s, published %s", feed.ErrChecksum, c.name, got, c.want)
		}
	}
	return nil
}

// decompress writes the decompressed download to out. The format is told by the download's
// name (.xz, .bz2, .gz); a truncated or damaged stream is refused.
func decompress(f *os.File, r feed.Remote, out string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	name := r.Remote
	if name == "" {
		if u, err := url.Parse(r.URL); err == nil {
			name = path.Base(u.Path)
		}
	}
	var rd io.Reader
	var err error
	switch {
	case strings.HasSuffix(name, ".xz"):
		rd, err = xz.NewReader(f)
	case strings.HasSuffix(name, ".bz2"):
		rd = bzip2.NewReader(f)
	case strings.HasSuffix(name, ".gz"):
		var g *gzip.Reader
		g, err = gzip.NewReader(f)
		rd = g
	default:
		return fmt.Errorf("%w: %s: unknown compression", ErrCorrupt, name)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	w, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, rd); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	return nil
}
