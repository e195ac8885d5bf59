// Command kiln is the operator CLI: it turns one cluster spec into a booted cluster.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/version"
)

// commands holds the constructors of kiln's top-level subcommands; each file registers its own
// in init, so that adding a command touches one file.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

// errReported means the problems were already printed (a validation report): exit 1, print nothing more.
var errReported = errors.New("problems reported")

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Build self-updating clusters of Flatcar and Fedora CoreOS machines from one spec",
		Example: `  kiln init demo && kiln validate -f demo/cluster.yaml
  kiln render -f demo/cluster.yaml -o out`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.UserErr(err) })
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes kiln with args and returns the exit code: 0 ok, 1 user error, 2 internal error.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errReported), errors.Is(err, deliver.ErrReported):
		return 1
	}
	fmt.Fprintf(stderr, "kiln: %v\n", err)
	if strings.HasPrefix(err.Error(), "unknown command") {
		return exitcode.User
	}
	return exitcode.Of(err, pki.ErrNoPKI, deliver.ErrNoNode, up.ErrConfig)
}

// args wraps a cobra positional-argument check so that its failure is a user error (exit 1).
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error { return exitcode.UserErr(check(cmd, a)) }
}
