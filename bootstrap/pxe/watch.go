package pxe

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
)

// Watch checks the spec and the files it names every Poll and recompiles once a change has
// settled (the files are the same at two checks in a row, so that a file caught half-written is
// not compiled), until ctx is done.
func (s *Server) Watch(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reloadIfChanged()
		}
	}
}

func (s *Server) reloadIfChanged() {
	s.reload.Lock()
	fp := fingerprint(s.state.Load().watched)
	settled := fp != s.fingerprint && fp == s.pending
	s.pending = fp
	s.reload.Unlock()
	if settled {
		s.Reload()
	}
}

// Reload compiles the spec again and serves the result. When the compile fails, the server
// keeps serving the last good configs and the error (with the spec's problems) is logged and
// returned. Concurrent reloads run one after the other.
func (s *Server) Reload() error {
	s.reload.Lock()
	defer s.reload.Unlock()
	old := s.state.Load()
	// The fingerprint is taken before compiling: a change made during the compile is seen by
	// the next check.
	s.fingerprint = fingerprint(old.watched)
	start := time.Now()
	st, c, err := s.compile()
	if err != nil {
		s.metrics.reloads.WithLabelValues("failed").Inc()
		s.log.Error("reload failed: still serving the last good configs", "spec", s.cfg.Deliver.Spec,
			"configs_from", old.loaded.Format(time.RFC3339), "err", err)
		return err
	}
	// The files to watch may have changed with the spec.
	s.fingerprint = fingerprint(st.watched)
	s.swap(st)
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.log.Info("reloaded", "spec", s.cfg.Deliver.Spec, "nodes", len(st.nodes), "changed", changedNodes(old, st),
		"duration", time.Since(start).Round(time.Millisecond))
	s.checkAssets(st, c)
	return nil
}

// compile runs deliver.Prepare (the spec compiled, any new certificates kept in the PKI folder)
// and builds a state. The spec's problems are part of the error; its warnings are logged.
func (s *Server) compile() (*state, *render.Compiled, error) {
	o := s.cfg.Deliver
	var problems strings.Builder
	o.Problems = &problems
	c, err := deliver.Prepare(o)
	if err != nil {
		if problems.Len() > 0 {
			return nil, nil, fmt.Errorf("%w:\n%s", err, strings.TrimRight(problems.String(), "\n"))
		}
		return nil, nil, err
	}
	if problems.Len() > 0 {
		s.log.Warn("the spec has warnings", "spec", o.Spec, "warnings", strings.TrimRight(problems.String(), "\n"))
	}
	st, err := build(c, s.cfg.TokenSecret)
	if err != nil {
		return nil, nil, err
	}
	return st, c, nil
}

// changedNodes names the nodes added, removed or whose config changed between two states.
func changedNodes(old, cur *state) string {
	var out []string
	for _, m := range cur.nodes {
		o := old.byName[m.name]
		switch {
		case o == nil:
			out = append(out, "+"+m.name)
		case o.etag[0] != m.etag[0] || o.mac != m.mac || o.uuid != m.uuid || strings.Join(o.kargs, " ") != strings.Join(m.kargs, " "):
			out = append(out, "~"+m.name)
		}
	}
	for _, o := range old.nodes {
		if cur.byName[o.name] == nil {
			out = append(out, "-"+o.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// fingerprint sums the watched files: the contents of small ones (an edit within the file
// system's time resolution is still seen; touching a file without changing it does not
// recompile), and the size and modification time of big ones (binaries), which are too costly
// to read on every check.
func fingerprint(files []string) string {
	h := sha256.New()
	for _, f := range files {
		io.WriteString(h, f)
		h.Write([]byte{0})
		fh, err := os.Open(f)
		if err != nil {
			io.WriteString(h, "missing")
		} else {
			if fi, err := fh.Stat(); err == nil && fi.Size() > 1<<20 {
				fmt.Fprintf(h, "%d %d", fi.Size(), fi.ModTime().UnixNano())
			} else {
				io.Copy(h, fh)
			}
			fh.Close()
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkAssets warns, in the log, about the files the machines will ask for that the assets
// folder lacks: the OS's kernel and initrd, and the binaries that the spec says are fetched from
// /assets/ (an air-gapped cluster), whose hash must match what Ignition verifies.
func (s *Server) checkAssets(st *state, c *render.Compiled) {
	if len(st.nodes) > 0 {
		a := AssetPaths(st.nodes[0].os, st.nodes[0].channel)
		for _, p := range []string{a.Kernel, a.Initrd, a.Rootfs} {
			if p == "" {
				continue
			}
			if _, err := s.assets.Stat(p); err != nil {
				s.log.Warn("boot file missing from the assets: machines cannot boot until it is there", "path", p, "assets", s.cfg.Assets)
			}
		}
	}
	for _, b := range []struct {
		what string
		bin  spec.Binary
	}{{"kilnNode", c.Spec.Cluster.KilnNode}, {"etcd.binary", c.Spec.Cluster.Etcd.Binary}} {
		u, err := url.Parse(b.bin.URL)
		if b.bin.URL == "" || err != nil || !strings.HasPrefix(u.Path, "/assets/") {
			continue
		}
		rel := strings.TrimPrefix(u.Path, "/assets/")
		f, _, err := s.openAsset(rel)
		if err != nil {
			s.log.Warn("binary missing from the assets: nodes will fail to fetch it", "binary", b.what, "url", b.bin.URL, "path", rel)
			continue
		}
		h := sha512.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			continue
		}
		want := b.bin.SHA512
		if want == "" && b.bin.File != "" {
			want = fileSHA512(c.Spec.Path(b.bin.File))
		}
		if got := hex.EncodeToString(h.Sum(nil)); want != "" && !strings.EqualFold(got, want) {
			s.log.Warn("binary in the assets differs from the one the configs verify: Ignition will refuse it",
				"binary", b.what, "path", rel, "sha512", got, "expected", want)
		}
	}
}

func fileSHA512(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
