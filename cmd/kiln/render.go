package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
)

func init() {
	register(newValidateCmd)
	register(newRenderCmd)
}

// deliverOptions are the options every delivery command compiles its spec with, printing the
// spec's problems to w.
func deliverOptions(file, pkiDir string, strict bool, w io.Writer) deliver.Options {
	return deliver.Options{Spec: file, PKIDir: pkiDir, Strict: strict, Problems: w}
}

func newValidateCmd() *cobra.Command {
	var file string
	var strict bool
	cmd := &cobra.Command{
		Use:   "validate -f SPEC",
		Short: "Report every problem of a cluster spec, with file:line:col",
		Long: `Validate reads a cluster spec and the unit files and Butane snippets it names, and prints
every problem it finds like a compiler does. It exits 0 when there is no error, 1 otherwise.`,
		Example: "  kiln validate -f configs/examples/demo.yaml\n  kiln validate --strict -f cluster.yaml   # warnings fail too",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := deliver.Validate(deliverOptions(file, "", strict, cmd.ErrOrStderr())); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", file)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "cluster.yaml", "the cluster spec")
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}

func newRenderCmd() *cobra.Command {
	var file, out string
	var strict bool
	cmd := &cobra.Command{
		Use:   "render -f SPEC -o OUT",
		Short: "Write every node's Butane and Ignition config, and the cluster's PKI",
		Long: `Render writes OUT/<node>/config.bu and OUT/<node>/config.ign for every node, and the cluster's
certificates in OUT/pki (made on the first render, reused after). OUT is replaced in one step: a
render that fails leaves it as it was. The same spec and PKI give byte-identical files.`,
		Example: "  kiln render -f configs/examples/demo.yaml -o out",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := compileForRender(file, out, strict, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			current, _, err := writeRendered(c, out)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			nodes := c.Nodes
			for _, n := range nodes {
				fmt.Fprintf(w, "%s/%s/config.ign\t%d bytes\n", out, n.Name, len(n.Ignition))
			}
			fmt.Fprintf(w, "%s/pki\tCA and certificates for %d nodes\n", out, len(nodes))
			fmt.Fprintf(w, "%s\tcurrent context for kiln ctl\n", current)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "cluster.yaml", "the cluster spec")
	cmd.Flags().StringVarP(&out, "output", "o", "out", "the output folder")
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}

// compileForRender compiles the spec with the PKI of out/pki, made when it is missing: what kiln
// render and kiln up (into its state folder) share. Not Prepare: the PKI is written with the
// configs, in one step, by writeRendered.
func compileForRender(file, out string, strict bool, w io.Writer) (*render.Compiled, error) {
	o := deliverOptions(file, filepath.Join(out, "pki"), strict, w)
	o.CreatePKI = true
	return deliver.Compile(o)
}

// writeRendered writes the compiled cluster into out (as kiln render does) with its context in
// out/pki, and makes that context current for kiln ctl. It returns where the current context is.
func writeRendered(c *render.Compiled, out string) (string, *clusterctx.Context, error) {
	ctx, err := deliver.Context(c.Spec, out)
	if err != nil {
		return "", nil, err
	}
	raw, err := yaml.Marshal(ctx)
	if err != nil {
		return "", nil, err
	}
	if err := render.Write(out, c.Nodes, c.PKI, map[string][]byte{"pki/" + clusterctx.ContextFile: raw}); err != nil {
		return "", nil, exitcode.UserErr(err)
	}
	// kiln ctl now talks to this cluster with no flags.
	current, err := clusterctx.WriteCurrentContext(ctx)
	return current, ctx, err
}
