package vagrant_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/userdata"
	"github.com/kiln-cluster/kiln/internal/testboot"
)

// TestE2EVagrantFwCfg boots, for every machine of a generated Vagrantfile, QEMU (TCG) with the
// qemuargs that Vagrant itself computed for it (read through Vagrant's own loader: what
// vagrant-libvirt copies verbatim into the domain's <qemu:commandline>), a Debian kernel and an
// initramfs whose /init prints /sys/firmware/qemu_fw_cfg/by_name/<name>/raw. Each guest must
// read exactly its own node's Ignition config under its OS's fw_cfg name.
func TestE2EVagrantFwCfg(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	kit := testboot.Require(t)
	for _, tc := range []struct{ name, spec string }{
		{"flatcar", "testdata/flatcar.yaml"},
		{"fcos", "testdata/fcos.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, c := generate(t, tc.spec)
			ms := machines(t, dir, false)
			initrd := filepath.Join(t.TempDir(), "initramfs.img")
			if err := kit.WriteInitramfs(initrd, testboot.FwCfgInit(userdata.FwCfgName(c.Spec.Cluster.OS)), nil); err != nil {
				t.Fatal(err)
			}
			for _, n := range c.Nodes {
				t.Run(n.Name, func(t *testing.T) {
					t.Parallel()
					m, ok := ms[n.Name]
					if !ok || len(m.Libvirt.QemuArgs) == 0 {
						t.Fatalf("Vagrant computed no qemuargs for %s: %+v", n.Name, m.Libvirt)
					}
					got, res := kit.Boot(t, testboot.Machine{
						Kernel:    kit.Kernel.Vmlinuz,
						Initrd:    initrd,
						ExtraArgs: m.Libvirt.QemuArgs,
					})
					t.Logf("%s: qemu ... %q: %d bytes read by the guest in %v", n.Name, m.Libvirt.QemuArgs, len(got), res.Elapsed.Round(100e6))
					if !bytes.Equal(got, n.Ignition) {
						t.Errorf("the guest read %d bytes that are not %s's config (%d bytes)", len(got), n.Name, len(n.Ignition))
					}
				})
			}
		})
	}
}
