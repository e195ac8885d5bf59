// Package etcdconn opens kiln's etcd clients: always TLS with a client certificate, never
// waiting for etcd to answer (callers retry), quiet (no zap logs).
package etcdconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Errors of a connection's settings.
var (
	ErrNoEndpoints = errors.New("no etcd endpoints")
	ErrNotTLS      = errors.New("etcd endpoints must be https:// (kiln talks to etcd only over TLS)")
	ErrNoClientTLS = errors.New("etcd client certificate: CA, certificate and key are all required")
)

// Check validates endpoints and the client identity's file names.
func Check(endpoints []string, ca, cert, key string) error {
	var errs []error
	if len(endpoints) == 0 {
		errs = append(errs, ErrNoEndpoints)
	}
	for _, ep := range endpoints {
		if !strings.HasPrefix(ep, "https://") {
			errs = append(errs, fmt.Errorf("%w: %q", ErrNotTLS, ep))
		}
	}
	if ca == "" || cert == "" || key == "" {
		errs = append(errs, ErrNoClientTLS)
	}
	return errors.Join(errs...)
}

// TLSConfig loads a client identity and the CA that signed etcd's servers.
func TLSConfig(ca, cert, key string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcd CA: no certificate in %s", ca)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// New returns a client of the endpoints.
func New(endpoints []string, ca, cert, key string) (*clientv3.Client, error) {
	if err := Check(endpoints, ca, cert, key); err != nil {
		return nil, err
	}
	tlsCfg, err := TLSConfig(ca, cert, key)
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsCfg,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
	})
}
