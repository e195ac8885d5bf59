// Package clusterctx is the cluster context file: how the operator's tools (kiln ctl) reach a
// cluster's etcd. kiln render and kiln up write it; kiln ctl reads it. It is YAML, for people to
// read and edit; kiln-node does not use it (and so carries no YAML parser).
package clusterctx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// ContextFile is the name of the cluster context that kiln render writes into OUT/pki.
const ContextFile = "context.yaml"

// Context says how the operator's tools (kiln ctl) reach a cluster's etcd:
//
//	name: demo
//	endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379]
//	ca: /abs/out/pki/ca.crt
//	cert: /abs/out/pki/operator.crt
//	key: /abs/out/pki/operator.key
//
// kiln render writes it to OUT/pki/context.yaml and, as the current context, to
// CurrentContextPath(); kiln up does the same.
type Context struct {
	Name      string   `yaml:"name,omitempty" json:"name,omitempty"`
	Endpoints []string `yaml:"endpoints" json:"endpoints"`
	CA        string   `yaml:"ca" json:"ca"`
	Cert      string   `yaml:"cert" json:"cert"`
	Key       string   `yaml:"key" json:"key"`
}

// ErrNoContext: there is no current context (nothing rendered yet, no flags).
var ErrNoContext = errors.New("no cluster context: run kiln render, or give --etcd-endpoints/--etcd-ca/--etcd-cert/--etcd-key")

// ErrIncomplete: some of the settings to reach etcd were given, not all, and there is no
// context to take the rest from.
var ErrIncomplete = errors.New("incomplete etcd settings")

// Missing names the settings that c lacks, as the flags that give them.
func (c *Context) Missing() []string {
	var out []string
	if len(c.Endpoints) == 0 {
		out = append(out, "--etcd-endpoints")
	}
	for _, f := range []struct{ flag, v string }{{"--etcd-ca", c.CA}, {"--etcd-cert", c.Cert}, {"--etcd-key", c.Key}} {
		if f.v == "" {
			out = append(out, f.flag)
		}
	}
	return out
}

// Incomplete is the error for a c that lacks settings with no context to fill them: it names
// what is missing (nil when nothing is).
func (c *Context) Incomplete() error {
	m := c.Missing()
	if len(m) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s not given (flags or KILN_ETCD_* variables), and no cluster context to take it from", ErrIncomplete, strings.Join(m, ", "))
}

// LoadContext reads a context file; relative paths in it are taken relative to the file.
func LoadContext(path string) (*Context, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Context
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.CA, &c.Cert, &c.Key} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return &c, nil
}

// SaveContext writes c to path atomically (mode 0600; parent directories 0700), with the
// certificate paths made absolute.
func SaveContext(path string, c *Context) error {
	cp := *c
	for _, p := range []*string{&cp.CA, &cp.Cert, &cp.Key} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	raw, err := yaml.Marshal(&cp)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, raw, 0o600)
}

// CurrentContextPath is $XDG_CONFIG_HOME/kiln/context.yaml, else ~/.config/kiln/context.yaml.
func CurrentContextPath() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "kiln", ContextFile), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("current context: %w", err)
	}
	return filepath.Join(home, ".config", "kiln", ContextFile), nil
}

// WriteCurrentContext makes c the current context and returns where it was written.
func WriteCurrentContext(c *Context) (string, error) {
	path, err := CurrentContextPath()
	if err != nil {
		return "", err
	}
	return path, SaveContext(path, c)
}

// LoadCurrentContext reads the current context; ErrNoContext when there is none.
func LoadCurrentContext() (*Context, string, error) {
	path, err := CurrentContextPath()
	if err != nil {
		return nil, "", err
	}
	c, err := LoadContext(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, path, ErrNoContext
	}
	return c, path, err
}
