package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/ctl"
	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/lock"
	"github.com/kiln-cluster/kiln/node/registry"
)

func TestCtlWithoutAContextIsAUserError(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv(ctl.EnvContext, "")
	for _, e := range []string{ctl.EnvEndpoints, ctl.EnvCA, ctl.EnvCert, ctl.EnvKey} {
		t.Setenv(e, "")
	}
	code, _, stderr := kiln(t, "ctl", "machines")
	if code != 1 || !strings.Contains(stderr, "no cluster context") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := kiln(t, "ctl", "locks", "-o", "yaml", "--etcd-endpoints", "https://127.0.0.1:1"); code != 1 {
		t.Fatalf("bad -o: exit %d", code)
	}
	if code, _, _ := kiln(t, "ctl", "unlock"); code != 1 {
		t.Fatalf("unlock without a machine: exit %d", code)
	}
}

func TestIntegrationCtl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c, cli := ctlCluster(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"m1", "m2"} {
		p := registry.NewPublisher(cli, cli, registry.Machine{ID: id, Hostname: "host-" + id, Health: registry.HealthHealthy,
			Metadata: map[string]string{"region": "east", "disk": "ssd"}, BootID: id + "-boot-1", BootTime: time.Now()}, 5*time.Second, nil)
		go p.Run(ctx)
	}
	m := lock.NewManager(cli, lock.Policy{}, nil)
	if err := m.Lock(ctx, "", "m2", "m2-boot-0"); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx, "", "gone", ""); err == nil {
		t.Fatal("a second holder with max 1")
	}
	deadline := time.Now().Add(5 * time.Second)
	var rows []ctl.MachineRow
	for len(rows) < 2 && time.Now().Before(deadline) {
		code, out, stderr := kiln(t, "ctl", "machines", "-o", "json")
		if code != 0 {
			t.Fatalf("machines: exit %d: %s", code, stderr)
		}
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("machines -o json: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(rows) != 2 || rows[1].ID != "m2" || len(rows[1].Holds) != 1 || rows[1].Holds[0] != "default" {
		t.Fatalf("machines: %+v", rows)
	}
	code, out, _ := kiln(t, "ctl", "machines")
	if code != 0 || !strings.Contains(out, "MACHINE") || !strings.Contains(out, "disk=ssd,region=east") || !strings.Contains(out, "(holds default)") {
		t.Fatalf("machines table: exit %d\n%s", code, out)
	}

	code, out, _ = kiln(t, "ctl", "locks", "-o", "json")
	var locks []ctl.LockRow
	if code != 0 || json.Unmarshal([]byte(out), &locks) != nil || len(locks) != 1 {
		t.Fatalf("locks: exit %d\n%s", code, out)
	}
	if l := locks[0]; l.Holder != "m2" || !l.Alive || !l.Rebooted || l.Since.IsZero() || l.Max != 1 {
		t.Fatalf("locks: %+v", l)
	}
	code, out, _ = kiln(t, "ctl", "locks")
	if code != 0 || !strings.Contains(out, "yes (rebooted)") || !strings.Contains(out, "1/1") {
		t.Fatalf("locks table: exit %d\n%s", code, out)
	}

	if code, _, stderr := kiln(t, "ctl", "unlock", "m1"); code != 1 || !strings.Contains(stderr, "holds no reboot slot") {
		t.Fatalf("unlock a non-holder: exit %d %s", code, stderr)
	}
	if code, out, stderr := kiln(t, "ctl", "unlock", "m2"); code != 0 || !strings.Contains(out, "freed m2") {
		t.Fatalf("unlock: exit %d %s %s", code, out, stderr)
	}
	if held, _ := m.Holding(ctx, "", "m2"); held {
		t.Fatal("m2 still holds after unlock")
	}

	if code, _, stderr := kiln(t, "ctl", "reboot", "nope"); code != 1 || !strings.Contains(stderr, "no such machine") {
		t.Fatalf("reboot unknown: exit %d %s", code, stderr)
	}
	if code, _, stderr := kiln(t, "ctl", "reboot", "m1", "--reason", "test"); code != 0 {
		t.Fatalf("reboot: exit %d %s", code, stderr)
	}
	resp, err := cli.Get(ctx, keys.RebootRequest("m1"))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"reason":"test"`) {
		t.Fatalf("request: %v %v", resp, err)
	}

	// Flags and KILN_ETCD_* win over the context: a context pointing nowhere is not read.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := clusterctx.SaveContext(bad, &clusterctx.Context{Endpoints: []string{"https://127.0.0.1:1"}, CA: c.ClientTLS().CA, Cert: c.ClientTLS().Cert, Key: c.ClientTLS().Key}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ctl.EnvEndpoints, strings.Join(c.Endpoints(), ","))
	if code, _, stderr := kiln(t, "ctl", "--context", bad, "--timeout", "5s", "locks"); code != 0 {
		t.Fatalf("KILN_ETCD_ENDPOINTS over --context: exit %d %s", code, stderr)
	}
}

// ctlCluster starts a real etcd cluster and makes it the current context, as kiln render does,
// so that kiln ctl finds it with no flags.
func ctlCluster(t *testing.T) (*etcdtest.Cluster, *clientv3.Client) {
	t.Helper()
	c := etcdtest.Start(t)
	tl := c.ClientTLS()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv(ctl.EnvContext, "")
	if _, err := clusterctx.WriteCurrentContext(&clusterctx.Context{Name: "test", Endpoints: c.Endpoints(), CA: tl.CA, Cert: tl.Cert, Key: tl.Key}); err != nil {
		t.Fatal(err)
	}
	return c, c.Client(t)
}
