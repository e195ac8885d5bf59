package enrol

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"maps"
	"slices"
)

// Path is the boot server's route for enrolments (POST, JSON).
const Path = "/enrol"

// MaxRequest bounds a request's body; three CSRs take about 1.5 KiB.
const MaxRequest = 64 << 10

// The certificates a node asks for, by kind: the same names as the cluster PKI's kinds.
const (
	KindPeer   = "peer"   // etcd peer (members only)
	KindServer = "server" // etcd client-facing server (members only)
	KindClient = "client" // kiln-node's etcd client identity
)

// Request is what a node sends: its name and one PEM certificate request per kind. The server
// reads only the public keys (and checks each request's signature): the names and usages of the
// certificates come from the cluster spec.
type Request struct {
	Node string            `json:"node"`
	CSRs map[string]string `json:"csrs"`
}

// The states of an enrolment, in Response.Status and in the server's records.
const (
	StatusPending  = "pending"  // waiting for the operator (kiln pxe approve)
	StatusApproved = "approved" // will be, or was, issued
	StatusRefused  = "refused"  // never issued
)

// Response is the server's answer: 200 with Certs (PEM by kind) once approved; 202 while
// pending; 403 when refused; 4xx with Message for a bad request.
type Response struct {
	Status      string            `json:"status"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	Certs       map[string]string `json:"certs,omitempty"`
	Message     string            `json:"message,omitempty"`
}

// Fingerprint names one set of keys: the hex SHA-256 of each kind and its key's DER
// SubjectPublicKeyInfo, in the order of the kinds' names. The node logs it and the server lists
// it (kiln pxe enrolments), so that the operator can tell the real machine's request from another.
func Fingerprint(pubs map[string]crypto.PublicKey) (string, error) {
	h := sha256.New()
	for _, kind := range slices.Sorted(maps.Keys(pubs)) {
		der, err := x509.MarshalPKIXPublicKey(pubs[kind])
		if err != nil {
			return "", err
		}
		h.Write([]byte(kind))
		h.Write([]byte{0})
		h.Write(der)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
