package userdata

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"

	butaneutil "github.com/coreos/butane/base/util"
)

// Mode says what form the delivered config takes.
type Mode string

const (
	// Plain: the node's config as it is.
	Plain Mode = "plain"
	// Compressed: a small config replacing itself with the node's config from a gzip data URL.
	Compressed Mode = "gzip"
	// Pointer: a small config replacing itself with the node's config fetched from a URL and
	// verified against its SHA-512.
	Pointer Mode = "pointer"
)

// Options tune a delivery.
type Options struct {
	// PointerURL is where the full config will be served when it does not fit even compressed;
	// empty: such a config is refused with ErrTooLarge.
	PointerURL string
}

// Delivery is a node's config made ready for a platform.
type Delivery struct {
	Platform *Platform
	Mode     Mode
	// Config is the Ignition config the machine receives.
	Config []byte
	// Full is the node's config, to be served at Options.PointerURL; set in Pointer mode only.
	Full []byte
	// Size is the size of Config as the platform counts it (see Platform.LimitEncoded).
	Size int
}

// Property is one VMware guestinfo key and its value.
type Property struct{ Key, Value string }

// Deliver fits config (a node's Ignition config) to the platform's limit: as it is when it fits,
// else inside a small config as a gzip data URL, else as a pointer to opt.PointerURL; a config
// that fits none of these is refused with ErrTooLarge.
func (p *Platform) Deliver(config []byte, opt Options) (*Delivery, error) {
	version, err := ConfigVersion(config)
	if err != nil {
		return nil, err
	}
	if opt.PointerURL != "" {
		if err := checkPointerURL(opt.PointerURL); err != nil {
			return nil, err
		}
	}
	d := &Delivery{Platform: p, Mode: Plain, Config: config, Size: p.size(config)}
	if p.fits(d.Size) {
		return d, nil
	}
	src, compression, err := butaneutil.MakeDataURL(config, nil, true)
	if err != nil {
		return nil, err
	}
	r := resource{Source: src}
	if compression != nil {
		r.Compression = *compression
	}
	wrapped, err := replaceConfig(version, r)
	if err != nil {
		return nil, err
	}
	d = &Delivery{Platform: p, Mode: Compressed, Config: wrapped, Size: p.size(wrapped)}
	if p.fits(d.Size) {
		return d, nil
	}
	compressedSize := d.Size
	if opt.PointerURL == "" {
		return nil, fmt.Errorf("%w: %s takes at most %s; the config is %s, %d compressed in a data URL: serve it over HTTP(S) and give its URL for a pointer config",
			ErrTooLarge, p.Name, p.limitText(), p.sizeText(config), compressedSize)
	}
	sum := sha512.Sum512(config)
	pointer, err := replaceConfig(version, resource{
		Source:       opt.PointerURL,
		Verification: &verification{Hash: "sha512-" + hex.EncodeToString(sum[:])},
	})
	if err != nil {
		return nil, err
	}
	d = &Delivery{Platform: p, Mode: Pointer, Config: pointer, Full: config, Size: p.size(pointer)}
	if !p.fits(d.Size) {
		return nil, fmt.Errorf("%w: %s takes at most %s; even the pointer config is %d bytes (shorten the URL)",
			ErrTooLarge, p.Name, p.limitText(), d.Size)
	}
	return d, nil
}

// Output is what to hand the platform: the config itself, or for GuestInfo the properties as
// key=value lines.
func (d *Delivery) Output() []byte {
	if d.Platform.Kind != GuestInfo {
		return d.Config
	}
	var b []byte
	for _, p := range d.Properties() {
		b = fmt.Appendf(b, "%s=%s\n", p.Key, p.Value)
	}
	return b
}

// Properties are the guestinfo properties to set on a GuestInfo platform's VM; nil on others.
func (d *Delivery) Properties() []Property {
	if d.Platform.Kind != GuestInfo {
		return nil
	}
	return []Property{
		{GuestInfoData, base64.StdEncoding.EncodeToString(d.Config)},
		{GuestInfoEncoding, "base64"},
	}
}

// size is how the platform counts a value of len(b) bytes.
func (p *Platform) size(b []byte) int {
	if p.LimitEncoded {
		return base64.StdEncoding.EncodedLen(len(b))
	}
	return len(b)
}

func (p *Platform) sizeText(b []byte) string {
	if p.LimitEncoded {
		return fmt.Sprintf("%d bytes (%d base64-encoded)", len(b), p.size(b))
	}
	return fmt.Sprintf("%d bytes", len(b))
}

func (p *Platform) fits(size int) bool { return p.Limit == 0 || size <= p.Limit }

func (p *Platform) limitText() string {
	if p.LimitEncoded {
		return fmt.Sprintf("%d bytes base64-encoded", p.Limit)
	}
	return fmt.Sprintf("%d bytes", p.Limit)
}

// The parts of an Ignition config that a replace wrapper has; the version is the node config's
// own, so the wrapper is valid wherever the config is.
type wrapper struct {
	Ignition struct {
		Version string `json:"version"`
		Config  struct {
			Replace resource `json:"replace"`
		} `json:"config"`
	} `json:"ignition"`
}

type resource struct {
	Compression  string        `json:"compression,omitempty"`
	Source       string        `json:"source"`
	Verification *verification `json:"verification,omitempty"`
}

type verification struct {
	Hash string `json:"hash"`
}

func replaceConfig(version string, r resource) ([]byte, error) {
	var w wrapper
	w.Ignition.Version = version
	w.Ignition.Config.Replace = r
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a URL's & stays one byte
	if err := enc.Encode(w); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ConfigVersion is an Ignition config's ignition.version (the spec version its wrappers and
// pointers must declare too); ErrNotConfig when it has none.
func ConfigVersion(config []byte) (string, error) {
	var c struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(config, &c); err != nil || c.Ignition.Version == "" {
		return "", ErrNotConfig
	}
	return c.Ignition.Version, nil
}

func checkPointerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: %q", ErrPointerURL, s)
	}
	switch u.Scheme {
	case "http", "https", "tftp", "s3", "gs":
		return nil
	}
	return fmt.Errorf("%w: %q", ErrPointerURL, s)
}
