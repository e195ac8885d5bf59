package feed_test

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/images/feed"
)

// The stream fixture is Fedora CoreOS's real stream metadata (from coreos/stream-metadata-go's
// fixtures, trimmed to the platforms kiln pulls).
func TestParseStreamFixture(t *testing.T) {
	raw, err := os.ReadFile("testdata/fcos-stable.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := feed.ParseStream(raw)
	if err != nil {
		t.Fatal(err)
	}
	o := catalog.Of("fcos")
	for _, pn := range o.PlatformNames() {
		t.Run(pn, func(t *testing.T) {
			r := &feed.Release{OS: o, Channel: "stable", Platform: pn}
			base, _ := url.Parse("https://builds.coreos.fedoraproject.org/streams/stable.json")
			if err := feed.StreamRelease(r, st, base, o.Platforms[pn], ""); err != nil {
				t.Fatal(err)
			}
			if r.Version != "33.20201201.3.0" || len(r.Artifacts) != len(o.Platforms[pn].Artifacts) {
				t.Fatalf("release %+v", r)
			}
			for _, a := range r.Artifacts {
				if !strings.HasPrefix(a.URL, "https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/33.20201201.3.0/x86_64/fedora-coreos-") ||
					a.SignatureURL != a.URL+".sig" || len(a.SHA256) != 64 {
					t.Errorf("artifact %+v", a)
				}
			}
		})
	}
	r := &feed.Release{OS: o, Channel: "stable", Platform: "pxe"}
	if err := feed.StreamRelease(r, st, nil, o.Platforms["pxe"], "34.0"); !errors.Is(err, feed.ErrNotPublished) {
		t.Errorf("another version: %v", err)
	}
}

// The DIGESTS fixture has the layout of Flatcar's .DIGESTS files (as Flatcar's release tooling
// writes them: "# <ALGO> HASH" then "<hex>  <file>").
func TestParseDigestsFixture(t *testing.T) {
	raw, err := os.ReadFile("testdata/flatcar_production_pxe.vmlinuz.DIGESTS")
	if err != nil {
		t.Fatal(err)
	}
	d, err := feed.ParseDigests(raw, "flatcar_production_pxe.vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	if len(d["SHA512"]) != 128 || len(d["SHA1"]) != 40 || len(d["MD5"]) != 32 {
		t.Errorf("digests %v", d)
	}
	if _, err := feed.ParseDigests(raw, "other"); !errors.Is(err, feed.ErrNotPublished) {
		t.Errorf("other file: %v", err)
	}
	if _, err := feed.ParseDigests([]byte("abc  file\n"), "file"); !errors.Is(err, feed.ErrFeed) {
		t.Errorf("no header: %v", err)
	}
}

func TestParseVersionTxt(t *testing.T) {
	raw, err := os.ReadFile("testdata/version.txt")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := feed.ParseVersionTxt(raw); err != nil || v != "4230.2.3" {
		t.Errorf("version %q, %v", v, err)
	}
	for _, bad := range []string{"", "FLATCAR_VERSION=\n", "FLATCAR_VERSION=../x\n"} {
		if _, err := feed.ParseVersionTxt([]byte(bad)); !errors.Is(err, feed.ErrFeed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// The embedded keys are the projects' real ones.
func TestEmbeddedKeys(t *testing.T) {
	for _, tc := range []struct{ os, fingerprint string }{
		{"flatcar", "f88cfedeff29a5b4d9523864e25d9aed0593b34a"},
	} {
		keys, err := feed.EmbeddedKeys(catalog.Of(tc.os))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, k := range keys {
			found = found || strings.EqualFold(fingerprintHex(k), tc.fingerprint)
		}
		if !found {
			t.Errorf("%s: no key %s", tc.os, tc.fingerprint)
		}
	}
	keys, err := feed.EmbeddedKeys(catalog.Of("fcos"))
	if err != nil || len(keys) < 2 {
		t.Fatalf("fedora keys: %d, %v", len(keys), err)
	}
	for _, k := range keys {
		for name := range k.Identities {
			if !strings.Contains(name, "Fedora") {
				t.Errorf("fedora keyring holds %q", name)
			}
		}
	}
}

func fingerprintHex(e *openpgp.Entity) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for _, c := range e.PrimaryKey.Fingerprint {
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func TestCheckSignature(t *testing.T) {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	signer, err := openpgp.NewEntity("a", "", "a@kiln.invalid", cfg)
	if err != nil {
		t.Fatal(err)
	}
	other, err := openpgp.NewEntity("b", "", "b@kiln.invalid", cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("release")
	var sig, asig bytes.Buffer
	if err := openpgp.DetachSign(&sig, signer, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	if err := openpgp.ArmoredDetachSign(&asig, signer, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	good := feed.Keyring{signer}
	for _, tc := range []struct {
		name string
		keys feed.Keyring
		data []byte
		sig  []byte
		ok   bool
	}{
		{"binary", good, data, sig.Bytes(), true},
		{"armored", good, data, asig.Bytes(), true},
		{"other key", feed.Keyring{other}, data, sig.Bytes(), false},
		{"other data", good, []byte("releasf"), sig.Bytes(), false},
		{"empty", good, data, nil, false},
		{"garbage", good, data, []byte("not a signature"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := feed.CheckSignature(tc.keys, bytes.NewReader(tc.data), tc.sig)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, feed.ErrSignature)) {
				t.Errorf("err = %v", err)
			}
		})
	}
}
