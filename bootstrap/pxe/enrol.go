package pxe

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/node/enrol"
)

// Policy decides the enrolments that the operator has not.
type Policy string

const (
	// PolicyApprove: every new set of keys waits for kiln pxe approve.
	PolicyApprove Policy = "approve"
	// PolicyFirst: the first keys that claim a node are signed; any other keys for that node
	// later are refused and reported (log at ERROR, kiln_pxe_enrol_conflicts_total, kiln pxe
	// enrolments), so that a machine that claims another's name is detected, not served. The
	// operator may still approve them (a reinstalled machine).
	PolicyFirst Policy = "first"
)

// ParsePolicy reads a --enrol value; "" is PolicyApprove.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", PolicyApprove:
		return PolicyApprove, nil
	case PolicyFirst:
		return PolicyFirst, nil
	}
	return "", fmt.Errorf("%w: %q", ErrEnrolPolicy, s)
}

// maxClaims bounds the sets of keys recorded per node: beyond it, new claims are refused without
// being written (a flood cannot fill the disk).
const maxClaims = 16

// kinds is what a node asks for: members need etcd's peer and server certificates too.
func kinds(member bool) []string {
	if member {
		return []string{enrol.KindClient, enrol.KindPeer, enrol.KindServer}
	}
	return []string{enrol.KindClient}
}

// serveEnrol answers a node's enrolment. The request names a node and brings certificate
// requests; only their public keys are used: the certificates get the names, addresses and
// usages of the node in the spec. Whether they are signed is the operator's decision or the
// policy's, never the request's.
func (s *Server) serveEnrol(w *responseWriter, r *http.Request) {
	st := s.state.Load()
	var req enrol.Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, enrol.MaxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.enrolAnswer(w, http.StatusBadRequest, enrol.Response{Message: "not an enrolment request: " + err.Error()})
		return
	}
	m := st.byName[req.Node]
	if m == nil {
		s.metrics.unknown.Inc()
		s.enrolAnswer(w, http.StatusNotFound, enrol.Response{Message: fmt.Sprintf("no node %q in cluster %s", req.Node, st.cluster)})
		return
	}
	w.node = m.name
	pubs, err := parseCSRs(req.CSRs, kinds(m.member))
	if err != nil {
		s.enrolAnswer(w, http.StatusBadRequest, enrol.Response{Message: err.Error()})
		return
	}
	fp, err := enrol.Fingerprint(pubs)
	if err != nil {
		s.enrolAnswer(w, http.StatusBadRequest, enrol.Response{Message: err.Error()})
		return
	}
	code, res := s.enrolDecide(st, m, fp, pubs, r.RemoteAddr)
	res.Fingerprint = fp
	s.enrolAnswer(w, code, res)
}

// enrolDecide records the claim, applies the policy and issues the certificates of an approved
// one. Enrolments are decided one at a time.
func (s *Server) enrolDecide(st *state, m *machine, fp string, pubs map[string]crypto.PublicKey, remote string) (int, enrol.Response) {
	s.enrolMu.Lock()
	defer s.enrolMu.Unlock()
	now := time.Now()
	all, err := s.enrolments.List(m.name)
	if err != nil {
		return s.enrolFailed(m, err)
	}
	var en *Enrolment
	isNew := false
	for i := range all {
		if all[i].Fingerprint == fp {
			en = &all[i]
		}
	}
	if en == nil {
		if len(all) >= maxClaims {
			s.metrics.enrolments.WithLabelValues("refused").Inc()
			s.log.Error("enrolment refused: too many different keys claim this node", "node", m.name, "remote", remote, "fingerprint", fp)
			return http.StatusTooManyRequests, enrol.Response{Status: enrol.StatusRefused,
				Message: fmt.Sprintf("%d different keys already claim node %s: refuse or approve them with kiln pxe", maxClaims, m.name)}
		}
		if en, isNew, err = s.enrolments.request(m.name, fp, remote, now); err != nil {
			return s.enrolFailed(m, err)
		}
	}
	if isNew && s.cfg.Enrol == PolicyFirst {
		var holder *Enrolment
		for i := range all {
			if all[i].Status == enrol.StatusApproved {
				holder = &all[i]
			}
		}
		status, reason := enrol.StatusApproved, "the first keys to claim the node"
		if holder != nil {
			status = enrol.StatusRefused
			reason = fmt.Sprintf("node already enrolled with keys %.16s from %s", holder.Fingerprint, holder.Remote)
			s.metrics.enrolConflicts.Inc()
		}
		if err := s.enrolments.decide(en, status, "policy first", reason, now); err != nil {
			return s.enrolFailed(m, err)
		}
	}
	switch en.Status {
	case enrol.StatusRefused:
		s.metrics.enrolments.WithLabelValues("refused").Inc()
		s.log.Error("enrolment refused: keys that the node is not known by claim it (another machine may pretend to be this node)",
			"node", m.name, "remote", remote, "fingerprint", fp, "reason", en.Reason, "decided_by", en.DecidedBy)
		return http.StatusForbidden, enrol.Response{Status: enrol.StatusRefused, Message: "refused: " + en.Reason}
	case enrol.StatusPending:
		s.metrics.enrolments.WithLabelValues("pending").Inc()
		if isNew {
			s.log.Warn("enrolment waits for approval: check the fingerprint, then run kiln pxe approve "+m.name,
				"node", m.name, "remote", remote, "fingerprint", fp)
		}
		return http.StatusAccepted, enrol.Response{Status: enrol.StatusPending,
			Message: "waiting for the operator: kiln pxe approve " + m.name}
	}
	certs, err := s.enrolments.certs(m.name, fp)
	if errors.Is(err, fs.ErrNotExist) {
		if certs, err = issue(st, m, pubs, now); err == nil {
			err = s.enrolments.saveCerts(m.name, fp, certs, now)
		}
		if err == nil {
			s.log.Info("enrolled: certificates issued", "node", m.name, "remote", remote, "fingerprint", fp, "decided_by", en.DecidedBy)
		}
	}
	if err != nil {
		return s.enrolFailed(m, err)
	}
	s.metrics.enrolments.WithLabelValues("issued").Inc()
	return http.StatusOK, enrol.Response{Status: enrol.StatusApproved, Certs: certs}
}

func (s *Server) enrolFailed(m *machine, err error) (int, enrol.Response) {
	s.log.Error("enrolment failed", "node", m.name, "err", err)
	return http.StatusInternalServerError, enrol.Response{Message: "the boot server could not record the enrolment (its log says why)"}
}

// issue signs each public key with the cluster CA, for the node's names and addresses in the
// spec: what the requests asked for plays no part.
func issue(st *state, m *machine, pubs map[string]crypto.PublicKey, now time.Time) (map[string]string, error) {
	certs := map[string]string{}
	for _, kind := range slices.Sorted(maps.Keys(pubs)) {
		n := m.pki
		if kind == enrol.KindClient {
			n = pki.Node{Name: m.name}
		}
		c, err := st.pki.Sign(n, kind, pubs[kind], now)
		if err != nil {
			return nil, err
		}
		certs[kind] = string(c)
	}
	return certs, nil
}

// parseCSRs checks that there is exactly one request per kind wanted, each a PEM certificate
// request signed by its own ECDSA key, and returns the keys.
func parseCSRs(csrs map[string]string, want []string) (map[string]crypto.PublicKey, error) {
	if len(csrs) != len(want) {
		return nil, fmt.Errorf("this node needs certificate requests for %s, one each", strings.Join(want, ", "))
	}
	pubs := map[string]crypto.PublicKey{}
	for _, kind := range want {
		raw, ok := csrs[kind]
		if !ok {
			return nil, fmt.Errorf("no certificate request for %s", kind)
		}
		b, _ := pem.Decode([]byte(raw))
		if b == nil || b.Type != "CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%s: not a PEM certificate request", kind)
		}
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", kind, err)
		}
		if err := csr.CheckSignature(); err != nil {
			return nil, fmt.Errorf("%s: %v", kind, err)
		}
		if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
			return nil, fmt.Errorf("%s: the key must be ECDSA", kind)
		}
		pubs[kind] = csr.PublicKey
	}
	return pubs, nil
}

func (s *Server) enrolAnswer(w *responseWriter, code int, res enrol.Response) {
	raw, _ := json.Marshal(res)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h[headerCache] = noStore
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(code)
	w.Write(append(raw, '\n'))
}
