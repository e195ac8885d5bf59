package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
	"github.com/kiln-cluster/kiln/node/config"
	"github.com/kiln-cluster/kiln/node/version"
)

func init() {
	register(newValidateCmd)
	register(newRenderCmd)
}

// loadSpec reads, defaults and validates a spec, printing its problems to w. It returns
// errReported when there are errors (or, when strict, warnings).
func loadSpec(path string, strict bool, w io.Writer) (*spec.Spec, error) {
	s, rep := spec.Load(path)
	if s != nil {
		s.Defaults(version.Version)
		if s.Cluster.KilnNode.SHA512 == "" && s.Cluster.KilnNode.File == "" {
			s.Cluster.KilnNode.File = siblingKilnNode()
		}
		rep.Merge(s.Validate())
	}
	rep.Print(w, strict)
	if s == nil || rep.HasErrors(strict) {
		return nil, errReported
	}
	return s, nil
}

// compile turns the spec at path into every node's configs with the PKI kept in pkiDir,
// printing the spec's problems to w (errReported when there are errors). Only render passes
// create: the other commands refuse a pkiDir with no CA (pki.ErrNoPKI, a user error).
func compile(path, pkiDir string, create, strict bool, w io.Writer) (*render.Compiled, error) {
	c, rep, err := render.Compile(path, render.CompileOptions{
		PKIDir:       pkiDir,
		CreatePKI:    create,
		KilnVersion:  version.Version,
		KilnNodeFile: siblingKilnNode(),
		Strict:       strict,
	})
	rep.Print(w, strict)
	switch {
	case errors.Is(err, render.ErrSpec), errors.Is(err, render.ErrInvalid):
		return nil, errReported
	case errors.Is(err, pki.ErrNoPKI):
		return nil, userErr(err)
	case err != nil:
		return nil, err
	}
	return c, nil
}

// siblingKilnNode is the kiln-node binary installed beside kiln, hashed for Ignition's
// verification when the spec gives no hash; "" when there is none.
func siblingKilnNode() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "kiln-node")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
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
			if _, err := loadSpec(file, strict, cmd.ErrOrStderr()); err != nil {
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
			c, err := compile(file, filepath.Join(out, "pki"), true, strict, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, err := clusterContext(c.Spec, out)
			if err != nil {
				return err
			}
			raw, err := yaml.Marshal(ctx)
			if err != nil {
				return err
			}
			if err := render.Write(out, c.Nodes, c.PKI, map[string][]byte{"pki/" + config.ContextFile: raw}); err != nil {
				return userErr(err)
			}
			// kiln ctl now talks to this cluster with no flags.
			current, err := config.WriteCurrentContext(ctx)
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
