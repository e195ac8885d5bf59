// Package etcdconn opens kiln's etcd clients: always TLS with a client certificate, never
// waiting for etcd to answer (callers retry), quiet (no zap logs).
package etcdconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kiln-cluster/kiln/internal/capool"
)

// Errors of a connection's settings.
var (
	ErrNoEndpoints = errors.New("no etcd endpoints")
	ErrNotTLS      = errors.New("etcd endpoints must be https:// (kiln talks to etcd only over TLS)")
	ErrNoClientTLS = errors.New("etcd client certificate: CA, certificate and key are all required")
	// ErrTLS: etcd answered, but the TLS handshake failed (a CA that did not sign etcd's
	// server certificate, a client certificate that etcd's CA did not sign, an endpoint that
	// does not speak TLS): the settings are wrong, retrying will not help.
	ErrTLS = errors.New("etcd TLS handshake failed")
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
	var missing []string
	for _, f := range []struct{ flag, v string }{{"--etcd-ca", ca}, {"--etcd-cert", cert}, {"--etcd-key", key}} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%w (missing %s)", ErrNoClientTLS, strings.Join(missing, ", ")))
	}
	return errors.Join(errs...)
}

// TLSConfig loads a client identity and the CA that signed etcd's servers.
func TLSConfig(ca, cert, key string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	pool, err := capool.Load(ca)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
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
		DialOptions:          dialOptions(),
		Logger:               zap.NewNop(),
	})
}

// Dial is New followed by Probe: a client whose settings are known not to be refused by etcd's
// TLS (ErrTLS otherwise), for commands that should fail at once with the reason rather than
// time out. An etcd that does not answer is not an error here.
func Dial(ctx context.Context, endpoints []string, ca, cert, key string) (*clientv3.Client, error) {
	cli, err := New(endpoints, ca, cert, key)
	if err != nil {
		return nil, err
	}
	tlsCfg, _ := TLSConfig(ca, cert, key) // New loaded it already
	if err := Probe(ctx, endpoints, tlsCfg); err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}

// probeTimeout bounds one endpoint's probe.
const probeTimeout = 3 * time.Second

// Probe makes a TLS handshake with every endpoint at once and reports the reason when etcd
// answers but refuses the handshake (ErrTLS, with the x509 or alert message): the etcd client
// itself only says "context deadline exceeded" then. It returns nil as soon as one endpoint
// accepts, and when none answers at all (etcd down is for the caller's retries).
func Probe(ctx context.Context, endpoints []string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	errs := make(chan error, len(endpoints))
	for _, ep := range endpoints {
		go func() { errs <- probe(ctx, ep, tlsCfg) }()
	}
	var tlsErr error
	for range endpoints {
		err := <-errs
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrTLS) && tlsErr == nil {
			tlsErr = err
		}
	}
	return tlsErr
}

// probe handshakes with one endpoint: nil when accepted, an ErrTLS when refused, another error
// when it cannot be reached.
func probe(ctx context.Context, endpoint string, tlsCfg *tls.Config) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("endpoint %q: not a URL", endpoint)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "2379")
	}
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer raw.Close()
	cfg := tlsCfg.Clone()
	cfg.ServerName = u.Hostname()
	conn := tls.Client(raw, cfg)
	start := time.Now()
	if err := conn.HandshakeContext(ctx); err != nil {
		return tlsError(endpoint, err)
	}
	// With TLS 1.3 the server checks the client's certificate after the client's handshake
	// is done: its refusal arrives as an alert on the first read. Wait for it about as long
	// as the handshake took (a loopback or LAN round trip); silence means accepted.
	_ = conn.SetReadDeadline(time.Now().Add(2*time.Since(start) + 100*time.Millisecond))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return tlsError(endpoint, err)
	}
	return nil
}

// tlsError marks err as ErrTLS when it comes from TLS (a certificate check, an alert, a
// reply that is not TLS); other errors (the connection dropped) stay as they are.
func tlsError(endpoint string, err error) error {
	var (
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		header   tls.RecordHeaderError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		op       *net.OpError
	)
	// An alert from the server (a refused client certificate) is a net.OpError "remote error".
	remote := errors.As(err, &op) && op.Op == "remote error"
	switch {
	case remote, errors.As(err, &verify), errors.As(err, &alert), errors.As(err, &unknown),
		errors.As(err, &hostname), errors.As(err, &invalid):
		return fmt.Errorf("%w with %s: %v (check --etcd-ca, --etcd-cert and --etcd-key)", ErrTLS, endpoint, err)
	case errors.As(err, &header):
		return fmt.Errorf("%w with %s: the endpoint does not speak TLS", ErrTLS, endpoint)
	}
	return err
}
