package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
)

// Write stores the nodes' configs and the PKI under out, atomically: everything is written to
// a new folder beside out that then takes out's place in one rename, so a failure at any point
// leaves out as it was. extra files (relative path to contents, mode 0644) go in too.
func Write(out string, nodes []Node, b *pki.Bundle, extra map[string][]byte) error {
	out = filepath.Clean(out)
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		if _, err := os.Stat(pki.CAPath(filepath.Join(out, "pki"))); err != nil {
			return fmt.Errorf("%s: %w", out, ErrNotOurs)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after the swap, tmp holds the old output
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, n := range nodes {
		dir := filepath.Join(tmp, n.Name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		// The configs hold the node's private keys: readable by the owner only.
		if err := os.WriteFile(filepath.Join(dir, "config.bu"), n.Butane, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.ign"), n.Ignition, 0o600); err != nil {
			return err
		}
	}
	if err := b.Write(filepath.Join(tmp, "pki")); err != nil {
		return err
	}
	for rel, data := range extra {
		p := filepath.Join(tmp, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, out, unix.RENAME_EXCHANGE); err == nil {
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		if _, statErr := os.Stat(out); statErr == nil {
			return fmt.Errorf("replacing %s: %w", out, err)
		}
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // an empty folder is replaced; anything else was caught above
	}
	return os.Rename(tmp, out)
}
