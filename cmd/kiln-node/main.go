// Command kiln-node is the node daemon shipped to every machine of a kiln cluster.
//
// Its few subcommands are parsed with the standard library's flag package rather than the
// cobra CLI of kiln: kiln-node's resident memory is mostly the pages of its own binary, and
// cobra, pflag and the text/template they bring cost about 0.3 MB of it on every machine.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kiln-cluster/kiln/node/version"
)

// command is one of kiln-node's subcommands.
type command struct {
	name, short, long, example string
	flags                      *flag.FlagSet
	hidden                     map[string]bool // flags left out of --help
	run                        func(stdout, stderr io.Writer) error
}

// commands holds kiln-node's subcommands; each file registers its own in init.
var commands []func() *command

func register(c func() *command) { commands = append(commands, c) }

// userError marks an error caused by the user's input: exit code 1 rather than 2.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }
func (e userError) Unwrap() error { return e.err }

func userErrOf(err error) error {
	if err == nil {
		return nil
	}
	return userError{err}
}

const rootShort = "The kiln node daemon: machine registry, reboot coordination and unit scheduling through etcd"

func allCommands() []*command {
	cmds := []*command{{
		name: "version", short: "Print kiln-node's version", example: "  kiln-node version",
		flags: flag.NewFlagSet("version", flag.ContinueOnError),
		run: func(stdout, _ io.Writer) error {
			_, err := fmt.Fprintln(stdout, version.Version)
			return err
		},
	}}
	for _, c := range commands {
		cmds = append(cmds, c())
	}
	return cmds
}

// execute runs the subcommand that args name, with its flags.
func execute(args []string, stdout, stderr io.Writer) error {
	cmds := allCommands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 2 { // kiln-node help run
			args = []string{args[1], "--help"}
		} else {
			rootUsage(stdout, cmds)
			return nil
		}
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		c.flags.SetOutput(io.Discard)
		if err := c.flags.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(stdout)
				return nil
			}
			return userError{err}
		}
		if c.flags.NArg() > 0 {
			return userError{fmt.Errorf("unknown argument %q for \"kiln-node %s\"", c.flags.Arg(0), c.name)}
		}
		return c.run(stdout, stderr)
	}
	return userError{fmt.Errorf("unknown command %q for \"kiln-node\" (kiln-node --help lists them)", args[0])}
}

func rootUsage(w io.Writer, cmds []*command) {
	fmt.Fprintf(w, "%s\n\nUsage:\n  kiln-node [command]\n\nExamples:\n  kiln-node run --config /etc/kiln/node.yaml\n\nCommands:\n", rootShort)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nUse \"kiln-node [command] --help\" for more about a command.")
}

func (c *command) usage(w io.Writer) {
	text := c.long
	if text == "" {
		text = c.short
	}
	fmt.Fprintf(w, "%s\n\nUsage:\n  kiln-node %s [flags]\n\nExamples:\n%s\n", text, c.name, c.example)
	var b strings.Builder
	c.flags.VisitAll(func(f *flag.Flag) {
		if c.hidden[f.Name] {
			return
		}
		typ, help := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "      --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(&b, " %s", typ)
		}
		fmt.Fprintf(&b, "\n          %s", help)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	if b.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", b.String())
	}
}

func main() {
	tuneMemory()
	err := execute(os.Args[1:], os.Stdout, os.Stderr)
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
