package pxe

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	ignconfig "github.com/coreos/ignition/v2/config"
	igntypes "github.com/coreos/ignition/v2/config/v3_7_experimental/types"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/testboot"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// ignitionFirstBoot runs the real Ignition binary's fetch and files stages as a machine's first
// boot does: Ignition reads ignition.config.url from the kernel command line, fetches the config
// from the server with its own HTTP client and validates it (fetch), then writes the node's files,
// units and users into /sysroot, fetching kiln-node from the server's assets and verifying its
// hash (files). The guest prints /sysroot and Ignition's cached config as a gzipped tar. Ignition
// and useradd are dynamically linked: they run through the dynamic loader in the initramfs. It runs
// once testboot.NetInit has brought eth0 up.
const ignitionFirstBoot = `
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /run /sysroot/etc
echo 'root:x:0:0:root:/root:/bin/sh' >/sysroot/etc/passwd
printf 'root:x:0:\nusers:x:100:\n' >/sysroot/etc/group
echo 'root:*:19000:0:99999:7:::' >/sysroot/etc/shadow
printf 'root:*::\nusers:*::\n' >/sysroot/etc/gshadow
chmod 0600 /sysroot/etc/shadow /sysroot/etc/gshadow
for stage in fetch files; do
	timeout 120 /bin/ld.so --library-path /lib /bin/ignition -platform metal -stage $stage -root /sysroot \
		-config-cache /run/ignition.json -log-to-stdout >>/tmp/ignition.log 2>&1 || {
		tail -n 30 /tmp/ignition.log
		fail "ignition -stage $stage failed"
	}
done
# kiln-enrol.service, as systemd would start it in the booted system: its ExecStart line, run in
# the new root with the kernel command line the machine booted with.
if [ -f /sysroot/etc/systemd/system/kiln-enrol.service ]; then
	mkdir -p /sysroot/proc /sysroot/dev /sysroot/tmp
	mount -t proc proc /sysroot/proc
	mount -o bind /dev /sysroot/dev
	enrol=$(sed -n 's/^ExecStart=//p' /sysroot/etc/systemd/system/kiln-enrol.service)
	timeout 120 chroot /sysroot $enrol >/tmp/enrol.log 2>&1 || {
		tail -n 30 /tmp/enrol.log
		fail "kiln-node enrol failed"
	}
	cp /tmp/enrol.log /sysroot/enrol.log
	# A second run (a reboot) finds valid certificates and does nothing.
	timeout 60 chroot /sysroot $enrol >/sysroot/enrol-again.log 2>&1 || fail "kiln-node enrol failed on the second run"
	umount /sysroot/dev /sysroot/proc
	ls -ln /sysroot/etc/kiln/pki /sysroot/etc/kiln/pki/etcd >/sysroot/pki-modes.txt
fi
# The static kiln-node is big: the guest reports its hash instead of sending it back.
if [ -f /sysroot/opt/bin/kiln-node ]; then
	sha512sum /sysroot/opt/bin/kiln-node | cut -d' ' -f1 >/sysroot/kiln-node.sha512
	rm /sysroot/opt/bin/kiln-node
fi
tar -czf /tmp/firstboot.tgz -C / sysroot run/ignition.json || fail "tar failed"
emit /tmp/firstboot.tgz
finish
`

// TestE2EPXEBootIgnition boots one machine over iPXE whose first boot runs the real Ignition
// against the server: the config Ignition accepted must be the node's own, without any private
// key, and the root file system its files stage wrote must hold every file and unit of that
// config, with the static kiln-node fetched from the server's assets. The guest then runs
// kiln-enrol.service's command (the real kiln-node enrol) against the server, with the policy
// first: it makes its keys, gets its certificates, which must chain to the cluster CA, carry the
// node's names from the spec, fit the keys that stayed in the guest, and be what the server
// recorded as issued.
func TestE2EPXEBootIgnition(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a QEMU machine")
	}
	kit := testboot.Require(t)
	ignition := testkit.Tool(t, "KILN_IGNITION_BIN", "ignition")
	files := map[string][]byte{}
	if err := dynamicBinary(files, ignition, "bin/ignition"); err != nil {
		t.Fatal(err)
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		t.Skip("no useradd on this machine to put in the guest (Debian package passwd)")
	}
	if err := dynamicBinary(files, useradd, "bin/useradd.real"); err != nil {
		t.Fatal(err)
	}
	files["bin/useradd"] = []byte("#!/bin/sh\nexec /bin/ld.so --library-path /lib /bin/useradd.real \"$@\"\n")

	// The server's port goes into the spec: nodes fetch kiln-node from its assets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	kilnNode, err := os.ReadFile(testkit.Binary(t, "KILN_NODE_BIN", "github.com/kiln-cluster/kiln/cmd/kiln-node"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(kilnNode)
	mac := "52:54:00:e2:e1:01"
	spec := strings.Replace(specText("flatcar", "stable", fmt.Sprintf("nodes:\n  - {name: n1, mac: %q, ip: 10.0.2.15/24, kernelArgs: [panic=-1, quiet]}\n  - {name: n2}\n", mac)),
		`kilnNode: {url: "http://10.0.2.2/assets/kiln-node", sha512: "`+emptySHA512+`"}`,
		fmt.Sprintf(`kilnNode: {url: "http://10.0.2.2:%d/assets/kiln-node", sha512: "%x"}`, port, sum), 1)
	f := newFixture(t, spec)
	if err := os.MkdirAll(f.assets, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.assets, "kiln-node"), kilnNode, 0o755); err != nil {
		t.Fatal(err)
	}
	a := AssetPaths("flatcar", "stable")
	testkit.CopyFile(t, kit.Kernel.Vmlinuz, filepath.Join(f.assets, a.Kernel))
	firstBoot := testboot.NetInit(ignitionFirstBoot)
	if err := kit.WriteInitramfs(filepath.Join(f.assets, a.Initrd), firstBoot, files); err != nil {
		t.Fatal(err)
	}

	log, lb := newLogger()
	cfg := f.config(log)
	cfg.Enrol = PolicyFirst
	serveOn(t, cfg, ln, lb)

	out, res := kit.Boot(t, testboot.Machine{
		Boot:      "n",
		NIC:       &testboot.NIC{MAC: mac, BootFile: fmt.Sprintf("http://10.0.2.2:%d/boot.ipxe", port)},
		MemoryMiB: 1024, // Ignition (about 60 MB) unpacks in RAM, kiln-node (20 MB) is fetched into it
		Timeout:   5 * time.Minute,
	})
	root := untar(t, out)

	// Fetch: the config Ignition accepted is n1's.
	var got igntypes.Config
	if err := json.Unmarshal(root["run/ignition.json"], &got); err != nil {
		t.Fatalf("Ignition's cache is not a config: %v\n%.500s", err, root["run/ignition.json"])
	}
	want, _, err := ignconfig.Parse(f.compiled(t).Node("n1").Ignition)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the config Ignition fetched in the guest is not n1's:\n%.800s", root["run/ignition.json"])
	}

	// Files: every file and unit of the config is in the root, kiln-node as the assets serve it,
	// and the core user with its SSH key.
	for _, file := range want.Storage.Files {
		if _, ok := root["sysroot"+file.Path]; !ok && file.Path != "/opt/bin/kiln-node" { // checked by its hash below
			t.Errorf("%s is not in the root Ignition wrote", file.Path)
		}
	}
	for _, u := range want.Systemd.Units {
		if _, ok := root["sysroot/etc/systemd/system/"+u.Name]; u.Contents != nil && !ok {
			t.Errorf("unit %s is not in the root Ignition wrote", u.Name)
		}
	}
	if b := strings.TrimSpace(string(root["sysroot/kiln-node.sha512"])); b != fmt.Sprintf("%x", sum) {
		t.Errorf("/opt/bin/kiln-node is not the binary of the assets: sha512 %q", b)
	}
	if k := keyMaterial(t, root["run/ignition.json"]); len(k) > 0 {
		t.Errorf("the config the guest fetched holds private keys: %v", k)
	}
	checkEnrolled(t, f, root, "n1")
	if !strings.Contains(string(root["sysroot/etc/passwd"]), "\ncore:") {
		t.Errorf("no core user in /etc/passwd:\n%s", root["sysroot/etc/passwd"])
	}
	keys := ""
	for p, b := range root {
		if strings.HasPrefix(p, "sysroot/home/core/.ssh/") {
			keys += string(b)
		}
	}
	if !strings.Contains(keys, "test@kiln") {
		t.Errorf("the SSH key is not in core's home")
	}
	if !hasRequest(lb.String(), "/ignition", "n1") || !strings.Contains(lb.String(), "path=/assets/kiln-node query=\"\" status=200") {
		t.Errorf("the guest did not fetch its config and kiln-node from the server")
	}
	if n := strings.Count(lb.String(), "path=/enrol"); n != 1 {
		t.Errorf("the guest enrolled %d times, want once (the second run must find its certificates)", n)
	}
	t.Logf("Ignition fetched n1's config and wrote its %d files and %d units in the guest (boot took %v)",
		len(want.Storage.Files), len(want.Systemd.Units), res.Elapsed.Round(time.Millisecond))
}

// untar reads a gzipped tar into a map of regular files' paths (without a leading ./) to contents.
func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = content
	}
}

// dynamicBinary adds to files what the initramfs needs to run the dynamically linked program at
// path: the program at name, the shared libraries it needs (recursively) under lib/, and the
// dynamic loader as bin/ld.so (a program the kernel may execute).
func dynamicBinary(files map[string][]byte, path, name string) error {
	add := func(dst, src string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		files[dst] = b
		return nil
	}
	if err := add(name, path); err != nil {
		return err
	}
	dirs := []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
	queue := []string{path}
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		ef, err := elf.Open(p)
		if err != nil {
			return err
		}
		libs, err := ef.ImportedLibraries()
		if p == path {
			for _, prog := range ef.Progs {
				if prog.Type == elf.PT_INTERP {
					buf := make([]byte, prog.Filesz)
					prog.ReadAt(buf, 0)
					interp := string(buf[:len(buf)-1])
					if err := add("bin/ld.so", interp); err != nil {
						ef.Close()
						return err
					}
				}
			}
		}
		ef.Close()
		if err != nil {
			return err
		}
		for _, lib := range libs {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			found := ""
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is in none of %v", p, lib, dirs)
			}
			if err := add("lib/"+lib, found); err != nil {
				return err
			}
			queue = append(queue, found)
		}
	}
	if _, ok := files["bin/ld.so"]; !ok {
		return fmt.Errorf("%s has no program interpreter: is it dynamically linked?", path)
	}
	return nil
}

// checkEnrolled checks the certificates that kiln-node enrol wrote in the guest's root: each
// chains to the cluster CA, names node with its addresses from the spec, fits the private key
// beside it (mode 0600, made in the guest) and is the one the server recorded as issued.
func checkEnrolled(t *testing.T, f *fixture, root map[string][]byte, node string) {
	t.Helper()
	if t.Failed() {
		t.Logf("enrol log:\n%s", root["sysroot/enrol.log"])
	}
	all, err := OpenEnrolments(f.pki).List(node)
	if err != nil || len(all) != 1 || all[0].Status != "approved" || all[0].Issued.IsZero() {
		t.Fatalf("the server's enrolments of %s: %+v %v\nguest log:\n%s", node, all, err, root["sysroot/enrol.log"])
	}
	issued, err := OpenEnrolments(f.pki).Certs(node, all[0].Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(root["sysroot/enrol.log"]), all[0].Fingerprint) {
		t.Errorf("the guest's log does not show the fingerprint the server recorded (%s):\n%s", all[0].Fingerprint, root["sysroot/enrol.log"])
	}
	if !strings.Contains(string(root["sysroot/enrol-again.log"]), "already enrolled") {
		t.Errorf("the second run did not find its certificates:\n%s", root["sysroot/enrol-again.log"])
	}
	caPEM, err := os.ReadFile(pki.CAPath(f.pki))
	if err != nil {
		t.Fatal(err)
	}
	if string(root["sysroot/etc/kiln/pki/ca.crt"]) != string(caPEM) {
		t.Errorf("the guest's ca.crt is not the cluster CA")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for kind, p := range map[string]string{"client": "etc/kiln/pki/client", "peer": "etc/kiln/pki/etcd/peer", "server": "etc/kiln/pki/etcd/server"} {
		certPEM, keyPEM := root["sysroot/"+p+".crt"], root["sysroot/"+p+".key"]
		if string(certPEM) != issued[kind] {
			t.Errorf("%s: the guest's certificate (sha256 %x) is not the one the server issued (sha256 %x)", kind,
				sha256.Sum256(certPEM), sha256.Sum256([]byte(issued[kind])))
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Errorf("%s: the certificate does not fit the guest's key: %v", kind, err)
			continue
		}
		c, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: does not chain to the cluster CA: %v", kind, err)
		}
		if c.Subject.CommonName != node {
			t.Errorf("%s: CN %q, want %q", kind, c.Subject.CommonName, node)
		}
		if kind != "client" && (!slices.Contains(c.DNSNames, node) || !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.String() == "10.0.2.15" })) {
			t.Errorf("%s: names %v %v, want %s and 10.0.2.15 from the spec", kind, c.DNSNames, c.IPAddresses, node)
		}
		t.Logf("%s certificate sha256 %x: issued by the server, chains to the cluster CA, key made in the guest", kind, sha256.Sum256(certPEM))
	}
	for _, line := range strings.Split(string(root["sysroot/pki-modes.txt"]), "\n") {
		if strings.HasSuffix(line, ".key") && !strings.HasPrefix(line, "-rw-------") {
			t.Errorf("a key is not mode 0600: %s", line)
		}
	}
}
