package vagrant_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ignconfig "github.com/coreos/ignition/v2/config"

	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/vagrant"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// compileSpec renders a test spec with a fresh PKI.
func compileSpec(t *testing.T, spec string) *render.Compiled {
	t.Helper()
	c, rep, err := render.Compile(spec, render.CompileOptions{PKIDir: filepath.Join(t.TempDir(), "pki"), CreatePKI: true})
	if err != nil {
		var b strings.Builder
		rep.Print(&b, false)
		t.Fatalf("compile %s: %v\n%s", spec, err, b.String())
	}
	return c
}

// generate writes the Vagrant environment of spec into a new folder and returns it.
func generate(t *testing.T, spec string) (string, *render.Compiled) {
	t.Helper()
	c := compileSpec(t, spec)
	files, err := vagrant.Files(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "env")
	if err := vagrant.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	return dir, c
}

func TestFilesGolden(t *testing.T) {
	for _, tc := range []struct{ name, spec string }{
		{"flatcar", "testdata/flatcar.yaml"},
		{"fcos", "testdata/fcos.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := compileSpec(t, tc.spec)
			files, err := vagrant.Files(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(c.Nodes)+1 {
				t.Errorf("%d files for %d nodes", len(files), len(c.Nodes))
			}
			for _, n := range c.Nodes {
				if !bytes.Equal(files[n.Name+".ign"], n.Ignition) {
					t.Errorf("%s.ign is not the node's config", n.Name)
				}
			}
			golden := filepath.Join("testdata", "golden", tc.name+".Vagrantfile")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, files["Vagrantfile"], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(files["Vagrantfile"], want) {
				t.Errorf("Vagrantfile differs from %s (go test -update rewrites it):\n%s", golden, files["Vagrantfile"])
			}
		})
	}
}

func TestFilesNeedMACs(t *testing.T) {
	_, err := vagrant.Files(compileSpec(t, "testdata/nomac.yaml"))
	if !errors.Is(err, vagrant.ErrNoMAC) {
		t.Fatalf("err = %v, want ErrNoMAC", err)
	}
	if !strings.Contains(err.Error(), "a2, a3") {
		t.Errorf("error %q does not name the nodes", err)
	}
}

func TestBox(t *testing.T) {
	for _, tc := range []struct{ os, channel, name, url string }{
		{"flatcar", "stable", "flatcar-stable", "https://stable.release.flatcar-linux.net/amd64-usr/current/flatcar_production_vagrant.json"},
		{"flatcar", "lts", "flatcar-lts", "https://lts.release.flatcar-linux.net/amd64-usr/current/flatcar_production_vagrant.json"},
		{"fcos", "next", "fedora-coreos-next", ""},
	} {
		t.Run(tc.os+"-"+tc.channel, func(t *testing.T) {
			if name, url := vagrant.Box(tc.os, tc.channel); name != tc.name || url != tc.url {
				t.Errorf("Box = %q %q, want %q %q", name, url, tc.name, tc.url)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "env")
	first := map[string][]byte{"Vagrantfile": []byte(vagrant.Marker + " one\n"), "a.ign": []byte("{}")}
	if err := vagrant.Write(dir, first); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "a.ign")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a.ign: %v %v, want mode 0600", st.Mode(), err)
	}
	// Vagrant's state of running machines survives a rewrite; files of the old set go.
	state := filepath.Join(dir, ".vagrant", "machines", "a", "libvirt", "id")
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte("uuid"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := map[string][]byte{"Vagrantfile": []byte(vagrant.Marker + " two\n"), "b.ign": []byte("{}")}
	if err := vagrant.Write(dir, second); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(state); err != nil || string(b) != "uuid" {
		t.Errorf(".vagrant state lost: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.ign")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a.ign of the old set is still there (%v)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Vagrantfile")); !bytes.HasSuffix(b, []byte("two\n")) {
		t.Errorf("Vagrantfile not replaced: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".env.tmp-*")); len(left) > 0 {
		t.Errorf("temporary folders left: %v", left)
	}

	// A folder kiln did not write is refused and left alone.
	foreign := filepath.Join(root, "foreign")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "Vagrantfile"), []byte("Vagrant.configure(\"2\") {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := vagrant.Write(foreign, second); !errors.Is(err, vagrant.ErrNotOurs) {
		t.Fatalf("err = %v, want ErrNotOurs", err)
	}
	if _, err := os.Stat(filepath.Join(foreign, "b.ign")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a foreign folder was written to")
	}
}

// vagrantEnv is the environment Vagrant runs in: its own home in a temporary folder, no
// network checks, libvirt as the provider.
func vagrantEnv(t *testing.T) []string {
	t.Helper()
	return append(os.Environ(),
		"VAGRANT_HOME="+t.TempDir(),
		"VAGRANT_CHECKPOINT_DISABLE=1",
		"VAGRANT_DEFAULT_PROVIDER=libvirt",
		"VAGRANT_NO_COLOR=1",
	)
}

// vboxEnv is env with the VirtualBox provider chosen and a stand-in VBoxManage first in PATH
// that answers --version only (VirtualBox 7.0, which Vagrant 2.3 supports).
func vboxEnv(t *testing.T, env []string) []string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\n[ \"$1\" = --version ] && { echo 7.0.14r161095; exit 0; }\necho \"no VirtualBox here: VBoxManage $*\" >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "VBoxManage"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out := []string{"VAGRANT_DEFAULT_PROVIDER=virtualbox", "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}
	for _, e := range env {
		if !strings.HasPrefix(e, "VAGRANT_DEFAULT_PROVIDER=") && !strings.HasPrefix(e, "PATH=") {
			out = append(out, e)
		}
	}
	return out
}

// machine is what machines.rb reports of one machine, from Vagrant's own loader.
type machine struct {
	Libvirt struct {
		Box      string    `json:"box"`
		QemuArgs []string  `json:"qemuargs"`
		Networks []network `json:"networks"`
	} `json:"libvirt"`
	VirtualBox struct {
		Box            string    `json:"box"`
		BoxURL         []string  `json:"box_url"`
		Networks       []network `json:"networks"`
		Customizations []struct {
			Event   string   `json:"event"`
			Command []string `json:"command"`
		} `json:"customizations"`
		Served string `json:"served"`
	} `json:"virtualbox"`
}

type network struct {
	Type    string         `json:"type"`
	Options map[string]any `json:"options"`
}

// machines loads dir's Vagrantfile with Vagrant's own loader (testdata/machines.rb) and returns
// every machine's provider settings as Vagrant computed them.
func machines(t *testing.T, dir string, fetch bool) map[string]machine {
	t.Helper()
	ruby := testkit.RequireTool(t, "ruby")
	script, err := filepath.Abs("testdata/machines.rb")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script, dir}
	if fetch {
		args = append(args, "--fetch")
	}
	cmd := exec.Command(ruby, args...)
	cmd.Env = vagrantEnv(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("machines.rb: %v\n%s", err, stderr.String())
	}
	var m map[string]machine
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("machines.rb output: %v\n%s", err, out)
	}
	return m
}

func TestIntegrationVagrantValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vagrant")
	}
	bin := testkit.RequireTool(t, "vagrant")
	env := vagrantEnv(t)
	list := exec.Command(bin, "plugin", "list")
	list.Env = env
	plugins, err := list.CombinedOutput()
	if err != nil || !bytes.Contains(plugins, []byte("vagrant-libvirt")) {
		t.Fatalf("vagrant-libvirt is not installed (%v):\n%s", err, plugins)
	}
	for _, tc := range []struct{ name, spec string }{
		{"flatcar", "testdata/flatcar.yaml"},
		{"fcos", "testdata/fcos.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, c := generate(t, tc.spec)
			cmd := exec.Command(bin, "validate")
			cmd.Dir, cmd.Env = dir, env
			if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("validated successfully")) {
				t.Fatalf("vagrant validate: %v\n%s", err, out)
			}
			// The VirtualBox provider's settings: Vagrant validates them only when VirtualBox is
			// usable, which it decides from `VBoxManage --version`. There is no VirtualBox here,
			// so a stand-in answers that one question (and fails anything else); the validation
			// itself is Vagrant's.
			cmd = exec.Command(bin, "validate")
			cmd.Dir, cmd.Env = dir, vboxEnv(t, env)
			if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("validated successfully")) {
				t.Fatalf("vagrant validate (virtualbox): %v\n%s", err, out)
			}

			// A broken libvirt setting is caught, so the check above covered the provider's config.
			broken := filepath.Join(t.TempDir(), "broken")
			if err := os.CopyFS(broken, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			vf := filepath.Join(broken, "Vagrantfile")
			b, _ := os.ReadFile(vf)
			b = bytes.Replace(b, []byte("lv.cpus = KILN_CPUS"), []byte("lv.cpus = KILN_CPUS\n        lv.no_such_setting = 1"), 1)
			if err := os.WriteFile(vf, b, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command(bin, "validate")
			cmd.Dir, cmd.Env = broken, env
			if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("no_such_setting")) {
				t.Fatalf("vagrant validate passed a broken libvirt setting: %v\n%s", err, out)
			}
			b = bytes.Replace(b, []byte("vb.cpus = KILN_CPUS"), []byte("vb.cpus = KILN_CPUS\n        vb.no_such_vbox_setting = 1"), 1)
			if err := os.WriteFile(vf, b, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command(bin, "validate")
			cmd.Dir, cmd.Env = broken, vboxEnv(t, env)
			if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("no_such_vbox_setting")) {
				t.Fatalf("vagrant validate passed a broken VirtualBox setting: %v\n%s", err, out)
			}

			ms := machines(t, dir, true)
			if len(ms) != len(c.Nodes) {
				t.Fatalf("%d machines for %d nodes", len(ms), len(c.Nodes))
			}
			for _, sn := range c.Spec.Nodes {
				m, ok := ms[sn.Name]
				if !ok {
					t.Fatalf("no machine %s", sn.Name)
				}
				checkLibvirt(t, dir, sn.Name, sn.MAC, sn.IP, c.Spec.Cluster.OS, m)
				checkVirtualBox(t, sn.Name, sn.MAC, c.Node(sn.Name).Ignition, m)
			}
		})
	}
}

func checkLibvirt(t *testing.T, dir, name, mac, ip, osName string, m machine) {
	t.Helper()
	fw := "opt/com.coreos/config"
	if osName == "flatcar" {
		fw = "opt/org.flatcar-linux/config"
	}
	want := []string{"-fw_cfg", "name=" + fw + ",file=" + filepath.Join(dir, name+".ign")}
	if strings.Join(m.Libvirt.QemuArgs, " ") != strings.Join(want, " ") {
		t.Errorf("%s: qemuargs %q, want %q", name, m.Libvirt.QemuArgs, want)
	}
	priv := privateNetwork(t, name, m.Libvirt.Networks)
	wantMAC := strings.ReplaceAll(mac, "-", ":")
	if priv["mac"] != wantMAC || priv["auto_config"] != false {
		t.Errorf("%s: libvirt private network %v, want mac %s and auto_config false", name, priv, wantMAC)
	}
	if addr, _, _ := strings.Cut(ip, "/"); priv["ip"] != nilIfEmpty(addr) {
		t.Errorf("%s: private network ip %v, want %s", name, priv["ip"], addr)
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func privateNetwork(t *testing.T, name string, nets []network) map[string]any {
	t.Helper()
	for _, n := range nets {
		if n.Type == "private_network" {
			return n.Options
		}
	}
	t.Fatalf("%s: no private network in %v", name, nets)
	return nil
}

// checkVirtualBox checks that the /Ignition/Config guest property holds a pointer config that
// fits VirtualBox's limit, that the Ignition library accepts, and whose URL served the node's
// config with the pinned hash.
func checkVirtualBox(t *testing.T, name, mac string, config []byte, m machine) {
	t.Helper()
	var pointer string
	for _, c := range m.VirtualBox.Customizations {
		if len(c.Command) == 5 && c.Command[0] == "guestproperty" && c.Command[3] == "/Ignition/Config" {
			pointer = c.Command[4]
			if c.Event != "pre-boot" {
				t.Errorf("%s: guest property set at %s, want pre-boot", name, c.Event)
			}
		}
	}
	if pointer == "" {
		t.Fatalf("%s: no /Ignition/Config guest property in %v", name, m.VirtualBox.Customizations)
	}
	if len(pointer) >= 1024 {
		t.Errorf("%s: guest property of %d bytes, VirtualBox takes under 1024", name, len(pointer))
	}
	cfg, rpt, err := ignconfig.Parse([]byte(pointer))
	if err != nil || rpt.IsFatal() {
		t.Fatalf("%s: Ignition rejects the pointer: %v %s", name, err, rpt.String())
	}
	r := cfg.Ignition.Config.Replace
	sum := sha512.Sum512(config)
	if r.Verification.Hash == nil || *r.Verification.Hash != "sha512-"+hex.EncodeToString(sum[:]) {
		t.Errorf("%s: pointer hash %v does not pin the node's config", name, r.Verification.Hash)
	}
	if r.Source == nil || !strings.HasPrefix(*r.Source, "http://10.0.2.2:") || !strings.HasSuffix(*r.Source, "/"+name+".ign") {
		t.Errorf("%s: pointer source %v", name, r.Source)
	}
	if m.VirtualBox.Served != string(config) {
		t.Errorf("%s: the Vagrantfile's server answered %d bytes, not the node's config", name, len(m.VirtualBox.Served))
	}
	priv := privateNetwork(t, name, m.VirtualBox.Networks)
	if want := strings.NewReplacer(":", "", "-", "").Replace(mac); priv["mac"] != want {
		t.Errorf("%s: VirtualBox private network mac %v, want %s", name, priv["mac"], want)
	}
}

// What kiln vagrant did not write survives a rewrite, and a symlinked folder stays a link.
func TestWriteKeepsUserFilesAndLinks(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	dir := filepath.Join(root, "env")
	if err := os.Symlink("real", dir); err != nil {
		t.Fatal(err)
	}
	first := map[string][]byte{"Vagrantfile": []byte(vagrant.Marker + " one\n"), "a.ign": []byte("{}")}
	if err := vagrant.Write(dir, first); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "NOTES.md")
	if err := os.WriteFile(notes, []byte("mine"), 0o640); err != nil {
		t.Fatal(err)
	}
	second := map[string][]byte{"Vagrantfile": []byte(vagrant.Marker + " two\n"), "b.ign": []byte("{}")}
	if err := vagrant.Write(dir, second); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(notes); err != nil || string(b) != "mine" {
		t.Errorf("NOTES.md lost: %q %v", b, err)
	}
	if l, err := os.Readlink(dir); err != nil || l != "real" {
		t.Errorf("env is no longer the link: %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(real, "b.ign")); err != nil {
		t.Errorf("b.ign not written where env points: %v", err)
	}
	if _, err := os.Stat(filepath.Join(real, "a.ign")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a.ign of the old set is still there (%v)", err)
	}
}
