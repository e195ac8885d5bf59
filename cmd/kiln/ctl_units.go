package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/engine"
	"github.com/kiln-cluster/kiln/node/journal"
	"github.com/kiln-cluster/kiln/node/registry"
	"github.com/kiln-cluster/kiln/node/submit"
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
	registerCtl(newCtlListMachinesCmd)
	registerCtl(newCtlStatusCmd)
	registerCtl(newCtlJournalCmd)
	registerCtl(newCtlCatCmd)
}

// unitArgs reads the arguments: an existing file is read (its base name is the unit's name);
// anything else is a unit name.
func unitArgs(a []string, needFile bool) ([]submit.File, error) {
	var files []submit.File
	var errs []error
	for _, arg := range a {
		st, err := os.Stat(arg)
		if err == nil && st.Mode().IsRegular() {
			text, err := os.ReadFile(arg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			files = append(files, submit.File{Name: filepath.Base(arg), Text: text})
			continue
		}
		if needFile || strings.Contains(arg, "/") {
			errs = append(errs, fmt.Errorf("%s: %w", arg, submit.ErrNoText))
			continue
		}
		arg = unit.Normalize(arg)
		if err := unit.ValidateName(arg); err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, submit.File{Name: arg})
	}
	return files, errors.Join(errs...)
}

// parseAll checks every file given with its text before anything is sent to etcd.
// withUnits reads and parses the units named on the command line (needFile: each must come with
// its file) before etcd is contacted, so that a bad file is reported first, then runs f with a
// connected client.
func withUnits(needFile bool, f func(cmd *cobra.Command, files []submit.File, cli *clientv3.Client, ctx context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, a []string) error {
		files, err := unitArgs(a, needFile)
		if err != nil {
			return userErr(err)
		}
		if err := parseAll(files); err != nil {
			return userErr(err)
		}
		return withEtcd(func(cmd *cobra.Command, _ []string, cli *clientv3.Client, ctx context.Context) error {
			return f(cmd, files, cli, ctx)
		})(cmd, a)
	}
}

func parseAll(files []submit.File) error {
	var errs []error
	for _, f := range files {
		if len(f.Text) == 0 {
			continue
		}
		if _, err := submit.Parse(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unitErr classifies an error of the submit package.
func unitErr(err error) error {
	if err == nil {
		return nil
	}
	if submit.IsUserError(err) {
		return userErr(err)
	}
	return err
}

func printResults(w io.Writer, results []submit.Result, verb string) error {
	if ctlJSON() {
		if results == nil {
			results = []submit.Result{}
		}
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
		RunE: withUnits(true, func(cmd *cobra.Command, files []submit.File, cli *clientv3.Client, ctx context.Context) error {
			results, err := submit.Submit(ctx, cli, files)
			if perr := printResults(cmd.OutOrStdout(), results, "submitted"); perr != nil {
				return perr
			}
			return unitErr(err)
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
		RunE: withUnits(false, func(cmd *cobra.Command, files []submit.File, cli *clientv3.Client, ctx context.Context) error {
			results, err := submit.SetState(ctx, cli, files, state)
			if perr := printResults(cmd.OutOrStdout(), results, verbs[state]); perr != nil {
				return perr
			}
			if err != nil || wait <= 0 {
				return unitErr(err)
			}
			var names []string
			for _, f := range files {
				names = append(names, f.Name)
			}
			return waitReached(cmd, cli, names, wait)
		}),
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the machines to report the units in the state (0: do not wait)")
	return cmd
}

// waitReached polls until every unit is as asked, one is stuck (unplaced, failed), or wait ends.
func waitReached(cmd *cobra.Command, cli *clientv3.Client, names []string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), wait)
	defer cancel()
	for {
		units, err := engine.Units(ctx, cli)
		if err != nil && ctx.Err() == nil {
			return err
		}
		byName := map[string]engine.UnitStatus{}
		for _, u := range units {
			byName[u.Name] = u
		}
		var pending, stuck []string
		for _, n := range names {
			done, problem := engine.Reached(byName[n])
			switch {
			case problem != "":
				stuck = append(stuck, n+": "+problem)
			case !done:
				pending = append(pending, n)
			}
		}
		if len(stuck) > 0 {
			return userErr(errors.New(strings.Join(stuck, "; ")))
		}
		if len(pending) == 0 {
			fmt.Fprintf(cmd.OutOrStdout(), "%d units reported as asked\n", len(names))
			return nil
		}
		select {
		case <-ctx.Done():
			return userErr(fmt.Errorf("not reported as asked after %s: %s", wait, strings.Join(pending, ", ")))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func newCtlDestroyCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "destroy UNIT...",
		Short:   "Remove units from the cluster: they stop and leave their machines",
		Example: "  kiln ctl destroy my-app@1.service my-app@2.service",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: withEtcd(func(cmd *cobra.Command, a []string, cli *clientv3.Client, ctx context.Context) error {
			results, err := submit.Destroy(ctx, cli, a)
			if perr := printResults(cmd.OutOrStdout(), results, "destroyed"); perr != nil {
				return perr
			}
			return unitErr(err)
		}),
	}
}

func reportCols(p engine.Placement) (string, string) {
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
		RunE: withEtcd(func(cmd *cobra.Command, _ []string, cli *clientv3.Client, ctx context.Context) error {
			units, err := engine.Units(ctx, cli)
			if err != nil {
				return err
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), units)
			}
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
			return printTable(cmd.OutOrStdout(), []string{"UNIT", "MACHINE", "DESIRED", "STATE", "ACTIVE", "SUB"}, rows)
		}),
	}
}

func newCtlListUnitFilesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list-unit-files",
		Short:   "List the submitted units with their file's hash, desired and current state",
		Example: "  kiln ctl list-unit-files\n  kiln ctl list-unit-files -o json",
		Args:    args(cobra.NoArgs),
		RunE: withEtcd(func(cmd *cobra.Command, _ []string, cli *clientv3.Client, ctx context.Context) error {
			units, err := engine.Units(ctx, cli)
			if err != nil {
				return err
			}
			type row struct {
				Name         string     `json:"name"`
				Hash         unit.Hash  `json:"hash"`
				DesiredState unit.State `json:"desiredState"`
				State        unit.State `json:"state"`
				Target       []string   `json:"target"`
			}
			out := []row{}
			for _, u := range units {
				if !u.Submitted {
					continue
				}
				r := row{Name: u.Name, Hash: u.Hash, DesiredState: u.DesiredState, State: u.State, Target: []string{}}
				for _, p := range u.Placements {
					r.Target = append(r.Target, p.Machine)
				}
				out = append(out, r)
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			var rows [][]string
			for _, r := range out {
				var target []string
				for _, m := range r.Target {
					target = append(target, shortID(m))
				}
				rows = append(rows, []string{r.Name, r.Hash.Short(), string(r.DesiredState), string(r.State), orDash(strings.Join(target, ","))})
			}
			return printTable(cmd.OutOrStdout(), []string{"UNIT", "HASH", "DSTATE", "STATE", "TARGET"}, rows)
		}),
	}
}

func newCtlListMachinesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list-machines",
		Short:   "List the machines with their metadata and the number of units placed on each",
		Example: "  kiln ctl list-machines\n  kiln ctl list-machines -o json",
		Args:    args(cobra.NoArgs),
		RunE: withEtcd(func(cmd *cobra.Command, _ []string, cli *clientv3.Client, ctx context.Context) error {
			machines, err := registry.List(ctx, cli)
			if err != nil {
				return err
			}
			counts, err := engine.MachineUnits(ctx, cli)
			if err != nil {
				return err
			}
			leader, _ := engine.Leader(ctx, cli)
			type row struct {
				ID       string            `json:"id"`
				IPs      []string          `json:"ips"`
				Metadata map[string]string `json:"metadata"`
				Units    int               `json:"units"`
				Engine   bool              `json:"engine"`
			}
			out := []row{}
			for _, m := range machines {
				out = append(out, row{ID: m.ID, IPs: m.IPs, Metadata: m.Metadata, Units: counts[m.ID], Engine: m.ID == leader})
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			var rows [][]string
			for _, r := range out {
				var meta []string
				for k, v := range r.Metadata {
					meta = append(meta, k+"="+v)
				}
				slices.Sort(meta)
				id := shortID(r.ID)
				if r.Engine {
					id += " (engine)"
				}
				rows = append(rows, []string{id, orDash(strings.Join(r.IPs, ",")), orDash(strings.Join(meta, ",")), fmt.Sprint(r.Units)})
			}
			return printTable(cmd.OutOrStdout(), []string{"MACHINE", "IP", "METADATA", "UNITS"}, rows)
		}),
	}
}

// findUnit returns the status of one unit, or a user error.
func findUnit(ctx context.Context, cli *clientv3.Client, name string) (*engine.UnitStatus, error) {
	name = unit.Normalize(name)
	units, err := engine.Units(ctx, cli)
	if err != nil {
		return nil, err
	}
	for i := range units {
		if units[i].Name == name {
			return &units[i], nil
		}
	}
	return nil, userErr(fmt.Errorf("%s: %w", name, submit.ErrNotFound))
}

func newCtlStatusCmd() *cobra.Command {
	var lines int
	cmd := &cobra.Command{
		Use:   "status UNIT",
		Short: "Show a unit: desired state, placement, what its machine reports, why it is unplaced, its last log lines",
		Example: `  kiln ctl status my-app@1.service
  kiln ctl status my-app@1.service --lines 0 -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: withEtcd(func(cmd *cobra.Command, a []string, cli *clientv3.Client, ctx context.Context) error {
			u, err := findUnit(ctx, cli, a[0])
			if err != nil {
				return err
			}
			type machineLog struct {
				Machine string   `json:"machine"`
				Lines   []string `json:"lines"`
				Error   string   `json:"error,omitempty"`
			}
			var logs []machineLog
			if lines > 0 {
				for _, p := range u.Placements {
					jctx, jcancel := context.WithTimeout(ctx, 3*time.Second)
					l, err := journal.Ask(jctx, cli, p.Machine, u.Name, lines)
					jcancel()
					ml := machineLog{Machine: p.Machine, Lines: l}
					if err != nil {
						ml.Error = err.Error()
					}
					logs = append(logs, ml)
				}
			}
			w := cmd.OutOrStdout()
			if ctlJSON() {
				return printJSON(w, struct {
					*engine.UnitStatus
					Logs []machineLog `json:"logs,omitempty"`
				}{u, logs})
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
			for _, l := range logs {
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
		RunE: withEtcd(func(cmd *cobra.Command, a []string, cli *clientv3.Client, ctx context.Context) error {
			u, err := findUnit(ctx, cli, a[0])
			if err != nil {
				return err
			}
			var machines []string
			for _, p := range u.Placements {
				if machine == "" || p.Machine == machine {
					machines = append(machines, p.Machine)
				}
			}
			if len(machines) == 0 {
				return userErr(fmt.Errorf("%s is not placed on %s", a[0], orDash(machine)))
			}
			type out struct {
				Machine string   `json:"machine"`
				Lines   []string `json:"lines"`
			}
			var all []out
			var errs []error
			for _, m := range machines {
				l, err := journal.Ask(ctx, cli, m, u.Name, lines)
				if err != nil {
					errs = append(errs, err)
				}
				all = append(all, out{Machine: m, Lines: l})
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
			return errors.Join(errs...)
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
		RunE: withEtcd(func(cmd *cobra.Command, a []string, cli *clientv3.Client, ctx context.Context) error {
			rec, _, err := submit.Get(ctx, cli, a[0])
			if err != nil {
				return err
			}
			if rec == nil {
				return userErr(fmt.Errorf("%s: %w", a[0], submit.ErrNotFound))
			}
			text, err := submit.FileText(ctx, cli, rec.Hash)
			if err != nil {
				return err
			}
			if ctlJSON() {
				return printJSON(cmd.OutOrStdout(), map[string]any{"name": rec.Name, "hash": rec.Hash, "text": string(text)})
			}
			_, err = cmd.OutOrStdout().Write(text)
			return err
		}),
	}
}
