package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/ctl"
)

// ctlCommands holds the subcommands of kiln ctl; a file adds its own with registerCtl in init.
var ctlCommands []func() *cobra.Command

func registerCtl(c func() *cobra.Command) { ctlCommands = append(ctlCommands, c) }

func init() {
	register(newCtlCmd)
	registerCtl(newCtlMachinesCmd)
	registerCtl(newCtlLocksCmd)
	registerCtl(newCtlUnlockCmd)
	registerCtl(newCtlRebootCmd)
}

// ctlFlags are kiln ctl's persistent flags, shared by every subcommand.
var ctlFlags struct {
	target  ctl.Target
	output  string
	timeout time.Duration
}

func newCtlCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Look at and act on a running cluster through its etcd",
		Long: `kiln ctl talks to the cluster's etcd with the operator's client certificate. It finds etcd from
--etcd-endpoints/--etcd-ca/--etcd-cert/--etcd-key, else from KILN_ETCD_ENDPOINTS, KILN_ETCD_CA,
KILN_ETCD_CERT and KILN_ETCD_KEY, else from the cluster context: --context, $KILN_CONTEXT, or the
current context that kiln render and kiln up write ($XDG_CONFIG_HOME/kiln/context.yaml).`,
		Example: `  kiln ctl machines
  kiln ctl locks -o json
  kiln ctl --context out/pki/context.yaml reboot node1`,
	}
	pf := cmd.PersistentFlags()
	pf.StringSliceVar(&ctlFlags.target.Endpoints, "etcd-endpoints", nil, "etcd client URLs (https://HOST:2379,...)")
	pf.StringVar(&ctlFlags.target.CA, "etcd-ca", "", "CA certificate of etcd's servers")
	pf.StringVar(&ctlFlags.target.Cert, "etcd-cert", "", "client certificate (the operator's)")
	pf.StringVar(&ctlFlags.target.Key, "etcd-key", "", "client key")
	pf.StringVar(&ctlFlags.target.ContextPath, "context", "", "cluster context file (default: $KILN_CONTEXT, else the current context)")
	pf.StringVarP(&ctlFlags.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&ctlFlags.timeout, "timeout", 10*time.Second, "give up on etcd after this long")
	for _, c := range ctlCommands {
		cmd.AddCommand(c())
	}
	return cmd
}

// ctlClient connects to the cluster's etcd as the flags, environment and context say, and
// returns a context bounded by --timeout. Close the client and call cancel when done.
func ctlClient(cmd *cobra.Command) (*ctl.Client, context.Context, context.CancelFunc, error) {
	if o := ctlFlags.output; o != "table" && o != "json" {
		return nil, nil, nil, exitcode.UserErr(fmt.Errorf("output %q: want table or json", o))
	}
	target, err := ctl.Resolve(ctlFlags.target, os.Getenv)
	if err != nil {
		return nil, nil, nil, exitcode.UserErr(err)
	}
	c, err := ctl.Dial(target)
	if err != nil {
		return nil, nil, nil, exitcode.UserErr(err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), ctlFlags.timeout)
	return c, ctx, cancel, nil
}

// withClient gives a command's body a connected client and a context bounded by --timeout,
// closing both when it returns; the client's user errors exit 1.
func withClient(f func(cmd *cobra.Command, args []string, c *ctl.Client, ctx context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, a []string) error {
		c, ctx, cancel, err := ctlClient(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		defer cancel()
		return ctlErr(f(cmd, a, c, ctx))
	}
}

// ctlErr marks the client's user errors (exit code 1).
func ctlErr(err error) error {
	if err != nil && exitcode.Of(err) != exitcode.User && ctl.IsUserError(err) {
		return exitcode.UserErr(err)
	}
	return err
}

// ctlJSON reports whether -o json was asked for.
func ctlJSON() bool { return ctlFlags.output == "json" }

// listing prints what a listing command read: v as JSON under -o json, else the table that
// table makes of it.
func listing[T any](cmd *cobra.Command, v T, err error, table func(T) (header []string, rows [][]string)) error {
	if err != nil {
		return err
	}
	if ctlJSON() {
		return printJSON(cmd.OutOrStdout(), v)
	}
	header, rows := table(v)
	return printTable(cmd.OutOrStdout(), header, rows)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes a header and rows, aligned.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func newCtlMachinesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "machines",
		Aliases: []string{"list-machines"},
		Short:   "List the machines in the registry: metadata, health, OS, units placed, reboot",
		Example: "  kiln ctl machines\n  kiln ctl machines -o json",
		Args:    args(cobra.NoArgs),
		RunE: withClient(func(cmd *cobra.Command, _ []string, c *ctl.Client, ctx context.Context) error {
			rows, err := c.Machines(ctx)
			return listing(cmd, rows, err, machinesTable)
		}),
	}
}

func machinesTable(rows []ctl.MachineRow) ([]string, [][]string) {
	var out [][]string
	for _, r := range rows {
		id := shortID(r.ID)
		if r.Engine {
			id += " (engine)"
		}
		reboot := orDash(r.Reboot)
		if r.RebootRequested && r.Reboot == "" {
			reboot = "requested"
		}
		if len(r.Holds) > 0 {
			reboot += " (holds " + strings.Join(r.Holds, ",") + ")"
		}
		out = append(out, []string{id, orDash(r.Hostname), orDash(strings.Join(r.IPs, ",")),
			orDash(metadata(r.Metadata)), r.Health, orDash(r.OS + " " + r.Channel),
			orDash(r.Version), fmt.Sprint(r.Units), ago(r.BootTime), reboot})
	}
	return []string{"MACHINE", "HOSTNAME", "IPS", "METADATA", "HEALTH", "OS", "VERSION", "UNITS", "BOOTED", "REBOOT"}, out
}

// metadata prints a machine's metadata as sorted key=value pairs.
func metadata(m map[string]string) string {
	var meta []string
	for k, v := range m {
		meta = append(meta, k+"="+v)
	}
	slices.Sort(meta)
	return strings.Join(meta, ",")
}

func newCtlLocksCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "locks",
		Short: "Show the reboot lock of every group: holders, since when, alive or not",
		Long: `Show the reboot lock of every group. A holder that is not alive (not in the registry) went down
to reboot and has not come back: it keeps its slot, which is the safe choice, until it returns
healthy or an operator runs kiln ctl unlock MACHINE.`,
		Example: "  kiln ctl locks\n  kiln ctl locks -o json",
		Args:    args(cobra.NoArgs),
		RunE: withClient(func(cmd *cobra.Command, _ []string, c *ctl.Client, ctx context.Context) error {
			rows, err := c.Locks(ctx)
			return listing(cmd, rows, err, func(rows []ctl.LockRow) ([]string, [][]string) {
				var out [][]string
				for _, r := range rows {
					alive := "-"
					if r.Holder != "" {
						alive = "no"
						if r.Alive {
							alive = "yes"
							if r.Rebooted {
								alive = "yes (rebooted)"
							}
						}
					}
					out = append(out, []string{r.Group, fmt.Sprintf("%d/%d", r.Max-r.Free, r.Max), orDash(r.Holder), ago(r.Since), alive})
				}
				return []string{"GROUP", "HELD", "HOLDER", "SINCE", "ALIVE"}, out
			})
		}),
	}
}

func newCtlUnlockCmd() *cobra.Command {
	var group string
	cmd := &cobra.Command{
		Use:   "unlock MACHINE",
		Short: "Free a machine's reboot slot (a holder that never came back)",
		Example: `  kiln ctl unlock 0f3c9a1e2b4d4c5e8f6a7b8c9d0e1f2a
  kiln ctl unlock node1 --group workers`,
		Args: args(cobra.ExactArgs(1)),
		RunE: withClient(func(cmd *cobra.Command, a []string, c *ctl.Client, ctx context.Context) error {
			u, err := c.Unlock(ctx, a[0], group)
			if err != nil {
				return err
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), u)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "freed %s's reboot slot in %s\n", u.Machine, strings.Join(u.Freed, ", "))
			return nil
		}),
	}
	cmd.Flags().StringVar(&group, "group", "", "only this group (default: every group the machine holds)")
	return cmd
}

func newCtlRebootCmd() *cobra.Command {
	var reason string
	var force bool
	cmd := &cobra.Command{
		Use:     "reboot MACHINE",
		Short:   "Ask a machine to reboot, through its reboot strategy (it waits for a slot)",
		Example: `  kiln ctl reboot node1 --reason "kernel parameters changed"`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: withClient(func(cmd *cobra.Command, a []string, c *ctl.Client, ctx context.Context) error {
			by := "kiln ctl"
			if u, err := user.Current(); err == nil {
				by = u.Username
			}
			r, err := c.RequestReboot(ctx, ctl.RebootRequest{Machine: a[0], By: by, Reason: reason, Force: force})
			if err != nil {
				return err
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "asked %s to reboot; it reboots when its reboot lock allows\n", a[0])
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown in the machine's log")
	cmd.Flags().BoolVar(&force, "force", false, "ask even if the machine is not in the registry now")
	return cmd
}
