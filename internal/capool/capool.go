// Package capool reads a CA certificate file into the pool that TLS clients verify servers
// against: the one way kiln-node, kiln ctl and the test kits trust the cluster's CA.
package capool

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrNoCert: the file holds no PEM certificate.
var ErrNoCert = errors.New("holds no PEM certificate")

// Load returns a pool of the PEM certificates in the file at path; an error when it cannot be
// read or holds none (ErrNoCert).
func Load(path string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s %w", path, ErrNoCert)
	}
	return pool, nil
}
