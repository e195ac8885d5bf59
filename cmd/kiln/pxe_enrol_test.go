package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/pxe"
	"github.com/kiln-cluster/kiln/node/enrol"
)

// TestPXEApprove: a node's enrolment waits; kiln pxe enrolments lists it pending with its
// fingerprint and address; kiln pxe approve NODE lets it through; approving again finds nothing
// pending; a missing PKI folder is named, not made.
func TestPXEApprove(t *testing.T) {
	out := t.TempDir()
	if code, _, e := kiln(t, "render", "-f", example, "-o", out); code != 0 {
		t.Fatalf("render: %s", e)
	}
	pkiDir := filepath.Join(out, "pki")
	s, err := pxe.New(pxe.Config{Deliver: deliver.Options{Spec: example, PKIDir: pkiDir},
		Assets: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	node := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- enrol.Run(context.Background(), enrol.Config{Server: ts.URL, Node: "node3", CA: pki.CAPath(pkiDir),
			Certs: []enrol.Cert{ // node3 is an etcd member of the demo
				{Kind: enrol.KindClient, CertPath: filepath.Join(node, "c.crt"), KeyPath: filepath.Join(node, "c.key")},
				{Kind: enrol.KindPeer, CertPath: filepath.Join(node, "p.crt"), KeyPath: filepath.Join(node, "p.key")},
				{Kind: enrol.KindServer, CertPath: filepath.Join(node, "s.crt"), KeyPath: filepath.Join(node, "s.key")},
			},
			Backoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Timeout: time.Minute,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	deadline := time.Now().Add(30 * time.Second)
	var list string
	for time.Now().Before(deadline) {
		_, list, _ = kiln(t, "pxe", "enrolments", "--pki", pkiDir)
		if strings.Contains(list, "pending") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(list, "node3") || !strings.Contains(list, "pending") || !strings.Contains(list, "127.0.0.1:") {
		t.Fatalf("kiln pxe enrolments:\n%s", list)
	}
	code, o, e := kiln(t, "pxe", "approve", "node3", "--pki", pkiDir)
	if code != 0 || !strings.Contains(o, "approved node3") {
		t.Fatalf("approve: %d %s %s", code, o, e)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("enrol: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no certificate after the approval")
	}
	if code, _, e := kiln(t, "pxe", "approve", "node3", "--pki", pkiDir); code != 1 || !strings.Contains(e, "no pending enrolment") {
		t.Errorf("approving again: %d %s", code, e)
	}
	missing := filepath.Join(out, "typo")
	if code, _, e := kiln(t, "pxe", "enrolments", "--pki", missing); code != 1 || !strings.Contains(e, missing) {
		t.Errorf("a missing PKI: %d %s", code, e)
	}
}
