package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/userdata"
	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func init() { register(newUserdataCmd) }

func newUserdataCmd() *cobra.Command {
	var file, platform, pkiDir, pointerURL, pointerOut, out string
	var strict bool
	cmd := &cobra.Command{
		Use:   "userdata -f SPEC --platform P NODE",
		Short: "Write a node's Ignition config as cloud user data, VMware guestinfo or a QEMU fw_cfg file",
		Long: `Userdata writes NODE's Ignition config in the form its platform takes (` + strings.Join(userdata.Names(), ", ") + `),
within the platform's size limit: as it is when it fits; else as a small config holding the
config gzip-compressed in a data URL (Ignition does not gunzip user data itself); else, with
--pointer-url and --pointer-out, as a pointer config that fetches the full config from the URL and
verifies its SHA-512 (upload --pointer-out there). A config that fits none of these is refused.

vsphere prints the guestinfo properties to set (key=value lines); qemu writes the config to -o
and prints the -fw_cfg argument to give QEMU. The output holds the node's private keys: it is
written with mode 0600 (an existing file keeps its owner and loses group and other access), in
one step, through a symlink to its target. -o and --pointer-out must not name the spec, a file it
names, a file in --pki or each other. The certificates come from --pki, the folder kiln render
-o OUT made (OUT/pki), so every delivery hands out certificates of the same CA; a folder with no
CA is refused (only kiln render creates one).`,
		Example: `  kiln userdata -f configs/examples/demo.yaml --platform aws node1 -o node1.userdata
  kiln userdata -f configs/examples/demo.yaml --platform vsphere node1
  kiln userdata -f configs/examples/demo.yaml --platform qemu node1 -o node1.ign
  kiln userdata -f configs/examples/demo.yaml --platform aws node1 \
      --pointer-url https://configs.example.com/node1.ign --pointer-out node1.ign`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			p, err := userdata.Lookup(platform)
			if err != nil {
				return exitcode.UserErr(err)
			}
			if (pointerURL == "") != (pointerOut == "") {
				return exitcode.UserErr(errors.New("--pointer-url and --pointer-out go together: the URL must serve the file written to --pointer-out"))
			}
			if p.Kind == userdata.FwCfg && out == "" {
				return exitcode.UserErr(errors.New("--platform qemu needs -o FILE: the fw_cfg argument names the file holding the config"))
			}
			o := deliverOptions(file, pkiDir, strict, cmd.ErrOrStderr())
			o.Nodes = a[:1]
			c, err := deliver.Prepare(o)
			if errors.Is(err, deliver.ErrNoNode) {
				return exitcode.UserErr(err)
			} else if err != nil {
				return err
			}
			var outs []userdata.Output
			if out != "" {
				outs = append(outs, userdata.Output{Flag: "-o", Path: out})
			}
			if pointerOut != "" {
				outs = append(outs, userdata.Output{Flag: "--pointer-out", Path: pointerOut})
			}
			if err := userdata.CheckOutputs(outs, c.Spec.Inputs(), []string{pkiDir}); err != nil {
				return exitcode.UserErr(err)
			}
			node := c.Node(a[0])
			d, err := p.Deliver(node.Ignition, userdata.Options{PointerURL: pointerURL})
			if err != nil {
				return exitcode.UserErr(err)
			}
			if d.Mode == userdata.Pointer {
				if err := userdata.WriteSecret(pointerOut, d.Full); err != nil {
					return exitcode.UserErr(err)
				}
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if out != "" {
				if err := userdata.WriteSecret(out, d.Output()); err != nil {
					return exitcode.UserErr(err)
				}
			}
			switch {
			case p.Kind == userdata.FwCfg:
				abs, err := filepath.Abs(out)
				if err != nil {
					return err
				}
				fmt.Fprintln(stdout, strings.Join(userdata.FwCfgArgs(c.Spec.Cluster.OS, abs), " "))
			case out == "":
				if _, err := stdout.Write(d.Output()); err != nil {
					return err
				}
			}
			limit := "no limit"
			if p.Limit > 0 {
				limit = fmt.Sprintf("limit %d", p.Limit)
			}
			fmt.Fprintf(stderr, "%s: %s, %s config of %d bytes (%s; node config %d bytes)\n", node.Name, p.Name, d.Mode, d.Size, limit, len(node.Ignition))
			if d.Mode == userdata.Pointer {
				fmt.Fprintf(stderr, "serve %s at %s before the machine boots\n", pointerOut, pointerURL)
			}
			if out != "" && p.Kind != userdata.FwCfg {
				fmt.Fprintf(stderr, "use it: "+p.Usage+"\n", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "cluster.yaml", "the cluster spec")
	cmd.Flags().StringVar(&platform, "platform", "", "where the node boots: "+strings.Join(userdata.Names(), ", "))
	cmd.Flags().StringVar(&pkiDir, "pki", filepath.Join("out", "pki"), "the cluster's PKI folder (kiln render -o OUT keeps it in OUT/pki)")
	cmd.Flags().StringVar(&pointerURL, "pointer-url", "", "when the config does not fit even compressed: the URL it will be served at")
	cmd.Flags().StringVar(&pointerOut, "pointer-out", "", "with --pointer-url: where to write the full config to serve")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the output to this file (mode 0600) instead of standard output")
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	_ = cmd.MarkFlagRequired("platform")
	return cmd
}
