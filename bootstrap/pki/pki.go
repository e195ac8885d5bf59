// Package pki generates and keeps the cluster's certificate authority and the certificates of
// etcd's peers and servers, of every kiln-node and of the operator. Everything lives in one
// directory (OUT/pki); what exists and still fits is reused, so re-rendering gives the same bytes.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/internal/inputfile"
)

// The errors of a PKI directory's contents.
var (
	ErrNoCert        = errors.New("no PEM certificate")
	ErrNoKey         = errors.New("no PEM private key")
	ErrKeyCannotSign = errors.New("private key cannot sign")
	ErrKeyMismatch   = errors.New("private key does not match the certificate")
	// ErrNoPKI: Open found no CA in the folder. Only kiln render makes a PKI; every other
	// command uses the one it made, so that all deliveries hand out certificates of one CA.
	ErrNoPKI = errors.New("no cluster CA (ca.crt and ca.key) in this folder; only kiln render creates a PKI: point --pki at the OUT/pki folder of kiln render -o OUT")
)

// Validity of what the PKI issues. The CA outlives the leaves so that leaves can be renewed.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 5 * 365 * 24 * time.Hour
	// renewBefore: a leaf that expires sooner than this is issued again.
	renewBefore = 30 * 24 * time.Hour
)

// Kinds of leaf certificate.
const (
	KindPeer   = "peer"   // etcd peer-to-peer, server and client auth
	KindServer = "server" // etcd's client-facing endpoint
	KindClient = "client" // kiln-node's etcd client identity
)

// Operator is the name of the operator's client certificate (kiln ctl).
const Operator = "operator"

// Node names a machine and the addresses its serving certificates must be valid for.
type Node struct {
	Name string
	IPs  []net.IP
	DNS  []string
}

// Pair is a certificate and its private key, both PEM-encoded.
type Pair struct {
	Cert []byte
	Key  []byte
}

// NodeCerts are one node's certificates.
type NodeCerts struct {
	Peer, Server, Client Pair
}

// Bundle is the whole PKI: the CA (certificate only; its key stays in the directory), each
// node's certificates and the operator's client certificate.
type Bundle struct {
	Dir      string
	CA       []byte
	Nodes    map[string]NodeCerts
	Operator Pair

	caCert *x509.Certificate
	caKey  crypto.Signer
	issued bool // something was made anew, not loaded from Dir
}

// Changed reports whether Ensure issued anything that is not yet in Dir.
func (b *Bundle) Changed() bool { return b.issued }

// File paths inside the PKI directory.
func CAPath(dir string) string           { return filepath.Join(dir, "ca.crt") }
func caKeyPath(dir string) string        { return filepath.Join(dir, "ca.key") }
func OperatorCertPath(dir string) string { return filepath.Join(dir, Operator+".crt") }
func OperatorKeyPath(dir string) string  { return filepath.Join(dir, Operator+".key") }
func leafPath(dir, node, kind string) (cert, key string) {
	base := filepath.Join(dir, "nodes", node, kind)
	return base + ".crt", base + ".key"
}

// Ensure loads the PKI kept in dir and issues what is missing, expired or no longer matches a
// node's addresses; when dir holds no CA it makes a new one. It writes nothing: call Write to
// keep the result (into the same or another dir). Only kiln render creates a PKI: other
// commands call Open.
func Ensure(dir, cluster string, nodes []Node, now time.Time) (*Bundle, error) {
	return ensure(dir, cluster, nodes, now, true)
}

// Open is Ensure for a PKI that must exist already: when dir holds no CA it returns an error
// wrapping ErrNoPKI that names the folder (as an absolute path) instead of making a new CA, so
// that a mistyped or missing --pki never gives nodes certificates of a second CA. Leaves that
// are missing or no longer fit are still issued, by the existing CA.
func Open(dir, cluster string, nodes []Node, now time.Time) (*Bundle, error) {
	return ensure(dir, cluster, nodes, now, false)
}

func ensure(dir, cluster string, nodes []Node, now time.Time, create bool) (*Bundle, error) {
	b := &Bundle{Dir: dir, Nodes: make(map[string]NodeCerts, len(nodes))}
	if err := b.loadOrCreateCA(cluster, now, create); err != nil {
		return nil, err
	}
	var err error
	for _, n := range nodes {
		var nc NodeCerts
		if nc.Peer, err = b.leaf(n, KindPeer, now); err != nil {
			return nil, err
		}
		if nc.Server, err = b.leaf(n, KindServer, now); err != nil {
			return nil, err
		}
		if nc.Client, err = b.leaf(Node{Name: n.Name}, KindClient, now); err != nil {
			return nil, err
		}
		b.Nodes[n.Name] = nc
	}
	b.Operator, err = b.reuseOrIssue(OperatorCertPath(dir), OperatorKeyPath(dir), Node{Name: Operator}, KindClient, now)
	return b, err
}

// Write stores the bundle under dir: certificates 0644, private keys 0600, folders 0700.
func (b *Bundle) Write(dir string) error {
	caKey, err := encodeKey(b.caKey)
	if err != nil {
		return err
	}
	files := []file{
		{CAPath(dir), b.CA, 0o644},
		{caKeyPath(dir), caKey, 0o600},
		{OperatorCertPath(dir), b.Operator.Cert, 0o644},
		{OperatorKeyPath(dir), b.Operator.Key, 0o600},
	}
	for _, name := range slices.Sorted(maps.Keys(b.Nodes)) {
		nc := b.Nodes[name]
		for kind, p := range map[string]Pair{KindPeer: nc.Peer, KindServer: nc.Server, KindClient: nc.Client} {
			c, k := leafPath(dir, name, kind)
			files = append(files, file{c, p.Cert, 0o644}, file{k, p.Key, 0o600})
		}
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return err
		}
		if err := f.write(); err != nil {
			return err
		}
	}
	return nil
}

// write stores the file unless it holds these bytes already. A file that exists is replaced
// atomically (a PKI in use: kiln userdata adds a node's certificates); a new one is written
// directly (kiln render writes into a fresh folder that it swaps in as a whole).
func (f file) write() error {
	old, err := readSmall(f.path)
	switch {
	case err == nil && bytes.Equal(old, f.data):
	case err == nil:
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return err
		}
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(f.path, f.data, f.mode)
	default:
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return os.Chmod(f.path, f.mode)
}

// Owned reports whether rel, a slash-separated path inside a PKI folder, is a file that Write
// writes (for any node): what is not, such as the boot server's token secret or a user's
// notes, kiln keeps.
func Owned(rel string) bool {
	parts := strings.Split(rel, "/")
	switch len(parts) {
	case 1:
		return slices.Contains([]string{"ca.crt", "ca.key", Operator + ".crt", Operator + ".key"}, parts[0])
	case 3:
		if parts[0] != "nodes" {
			return false
		}
		kind, ext, _ := strings.Cut(parts[2], ".")
		return slices.Contains([]string{KindPeer, KindServer, KindClient}, kind) && (ext == "crt" || ext == "key")
	}
	return false
}

type file struct {
	path string
	data []byte
	mode os.FileMode
}

func (b *Bundle) loadOrCreateCA(cluster string, now time.Time, create bool) error {
	certPEM, errC := readSmall(CAPath(b.Dir))
	keyPEM, errK := readSmall(caKeyPath(b.Dir))
	switch {
	case errC == nil && errK == nil:
		cert, key, err := parsePair(CAPath(b.Dir), certPEM, caKeyPath(b.Dir), keyPEM)
		if err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		if !cert.IsCA {
			return fmt.Errorf("pki: %s is not a CA certificate", CAPath(b.Dir))
		}
		if now.After(cert.NotAfter) {
			return fmt.Errorf("pki: the CA in %s expired on %s; move the directory away to start a new PKI", b.Dir, cert.NotAfter.Format(time.DateOnly))
		}
		b.CA, b.caCert, b.caKey = certPEM, cert, key
		return nil
	case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
		if !create {
			abs, err := filepath.Abs(b.Dir)
			if err != nil {
				abs = b.Dir
			}
			return fmt.Errorf("pki: %s: %w", abs, ErrNoPKI)
		}
	case errC != nil && !errors.Is(errC, os.ErrNotExist):
		return fmt.Errorf("pki: %w", errC)
	case errK != nil && !errors.Is(errK, os.ErrNotExist):
		return fmt.Errorf("pki: %w", errK)
	default:
		return fmt.Errorf("pki: %s holds only half of the CA (ca.crt and ca.key go together)", b.Dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kiln CA " + cluster, Organization: []string{"kiln"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	b.caCert, _ = x509.ParseCertificate(der)
	b.caKey = key
	b.issued = true
	b.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

func (b *Bundle) leaf(n Node, kind string, now time.Time) (Pair, error) {
	c, k := leafPath(b.Dir, n.Name, kind)
	return b.reuseOrIssue(c, k, n, kind, now)
}

// reuseOrIssue returns the pair kept at certPath/keyPath when it was signed by this CA, is not
// about to expire and names exactly n's addresses; otherwise a new one.
func (b *Bundle) reuseOrIssue(certPath, keyPath string, n Node, kind string, now time.Time) (Pair, error) {
	certPEM, errC := readSmall(certPath)
	keyPEM, errK := readSmall(keyPath)
	if errC == nil && errK == nil {
		if cert, _, err := parsePair(certPath, certPEM, keyPath, keyPEM); err == nil && b.fits(cert, n, now) {
			return Pair{Cert: certPEM, Key: keyPEM}, nil
		}
	}
	return b.issue(n, kind, now)
}

func (b *Bundle) fits(cert *x509.Certificate, n Node, now time.Time) bool {
	if cert.CheckSignatureFrom(b.caCert) != nil || now.Add(renewBefore).After(cert.NotAfter) {
		return false
	}
	if cert.Subject.CommonName != n.Name {
		return false
	}
	want := ipStrings(n.IPs)
	have := ipStrings(cert.IPAddresses)
	return slices.Equal(want, have) && slices.Equal(sortedCopy(n.DNS), sortedCopy(cert.DNSNames))
}

func (b *Bundle) issue(n Node, kind string, now time.Time) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	cert, err := b.Sign(n, kind, key.Public(), now)
	if err != nil {
		return Pair{}, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{Cert: cert, Key: keyPEM}, nil
}

// Sign issues a certificate of kind for n's name and addresses to the public key pub, made
// elsewhere (a node's enrolment): the names and usages come from n and kind only. It returns the
// certificate as PEM.
func (b *Bundle) Sign(n Node, kind string, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	if b.caKey == nil {
		return nil, ErrNoPKI
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: n.Name, Organization: []string{"kiln"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     sortedCopy(n.DNS),
		IPAddresses:  n.IPs,
	}
	switch kind {
	case KindPeer:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case KindServer:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case KindClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames, tmpl.IPAddresses = nil, nil
	default:
		return nil, fmt.Errorf("pki: unknown certificate kind %q", kind)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.caCert, pub, b.caKey)
	if err != nil {
		return nil, err
	}
	b.issued = true
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parsePair parses a certificate and its key; an error names the file it is about.
func parsePair(certPath string, certPEM []byte, keyPath string, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: %w", certPath, ErrNoCert)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, ErrNoKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, ErrKeyCannotSign)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s: %w (%s)", keyPath, ErrKeyMismatch, certPath)
	}
	return cert, signer, nil
}

func readSmall(path string) ([]byte, error) { return inputfile.Read(path, inputfile.PKILimit) }

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func ipStrings(ips []net.IP) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	slices.Sort(s)
	return s
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// Equal reports whether p and o hold the same bytes.
func (p Pair) Equal(o Pair) bool { return bytes.Equal(p.Cert, o.Cert) && bytes.Equal(p.Key, o.Key) }
