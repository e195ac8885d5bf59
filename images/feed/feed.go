// Package feed reads the release feeds of the catalog's operating systems (Fedora CoreOS stream
// metadata, Flatcar's release server) into the list of what a release of a platform is made of:
// each artifact's URL, its published digests and its detached OpenPGP signature. It also holds
// the projects' signing keys and checks signatures and digests.
package feed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/stream-metadata-go/stream"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Remote is one artifact of a release as its feed publishes it.
type Remote struct {
	catalog.Artifact
	// URL is where the artifact is downloaded from; SignatureURL its detached signature.
	URL, SignatureURL string
	// SHA256 and SHA512 are the published digests of the download (hex; either may be "").
	SHA256, SHA512 string
	// UncompressedSHA256 is the published digest of the decompressed artifact, "" if none.
	UncompressedSHA256 string
}

// Release is what one version of one platform of a channel is made of.
type Release struct {
	OS                         *catalog.OS
	Channel, Platform, Version string
	Artifacts                  []Remote
}

// Client reads feeds.
type Client struct {
	// HTTP is the client used; nil means one with a 30 s timeout for feed files.
	HTTP *http.Client
	// BaseURL is a mirror's base URL (--base-url); "" means each OS's own feed.
	BaseURL string
}

// maxMeta bounds what is read of a feed file (stream JSON, version.txt, DIGESTS, signatures).
const maxMeta = 16 << 20

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// Get reads a small feed file.
func (c *Client) Get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFeed, err)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFeed, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %s: %s", ErrNotPublished, u, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: %s", ErrFeed, u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMeta+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFeed, u, err)
	}
	if len(b) > maxMeta {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrFeed, u, maxMeta)
	}
	return b, nil
}

// Current returns the version a channel publishes now.
func (c *Client) Current(ctx context.Context, o *catalog.OS, channel string) (string, error) {
	if err := o.Channel(channel); err != nil {
		return "", err
	}
	switch o.Feed.Kind {
	case catalog.FeedStream:
		st, _, err := c.stream(ctx, o, channel)
		if err != nil {
			return "", err
		}
		// Every platform of a stream is at the same release; take the one of the pxe artifacts.
		a, ok := st.Architectures[o.Feed.Arch]
		if !ok {
			return "", fmt.Errorf("%w: stream %s has no architecture %s", ErrNotPublished, channel, o.Feed.Arch)
		}
		for _, p := range []string{"metal", "qemu"} {
			if pa, ok := a.Artifacts[p]; ok && pa.Release != "" {
				return pa.Release, nil
			}
		}
		for _, pa := range a.Artifacts {
			if pa.Release != "" {
				return pa.Release, nil
			}
		}
		return "", fmt.Errorf("%w: stream %s names no release", ErrFeed, channel)
	case catalog.FeedFlatcar:
		return c.flatcarVersion(ctx, o, channel, "current")
	}
	return "", fmt.Errorf("%w: unknown feed kind %q", ErrFeed, o.Feed.Kind)
}

// Release returns the artifacts of a platform at a version ("" or "current" for the current
// one).
func (c *Client) Release(ctx context.Context, o *catalog.OS, channel, platform, version string) (*Release, error) {
	if err := o.Channel(channel); err != nil {
		return nil, err
	}
	p, err := o.Platform(platform)
	if err != nil {
		return nil, err
	}
	r := &Release{OS: o, Channel: channel, Platform: platform}
	switch o.Feed.Kind {
	case catalog.FeedStream:
		st, base, err := c.stream(ctx, o, channel)
		if err != nil {
			return nil, err
		}
		return r, streamRelease(r, st, base, p, version)
	case catalog.FeedFlatcar:
		if version == "" {
			version = "current"
		}
		// Resolve "current" once, so that every artifact comes from the same release.
		if r.Version, err = c.flatcarVersion(ctx, o, channel, version); err != nil {
			return nil, err
		}
		dir := o.FeedURL(channel, c.BaseURL) + "/" + url.PathEscape(r.Version) + "/"
		for _, a := range p.Artifacts {
			u := dir + a.Remote
			raw, err := c.Get(ctx, u+".DIGESTS")
			if err != nil {
				return nil, err
			}
			d, err := ParseDigests(raw, a.Remote)
			if err != nil {
				return nil, fmt.Errorf("%s.DIGESTS: %w", u, err)
			}
			r.Artifacts = append(r.Artifacts, Remote{Artifact: a, URL: u, SignatureURL: u + ".sig", SHA256: d["SHA256"], SHA512: d["SHA512"]})
		}
		return r, nil
	}
	return nil, fmt.Errorf("%w: unknown feed kind %q", ErrFeed, o.Feed.Kind)
}

// stream reads a Fedora CoreOS stream: <base>/streams/<stream>.json.
func (c *Client) stream(ctx context.Context, o *catalog.OS, channel string) (*stream.Stream, *url.URL, error) {
	u := o.FeedURL(channel, c.BaseURL) + "/streams/" + url.PathEscape(channel) + ".json"
	raw, err := c.Get(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	st, err := ParseStream(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	base, _ := url.Parse(u)
	return st, base, nil
}

// ParseStream parses Fedora CoreOS stream metadata.
func ParseStream(raw []byte) (*stream.Stream, error) {
	var st stream.Stream
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%w: stream metadata: %v", ErrFeed, err)
	}
	if len(st.Architectures) == 0 {
		return nil, fmt.Errorf("%w: stream metadata names no architecture", ErrFeed)
	}
	return &st, nil
}

// streamRelease fills r from a stream: architectures.<arch>.artifacts.<platform>.formats.
// <format>.<artifact>. Locations are used as they are (relative ones against the stream's URL).
func streamRelease(r *Release, st *stream.Stream, base *url.URL, p catalog.Platform, version string) error {
	arch, ok := st.Architectures[r.OS.Feed.Arch]
	if !ok {
		return fmt.Errorf("%w: stream %s has no architecture %s", ErrNotPublished, r.Channel, r.OS.Feed.Arch)
	}
	for _, a := range p.Artifacts {
		pa, ok := arch.Artifacts[a.StreamPlatform]
		if !ok {
			return fmt.Errorf("%w: stream %s has no %s artifacts", ErrNotPublished, r.Channel, a.StreamPlatform)
		}
		if version != "" && version != "current" && version != pa.Release {
			return fmt.Errorf("%w: stream %s publishes release %s only, not %s", ErrNotPublished, r.Channel, pa.Release, version)
		}
		if r.Version == "" {
			r.Version = pa.Release
		} else if r.Version != pa.Release {
			return fmt.Errorf("%w: stream %s mixes releases %s and %s", ErrFeed, r.Channel, r.Version, pa.Release)
		}
		f, ok := pa.Formats[a.StreamFormat]
		if !ok {
			return fmt.Errorf("%w: stream %s has no %s format %s", ErrNotPublished, r.Channel, a.StreamPlatform, a.StreamFormat)
		}
		var sa *stream.Artifact
		switch a.StreamArtifact {
		case "disk":
			sa = f.Disk
		case "kernel":
			sa = f.Kernel
		case "initramfs":
			sa = f.Initramfs
		case "rootfs":
			sa = f.Rootfs
		}
		if sa == nil || sa.Location == "" {
			return fmt.Errorf("%w: stream %s has no %s %s %s", ErrNotPublished, r.Channel, a.StreamPlatform, a.StreamFormat, a.StreamArtifact)
		}
		loc, err := base.Parse(sa.Location)
		if err != nil {
			return fmt.Errorf("%w: location %q: %v", ErrFeed, sa.Location, err)
		}
		rm := Remote{Artifact: a, URL: loc.String(), SHA256: strings.ToLower(sa.Sha256), UncompressedSHA256: strings.ToLower(sa.UncompressedSha256)}
		if sa.Signature != "" {
			sig, err := base.Parse(sa.Signature)
			if err != nil {
				return fmt.Errorf("%w: signature %q: %v", ErrFeed, sa.Signature, err)
			}
			rm.SignatureURL = sig.String()
		}
		if rm.SHA256 == "" {
			return fmt.Errorf("%w: stream %s publishes no sha256 of %s", ErrFeed, r.Channel, rm.URL)
		}
		r.Artifacts = append(r.Artifacts, rm)
	}
	return nil
}

// flatcarVersion reads <release>/version.txt and returns its FLATCAR_VERSION.
func (c *Client) flatcarVersion(ctx context.Context, o *catalog.OS, channel, version string) (string, error) {
	u := o.FeedURL(channel, c.BaseURL) + "/" + url.PathEscape(version) + "/version.txt"
	raw, err := c.Get(ctx, u)
	if err != nil {
		return "", err
	}
	v, err := ParseVersionTxt(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", u, err)
	}
	if version != "current" && v != version {
		return "", fmt.Errorf("%w: %s says version %s", ErrFeed, u, v)
	}
	return v, nil
}

// ParseVersionTxt returns FLATCAR_VERSION of a Flatcar release's version.txt (shell variable
// assignments, one a line).
func ParseVersionTxt(raw []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && k == "FLATCAR_VERSION" {
			v = strings.Trim(v, `"'`)
			if v == "" || strings.ContainsAny(v, "/\\ ") || v == "." || v == ".." {
				return "", fmt.Errorf("%w: FLATCAR_VERSION %q", ErrFeed, v)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("%w: no FLATCAR_VERSION", ErrFeed)
}

// ParseDigests reads a Flatcar .DIGESTS file: "# <ALGO> HASH" headers, each followed by
// "<hex>  <file>" lines. It returns the digests of file by algorithm (MD5, SHA1, SHA256,
// SHA512, upper case), and fails when it has neither SHA256 nor SHA512 for it.
func ParseDigests(raw []byte, file string) (map[string]string, error) {
	out := map[string]string{}
	algo := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			f := strings.Fields(strings.TrimPrefix(line, "#"))
			if len(f) == 2 && strings.EqualFold(f[1], "HASH") {
				algo = strings.ToUpper(f[0])
			}
		default:
			sum, name, ok := strings.Cut(line, " ")
			if !ok || algo == "" {
				return nil, fmt.Errorf("%w: line %d: expected \"<digest>  <file>\" after a \"# <ALGO> HASH\" line", ErrFeed, n)
			}
			if strings.TrimLeft(strings.TrimSpace(name), "*") == file {
				out[algo] = strings.ToLower(sum)
			}
		}
	}
	if out["SHA512"] == "" && out["SHA256"] == "" {
		return nil, fmt.Errorf("%w: no SHA512 or SHA256 digest of %s", ErrNotPublished, file)
	}
	return out, nil
}
