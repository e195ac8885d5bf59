package main

import "github.com/spf13/cobra"

func init() { register(newImagesCmd) }

// imagesCommands holds the constructors of `kiln images` subcommands; each file registers its
// own (list, pull, verify, prune in one file; build-node in another).
var imagesCommands []func() *cobra.Command

func registerImages(c func() *cobra.Command) { imagesCommands = append(imagesCommands, c) }

func newImagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "OS images per channel, and the node image of the docker driver",
		Example: `  kiln images list --os flatcar
  kiln images pull --os flatcar --channel stable --platform pxe`,
		Args: args(cobra.NoArgs),
	}
	for _, c := range imagesCommands {
		cmd.AddCommand(c())
	}
	return cmd
}
