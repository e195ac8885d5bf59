package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIntegrationUpConverges proves kiln up's life cycle on a small cluster: a cluster not up in
// time fails naming the node, the step and its journal; --wait=false returns
// with the container running before the cluster is up; kiln up again converges (waits for it,
// starts a stopped machine, adds a node added to the spec, leaves the running ones alone); kiln
// down needs no --driver, removes containers, network and kiln ctl's context, and is idempotent.
func TestIntegrationUpConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("brings a docker cluster up")
	}
	c := newCluster(t)
	raw, err := os.ReadFile(c.spec)
	if err != nil {
		t.Fatal(err)
	}
	full := string(raw)
	// One etcd member and one node first; node2 joins later.
	var lines, node2 []string
	for _, l := range strings.Split(full, "\n") {
		switch {
		case strings.Contains(l, "members: [node1, node2, node3]"):
			l = strings.Replace(l, "[node1, node2, node3]", "[node1]", 1)
		case strings.Contains(l, "{name: node2"):
			node2 = append(node2, l)
			continue
		case strings.Contains(l, "{name: node3"):
			continue
		}
		lines = append(lines, l)
	}
	one := strings.Join(lines, "\n")
	if err := os.WriteFile(c.spec, []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	c.nodes = []string{"node1"}

	// A cluster not up in time: the node and step are named, with the node's last journal lines.
	cmd := exec.Command(c.kiln, "up", "-f", c.spec, "-o", c.out, "--timeout", "100ms")
	cmd.Env = c.env
	failed, err := cmd.CombinedOutput()
	if strings.Contains(string(failed), "--- last lines of node1 ---\n---") {
		t.Errorf("kiln up --timeout 100ms shows no lines of node1:\n%s", failed)
	}
	for _, want := range []string{"node1      FAILED at etcd", "--- last lines of node1 ---\n", "kiln up: cluster not up in time: node1: etcd"} {
		if err == nil || !strings.Contains(string(failed), want) {
			t.Errorf("kiln up --timeout 100ms: %v, output lacks %q:\n%s", err, want, failed)
		}
	}

	start := time.Now()
	out := c.kilnRun("up", "-f", c.spec, "-o", c.out, "--wait=false")
	if !c.running("node1") || !strings.Contains(out, "machines running") {
		t.Fatalf("kiln up --wait=false: node1 running %v\n%s", c.running("node1"), out)
	}
	t.Logf("kiln up --wait=false: %v", time.Since(start).Round(100*time.Millisecond))
	if raw, err := os.ReadFile(filepath.Join(c.out, "up.json")); err != nil || !strings.Contains(string(raw), `"driver": "docker"`) {
		t.Fatalf("up.json: %s, %v", raw, err)
	}

	out = c.kilnRun("up", "-f", c.spec, "-o", c.out)
	if !strings.Contains(out, "node1      machine: running") || !strings.Contains(out, "every kiln-node registered") {
		t.Errorf("kiln up on a running cluster:\n%s", out)
	}

	c.docker("stop", c.machine("node1"))
	out = c.kilnRun("up", "-f", c.spec, "-o", c.out)
	if !strings.Contains(out, "node1      machine: started") || !c.running("node1") {
		t.Errorf("kiln up with node1 stopped:\n%s", out)
	}

	booted := c.startedAt("node1")
	two := strings.Replace(one, "\nsnippets:", "\n"+strings.Join(node2, "\n")+"\nsnippets:", 1)
	if err := os.WriteFile(c.spec, []byte(two), 0o644); err != nil {
		t.Fatal(err)
	}
	c.nodes = []string{"node1", "node2"}
	out = c.kilnRun("up", "-f", c.spec, "-o", c.out)
	if !strings.Contains(out, "node2      machine: created") || !strings.Contains(out, "node2      registered") {
		t.Errorf("kiln up with node2 added:\n%s", out)
	}
	if c.startedAt("node1") != booted {
		t.Error("kiln up restarted node1, which was running")
	}

	context := filepath.Join(c.configHome(), "kiln", "context.yaml")
	if _, err := os.Stat(context); err != nil {
		t.Fatalf("kiln up left no context: %v", err)
	}
	start = time.Now()
	c.kilnRun("down", "-f", c.spec, "-o", c.out)
	t.Logf("kiln down: %v", time.Since(start).Round(100*time.Millisecond))
	c.assertGone()
	if _, err := os.Stat(context); !os.IsNotExist(err) {
		t.Errorf("kiln down left the context: %v", err)
	}
	if out := c.kilnRun("down", "-f", c.spec, "-o", c.out); !strings.Contains(out, "nothing made by kiln up") {
		t.Errorf("second kiln down:\n%s", out)
	}
}
