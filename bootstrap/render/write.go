package render

import (
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/internal/outdir"
)

// Write stores the nodes' configs and the PKI under out, in one step (internal/outdir): a new
// folder is built beside out and then takes its place in one rename, so a failure at any point
// leaves out as it was. extra files (relative path to contents, mode 0644) go in too.
//
// Write owns only the nodes' config.bu and config.ign and the PKI's files (pki.Owned); all else
// in out is carried into the new folder, never deleted. A symlinked out is followed, and a
// symlinked out/pki kept: the PKI (and extra files under pki/) are written where it points,
// each file atomically. A folder out that holds no pki/ca.crt is refused with ErrNotOurs.
func Write(out string, nodes []Node, b *pki.Bundle, extra map[string][]byte) error {
	r, err := outdir.Begin(out, func(dir string) bool {
		_, err := os.Stat(pki.CAPath(filepath.Join(dir, "pki")))
		return err == nil
	}, ErrNotOurs)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, n := range nodes {
		dir := filepath.Join(r.Tmp, n.Name)
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
	pkiDir, err := r.Link("pki")
	if err != nil {
		return err
	}
	linked := pkiDir != ""
	if !linked {
		pkiDir = filepath.Join(r.Tmp, "pki")
	}
	if err := b.Write(pkiDir); err != nil {
		return err
	}
	for rel, data := range extra {
		p := filepath.Join(r.Tmp, rel)
		if sub, ok := strings.CutPrefix(filepath.ToSlash(rel), "pki/"); ok && linked {
			p = filepath.Join(pkiDir, sub)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := atomicfile.Write(p, data, 0o644); err != nil {
			return err
		}
	}
	return r.Commit(owned)
}

// owned reports whether rel, a slash path inside a render's output, is a file render writes:
// a node's config.bu or config.ign, or a PKI file.
func owned(rel string) bool {
	if sub, ok := strings.CutPrefix(rel, "pki/"); ok {
		return pki.Owned(sub)
	}
	dir, name := path.Split(rel)
	return dir != "" && !strings.Contains(strings.TrimSuffix(dir, "/"), "/") && (name == "config.bu" || name == "config.ign")
}
