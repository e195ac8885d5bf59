// Package ctl is the client behind kiln ctl, and the one that tests and other tools use to look
// at and act on a running cluster: how the operator reaches the cluster's etcd (flags,
// KILN_ETCD_* variables, the cluster context), and every query and action of kiln ctl, as
// methods of Client with named JSON types (what kiln ctl -o json prints). kiln ctl itself only
// parses flags and prints.
//
// Machines and reboot slots: Machines, Locks, Unlock, RequestReboot (machines.go).
// Units: Submit, SetState, Destroy, Wait, Units, UnitFiles, Unit, Journal, Cat (units.go).
package ctl

import (
	"context"
	"errors"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
	"github.com/kiln-cluster/kiln/node/etcdconn"
)

// Environment variables that override the context (and are overridden by flags).
const (
	EnvEndpoints = "KILN_ETCD_ENDPOINTS"
	EnvCA        = "KILN_ETCD_CA"
	EnvCert      = "KILN_ETCD_CERT"
	EnvKey       = "KILN_ETCD_KEY"
	// EnvContext names a context file to use instead of the current one.
	EnvContext = "KILN_CONTEXT"
)

// Target is what the flags say (empty fields: not given).
type Target struct {
	Endpoints     []string
	CA, Cert, Key string
	// ContextPath is a context file (--context); empty: $KILN_CONTEXT, else the current context.
	ContextPath string
}

// Resolve fills every field from, in order: the flags, the KILN_ETCD_* variables, the context
// file (--context, $KILN_CONTEXT, else the current context). The context is read only when
// something is still missing.
func Resolve(flags Target, getenv func(string) string) (*clusterctx.Context, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	out := &clusterctx.Context{Endpoints: flags.Endpoints, CA: flags.CA, Cert: flags.Cert, Key: flags.Key}
	if len(out.Endpoints) == 0 && getenv(EnvEndpoints) != "" {
		for ep := range strings.SplitSeq(getenv(EnvEndpoints), ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				out.Endpoints = append(out.Endpoints, ep)
			}
		}
	}
	for _, f := range []struct {
		p   *string
		env string
	}{{&out.CA, EnvCA}, {&out.Cert, EnvCert}, {&out.Key, EnvKey}} {
		if *f.p == "" {
			*f.p = getenv(f.env)
		}
	}
	if len(out.Endpoints) > 0 && out.CA != "" && out.Cert != "" && out.Key != "" {
		return out, nil
	}
	path := flags.ContextPath
	if path == "" {
		path = getenv(EnvContext)
	}
	var ctxFile *clusterctx.Context
	var err error
	if path != "" {
		ctxFile, err = clusterctx.LoadContext(path)
	} else {
		ctxFile, _, err = clusterctx.LoadCurrentContext()
	}
	if errors.Is(err, clusterctx.ErrNoContext) && len(out.Missing()) < 4 {
		return nil, out.Incomplete() // some given: say which are missing
	}
	if err != nil {
		return nil, err
	}
	out.Name = ctxFile.Name
	if len(out.Endpoints) == 0 {
		out.Endpoints = ctxFile.Endpoints
	}
	for _, f := range [][2]*string{{&out.CA, &ctxFile.CA}, {&out.Cert, &ctxFile.Cert}, {&out.Key, &ctxFile.Key}} {
		if *f[0] == "" {
			*f[0] = *f[1]
		}
	}
	return out, nil
}

// Client is a connection to one cluster's etcd as the operator. Its methods are kiln ctl's
// queries and actions; each returns the type that kiln ctl -o json prints.
type Client struct {
	etcd *clientv3.Client
}

// New makes a Client of an open etcd client (which the caller closes).
func New(etcd *clientv3.Client) *Client { return &Client{etcd: etcd} }

// Dial opens a Client of the resolved target; Close it when done. Settings that etcd's TLS
// refuses are an error at once (etcdconn.ErrTLS), not a timeout later.
func Dial(c *clusterctx.Context) (*Client, error) {
	cli, err := etcdconn.Dial(context.Background(), c.Endpoints, c.CA, c.Cert, c.Key)
	if err != nil {
		return nil, err
	}
	return New(cli), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.etcd.Close() }
