package etcdconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/etcdconn"
)

func TestCheckNamesTheMissingFlag(t *testing.T) {
	err := etcdconn.Check([]string{"https://127.0.0.1:2379"}, "ca.crt", "op.crt", "")
	if !errors.Is(err, etcdconn.ErrNoClientTLS) || !strings.Contains(err.Error(), "--etcd-key") || strings.Contains(err.Error(), "--etcd-ca") {
		t.Fatalf("missing key: %v", err)
	}
}

// A wrong CA or client certificate is named at once (x509, or etcd's alert), not after a
// timeout; an etcd that does not answer is not a TLS error.
func TestIntegrationDialSurfacesTLSErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c := etcdtest.Start(t, etcdtest.Members(1))
	good := c.ClientTLS()
	other := t.TempDir()
	b, err := pki.Ensure(other, "other", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		ca, cert, key string
		want          string // "" : no error
	}{
		{"good", good.CA, good.Cert, good.Key, ""},
		{"wrong CA", pki.CAPath(other), good.Cert, good.Key, "certificate signed by unknown authority"},
		{"client certificate of another CA", good.CA, pki.OperatorCertPath(other), pki.OperatorKeyPath(other), "remote error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cli, err := etcdconn.Dial(context.Background(), c.Endpoints(), tc.ca, tc.cert, tc.key)
			took := time.Since(start)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				cli.Close()
				return
			}
			if !errors.Is(err, etcdconn.ErrTLS) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrTLS with %q", err, tc.want)
			}
			if took > 5*time.Second {
				t.Errorf("took %v", took)
			}
			t.Logf("%v (after %v)", err, took.Round(time.Millisecond))
		})
	}
	// Nothing listens: not a TLS error (the caller's retries deal with an etcd that is down).
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cli, err := etcdconn.Dial(context.Background(), []string{"https://" + addr}, good.CA, good.Cert, good.Key)
	if err != nil {
		t.Fatalf("etcd down: %v", err)
	}
	cli.Close()
}
