package cache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/pxe"
	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/internal/mirrortest"
)

// kiln pxe serve serves the pulled boot files as they are in the cache: the boot script of a
// machine names them, and /assets/ answers them byte for byte.
func TestIntegrationPXEServesPulledImages(t *testing.T) {
	integration(t)
	m := mirrortest.New(t)
	for _, osName := range []string{"flatcar", "fcos"} {
		t.Run(osName, func(t *testing.T) {
			c := newCache(t, m, "")
			if _, err := c.Pull(context.Background(), osName, "stable", "pxe", ""); err != nil {
				t.Fatal(err)
			}
			t.Setenv("KILN_CACHE_DIR", c.Dir)
			if _, err := c.Lookup(osName, "stable", "pxe"); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			spec := filepath.Join(dir, "cluster.yaml")
			err := os.WriteFile(spec, []byte(`cluster:
  name: imagetest
  os: `+osName+`
  channel: stable
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  kilnNode: {url: "http://10.0.2.2/assets/kiln-node", sha512: "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"}
nodes:
  - {name: n1, mac: "52:54:00:aa:bb:01"}
`), 0o644)
			if err != nil {
				t.Fatal(err)
			}
			opts := deliver.Options{Spec: spec, PKIDir: filepath.Join(dir, "pki")}
			made := opts
			made.CreatePKI = true
			if _, err := deliver.Prepare(made); err != nil {
				t.Fatal(err)
			}
			srv, err := pxe.New(pxe.Config{Deliver: opts, Assets: c.Dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			script := get(t, hs.URL+"/ipxe?mac=52:54:00:aa:bb:01")
			urls := regexp.MustCompile(`http://[^ \n]+/assets/[^ \n]+`).FindAllString(script, -1)
			for _, a := range catalog.Of(osName).Platforms["pxe"].Artifacts {
				u := hs.URL + "/assets/" + osName + "/stable/" + a.Name
				if !slices.Contains(urls, u) {
					t.Errorf("boot script does not name %s:\n%s", u, script)
				}
				if got := get(t, u); got != string(m.Stored(osName, a.Name)) {
					t.Errorf("%s: served %d bytes, pulled %d", u, len(got), len(m.Stored(osName, a.Name)))
				}
			}
		})
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", u, resp.Status, err, strings.TrimSpace(string(b)))
	}
	return string(b)
}
