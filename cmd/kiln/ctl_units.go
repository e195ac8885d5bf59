package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/ctl"
	"github.com/kiln-cluster/kiln/node/unit"
)

// kiln ctl's unit commands, with fleetctl's habits: units by name or by the path of their file,
// several at once (kiln ctl start my-app@{1..3}.service).
func init() {
	registerCtl(newCtlSubmitCmd)
	registerCtl(func() *cobra.Command {
		return newCtlStateCmd("load UNIT|FILE...", "Place units on machines without starting them (desired state loaded)", unit.StateLoaded,
			"  kiln ctl load my-app@1.service\n  kiln ctl load ./units/web.service")
	})
	registerCtl(func() *cobra.Command {
		return newCtlStateCmd("start UNIT|FILE...", "Place and start units (desired state launched); a file is submitted first", unit.StateLaunched,
			"  kiln ctl submit ./units/my-app@.service\n  kiln ctl start my-app@{1..2}.service\n  kiln ctl start --wait 30s ./units/web.service")
	})
	registerCtl(func() *cobra.Command {
		return newCtlStateCmd("stop UNIT...", "Stop units, leaving them loaded on their machines (desired state loaded)", unit.StateLoaded,
			"  kiln ctl stop my-app@1.service my-app@2.service")
	})
	registerCtl(func() *cobra.Command {
		return newCtlStateCmd("unload UNIT...", "Take units off their machines, keeping them submitted (desired state inactive)", unit.StateInactive,
			"  kiln ctl unload my-app@1.service")
	})
	registerCtl(newCtlDestroyCmd)
	registerCtl(newCtlListUnitsCmd)
	registerCtl(newCtlListUnitFilesCmd)
	registerCtl(newCtlStatusCmd)
	registerCtl(newCtlJournalCmd)
	registerCtl(newCtlCatCmd)
}

// withUnits reads and parses the units named on the command line (needFile: each must come with
// its file) before etcd is contacted, so that a bad file is reported first, then runs f with a
// connected client.
func withUnits(needFile bool, f func(cmd *cobra.Command, files []ctl.File, c *ctl.Client, ctx context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, a []string) error {
		files, err := ctl.ReadUnitArgs(a, needFile)
		if err != nil {
			return exitcode.UserErr(err)
		}
		return withClient(func(cmd *cobra.Command, _ []string, c *ctl.Client, ctx context.Context) error {
			return f(cmd, files, c, ctx)
		})(cmd, a)
	}
}

func printResults(w io.Writer, results []ctl.Result, verb string) error {
	if ctlJSON() {
		return printJSON(w, results)
	}
	for _, r := range results {
		if r.Unit == "" {
			continue
		}
		if r.Changed {
			fmt.Fprintf(w, "%s %s\n", r.Unit, verb)
		} else {
			fmt.Fprintf(w, "%s unchanged (%s)\n", r.Unit, r.State)
		}
	}
	return nil
}

func newCtlSubmitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "submit FILE...",
		Short: "Submit unit files to the cluster (inactive: known, placed nowhere)",
		Long: `Submit unit files. Each file's name is its unit's name; the text is stored once under the hash of
its canonical form. Submitting the same file again changes nothing; other contents under a known
name are refused (destroy the unit first). A template (name@.service) is submitted once and its
instances are started by name.`,
		Example: "  kiln ctl submit ./units/my-app@.service ./units/log-agent.service",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: withUnits(true, func(cmd *cobra.Command, files []ctl.File, c *ctl.Client, ctx context.Context) error {
			results, err := c.Submit(ctx, files)
			if perr := printResults(cmd.OutOrStdout(), results, "submitted"); perr != nil {
				return perr
			}
			return err
		}),
	}
}

func newCtlStateCmd(use, short string, state unit.State, example string) *cobra.Command {
	verbs := map[unit.State]string{unit.StateInactive: "unloaded", unit.StateLoaded: "loaded", unit.StateLaunched: "launched"}
	var wait time.Duration
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: withUnits(false, func(cmd *cobra.Command, files []ctl.File, c *ctl.Client, ctx context.Context) error {
			results, err := c.SetState(ctx, files, state)
			if perr := printResults(cmd.OutOrStdout(), results, verbs[state]); perr != nil {
				return perr
			}
			if err != nil || wait <= 0 {
				return err
			}
			names := make([]string, len(files))
			for i, f := range files {
				names[i] = f.Name
			}
			// --wait, not --timeout, bounds the wait.
			wctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			if err := c.Wait(wctx, names); errors.Is(err, ctl.ErrNotReached) {
				return fmt.Errorf("after %s: %w", wait, err)
			} else if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d units reported as asked\n", len(names))
			return nil
		}),
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the machines to report the units in the state (0: do not wait)")
	return cmd
}

func newCtlDestroyCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "destroy UNIT...",
		Short:   "Remove units from the cluster: they stop and leave their machines",
		Example: "  kiln ctl destroy my-app@1.service my-app@2.service",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: withClient(func(cmd *cobra.Command, a []string, c *ctl.Client, ctx context.Context) error {
			results, err := c.Destroy(ctx, a)
			if perr := printResults(cmd.OutOrStdout(), results, "destroyed"); perr != nil {
				return perr
			}
			return err
		}),
	}
}

func reportCols(p ctl.Placement) (string, string) {
	if p.Report == nil {
		return "-", "-"
	}
	return orDash(p.Report.ActiveState), orDash(p.Report.SubState)
}

func newCtlListUnitsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list-units",
		Aliases: []string{"units"},
		Short:   "List the units, where they are placed and what their machines report",
		Long: `List the units: one line per unit and machine, with the state the operator wants (DESIRED), the
state placed on the machine (STATE) and what its agent reports (ACTIVE, SUB). A unit that fits
on no machine shows "unplaced"; kiln ctl status UNIT says why.`,
		Example: "  kiln ctl list-units\n  kiln ctl list-units -o json",
		Args:    args(cobra.NoArgs),
		RunE: withClient(func(cmd *cobra.Command, _ []string, c *ctl.Client, ctx context.Context) error {
			units, err := c.Units(ctx)
			return listing(cmd, units, err, func(units []ctl.UnitStatus) ([]string, [][]string) {
				var rows [][]string
				for _, u := range units {
					if n, err := unit.ParseName(u.Name); err == nil && n.IsTemplate() {
						continue // templates run only as instances
					}
					if len(u.Placements) == 0 {
						active := "-"
						if u.Unplaced != "" {
							active = "unplaced"
						}
						rows = append(rows, []string{u.Name, "-", string(u.DesiredState), string(u.State), active, "-"})
					}
					for _, p := range u.Placements {
						active, sub := reportCols(p)
						rows = append(rows, []string{u.Name, shortID(p.Machine), string(u.DesiredState), string(p.State), active, sub})
					}
				}
				return []string{"UNIT", "MACHINE", "DESIRED", "STATE", "ACTIVE", "SUB"}, rows
			})
		}),
	}
}

func newCtlListUnitFilesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list-unit-files",
		Short:   "List the submitted units with their file's hash, desired and current state",
		Example: "  kiln ctl list-unit-files\n  kiln ctl list-unit-files -o json",
		Args:    args(cobra.NoArgs),
		RunE: withClient(func(cmd *cobra.Command, _ []string, c *ctl.Client, ctx context.Context) error {
			files, err := c.UnitFiles(ctx)
			return listing(cmd, files, err, func(files []ctl.UnitFile) ([]string, [][]string) {
				var rows [][]string
				for _, r := range files {
					var target []string
					for _, m := range r.Target {
						target = append(target, shortID(m))
					}
					rows = append(rows, []string{r.Name, r.Hash.Short(), string(r.DesiredState), string(r.State), orDash(strings.Join(target, ","))})
				}
				return []string{"UNIT", "HASH", "DSTATE", "STATE", "TARGET"}, rows
			})
		}),
	}
}

func newCtlStatusCmd() *cobra.Command {
	var lines int
	cmd := &cobra.Command{
		Use:   "status UNIT",
		Short: "Show a unit: desired state, placement, what its machine reports, why it is unplaced, its last log lines",
		Example: `  kiln ctl status my-app@1.service
  kiln ctl status my-app@1.service --lines 0 -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: withClient(func(cmd *cobra.Command, a []string, c *ctl.Client, ctx context.Context) error {
			u, err := c.Unit(ctx, a[0], lines)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if ctlJSON() {
				return printJSON(w, u)
			}
			fmt.Fprintf(w, "● %s\n", u.Name)
			fmt.Fprintf(w, "   Desired: %s\n", u.DesiredState)
			if !u.Hash.IsZero() {
				fmt.Fprintf(w, "      Hash: %s\n", u.Hash.Short())
			}
			if u.Unplaced != "" {
				fmt.Fprintf(w, "  Unplaced: %s\n", u.Unplaced)
			}
			if len(u.Placements) == 0 && u.Unplaced == "" {
				fmt.Fprintf(w, "   Machine: -\n")
			}
			for _, p := range u.Placements {
				fmt.Fprintf(w, "   Machine: %s (%s)\n", p.Machine, p.State)
				if r := p.Report; r != nil {
					since := ""
					if !r.Since.IsZero() {
						since = " since " + r.Since.Format(time.RFC3339) + "; " + ago(r.Since)
					}
					fmt.Fprintf(w, "    Loaded: %s\n    Active: %s (%s)%s\n", r.LoadState, r.ActiveState, r.SubState, since)
					if r.Error != "" {
						fmt.Fprintf(w, "     Error: %s\n", r.Error)
					}
				} else {
					fmt.Fprintf(w, "    Active: - (no report from the machine yet)\n")
				}
			}
			for _, l := range u.Logs {
				fmt.Fprintln(w)
				if l.Error != "" {
					fmt.Fprintf(w, "(log of %s: %s)\n", l.Machine, l.Error)
				}
				for _, line := range l.Lines {
					fmt.Fprintln(w, line)
				}
			}
			return nil
		}),
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 10, "log lines to show from each machine (0: none)")
	return cmd
}

func newCtlJournalCmd() *cobra.Command {
	var lines int
	var machine string
	cmd := &cobra.Command{
		Use:   "journal UNIT",
		Short: "Print a unit's last log lines, read on the machine that runs it",
		Long: `Print a unit's last log lines. The request goes through etcd to the kiln-node of the machine the
unit is placed on, which reads systemd's journal (or the exec executor's log) and answers through
etcd; nothing else is opened. A global unit runs on several machines: name one with --machine, or
get every machine's lines one after the other.`,
		Example: `  kiln ctl journal my-app@1.service
  kiln ctl journal log-agent.service --machine node2 --lines 50`,
		Args: args(cobra.ExactArgs(1)),
		RunE: withClient(func(cmd *cobra.Command, a []string, c *ctl.Client, ctx context.Context) error {
			all, err := c.Journal(ctx, a[0], machine, lines)
			if all == nil {
				return err
			}
			w := cmd.OutOrStdout()
			if ctlJSON() {
				if err := printJSON(w, all); err != nil {
					return err
				}
			} else {
				for _, o := range all {
					if len(all) > 1 {
						fmt.Fprintf(w, "-- %s --\n", o.Machine)
					}
					for _, line := range o.Lines {
						fmt.Fprintln(w, line)
					}
				}
			}
			return err
		}),
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 10, "number of lines (at most 1000)")
	cmd.Flags().StringVar(&machine, "machine", "", "the machine to read from (a global unit's)")
	return cmd
}

func newCtlCatCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "cat UNIT",
		Short:   "Print a submitted unit's file (its canonical text; an instance prints its template's)",
		Example: "  kiln ctl cat my-app@1.service",
		Args:    args(cobra.ExactArgs(1)),
		RunE: withClient(func(cmd *cobra.Command, a []string, c *ctl.Client, ctx context.Context) error {
			u, err := c.Cat(ctx, a[0])
			if err != nil {
				return err
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), u)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), u.Text)
			return err
		}),
	}
}
