package pxe

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	ignconfig "github.com/coreos/ignition/v2/config"
	igntypes "github.com/coreos/ignition/v2/config/v3_7_experimental/types"

	"github.com/kiln-cluster/kiln/images/testboot"
)

// ignitionFetchInit runs the real Ignition binary's fetch stage as a machine's first boot does:
// Ignition reads ignition.config.url from the kernel command line, fetches the config from the
// server with its own HTTP client, validates it and writes its cache, which the guest prints.
// The binary is dynamically linked (libblkid), so it runs through the dynamic loader shipped in
// the initramfs.
const ignitionFetchScript = `
i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i+1)); [ $i -gt 100 ] && fail "no eth0"; sleep 0.1
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /bin/udhcpc.script -n -q -t 10 -T 1 >/dev/null 2>&1 || fail "no dhcp lease on eth0"
mkdir -p /run
timeout 120 /bin/ld.so --library-path /lib /bin/ignition -platform metal -stage fetch \
	-config-cache /run/ignition.json -log-to-stdout >/tmp/ignition.log 2>&1 || {
	tail -n 20 /tmp/ignition.log
	fail "ignition -stage fetch failed"
}
emit /run/ignition.json
finish
`

// TestE2EPXEBootIgnition boots one machine over iPXE whose first boot runs the real Ignition
// (its fetch stage) against the server: the config Ignition accepted and cached must be the
// node's own.
func TestE2EPXEBootIgnition(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a QEMU machine")
	}
	kit := testboot.Require(t)
	ignition := os.Getenv("KILN_IGNITION_BIN")
	if _, err := os.Stat(ignition); ignition == "" || err != nil {
		msg := "no Ignition binary: set KILN_IGNITION_BIN (make deps builds it)"
		if os.Getenv("CI") != "" || os.Getenv("KILN_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	files, err := dynamicBinary(ignition, "bin/ignition")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range testboot.FetchInit.Files {
		files[k] = v
	}

	mac := "52:54:00:e2:e1:01"
	f := newFixture(t, specText("flatcar", "stable", fmt.Sprintf("nodes:\n  - {name: n1, mac: %q, kernelArgs: [panic=-1, quiet]}\n  - {name: n2}\n", mac)))
	a := AssetPaths("flatcar", "stable")
	copyFile(t, kit.Kernel.Vmlinuz, filepath.Join(f.assets, a.Kernel))
	firstBoot := testboot.Init{Modules: testboot.NetModules, Script: ignitionFetchScript}
	if err := kit.WriteInitramfs(filepath.Join(f.assets, a.Initrd), firstBoot, files); err != nil {
		t.Fatal(err)
	}

	log, lb := newLogger()
	s, err := New(f.config(log), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, "", "", 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		<-served
		if t.Failed() {
			t.Logf("server log:\n%s", lb.String())
		}
	})

	cached, res := kit.Boot(t, testboot.Machine{
		Boot:      "n",
		NIC:       &testboot.NIC{MAC: mac, BootFile: fmt.Sprintf("http://10.0.2.2:%d/boot.ipxe", ln.Addr().(*net.TCPAddr).Port)},
		MemoryMiB: 768, // Ignition (about 60 MB) unpacks in RAM
		Timeout:   5 * time.Minute,
	})
	var got igntypes.Config
	if err := json.Unmarshal(cached, &got); err != nil {
		t.Fatalf("Ignition's cache is not a config: %v\n%.500s", err, cached)
	}
	want, _, err := ignconfig.Parse(f.compiled(t).Node("n1").Ignition)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the config Ignition fetched in the guest is not n1's:\n%.800s", cached)
	}
	t.Logf("Ignition fetched and accepted n1's config in the guest (boot took %v)", res.Elapsed.Round(time.Millisecond))
}

// dynamicBinary returns the initramfs files that run the dynamically linked program at path:
// the program at name, the shared libraries it needs (recursively) under lib/, and the dynamic
// loader as bin/ld.so (a program the kernel may execute).
func dynamicBinary(path, name string) (map[string][]byte, error) {
	files := map[string][]byte{}
	add := func(dst, src string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		files[dst] = b
		return nil
	}
	if err := add(name, path); err != nil {
		return nil, err
	}
	dirs := []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
	queue := []string{path}
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		ef, err := elf.Open(p)
		if err != nil {
			return nil, err
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
						return nil, err
					}
				}
			}
		}
		ef.Close()
		if err != nil {
			return nil, err
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
				return nil, fmt.Errorf("%s needs %s, which is in none of %v", p, lib, dirs)
			}
			if err := add("lib/"+lib, found); err != nil {
				return nil, err
			}
			queue = append(queue, found)
		}
	}
	if _, ok := files["bin/ld.so"]; !ok {
		return nil, fmt.Errorf("%s has no program interpreter: is it dynamically linked?", path)
	}
	return files, nil
}
