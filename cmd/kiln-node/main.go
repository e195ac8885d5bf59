// Command kiln-node is the node daemon shipped to every machine of a kiln cluster.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/node/version"
)

// commands holds kiln-node's subcommands; each file registers its own in init.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

// userError marks an error caused by the user's input: exit code 1 rather than 2.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }
func (e userError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kiln-node",
		Short:         "The kiln node daemon: machine registry, reboot coordination and unit scheduling through etcd",
		Example:       "  kiln-node run --config /etc/kiln/node.yaml",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return userError{err} })
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
	tuneMemory()
	root := newRootCmd()
	err := root.Execute()
	if err == nil {
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "kiln-node: %v\n", err)
	var ue userError
	if errors.As(err, &ue) {
		os.Exit(1)
	}
	os.Exit(2)
}
