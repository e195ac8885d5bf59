package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/configs"
	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func init() { register(newInitCmd) }

func newInitCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Write a commented example cluster spec, with its units and snippets, into DIR",
		Example: `  kiln init demo
  kiln validate -f demo/cluster.yaml && kiln render -f demo/cluster.yaml -o demo/out`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dir := a[0]
			var written []string
			err := fs.WalkDir(configs.Examples, "examples", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel := strings.TrimPrefix(p, "examples/")
				if rel == "demo.yaml" {
					rel = "cluster.yaml"
				} else if strings.HasSuffix(rel, ".yaml") {
					return nil // other examples stay in the repository
				}
				dst := filepath.Join(dir, rel)
				if _, err := os.Stat(dst); err == nil && !force {
					return exitcode.UserErr(fmt.Errorf("%s exists: use --force to overwrite it", dst))
				}
				raw, err := configs.Examples.ReadFile(p)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return exitcode.UserErr(err)
				}
				written = append(written, dst)
				return os.WriteFile(dst, raw, 0o644)
			})
			if err != nil {
				return err
			}
			for _, w := range written {
				fmt.Fprintln(cmd.OutOrStdout(), w)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}
