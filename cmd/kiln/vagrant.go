package main

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/vagrant"
)

func init() { register(newVagrantCmd) }

func newVagrantCmd() *cobra.Command {
	var file, out, pkiDir string
	var strict bool
	cmd := &cobra.Command{
		Use:   "vagrant -f SPEC -o DIR",
		Short: "Write a Vagrantfile and every node's Ignition config for vagrant up (libvirt or VirtualBox)",
		Long: `Vagrant writes DIR/Vagrantfile, one machine per node, and DIR/<node>.ign, each node's Ignition config
(mode 0600: it holds the node's keys). DIR is replaced in one step; Vagrant's state in
DIR/.vagrant and every file kiln did not write are kept. Then run vagrant up in DIR.

With the libvirt provider, QEMU hands each machine its config through fw_cfg. VirtualBox keeps
only about 1 KiB in the guest property Ignition reads, so there the property holds a pointer
config to NODE.ign, pinned by its SHA-512, which the Vagrantfile serves on the host's loopback
while vagrant up runs. Every node needs a mac in the spec: the node's network config finds its
interface by it, on a private network with the node's IP. The box is flatcar-<channel>
(Flatcar's own boxes) or fedora-coreos-<stream>; KILN_VAGRANT_BOX picks another.`,
		Example: "  kiln vagrant -f configs/examples/demo.yaml -o demo-vagrant && cd demo-vagrant && vagrant up --provider libvirt",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := deliver.Prepare(deliverOptions(file, pkiDir, strict, cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			files, err := vagrant.Files(c)
			if err != nil {
				return exitcode.UserErr(err)
			}
			if err := vagrant.Write(out, files); err != nil {
				return exitcode.UserErr(err)
			}
			names := make([]string, 0, len(files))
			for name := range files {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d bytes\n", filepath.Join(out, name), len(files[name]))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "cluster.yaml", "the cluster spec")
	cmd.Flags().StringVarP(&out, "output", "o", "", "the folder to write (replaced in one step)")
	cmd.Flags().StringVar(&pkiDir, "pki", filepath.Join("out", "pki"), "the cluster's PKI folder (kiln render -o OUT keeps it in OUT/pki)")
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}
