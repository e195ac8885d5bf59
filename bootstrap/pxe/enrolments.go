package pxe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/node/enrol"
)

// EnrolDir is the name of the enrolment state folder inside the PKI folder.
const EnrolDir = "enrol"

// Enrolments is the enrolment state, kept in the PKI folder (PKI/enrol/NODE/FINGERPRINT.*) so
// that it survives a restart and so that only who can write the PKI can approve: the server
// writes each request it sees (.request.json), the certificates it issued (.certs.json) and, with
// the policy first, its decision; the operator's kiln pxe approve and refuse write decisions
// (.decision.json). Each file is written whole, atomically, by one writer at a time.
type Enrolments struct{ dir string }

// OpenEnrolments returns the enrolment state of the PKI folder pkiDir.
func OpenEnrolments(pkiDir string) *Enrolments {
	return &Enrolments{dir: filepath.Join(pkiDir, EnrolDir)}
}

// Enrolment is one set of keys that claimed a node, and what became of it.
type Enrolment struct {
	Node        string    `json:"node"`
	Fingerprint string    `json:"fingerprint"`
	Remote      string    `json:"remote"`
	Requested   time.Time `json:"requested"`
	// Status is pending, approved or refused; Issued is set once certificates were signed.
	Status    string    `json:"status"`
	DecidedBy string    `json:"decidedBy,omitempty"`
	Decided   time.Time `json:"decided,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	Issued    time.Time `json:"issued,omitzero"`
}

type requestFile struct {
	Node        string    `json:"node"`
	Fingerprint string    `json:"fingerprint"`
	Remote      string    `json:"remote"`
	Requested   time.Time `json:"requested"`
}

type decisionFile struct {
	Status string    `json:"status"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

type certsFile struct {
	Issued time.Time         `json:"issued"`
	Certs  map[string]string `json:"certs"`
}

func (e *Enrolments) path(node, fp, kind string) string {
	return filepath.Join(e.dir, node, fp+"."+kind+".json")
}

// validName refuses what is not one plain path element.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && fs.ValidPath(s)
}

func readJSON(p string, v any) error {
	raw, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

func writeJSON(p string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, append(raw, '\n'), 0o600)
}

// get reads one enrolment; fs.ErrNotExist when the keys never claimed the node.
func (e *Enrolments) get(node, fp string) (*Enrolment, error) {
	var rq requestFile
	if err := readJSON(e.path(node, fp, "request"), &rq); err != nil {
		return nil, err
	}
	en := &Enrolment{Node: node, Fingerprint: fp, Remote: rq.Remote, Requested: rq.Requested, Status: enrol.StatusPending}
	var d decisionFile
	switch err := readJSON(e.path(node, fp, "decision"), &d); {
	case err == nil:
		en.Status, en.DecidedBy, en.Decided, en.Reason = d.Status, d.By, d.At, d.Reason
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	var c certsFile
	if err := readJSON(e.path(node, fp, "certs"), &c); err == nil {
		en.Issued = c.Issued
	}
	return en, nil
}

// List returns the enrolments of node ("" for every node), oldest request first.
func (e *Enrolments) List(node string) ([]Enrolment, error) {
	nodes := []string{node}
	if node == "" {
		entries, err := os.ReadDir(e.dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		nodes = nodes[:0]
		for _, d := range entries {
			if d.IsDir() {
				nodes = append(nodes, d.Name())
			}
		}
	} else if !validName(node) {
		return nil, fmt.Errorf("%w: %q", ErrEnrolNode, node)
	}
	var out []Enrolment
	for _, n := range nodes {
		entries, err := os.ReadDir(filepath.Join(e.dir, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, d := range entries {
			fp, ok := strings.CutSuffix(d.Name(), ".request.json")
			if !ok {
				continue
			}
			en, err := e.get(n, fp)
			if err != nil {
				return nil, err
			}
			out = append(out, *en)
		}
	}
	slices.SortStableFunc(out, func(a, b Enrolment) int { return a.Requested.Compare(b.Requested) })
	return out, nil
}

// Decide approves or refuses the enrolment of node whose fingerprint is fp or starts with it
// (at least 8 digits); with fp empty, the node's only pending one. It returns the enrolment as
// decided.
func (e *Enrolments) Decide(node, fp, status, by, reason string) (*Enrolment, error) {
	if status != enrol.StatusApproved && status != enrol.StatusRefused {
		return nil, fmt.Errorf("pxe: unknown decision %q", status)
	}
	all, err := e.List(node)
	if err != nil {
		return nil, err
	}
	var match []Enrolment
	for _, en := range all {
		switch {
		case fp == "" && en.Status == enrol.StatusPending,
			fp != "" && len(fp) >= 8 && strings.HasPrefix(en.Fingerprint, strings.ToLower(fp)):
			match = append(match, en)
		}
	}
	switch {
	case len(match) == 0 && fp == "":
		return nil, fmt.Errorf("%w: node %s (kiln pxe enrolments lists them all)", ErrNoPending, node)
	case len(match) == 0:
		return nil, fmt.Errorf("%w: node %s, fingerprint %s (at least 8 digits)", ErrNoEnrolment, node, fp)
	case len(match) > 1:
		var fps []string
		for _, m := range match {
			fps = append(fps, m.Fingerprint[:16]+" from "+m.Remote)
		}
		return nil, fmt.Errorf("%w: node %s: %s; name one with --fingerprint", ErrAmbiguous, node, strings.Join(fps, ", "))
	}
	en := match[0]
	now := time.Now().UTC()
	if err := writeJSON(e.path(node, en.Fingerprint, "decision"), decisionFile{Status: status, By: by, At: now, Reason: reason}); err != nil {
		return nil, err
	}
	en.Status, en.DecidedBy, en.Decided, en.Reason = status, by, now, reason
	return &en, nil
}

// request records that keys claimed node from remote, unless they did before; it returns the
// enrolment and whether it is new.
func (e *Enrolments) request(node, fp, remote string, now time.Time) (*Enrolment, bool, error) {
	en, err := e.get(node, fp)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return en, false, err
	}
	rq := requestFile{Node: node, Fingerprint: fp, Remote: remote, Requested: now.UTC()}
	if err := writeJSON(e.path(node, fp, "request"), rq); err != nil {
		return nil, false, err
	}
	return &Enrolment{Node: node, Fingerprint: fp, Remote: remote, Requested: rq.Requested, Status: enrol.StatusPending}, true, nil
}

// decide writes the server's own decision (policy first).
func (e *Enrolments) decide(en *Enrolment, status, by, reason string, now time.Time) error {
	d := decisionFile{Status: status, By: by, At: now.UTC(), Reason: reason}
	if err := writeJSON(e.path(en.Node, en.Fingerprint, "decision"), d); err != nil {
		return err
	}
	en.Status, en.DecidedBy, en.Decided, en.Reason = d.Status, d.By, d.At, d.Reason
	return nil
}

func (e *Enrolments) certs(node, fp string) (map[string]string, error) {
	var c certsFile
	if err := readJSON(e.path(node, fp, "certs"), &c); err != nil {
		return nil, err
	}
	return c.Certs, nil
}

func (e *Enrolments) saveCerts(node, fp string, certs map[string]string, now time.Time) error {
	return writeJSON(e.path(node, fp, "certs"), certsFile{Issued: now.UTC(), Certs: certs})
}

// Certs returns the certificates issued to an enrolment (PEM by kind), for tests and audits.
func (e *Enrolments) Certs(node, fp string) (map[string]string, error) { return e.certs(node, fp) }
