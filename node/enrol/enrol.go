// Package enrol is a node's enrolment with the boot server: the node makes its private keys on
// the machine, sends one certificate request per certificate it needs to the server that booted
// it, waits until they are signed (the operator approves, or the server's policy does), checks
// that every certificate chains to the cluster CA of its config and fits its key, and writes
// them. The private keys never leave the machine, so configs served over the network boot path
// carry none.
package enrol

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/internal/capool"
)

// Cert is one certificate the node needs and where its files go.
type Cert struct {
	Kind              string
	CertPath, KeyPath string
}

// Config says whom to ask for what.
type Config struct {
	// Server is the boot server's base URL (http://10.0.0.1:8080).
	Server string
	// Node is the node's name in the cluster spec.
	Node string
	// CA is the file of the cluster CA that every certificate must chain to.
	CA    string
	Certs []Cert
	// Client sends the requests; nil: a client with a 30 s timeout.
	Client *http.Client
	// Backoff is the first wait between requests (doubled up to MaxBackoff); 0: 2 s and 1 min.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds the whole enrolment; 0: one hour; negative: no bound (the unit waits until
	// the operator decides).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Run enrols the node: it returns nil once every certificate is in place, at once when they
// already are (valid, for this node, for the keys beside them), so a reboot does not enrol again.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 2 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Hour
	}
	roots, err := loadCA(cfg.CA)
	if err != nil {
		return err
	}
	if err := allValid(cfg, roots); err == nil {
		cfg.Logger.Info("already enrolled: every certificate fits its key", "node", cfg.Node)
		return nil
	}
	keys := map[string]crypto.Signer{}
	pubs := map[string]crypto.PublicKey{}
	req := Request{Node: cfg.Node, CSRs: map[string]string{}}
	for _, c := range cfg.Certs {
		k, err := loadOrMakeKey(c.KeyPath, cfg.Logger)
		if err != nil {
			return err
		}
		keys[c.Kind], pubs[c.Kind] = k, k.Public()
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cfg.Node, Organization: []string{"kiln"}},
		}, k)
		if err != nil {
			return err
		}
		req.CSRs[c.Kind] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	fp, err := Fingerprint(pubs)
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	endpoint := strings.TrimSuffix(cfg.Server, "/") + Path
	cfg.Logger.Info("enrolling: the operator may check this fingerprint with kiln pxe enrolments",
		"node", cfg.Node, "server", endpoint, "fingerprint", fp)
	wait := cfg.Backoff
	lastStatus := ""
	for {
		res, err := post(ctx, cfg.Client, endpoint, body)
		switch {
		case err != nil:
			cfg.Logger.Warn("enrolment request failed: trying again", "server", endpoint, "err", err, "in", wait)
		case res.Status == StatusApproved:
			if err := install(cfg, roots, keys, res.Certs); err != nil {
				return err
			}
			cfg.Logger.Info("enrolled: certificates written", "node", cfg.Node, "fingerprint", fp)
			return nil
		case res.Status == StatusRefused:
			// Refused keys wait too: the operator may approve them (kiln pxe approve), and
			// the units that need the keys then start without anyone touching the machine.
			if lastStatus != StatusRefused {
				cfg.Logger.Error("the boot server refused this node's keys: another machine may have claimed this node; waiting for the operator (kiln pxe approve "+cfg.Node+")",
					"fingerprint", fp, "reason", res.Message)
			}
		case res.Status == StatusPending:
			if lastStatus != StatusPending {
				cfg.Logger.Info("waiting for approval: run kiln pxe approve "+cfg.Node+" where the boot server runs",
					"fingerprint", fp)
			}
		default:
			return fmt.Errorf("enrolment: %s", res.Message)
		}
		if res != nil {
			lastStatus = res.Status
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				if lastStatus == StatusRefused {
					return fmt.Errorf("%w (fingerprint %s)", ErrRefused, fp)
				}
				return fmt.Errorf("%w (%v, fingerprint %s)", ErrTimeout, cfg.Timeout, fp)
			}
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, cfg.MaxBackoff)
	}
}

// post sends the request once. A transport failure or a 5xx is an error (tried again); any
// other answer is a Response.
func post(ctx context.Context, c *http.Client, endpoint string, body []byte) (*Response, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 500 {
		return nil, fmt.Errorf("%s: %.200s", resp.Status, raw)
	}
	var res Response
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("%s: not an enrolment answer: %.200s", resp.Status, raw)
	}
	if res.Status == "" {
		res.Message = fmt.Sprintf("%s: %s", resp.Status, res.Message)
	}
	return &res, nil
}

// install checks every certificate the server sent and writes them, each atomically.
func install(cfg Config, roots *x509.CertPool, keys map[string]crypto.Signer, certs map[string]string) error {
	for _, c := range cfg.Certs {
		raw := []byte(certs[c.Kind])
		if err := fits(raw, keys[c.Kind].Public(), cfg.Node, roots); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadCert, c.Kind, err)
		}
	}
	for _, c := range cfg.Certs {
		if err := os.MkdirAll(filepath.Dir(c.CertPath), 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(c.CertPath, []byte(certs[c.Kind]), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fits checks a PEM certificate: it chains to roots, names node and holds pub.
func fits(certPEM []byte, pub crypto.PublicKey, node string, roots *x509.CertPool) error {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return err
	}
	if cert.Subject.CommonName != node {
		return fmt.Errorf("issued to %q, not %q", cert.Subject.CommonName, node)
	}
	if k, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(cert.PublicKey) {
		return errors.New("not for this node's key")
	}
	return nil
}

// allValid reports nil when every certificate is in place and fits the key beside it.
func allValid(cfg Config, roots *x509.CertPool) error {
	for _, c := range cfg.Certs {
		k, err := readKey(c.KeyPath)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(c.CertPath)
		if err != nil {
			return err
		}
		if err := fits(raw, k.Public(), cfg.Node, roots); err != nil {
			return err
		}
	}
	return nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pool, err := capool.Load(path)
	if err != nil {
		return nil, fmt.Errorf("the cluster CA: %w", err)
	}
	return pool, nil
}

// loadOrMakeKey returns the key at path, or makes an ECDSA P-256 key and writes it there (mode
// 0600) first. A key that survives a failed enrolment is used again, so the fingerprint the
// operator approves stays the same.
func loadOrMakeKey(path string, log *slog.Logger) (crypto.Signer, error) {
	k, err := readKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	log.Info("made a private key", "path", path)
	return key, nil
}

func readKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the key cannot sign", path)
	}
	return s, nil
}

// ServerFromCmdline returns the base URL of the server named by ignition.config.url on a kernel
// command line: the server that served the node's config.
func ServerFromCmdline(cmdline string) (string, error) {
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "ignition.config.url=")
		if !ok {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("%w: ignition.config.url=%q is not an http(s) URL", ErrNoServer, v)
		}
		return u.Scheme + "://" + u.Host, nil
	}
	return "", ErrNoServer
}
