package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/images/nodeimage"
	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func init() { registerImages(newBuildNodeCmd) }

// nodeImageFlags are where the node image's binaries come from: a flag, else $KILN_ETCD_BIN,
// $KILN_IGNITION_BIN, $KILN_NODE_BIN, else beside kiln (or in tools/ beside kiln, as make lays
// them out).
type nodeImageFlags struct {
	etcd, ignition, kilnNode, cache string
}

func (f *nodeImageFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.etcd, "etcd-bin", "", "the etcd server to put in the node image (default $KILN_ETCD_BIN, or etcd beside kiln)")
	fs.StringVar(&f.ignition, "ignition-bin", "", "the Ignition binary to put in the node image (default $KILN_IGNITION_BIN, or ignition beside kiln)")
	fs.StringVar(&f.kilnNode, "kiln-node-bin", "", "the kiln-node to put in the node image (default $KILN_NODE_BIN, or kiln-node beside kiln)")
	fs.StringVar(&f.cache, "image-cache", "", "where the node image's root filesystem tarball is cached (default "+nodeimage.DefaultCacheDir()+")")
}

func (f *nodeImageFlags) options() nodeimage.Options {
	o := nodeimage.DefaultOptions()
	for _, v := range []struct {
		flag string
		dst  *string
	}{{f.etcd, &o.Etcd}, {f.ignition, &o.Ignition}, {f.kilnNode, &o.KilnNode}} {
		if v.flag != "" {
			*v.dst = v.flag
		}
	}
	o.CacheDir = f.cache
	return o
}

func newBuildNodeCmd() *cobra.Command {
	var f nodeImageFlags
	cmd := &cobra.Command{
		Use:   "build-node",
		Short: "Build the node image of kiln up --driver docker (cached; rebuilt when its recipe changes)",
		Long: `Build-node makes the Docker image that kiln up --driver docker runs for every node, with no
registry: a Debian bookworm root filesystem with systemd (debootstrap from this machine's Debian
mirror, once, as root; cached), and the Ignition binary, the etcd server and kiln-node inside.
Its tag is a hash of its recipe and of those binaries: it is built again only when they change.
kiln up builds it when it is missing; this command builds it ahead.`,
		Example: "  kiln images build-node\n  kiln images build-node --etcd-bin bin/tools/etcd --ignition-bin bin/tools/ignition",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := f.options()
			o.Log = cmd.ErrOrStderr()
			img, err := nodeimage.Build(cmd.Context(), o)
			if err != nil {
				return exitcode.UserErr(err)
			}
			state := "cached"
			if img.Built {
				state = "built"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s (base %s)\n", img.Tag, state, nodeimage.BaseImage())
			return nil
		},
	}
	f.add(cmd)
	return cmd
}
