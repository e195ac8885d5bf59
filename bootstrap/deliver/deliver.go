// Package deliver is the one way from a spec file to configs that every delivery takes: kiln
// render, user-data, Vagrant, the PXE server and the kiln up drivers. It compiles the spec with
// kiln's version and kiln-node, prints the spec's problems like a compiler, keeps the cluster's
// PKI in one folder (so that every delivery hands out the same certificates) and says how
// kiln ctl reaches the cluster.
package deliver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
	"github.com/kiln-cluster/kiln/node/version"
)

// Options say which spec to compile and where its PKI lives.
type Options struct {
	// Spec is the cluster spec's path.
	Spec string
	// PKIDir holds the cluster's PKI: made on first use, reused after (kiln render -o OUT keeps it
	// in OUT/pki).
	PKIDir string
	// Strict turns the spec's warnings into errors.
	Strict bool
	// CreatePKI lets the compile make a new CA when PKIDir holds none: kiln render only. Every
	// other delivery refuses a folder with no CA (an error wrapping pki.ErrNoPKI naming it).
	CreatePKI bool
	// KilnNodeFile is the kiln-node whose hash the configs verify when the spec gives none;
	// "" means the kiln-node installed beside the running kiln, if any.
	KilnNodeFile string
	// Problems receives the spec's report (errors and warnings, file:line:col); nil drops it.
	Problems io.Writer
	// Nodes are the nodes the delivery is for; one the spec lacks is an error (ErrNoNode)
	// before anything is written. Empty means every node.
	Nodes []string
	// Enrol renders configs without the nodes' private keys, for a channel anyone may read
	// (kiln pxe serve): the nodes make their keys and enrol.
	Enrol *render.EnrolOptions
}

// Compile returns the render options these Options stand for: what the PXE server keeps to
// compile the spec again when it changes.
func (o Options) Compile() render.CompileOptions {
	node := o.KilnNodeFile
	if node == "" {
		node = SiblingKilnNode()
	}
	return render.CompileOptions{PKIDir: o.PKIDir, CreatePKI: o.CreatePKI, KilnVersion: version.Version, KilnNodeFile: node, Strict: o.Strict, Enrol: o.Enrol}
}

// Compile turns the spec into every node's configs, with the PKI in memory only (kiln render
// writes it with the configs, in one step). Spec problems are printed to o.Problems and the
// error is then ErrReported (wrapping render.ErrSpec or render.ErrInvalid).
func Compile(o Options) (*render.Compiled, error) {
	c, rep, err := render.Compile(o.Spec, o.Compile())
	if o.Problems != nil {
		rep.Print(o.Problems, o.Strict)
	}
	switch {
	case errors.Is(err, render.ErrSpec), errors.Is(err, render.ErrInvalid):
		return nil, fmt.Errorf("%w: %w", ErrReported, err)
	case err != nil:
		return nil, err
	}
	if st := c.Stats; st.Fallback > 0 && o.Problems != nil {
		fmt.Fprintf(o.Problems, "warning: the render fast path is lost for %d of %d nodes (%s): their configs are right, but each took a whole Butane translation; please report it\n",
			st.Fallback, len(c.Nodes), st.Lost)
	}
	var missing []string
	for _, n := range o.Nodes {
		if c.Node(n) == nil {
			missing = append(missing, strconv.Quote(n))
		}
	}
	if len(missing) > 0 {
		names := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			names[i] = n.Name
		}
		return nil, fmt.Errorf("%w %s in %s (nodes: %s)", ErrNoNode, strings.Join(missing, ", "), o.Spec, strings.Join(names, ", "))
	}
	return c, nil
}

// Prepare is Compile, then the PKI saved to o.PKIDir when anything in it was issued: what every
// delivery but kiln render needs before it hands configs out.
func Prepare(o Options) (*render.Compiled, error) {
	c, err := Compile(o)
	if err != nil {
		return nil, err
	}
	if err := render.SavePKI(c.PKI); err != nil {
		return nil, fmt.Errorf("saving the PKI in %s: %w", c.PKI.Dir, err)
	}
	return c, nil
}

// Validate loads, defaults and validates the spec (kiln validate), printing its problems to
// o.Problems; the error is ErrReported when it has errors.
func Validate(o Options) (*spec.Spec, error) {
	s, rep, err := render.Load(o.Spec, o.Compile())
	if o.Problems != nil {
		rep.Print(o.Problems, o.Strict)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReported, err)
	}
	return s, nil
}

// Context says how kiln ctl reaches the cluster's etcd as the operator, with the certificates
// kept in out/pki (as kiln render and kiln up keep them).
func Context(s *spec.Spec, out string) (*clusterctx.Context, error) {
	abs, err := filepath.Abs(filepath.Join(out, "pki"))
	if err != nil {
		return nil, err
	}
	var endpoints []string
	for _, m := range s.Cluster.Etcd.Members {
		endpoints = append(endpoints, render.ClientURL(s, m))
	}
	return &clusterctx.Context{
		Name:      s.Cluster.Name,
		Endpoints: endpoints,
		CA:        pki.CAPath(abs),
		Cert:      pki.OperatorCertPath(abs),
		Key:       pki.OperatorKeyPath(abs),
	}, nil
}

// SiblingKilnNode is the kiln-node binary installed beside the running kiln, hashed for
// Ignition's verification when the spec gives no hash; "" when there is none.
func SiblingKilnNode() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "kiln-node")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return p
}
