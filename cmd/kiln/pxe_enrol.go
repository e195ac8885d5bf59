package main

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/pxe"
	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/enrol"
)

// defaultPKI is the PKI folder of kiln render -o out.
var defaultPKI = filepath.Join("out", "pki")

func newPXEEnrolmentsCmd() *cobra.Command {
	var pkiDir string
	cmd := &cobra.Command{
		Use:   "enrolments [NODE]",
		Short: "List the keys that asked the boot server to sign a node's certificates: pending, approved, refused",
		Long: `List the enrolments kiln pxe serve recorded in the PKI folder: each set of keys that claimed a
node, its fingerprint (the node's kiln-enrol.service logs the same), the address it came from,
and what became of it. A node with several entries was claimed by several machines: with the
policy first, the refused ones are the machines that pretended to be the node.`,
		Example: `  kiln pxe enrolments --pki out/pki
  kiln pxe enrolments node3`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := openPKI(pkiDir); err != nil {
				return err
			}
			node := ""
			if len(a) == 1 {
				node = a[0]
			}
			all, err := pxe.OpenEnrolments(pkiDir).List(node)
			if err != nil {
				return exitcode.UserErr(err)
			}
			printEnrolments(cmd.OutOrStdout(), all)
			return nil
		},
	}
	cmd.Flags().StringVar(&pkiDir, "pki", defaultPKI, "the cluster's PKI folder (where kiln pxe serve keeps the enrolments)")
	return cmd
}

// openPKI checks that pkiDir is the cluster's PKI (kiln render made it): the enrolments live in it.
func openPKI(pkiDir string) error {
	if _, err := pki.Open(pkiDir, "", nil, time.Now()); err != nil {
		return exitcode.UserErr(fmt.Errorf("--pki: %w", err))
	}
	return nil
}

func printEnrolments(w io.Writer, all []pxe.Enrolment) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tFINGERPRINT\tFROM\tREQUESTED\tDECIDED BY\tISSUED")
	for _, e := range all {
		issued := "-"
		if !e.Issued.IsZero() {
			issued = e.Issued.Local().Format(time.DateTime)
		}
		by := e.DecidedBy
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Node, e.Status, e.Fingerprint, e.Remote,
			e.Requested.Local().Format(time.DateTime), by, issued)
	}
	tw.Flush()
}

// newPXEDecideCmd is kiln pxe approve (approve true) or kiln pxe refuse.
func newPXEDecideCmd(approve bool) *cobra.Command {
	var pkiDir, fp, reason string
	verb, status := "approve", enrol.StatusApproved
	short := "Have the boot server sign a node's pending keys (the node then gets its certificates)"
	if !approve {
		verb, status = "refuse", enrol.StatusRefused
		short = "Refuse a node's keys: the boot server never signs them"
	}
	cmd := &cobra.Command{
		Use:   verb + " NODE",
		Short: short,
		Long: short + `.

The keys are the node's only pending ones, or those whose fingerprint starts with --fingerprint
(8 digits at least; kiln pxe enrolments lists them, the node's kiln-enrol.service logs its own).
Compare the fingerprint and the address with the machine's before approving: whoever can reach
the boot server can ask in any node's name. The decision is written into the PKI folder, where
kiln pxe serve reads it at the node's next request.`,
		Example: "  kiln pxe " + verb + " node3 --pki out/pki\n  kiln pxe " + verb + " node3 --fingerprint 3f2a9c01",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := openPKI(pkiDir); err != nil {
				return err
			}
			e, err := pxe.OpenEnrolments(pkiDir).Decide(a[0], fp, status, "operator", reason)
			if err != nil {
				return exitcode.UserErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: keys %s from %s (asked %s)\n", e.Status, e.Node, e.Fingerprint, e.Remote,
				e.Requested.Local().Format(time.DateTime))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&pkiDir, "pki", defaultPKI, "the cluster's PKI folder (where kiln pxe serve keeps the enrolments)")
	f.StringVar(&fp, "fingerprint", "", "the keys' fingerprint, or its first 8 digits or more (needed when several are pending)")
	f.StringVar(&reason, "reason", "", "a note kept with the decision")
	return cmd
}
