package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/node/version"
)

func init() {
	register(func() *cobra.Command {
		return &cobra.Command{
			Use:     "version",
			Short:   "Print kiln's version",
			Example: "  kiln version",
			Args:    args(cobra.NoArgs),
			Run:     func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version.Version) },
		}
	})
}
