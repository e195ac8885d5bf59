package userdata_test

import (
	"bytes"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/userdata"
	"github.com/kiln-cluster/kiln/internal/testboot"
)

// TestE2EQemuFwCfg boots QEMU (TCG) with the arguments the qemu platform gives, a Debian kernel
// and an initramfs that prints the fw_cfg entry of the OS: the guest must read the node's config,
// a small one and one of hundreds of KiB (fw_cfg has no size limit to work around).
func TestE2EQemuFwCfg(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	kit := testboot.Require(t)
	p, err := userdata.Lookup("qemu")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, os string
		pad      padding
	}{
		{"flatcar", "flatcar", padding{}},
		{"fcos large", "fcos", padding{units: 2000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodeConfig(t, tc.os, tc.pad)
			d, err := p.Deliver(cfg, userdata.Options{})
			if err != nil {
				t.Fatal(err)
			}
			file := testboot.TempFile(t, "n1.ign", d.Output())
			initrd := testboot.TempFile(t, "initramfs.img", nil)
			if err := kit.WriteInitramfs(initrd, testboot.FwCfgInit(userdata.FwCfgName(tc.os)), nil); err != nil {
				t.Fatal(err)
			}
			got, res := kit.Boot(t, testboot.Machine{
				Kernel: kit.Kernel.Vmlinuz, Initrd: initrd,
				ExtraArgs: userdata.FwCfgArgs(tc.os, file),
			})
			t.Logf("%d bytes through fw_cfg in %v", len(got), res.Elapsed.Round(100e6))
			if !bytes.Equal(got, cfg) {
				t.Errorf("the guest read %d bytes, not the node's config of %d", len(got), len(cfg))
			}
		})
	}
}
