package userdata_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/bootstrap/userdata"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

const emptySHA512 = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

// padding makes a node's config large: units are plain text in Ignition and compress well;
// random is a file of random base64 that Butane already gzips, so it does not compress again.
type padding struct {
	units  int // systemd units of about 200 bytes each in the config
	random int // characters of random base64 in a file
}

var compiled = map[string][]byte{}

// nodeConfig renders a one-node cluster of the given OS with the padding and returns the node's
// Ignition config, as kiln render would write it.
func nodeConfig(t *testing.T, osName string, pad padding) []byte {
	t.Helper()
	key := fmt.Sprintf("%s/%d/%d", osName, pad.units, pad.random)
	if c, ok := compiled[key]; ok {
		return c
	}
	dir := t.TempDir()
	variant, version := "flatcar", "1.1.0"
	if osName == "fcos" {
		variant, version = "fcos", "1.7.0"
	}
	var snip strings.Builder
	fmt.Fprintf(&snip, "variant: %s\nversion: %s\n", variant, version)
	if pad.units > 0 {
		snip.WriteString("systemd:\n  units:\n")
		for i := range pad.units {
			fmt.Fprintf(&snip, "    - name: pad-%05d.service\n      contents: |\n        [Unit]\n        Description=padding unit %d of a large kiln test config\n        [Service]\n        Type=oneshot\n        ExecStart=/usr/bin/echo padding %d\n        [Install]\n        WantedBy=multi-user.target\n", i, i, i)
		}
	}
	if pad.random > 0 {
		raw := make([]byte, pad.random*3/4)
		if _, err := rand.Read(raw); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&snip, "storage:\n  files:\n    - path: /var/lib/pad\n      contents:\n        inline: %q\n", base64.StdEncoding.EncodeToString(raw))
	}
	writeFile(t, filepath.Join(dir, "pad.bu"), snip.String())
	writeFile(t, filepath.Join(dir, "cluster.yaml"), fmt.Sprintf(`cluster:
  name: ud
  os: %s
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  kilnNode: {url: "http://10.3.0.1/kiln-node", sha512: "%s"}
nodes:
  - {name: n1, mac: "52:54:00:00:03:01", ip: 10.3.0.11/24}
snippets: [pad.bu]
`, osName, emptySHA512))
	c, rep, err := render.Compile(filepath.Join(dir, "cluster.yaml"), render.CompileOptions{PKIDir: filepath.Join(dir, "pki"), CreatePKI: true})
	if err != nil {
		var b strings.Builder
		rep.Print(&b, false)
		t.Fatalf("compile: %v\n%s", err, b.String())
	}
	cfg := c.Node("n1").Ignition
	compiled[key] = cfg
	return cfg
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resolve follows a config's ignition.config.replace the way Ignition does (data URLs decoded,
// gzip undone, other URLs looked up in served, hashes verified) and returns the final config.
// Every config on the way must be one the Ignition library accepts.
func resolve(t *testing.T, cfg []byte, served map[string][]byte) []byte {
	t.Helper()
	for range 4 {
		c, rpt, err := ignconfig.Parse(cfg)
		if err != nil || rpt.IsFatal() {
			t.Fatalf("Ignition rejects the config: %v %s\n%.300s", err, rpt.String(), cfg)
		}
		r := c.Ignition.Config.Replace
		if r.Source == nil {
			return cfg
		}
		var data []byte
		if strings.HasPrefix(*r.Source, "data:") {
			data = testkit.DataURLContents(t, *r.Source, r.Compression)
		} else if raw := served[*r.Source]; raw != nil {
			data = testkit.Decompressed(t, raw, r.Compression)
		} else {
			t.Fatalf("replace source %q is not served", *r.Source)
		}
		if h := r.Verification.Hash; h != nil {
			sum := sha512.Sum512(data)
			if want := "sha512-" + hex.EncodeToString(sum[:]); *h != want {
				t.Fatalf("verification hash %s, the served config has %s", *h, want)
			}
		}
		cfg = data
	}
	t.Fatal("replace chain too long")
	return nil
}

// delivered is the config a machine on the platform receives, read back from the output.
func delivered(t *testing.T, d *userdata.Delivery) []byte {
	t.Helper()
	out := d.Output()
	if d.Platform.Kind != userdata.GuestInfo {
		return out
	}
	props := map[string]string{}
	for line := range strings.Lines(string(out)) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok {
			t.Fatalf("guestinfo line %q is not key=value", line)
		}
		props[k] = v
	}
	if props[userdata.GuestInfoEncoding] != "base64" {
		t.Fatalf("%s = %q, want base64", userdata.GuestInfoEncoding, props[userdata.GuestInfoEncoding])
	}
	b, err := base64.StdEncoding.DecodeString(props[userdata.GuestInfoData])
	if err != nil {
		t.Fatal(err)
	}
	if d.Size != len(props[userdata.GuestInfoData]) {
		t.Errorf("size %d, but the property holds %d bytes", d.Size, len(props[userdata.GuestInfoData]))
	}
	return b
}

// platformSize is an independent count of the delivered value as the platform counts it.
func platformSize(p *userdata.Platform, cfg []byte) int {
	if p.LimitEncoded {
		return len(base64.StdEncoding.EncodeToString(cfg))
	}
	return len(cfg)
}

func TestDeliverEveryPlatform(t *testing.T) {
	const pointerURL = "https://configs.example.com/n1.ign?token=a&b=c"
	for _, name := range userdata.Names() {
		p, err := userdata.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		// Sized from the platform's limit: past it raw, within it compressed (units), or past it
		// even compressed (random base64, which compresses to about 3/4 and grows back by 4/3
		// in the data URL). Sizes are shared between platforms of the same limit, so each config
		// is rendered once.
		over := p.Limit + 4096
		random := p.Limit*5/4 + 8192
		cases := []struct {
			name    string
			os      string
			pad     padding
			pointer string
			mode    userdata.Mode
			tooBig  bool
		}{
			{name: "small flatcar", os: "flatcar", mode: userdata.Plain},
			{name: "small fcos", os: "fcos", mode: userdata.Plain},
			{name: "large compressible", os: "flatcar", pad: padding{units: over / 190}, mode: userdata.Compressed},
			{name: "large fcos compressible", os: "fcos", pad: padding{units: over / 190}, mode: userdata.Compressed},
			{name: "large incompressible with URL", os: "flatcar", pad: padding{random: random}, pointer: pointerURL, mode: userdata.Pointer},
			{name: "large incompressible without URL", os: "flatcar", pad: padding{random: random}, tooBig: true},
		}
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				if p.Limit == 0 && strings.HasPrefix(tc.name, "large") {
					// No limit: a large config goes as it is.
					tc.pad, tc.mode, tc.tooBig = padding{units: (65536 + 4096) / 190}, userdata.Plain, false
				}
				if testing.Short() && tc.os == "fcos" && tc.pad.units > 1000 {
					t.Skip("-short: the Fedora CoreOS variant of a large config is rendered in full runs only")
				}
				cfg := nodeConfig(t, tc.os, tc.pad)
				if p.Limit > 0 && tc.pad != (padding{}) && platformSize(p, cfg) <= p.Limit {
					t.Fatalf("test config of %d bytes is not over the limit %d", len(cfg), p.Limit)
				}
				d, err := p.Deliver(cfg, userdata.Options{PointerURL: tc.pointer})
				if tc.tooBig {
					if !errors.Is(err, userdata.ErrTooLarge) {
						t.Fatalf("err = %v, want ErrTooLarge", err)
					}
					for _, want := range []string{p.Name, fmt.Sprint(p.Limit), fmt.Sprint(len(cfg))} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("error %q does not name %q", err, want)
						}
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if d.Mode != tc.mode {
					t.Errorf("mode %s, want %s (config %d bytes, delivered %d)", d.Mode, tc.mode, len(cfg), d.Size)
				}
				got := delivered(t, d)
				size := platformSize(p, got)
				if size != d.Size {
					t.Errorf("Size = %d, counted %d", d.Size, size)
				}
				if p.Limit > 0 && size > p.Limit {
					t.Errorf("delivered %d bytes, over %s's limit of %d", size, p.Name, p.Limit)
				}
				served := map[string][]byte{}
				if d.Mode == userdata.Pointer {
					if !bytes.Equal(d.Full, cfg) {
						t.Error("Full is not the node's config")
					}
					served[tc.pointer] = d.Full
				}
				if final := resolve(t, got, served); !bytes.Equal(final, cfg) {
					t.Errorf("the delivered config resolves to %d bytes that differ from the node's %d", len(final), len(cfg))
				}
				t.Logf("%s: config %d bytes -> %s %d bytes (limit %d)", p.Name, len(cfg), d.Mode, d.Size, p.Limit)
			})
		}
	}
}

func TestPointerTamperedConfigFailsVerification(t *testing.T) {
	p, _ := userdata.Lookup("aws")
	cfg := nodeConfig(t, "flatcar", padding{random: 2 * p.Limit})
	d, err := p.Deliver(cfg, userdata.Options{PointerURL: "http://10.0.2.2:8080/n1.ign"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ignconfig.Parse(d.Config)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Ignition.Config.Replace.Verification.Hash
	other := sha512.Sum512(append(bytes.Clone(cfg), ' '))
	if h == nil || *h == "sha512-"+hex.EncodeToString(other[:]) {
		t.Fatalf("pointer hash %v does not pin the config", h)
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name, platform string
		err            error
	}{
		{name: "known", platform: "openstack"},
		{name: "unknown", platform: "ec2", err: userdata.ErrUnknownPlatform},
		{name: "case matters", platform: "AWS", err: userdata.ErrUnknownPlatform},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := userdata.Lookup(tc.platform)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && p.Name != tc.platform {
				t.Errorf("got %s", p.Name)
			}
			if err != nil && !strings.Contains(err.Error(), "digitalocean") {
				t.Errorf("error %q does not list the platforms", err)
			}
		})
	}
}

func TestDeliverRefuses(t *testing.T) {
	p, _ := userdata.Lookup("aws")
	for _, tc := range []struct {
		name, config, url string
		err               error
	}{
		{name: "not JSON", config: "#cloud-config\n", err: userdata.ErrNotConfig},
		{name: "no version", config: `{"ignition":{}}`, err: userdata.ErrNotConfig},
		{name: "relative URL", config: `{"ignition":{"version":"3.4.0"}}`, url: "/n1.ign", err: userdata.ErrPointerURL},
		{name: "file URL", config: `{"ignition":{"version":"3.4.0"}}`, url: "file:///n1.ign", err: userdata.ErrPointerURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Deliver([]byte(tc.config), userdata.Options{PointerURL: tc.url}); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestFwCfgArgs(t *testing.T) {
	for _, tc := range []struct{ os, file, want string }{
		{"flatcar", "/tmp/n1.ign", "name=opt/org.flatcar-linux/config,file=/tmp/n1.ign"},
		{"fcos", "/tmp/n1.ign", "name=opt/com.coreos/config,file=/tmp/n1.ign"},
		{"fcos", "/tmp/a,b.ign", "name=opt/com.coreos/config,file=/tmp/a,,b.ign"},
	} {
		t.Run(tc.os+tc.file, func(t *testing.T) {
			got := userdata.FwCfgArgs(tc.os, tc.file)
			if len(got) != 2 || got[0] != "-fw_cfg" || got[1] != tc.want {
				t.Errorf("got %q, want [-fw_cfg %s]", got, tc.want)
			}
		})
	}
}
