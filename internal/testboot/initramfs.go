package testboot

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Init is an /init script and the kernel modules it needs.
type Init struct {
	// Script runs as PID 1 under busybox sh, after a prelude that mounts /proc, /sys and /dev,
	// installs busybox's applets, points stdio at the console and loads Modules. It may call
	// emit FILE (print FILE between the markers), fail MESSAGE (print an error line and power
	// off) and finish (power off).
	Script string
	// Modules are module names (dependencies are added; built-in ones skipped).
	Modules []string
	// Files are added to the initramfs (path to content), as BuildInitramfs's files are.
	Files map[string][]byte
}

// prelude starts every /init.
const prelude = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
finish() { sync; poweroff -f; sleep 60; }
fail() { echo "` + ErrorPrefix + `$*"; finish; }
emit() {
	echo "` + BeginMarker + `"
	base64 "$1"
	echo "` + EndMarker + `"
}
if [ -f /etc/modules ]; then
	while read -r m; do
		insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
	done </etc/modules
fi
`

// BuildInitramfs writes a gzip-compressed newc initramfs: busybox as /bin/busybox, init's modules
// under /lib/modules with their load order in /etc/modules, /init, and files (path to content;
// mode 0755 for paths under bin/ or sbin/, else 0644).
func (k *Kit) BuildInitramfs(w io.Writer, init Init, files map[string][]byte) error {
	mods, err := k.Kernel.Modules(init.Modules...)
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(k.Busybox)
	if err != nil {
		return err
	}
	type entry struct {
		data []byte
		mode cpio.FileMode
	}
	all := map[string]entry{
		"bin/busybox": {bb, 0o755},
		"init":        {[]byte(prelude + init.Script), 0o755},
	}
	var order []string
	for _, m := range mods {
		b, err := m.Data()
		if err != nil {
			return err
		}
		all["lib/modules/"+m.Name+".ko"] = entry{b, 0o644}
		order = append(order, m.Name)
	}
	if len(order) > 0 {
		all["etc/modules"] = entry{[]byte(strings.Join(order, "\n") + "\n"), 0o644}
	}
	for p, b := range mergeFiles(init.Files, files) {
		p = strings.TrimPrefix(filepath.Clean("/"+p), "/")
		mode := cpio.FileMode(0o644)
		if strings.HasPrefix(p, "bin/") || strings.HasPrefix(p, "sbin/") {
			mode = 0o755
		}
		all[p] = entry{b, mode}
	}

	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	zw := gzip.NewWriter(w)
	cw := cpio.NewWriter(zw)
	dirs := map[string]bool{}
	for _, n := range names {
		// Parent directories first; the kernel does not create them.
		parts := strings.Split(n, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/")
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := cw.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, Links: 2}); err != nil {
				return err
			}
		}
		e := all[n]
		if err := cw.WriteHeader(&cpio.Header{Name: n, Mode: cpio.TypeReg | e.mode, Links: 1, Size: int64(len(e.data))}); err != nil {
			return err
		}
		if _, err := cw.Write(e.data); err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func mergeFiles(ms ...map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// WriteInitramfs builds the initramfs into path.
func (k *Kit) WriteInitramfs(path string, init Init, files map[string][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := k.BuildInitramfs(f, init, files); err != nil {
		f.Close()
		return fmt.Errorf("building %s: %w", path, err)
	}
	return f.Close()
}
