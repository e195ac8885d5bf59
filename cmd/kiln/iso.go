package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/images/iso"
	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/internal/inputfile"
)

func init() { register(newISOCmd) }

func newISOCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "iso",
		Short: "Embed Ignition configs and kernel arguments in Fedora CoreOS and Flatcar live ISOs",
		Long: `Embed an Ignition config in a live ISO, or change its kernel arguments, in the format of
coreos-installer's "iso ignition" and "iso kargs" commands: the ISO boots and applies the config
with no network and no typing. The image is changed in place, or written to -o OUT; a symlink is
followed (its target written, the link kept). A new file is 0600, since a config may hold
secrets; an existing one keeps its owner and mode. Either way a failure or crash leaves the file
as it was: a temporary copy is renamed over the target, except for an image changed in place
that has other hard links, which is patched in place (a rename would cut it off from them) with
the bytes it changes saved first in an undo journal beside it (.NAME.kiln-undo); the next
change rolls an interrupted one back.`,
		Example: `  kiln iso embed -i out/node1/config.ign fedora-coreos-live.x86_64.iso
  kiln iso show fedora-coreos-live.x86_64.iso
  kiln iso kargs modify --append console=ttyS0 -o serial.iso fedora-coreos-live.x86_64.iso`,
	}
	ign := &cobra.Command{
		Use:     "ignition",
		Short:   "The embed, show and remove commands under coreos-installer's names",
		Example: `  kiln iso ignition embed -i config.ign live.iso`,
	}
	ign.AddCommand(newISOEmbedCmd(), newISOShowCmd(), newISORemoveCmd())
	cmd.AddCommand(newISOEmbedCmd(), newISOShowCmd(), newISORemoveCmd(), ign, newISOKargsCmd())
	return cmd
}

func newISOEmbedCmd() *cobra.Command {
	var in, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "embed [-i CONFIG] [-o OUT] [--force] ISO",
		Short: "Embed an Ignition config (from -i or standard input) in a live ISO",
		Example: `  kiln iso embed -i out/node1/config.ign live.iso
  kiln iso embed --force -o node1.iso < out/node1/config.ign live.iso`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var cfg []byte
			var err error
			if in == "" || in == "-" {
				cfg, err = inputfile.ReadFrom(cmd.InOrStdin(), "standard input", inputfile.ConfigLimit)
			} else {
				cfg, err = inputfile.Read(in, inputfile.ConfigLimit)
			}
			if err != nil {
				return exitcode.UserErr(fmt.Errorf("reading the config: %w", err))
			}
			o, err := output(cmd, out)
			if err != nil {
				return err
			}
			o.Force = force
			return isoErr(iso.Embed(a[0], cfg, o))
		},
	}
	cmd.Flags().StringVarP(&in, "ignition-file", "i", "", "the Ignition config to embed (default: standard input)")
	cmd.Flags().StringVarP(&out, "output", "o", "", `write the result here instead of over the input ("-": standard output)`)
	cmd.Flags().BoolVar(&force, "force", false, "replace a config that is already embedded")
	return cmd
}

func newISOShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show ISO",
		Short:   "Print the Ignition config embedded in a live ISO",
		Example: `  kiln iso show live.iso > embedded.ign`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			cfg, err := iso.Show(a[0])
			if err != nil {
				return isoErr(err)
			}
			_, err = cmd.OutOrStdout().Write(cfg)
			return err
		},
	}
}

func newISORemoveCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:     "remove [-o OUT] ISO",
		Short:   "Remove the embedded Ignition config, giving back the original image",
		Example: `  kiln iso remove live.iso`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			o, err := output(cmd, out)
			if err != nil {
				return err
			}
			return isoErr(iso.Remove(a[0], o))
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", `write the result here instead of over the input ("-": standard output)`)
	return cmd
}

func newISOKargsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kargs",
		Short: "Show or change the kernel arguments a live ISO boots with",
		Example: `  kiln iso kargs show live.iso
  kiln iso kargs modify -a console=ttyS0,115200n8 -d quiet live.iso`,
	}
	var def bool
	show := &cobra.Command{
		Use:     "show [--default] ISO",
		Short:   "Print the kernel arguments (or, with --default, the ones the image was built with)",
		Example: `  kiln iso kargs show --default live.iso`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			k, err := iso.ShowKargs(a[0], def)
			if err != nil {
				return isoErr(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k)
			return nil
		},
	}
	show.Flags().BoolVarP(&def, "default", "d", false, "print the image's default kernel arguments")

	var edit iso.KargsEdit
	var out string
	modify := &cobra.Command{
		Use:   "modify [-a ARG] [-d ARG] [-r KEY=OLD=NEW] [--reset] [-o OUT] ISO",
		Short: "Change the kernel arguments: reset, then delete, append, replace",
		Example: `  kiln iso kargs modify -a console=ttyS0 -r mitigations=auto,nosmt=off live.iso
  kiln iso kargs modify --reset -o pristine.iso live.iso`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			o, err := output(cmd, out)
			if err != nil {
				return err
			}
			_, err = iso.ModifyKargs(a[0], edit, o)
			return isoErr(err)
		},
	}
	modify.Flags().StringArrayVarP(&edit.Append, "append", "a", nil, "add a kernel argument (repeatable)")
	modify.Flags().StringArrayVarP(&edit.Delete, "delete", "d", nil, "delete a kernel argument (repeatable)")
	modify.Flags().StringArrayVarP(&edit.Replace, "replace", "r", nil, "change KEY=OLD into KEY=NEW, written KEY=OLD=NEW (repeatable)")
	modify.Flags().BoolVar(&edit.Reset, "reset", false, "start from the image's default kernel arguments")
	modify.Flags().StringVarP(&out, "output", "o", "", `write the result here instead of over the input ("-": standard output)`)

	var resetOut string
	reset := &cobra.Command{
		Use:     "reset [-o OUT] ISO",
		Short:   "Put back the kernel arguments the image was built with",
		Example: `  kiln iso kargs reset live.iso`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			o, err := output(cmd, resetOut)
			if err != nil {
				return err
			}
			_, err = iso.ModifyKargs(a[0], iso.KargsEdit{Reset: true}, o)
			return isoErr(err)
		},
	}
	reset.Flags().StringVarP(&resetOut, "output", "o", "", `write the result here instead of over the input ("-": standard output)`)

	cmd.AddCommand(show, modify, reset)
	return cmd
}

// output checks -o: an image is not written to a terminal.
func output(cmd *cobra.Command, out string) (iso.Options, error) {
	o := iso.Options{Output: out, Stdout: cmd.OutOrStdout()}
	if f, ok := o.Stdout.(*os.File); ok && out == "-" {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return o, exitcode.UserErr(errors.New("refusing to write an iso image to a terminal"))
		}
	}
	return o, nil
}

// isoErr marks the errors caused by the user's input (the image, the config, the flags) as user
// errors; the rest (failed writes) stay internal.
func isoErr(err error) error {
	for _, e := range []error{
		iso.ErrNotLiveISO, iso.ErrNoConfig, iso.ErrConfigExists, iso.ErrTooLarge, iso.ErrInvalidConfig,
		iso.ErrNoKargs, iso.ErrKargsTooLarge, iso.ErrKargsMismatch, iso.ErrBadReplace, iso.ErrBadArea,
		iso.ErrBadInitrd, iso.ErrNotImage, fs.ErrNotExist, fs.ErrPermission,
	} {
		if errors.Is(err, e) {
			return exitcode.UserErr(err)
		}
	}
	return err
}
