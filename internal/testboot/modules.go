package testboot

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"
)

// Module lists for the ready init scripts.
var (
	// NetModules drive QEMU's virtio-net-pci NIC (their dependencies are added when resolved).
	NetModules = []string{"virtio_pci", "virtio_net"}
	// FwCfgModules expose QEMU's fw_cfg entries under /sys/firmware/qemu_fw_cfg.
	FwCfgModules = []string{"qemu_fw_cfg"}
)

// Module is a loadable kernel module file.
type Module struct {
	Name string
	Path string
}

// Data returns the module's ELF bytes (decompressed when the package ships .ko.xz: busybox's
// insmod loads plain files only).
func (m Module) Data() ([]byte, error) {
	b, err := os.ReadFile(m.Path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(m.Path, ".ko"):
		return b, nil
	case strings.HasSuffix(m.Path, ".ko.xz"):
		r, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Path, err)
		}
		return io.ReadAll(r)
	}
	return nil, fmt.Errorf("%s: unsupported module compression", m.Path)
}

// depends reads the module's "depends=" field from its .modinfo section.
func (m Module) depends() ([]string, error) {
	b, err := m.Data()
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// Modules resolves module names (dashes or underscores) to the files to load, dependencies first,
// leaving out what the kernel has built in. The package carries no modules.dep (depmod runs at
// install time), so dependencies come from each module's own .modinfo.
func (k *Kernel) Modules(names ...string) ([]Module, error) {
	builtin, err := k.builtinModules()
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	err = filepath.WalkDir(filepath.Join(k.ModulesDir(), "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst"} {
			if name, ok := strings.CutSuffix(base, ext); ok {
				files[modName(name)] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = modName(name)
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		}
		p, ok := files[name]
		if !ok {
			return fmt.Errorf("module %s: not in kernel %s (neither built in nor a module)", name, k.Version)
		}
		state[name] = 1
		m := Module{Name: name, Path: p}
		deps, err := m.depends()
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// builtinModules reads modules.builtin: the modules compiled into the kernel image.
func (k *Kernel) builtinModules() (map[string]bool, error) {
	f, err := os.Open(filepath.Join(k.ModulesDir(), "modules.builtin"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		name := strings.TrimSuffix(filepath.Base(strings.TrimSpace(s.Text())), ".ko")
		if name != "" {
			m[modName(name)] = true
		}
	}
	return m, s.Err()
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }
