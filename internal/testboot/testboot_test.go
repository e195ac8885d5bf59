package testboot

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// fakeKit has a kernel tree with no modules and a stand-in busybox: enough to build initramfs
// images without the real kit.
func fakeKit(t *testing.T) *Kit {
	t.Helper()
	root := t.TempDir()
	mods := filepath.Join(root, "lib", "modules", "6.1.0-test", "kernel")
	os.MkdirAll(mods, 0o755)
	os.WriteFile(filepath.Join(root, "lib", "modules", "6.1.0-test", "modules.builtin"), []byte("kernel/drivers/virtio/virtio_pci.ko\n"), 0o644)
	bb := filepath.Join(root, "busybox")
	os.WriteFile(bb, []byte("not really busybox"), 0o755)
	return &Kit{Kernel: &Kernel{Root: root, Version: "6.1.0-test"}, Busybox: bb, QEMU: "qemu-system-x86_64"}
}

func TestBuildInitramfs(t *testing.T) {
	kit := fakeKit(t)
	var buf bytes.Buffer
	init := Init{Script: "emit /etc/hello\nfinish\n", Modules: []string{"virtio-pci"}, Files: map[string][]byte{"etc/hello": []byte("hi")}}
	if err := kit.BuildInitramfs(&buf, init, map[string][]byte{"/bin/tool": []byte("#!/bin/sh\n")}); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	cr := cpio.NewReader(zr)
	type file struct {
		mode cpio.FileMode
		data string
	}
	got := map[string]file{}
	var order []string
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(cr)
		got[h.Name] = file{h.Mode, string(b)}
		order = append(order, h.Name)
	}
	for name, want := range map[string]file{
		"bin":         {cpio.TypeDir | 0o755, ""},
		"bin/busybox": {cpio.TypeReg | 0o755, "not really busybox"},
		"bin/tool":    {cpio.TypeReg | 0o755, "#!/bin/sh\n"},
		"etc":         {cpio.TypeDir | 0o755, ""},
		"etc/hello":   {cpio.TypeReg | 0o644, "hi"},
	} {
		if g, ok := got[name]; !ok || g != want {
			t.Errorf("%s: %+v, want %+v", name, g, want)
		}
	}
	if i := got["init"]; i.mode != cpio.TypeReg|0o755 || !strings.HasPrefix(i.data, "#!/bin/busybox sh\n") || !strings.HasSuffix(i.data, "\nemit /etc/hello\nfinish\n") {
		t.Errorf("init: %o\n%s", i.mode, i.data)
	}
	if _, ok := got["etc/modules"]; ok {
		t.Error("a built-in module was listed for loading")
	}
	if slices.Index(order, "bin") > slices.Index(order, "bin/busybox") {
		t.Error("a directory came after its files")
	}
}

func TestMissingModule(t *testing.T) {
	kit := fakeKit(t)
	err := kit.BuildInitramfs(io.Discard, Init{Modules: []string{"no_such_module"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("error %v, want one naming the module", err)
	}
}

func TestPayload(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString([]byte("{\"ignition\":{}}\x00\n"))
	tests := []struct {
		name, serial string
		want         string
		err          string
	}{
		{name: "plain", serial: "boot\r\n" + BeginMarker + "\r\n" + enc + "\r\n" + EndMarker + "\r\n", want: "{\"ignition\":{}}\x00\n"},
		{name: "kernel message inside", serial: BeginMarker + "\n" + enc[:8] + "\n[    1.2] random: crng init done\n" + enc[8:] + "\n" + EndMarker + "\n", want: "{\"ignition\":{}}\x00\n"},
		{name: "guest error", serial: "x\n" + ErrorPrefix + "no eth0\r\n", err: "guest: no eth0"},
		{name: "nothing", serial: "Kernel panic\n", err: "no output between markers"},
		{name: "empty payload", serial: BeginMarker + "\n" + EndMarker + "\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := (&Result{Serial: tt.serial}).Payload()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	kit := fakeKit(t)
	tests := []struct {
		name string
		m    Machine
		want []string
	}{
		{name: "direct kernel", m: Machine{Kernel: "/k", Initrd: "/i"}, want: []string{"-kernel /k", "-initrd /i", "-append " + DefaultAppend, "-accel tcg", "-no-reboot"}},
		{name: "cdrom boots from it", m: Machine{CDROM: "/a,b.iso"}, want: []string{"-drive file=/a,,b.iso,media=cdrom,readonly=on,if=ide,index=2", "-boot d"}},
		{name: "network", m: Machine{Boot: "n", NIC: &NIC{TFTP: "/t", BootFile: "boot.ipxe"}}, want: []string{"-netdev user,id=n0,tftp=/t,bootfile=boot.ipxe", "-device virtio-net-pci,netdev=n0,mac=" + DefaultMAC, "-boot n"}},
		{name: "fw_cfg", m: Machine{FwCfg: []FwCfg{{Name: "opt/com.coreos/config", File: "/c.ign"}, {Name: "opt/x", String: "y"}}}, want: []string{"-fw_cfg name=opt/com.coreos/config,file=/c.ign", "-fw_cfg name=opt/x,string=y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := strings.Join(kit.Args(tt.m), " ")
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("%q lacks %q", line, w)
				}
			}
		})
	}
}
