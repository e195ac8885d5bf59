package agent_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/internal/etcdtest"
)

// TestIntegrationWrongCA: kiln-node given a CA that did not sign etcd's certificate says so
// (x509) and exits 1 at once, instead of retrying "context deadline exceeded" forever.
func TestIntegrationWrongCA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kiln-node")
	}
	c := etcdtest.Start(t, etcdtest.Members(1))
	other := t.TempDir()
	b, err := pki.Ensure(other, "other", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(other); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, c, "wrong-ca", "--etcd-ca", pki.CAPath(other)) // the last --etcd-ca wins
	cmd := exec.Command(nodeBin(t), append(n.args, "--boot-id", "b1")...)
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("kiln-node with a wrong CA still running after 20 s:\n%s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "x509") {
		t.Fatalf("exit %v, want 1 and an x509 error:\n%s", err, out)
	}
	t.Logf("kiln-node said: %s", strings.TrimSpace(string(out)))
}
