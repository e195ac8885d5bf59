package render

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/testkit"
	nodeconfig "github.com/kiln-cluster/kiln/node/config"
)

// minimalRoot makes the /etc that Ignition's files stage needs to add users and write units.
func minimalRoot(t *testing.T) string {
	t.Helper()
	// Ignition writes SSH keys as the user: the root must be traversable, as a real / is, and
	// t.TempDir's parent is not.
	root, err := os.MkdirTemp("", "kiln-ignition-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":   "root:x:0:\nusers:x:100:\n",
		"etc/shadow":  "root:*:19000:0:99999:7:::\n",
		"etc/gshadow": "root:*::\nusers:*::\n",
	}
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestIntegrationIgnitionApply applies every node's rendered Ignition with the real Ignition
// binary (fetch, then files) to a temporary root, fetching kiln-node from a loopback server.
func TestIntegrationIgnitionApply(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ignition := testkit.Tool(t, "KILN_IGNITION_BIN", "ignition")
	if os.Geteuid() != 0 {
		t.Skip("Ignition's files stage adds users with useradd, which needs root")
	}
	binary := []byte("#!/bin/sh\necho fake kiln-node for the Ignition test\n")
	sum := sha512.Sum512(binary)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/assets/kiln-node" {
			http.NotFound(w, r)
			return
		}
		w.Write(binary)
	}))
	defer srv.Close()

	for _, variant := range []string{"flatcar", "fcos"} {
		t.Run(variant, func(t *testing.T) {
			dir := t.TempDir()
			ex, _ := filepath.Abs("../../configs/examples")
			channel := map[string]string{"flatcar": "beta", "fcos": "testing"}[variant]
			spec := fmt.Sprintf(`cluster:
  name: apply
  os: %s
  channel: %s
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  updates: {strategy: etcd-lock, maxConcurrent: 2, window: {start: "Sun 04:00", length: 2h}}
  kilnNode: {url: "%s/assets/kiln-node", sha512: "%s"}
  units: [{file: %s/units/my-app@.service, instances: 2}]
nodes:
  - {name: m1, mac: "52:54:00:00:00:01", ip: 10.9.0.11/24, metadata: {region: east}}
  - {name: m2, ip: 10.9.0.12/24}
  - {name: m3, ip: 10.9.0.13/24}
  - {name: w1}
`, variant, channel, srv.URL, hex.EncodeToString(sum[:]), ex)
			path := filepath.Join(dir, "cluster.yaml")
			if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			s := loadSpec(t, path)
			b, err := pki.Ensure(filepath.Join(dir, "pki"), s.Cluster.Name, PKINodes(s), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			nodes, rep, err := Render(s, b, Options{})
			if err != nil {
				t.Fatalf("%v\n%s", err, rep.Error())
			}
			for _, n := range nodes {
				root := applyIgnition(t, ignition, n.Ignition)
				assertNodeRoot(t, root, variant, n.Name, s.IsMember(n.Name), binary)
			}
		})
	}
}

func applyIgnition(t *testing.T, ignition string, config []byte) string {
	t.Helper()
	work := t.TempDir()
	root := minimalRoot(t)
	cfg := filepath.Join(work, "config.ign")
	if err := os.WriteFile(cfg, config, 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"-platform", "file", "-config-cache", filepath.Join(work, "cache.json"), "-state-file", filepath.Join(work, "state"), "-log-to-stdout", "-root", root}
	for _, stage := range []string{"fetch", "files"} {
		cmd := exec.Command(ignition, append([]string{"-stage", stage}, common...)...)
		cmd.Env = append(os.Environ(), "IGNITION_CONFIG_FILE="+cfg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ignition -stage %s: %v\n%s", stage, err, tail(out, 40))
		}
	}
	return root
}

func tail(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func assertNodeRoot(t *testing.T, root, variant, name string, member bool, binary []byte) {
	t.Helper()
	read := func(p string) string {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return string(raw)
	}
	mode := func(p string, want os.FileMode) {
		t.Helper()
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: %s has mode %v, want %v", name, p, st.Mode().Perm(), want)
		}
	}
	exists := func(p string, want bool) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(root, p)); (err == nil) != want {
			t.Errorf("%s: %s exists = %v, want %v", name, p, err == nil, want)
		}
	}

	if got := read("etc/hostname"); got != name+"\n" {
		t.Errorf("%s: /etc/hostname = %q", name, got)
	}
	if passwd := read("etc/passwd"); !strings.Contains(passwd, "\ncore:") {
		t.Errorf("%s: user core was not created:\n%s", name, passwd)
	}
	keys := read("home/core/.ssh/authorized_keys.d/ignition")
	if !strings.Contains(keys, "test@kiln") {
		t.Errorf("%s: core's authorized key is missing: %q", name, keys)
	}
	bin := map[string]string{"flatcar": "opt/bin", "fcos": "usr/local/bin"}[variant]
	if got := read(bin + "/kiln-node"); got != string(binary) {
		t.Errorf("%s: kiln-node was not fetched: %q", name, got)
	}
	mode(bin+"/kiln-node", 0o755)
	mode("etc/kiln/pki/client.key", 0o600)
	mode("etc/kiln/pki/ca.crt", 0o644)

	nc, err := nodeconfig.Load(filepath.Join(root, "etc/kiln/node.json"))
	if err != nil {
		t.Fatalf("%s: node.json: %v", name, err)
	}
	if nc.Hostname != name || len(nc.Etcd.Endpoints) != 3 || nc.Reboot.MaxConcurrent != 2 || nc.Reboot.Window == nil || nc.UnitsDir != UnitsDir {
		t.Errorf("%s: node.json = %+v", name, nc)
	}
	for _, ep := range nc.Etcd.Endpoints {
		if h, _, err := net.SplitHostPort(strings.TrimPrefix(ep, "https://")); err != nil || net.ParseIP(h) == nil {
			t.Errorf("%s: etcd endpoint %q is not https://IP:port", name, ep)
		}
	}
	if !strings.Contains(read("etc/kiln/units/my-app@.service"), "Conflicts=my-app@*.service") {
		t.Errorf("%s: the cluster's unit is missing", name)
	}
	if !strings.Contains(read("etc/kiln/units/units.json"), `"instances": 2`) {
		t.Errorf("%s: the units manifest is missing", name)
	}
	preset := read("etc/systemd/system-preset/20-ignition.preset")
	for _, u := range []string{"kiln-node.service"} {
		if !strings.Contains(preset, "enable "+u) {
			t.Errorf("%s: %s is not enabled:\n%s", name, u, preset)
		}
	}
	exists("etc/systemd/system/kiln-node.service", true)
	exists("etc/systemd/system/kiln-etcd.service", member)
	exists("etc/kiln/etcd.env", member)
	exists("etc/kiln/pki/etcd/peer.key", member)
	if member {
		mode("etc/kiln/pki/etcd/peer.key", 0o600)
		env := read("etc/kiln/etcd.env")
		if !strings.Contains(env, "ETCD_NAME="+name+"\n") || !strings.Contains(env, "ETCD_INITIAL_CLUSTER=m1=https://10.9.0.11:2380,m2=https://10.9.0.12:2380,m3=https://10.9.0.13:2380") {
			t.Errorf("%s: etcd.env:\n%s", name, env)
		}
	}
	switch variant {
	case "flatcar":
		conf := read("etc/flatcar/update.conf")
		if !strings.Contains(conf, "GROUP=beta") || !strings.Contains(conf, "REBOOT_STRATEGY=off") {
			t.Errorf("%s: update.conf:\n%s", name, conf)
		}
		if target, err := os.Readlink(filepath.Join(root, "etc/systemd/system/locksmithd.service")); err != nil || target != "/dev/null" {
			t.Errorf("%s: locksmithd is not masked: %q %v", name, target, err)
		}
		if name == "m1" && !strings.Contains(read("etc/systemd/network/00-kiln.network"), "MACAddress=52:54:00:00:00:01") {
			t.Errorf("%s: the network file does not match the MAC", name)
		}
		if name == "w1" {
			exists("etc/systemd/network/00-kiln.network", false)
		}
	case "fcos":
		z := read("etc/zincati/config.d/55-kiln-updates.toml")
		if !strings.Contains(z, `strategy = "fleet_lock"`) || !strings.Contains(z, "http://"+FleetLockListen+"/") {
			t.Errorf("%s: zincati config:\n%s", name, z)
		}
		if nc.FleetLockListen != FleetLockListen {
			t.Errorf("%s: kiln-node does not serve FleetLock for Zincati", name)
		}
		if name == "m2" {
			mode("etc/NetworkManager/system-connections/kiln.nmconnection", 0o600)
			if !bytes.Contains([]byte(read("etc/NetworkManager/system-connections/kiln.nmconnection")), []byte("address1=10.9.0.12/24")) {
				t.Errorf("%s: the NetworkManager keyfile lacks the address", name)
			}
		}
	}
}
