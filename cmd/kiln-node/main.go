// Command kiln-node is the node daemon shipped to every machine of a kiln cluster.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/version"
)

// commands holds kiln-node's subcommands; each file registers its own in init.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kiln-node",
		Short:         "The kiln node daemon: machine registry, reboot coordination and unit scheduling through etcd",
		Example:       "  kiln-node run --config /etc/kiln/node.json",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.UserErr(err) })
	root.AddCommand(&cobra.Command{
		Use:     "version",
		Short:   "Print kiln-node's version",
		Example: "  kiln-node version",
		Args:    cobra.NoArgs,
		Run:     func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version.Version) },
	})
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

func main() {
	tuneRuntime()
	root := newRootCmd()
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kiln-node: %v\n", err)
	}
	os.Exit(exitcode.Of(err))
}
