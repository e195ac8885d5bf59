package userdata_test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/bootstrap/userdata"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// TestIntegrationIgnitionResolves hands the real Ignition binary (fetch stage, file platform)
// the compressed and the pointer user data; the config it ends up with, after following
// ignition.config.replace (gunzipping the data URL, or fetching the pointer's URL from a
// loopback server and checking its hash), must be the node's config.
func TestIntegrationIgnitionResolves(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Ignition binary")
	}
	ignition := testkit.Tool(t, "KILN_IGNITION_BIN", "ignition")
	aws, err := userdata.Lookup("aws")
	if err != nil {
		t.Fatal(err)
	}
	var served []byte
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/n1.ign" {
			http.NotFound(w, r)
			return
		}
		w.Write(served)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/n1.ign"

	for _, tc := range []struct {
		name   string
		pad    padding
		mode   userdata.Mode
		tamper bool
	}{
		{name: "compressed", pad: padding{units: (16384 + 4096) / 190}, mode: userdata.Compressed},
		{name: "pointer", pad: padding{random: 16384*5/4 + 8192}, mode: userdata.Pointer},
		{name: "pointer to a changed config", pad: padding{random: 16384*5/4 + 8192}, mode: userdata.Pointer, tamper: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodeConfig(t, "flatcar", tc.pad)
			d, err := aws.Deliver(cfg, userdata.Options{PointerURL: url})
			if err != nil {
				t.Fatal(err)
			}
			if d.Mode != tc.mode {
				t.Fatalf("mode %s, want %s", d.Mode, tc.mode)
			}
			served = d.Full
			if tc.tamper {
				served = append([]byte{' '}, d.Full...)
			}
			work := t.TempDir()
			in := filepath.Join(work, "user-data")
			if err := os.WriteFile(in, d.Output(), 0o600); err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(work, "cache.json")
			cmd := exec.Command(ignition, "-platform", "file", "-stage", "fetch", "-config-cache", cache,
				"-state-file", filepath.Join(work, "state"), "-log-to-stdout", "-root", filepath.Join(work, "root"))
			cmd.Env = append(os.Environ(), "IGNITION_CONFIG_FILE="+in)
			out, err := cmd.CombinedOutput()
			if tc.tamper {
				if err == nil || !bytes.Contains(out, []byte("hash")) {
					t.Fatalf("Ignition did not refuse a config that does not match the pointer's hash (%v):\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("ignition -stage fetch: %v\n%s", err, out)
			}
			cached, err := os.ReadFile(cache)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := ignconfig.Parse(cached)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := ignconfig.Parse(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Ignition ended up with another config than the node's (%d bytes cached)", len(cached))
			}
		})
	}
}
