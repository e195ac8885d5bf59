package docker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/testkit"
	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
	"github.com/kiln-cluster/kiln/node/etcdconn"
)

// cluster is a cluster that the kiln binary brought up for a test.
type cluster struct {
	t               *testing.T
	kiln, spec, out string
	env             []string
	name            string
	nodes           []string
	ips             map[string]string // node: address
	http            *http.Client
}

// TestE2EDemo is the demo of issue 8 on a three-node docker cluster from the spec kiln init
// writes (renamed, on a subnet of its own): kiln up to every kiln-node registered; my-app@1 and
// @2 answer HTTP from this host on two machines; a stopped machine's instance answers on the third
// while the other keeps answering (5 trials, or as many as fit); /run/reboot-required on every
// machine reboots them one at a time under the etcd lock (never two down or two holders, the app
// answering throughout); with the etcd leader's machine stopped the cluster still schedules;
// kiln down removes everything. Each step's duration, up and down times, the reschedule p99 and
// the lock hold times are logged.
func TestE2EDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("brings a docker cluster up")
	}
	c := newCluster(t)
	start := time.Now()
	c.kilnRun("up", "-f", c.spec, "-o", c.out, "--timeout", "2m")
	upTime := time.Since(start)
	t.Logf("figure: kiln up of 3 nodes (image cached): %v", upTime.Round(100*time.Millisecond))

	// Step 1: two instances on two machines, both answering from this host.
	step := time.Now()
	at := c.waitInstances(2, time.Minute)
	t.Logf("step 1: my-app@1 on %s, my-app@2 on %s, both answering (%v)", at["my-app@1.service"], at["my-app@2.service"], time.Since(step).Round(time.Millisecond))

	// Step 2: stop the container of one of them; its instance answers on the third machine, the
	// other answers throughout.
	step = time.Now()
	var trials []time.Duration
	for i := 0; i < 5 && (i == 0 || time.Since(step) < 100*time.Second); i++ {
		at = c.waitInstances(2, time.Minute)
		victim := at["my-app@1.service"]
		other := at["my-app@2.service"]
		free := c.freeNode(at)
		stopSampling := c.sample(other, 100*time.Millisecond)
		// docker stop returns once the container has exited, which takes up to 7 s more
		// than the reschedule: the stopping etcd member waits for its clients' watch
		// streams (etcd's request timeout) before it exits. The clock runs from the stop
		// signal, while the container is still going down.
		stopAt := time.Now()
		stopped := make(chan string, 1)
		go func() {
			out, err := exec.Command("docker", "stop", c.machine(victim)).CombinedOutput()
			if err != nil {
				stopped <- fmt.Sprintf("docker stop %s: %v: %s", victim, err, out)
			}
			close(stopped)
		}()
		d := c.waitAnswer(free, 30*time.Second)
		trials = append(trials, time.Since(stopAt))
		if msg := <-stopped; msg != "" {
			t.Fatal(msg)
		}
		if failed, total := stopSampling(); failed > 0 {
			t.Errorf("trial %d: my-app on %s failed %d of %d requests while %s was stopped", i+1, other, failed, total, victim)
		}
		t.Logf("step 2 trial %d: stopped %s; my-app@1 answers on %s after %v", i+1, victim, d, trials[i].Round(time.Millisecond))
		c.docker("start", c.machine(victim))
		c.waitRegistered(victim, time.Minute)
	}
	t.Logf("step 2: %v", time.Since(step).Round(time.Millisecond))
	t.Logf("figure: reschedule (container stop to the instance answering elsewhere) p99 of %d trials: %v, all: %v", len(trials), p99(trials).Round(time.Millisecond), trials)

	// Step 3: every machine asked to reboot: one at a time under the lock, app answering.
	step = time.Now()
	c.waitInstances(2, time.Minute)
	before := map[string]string{}
	for _, n := range c.nodes {
		before[n] = c.startedAt(n)
	}
	for _, n := range c.nodes {
		c.docker("exec", c.machine(n), "touch", "/run/reboot-required")
	}
	holds := c.watchRollingReboot(before, 4*time.Minute)
	total := time.Since(step)
	t.Logf("step 3: %v", total.Round(time.Millisecond))
	t.Logf("figure: rolling reboot of 3 machines: %v; lock held: %v", total.Round(100*time.Millisecond), holds)

	// Step 4: stop the etcd leader's machine: scheduling goes on with the two other members.
	step = time.Now()
	c.waitInstances(2, time.Minute)
	leader := c.leader()
	c.docker("stop", c.machine(leader))
	c.kilnRun("ctl", "stop", "my-app@1.service")
	c.kilnRun("ctl", "start", "my-app@1.service")
	at = c.waitInstances(2, time.Minute)
	for u, n := range at {
		if n == leader {
			t.Errorf("%s placed on the stopped leader %s", u, n)
		}
	}
	t.Logf("step 4: stopped the etcd leader %s; my-app@1 on %s, my-app@2 on %s (%v)", leader, at["my-app@1.service"], at["my-app@2.service"], time.Since(step).Round(time.Millisecond))

	start = time.Now()
	c.kilnRun("down", "-f", c.spec, "-o", c.out)
	t.Logf("figure: kiln down: %v", time.Since(start).Round(100*time.Millisecond))
	c.assertGone()
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	kiln := os.Getenv("KILN_BIN")
	for _, env := range []string{"KILN_BIN", "KILN_NODE_BIN", "KILN_ETCD_BIN", "KILN_IGNITION_BIN"} {
		if os.Getenv(env) == "" {
			testkit.Missing(t, "%s is not set (make build tools sets them)", env)
		}
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		testkit.Missing(t, "the docker daemon is not reachable")
	}
	dir := t.TempDir()
	c := &cluster{t: t, kiln: kiln, out: filepath.Join(dir, "state"), ips: map[string]string{},
		http: &http.Client{Timeout: 2 * time.Second},
		env:  append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_STATE_HOME="+filepath.Join(dir, "state-home"))}
	c.kilnRun("init", filepath.Join(dir, "demo"))
	c.spec = filepath.Join(dir, "demo", "cluster.yaml")
	raw, err := os.ReadFile(c.spec)
	if err != nil {
		t.Fatal(err)
	}
	// A name and a subnet of its own, so that it runs beside a user's demo cluster.
	c.name = fmt.Sprintf("e2e%04x", rand.IntN(1<<16))
	subnet := fmt.Sprintf("10.%d.%d.", 200+rand.IntN(50), rand.IntN(250))
	s := strings.ReplaceAll(string(raw), "name: demo", "name: "+c.name)
	s = strings.ReplaceAll(s, "10.0.0.", subnet)
	if err := os.WriteFile(c.spec, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	c.nodes = []string{"node1", "node2", "node3"}
	for i, n := range c.nodes {
		c.ips[n] = fmt.Sprintf("%s%d", subnet, 11+i)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				out, _ := exec.Command("docker", "exec", c.machine(n), "journalctl", "--no-pager", "-b", "-n", "60", "-u", "kiln-node").CombinedOutput()
				t.Logf("%s kiln-node journal:\n%s", n, out)
			}
		}
		cmd := exec.Command(kiln, "down", "-f", c.spec, "-o", c.out)
		cmd.Env = c.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("kiln down: %v\n%s", err, out)
		}
		// Whatever kiln down missed.
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=dev.kiln.cluster="+c.name).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
		}
		_ = exec.Command("docker", "network", "rm", "kiln-"+c.name).Run()
	})
	return c
}

// configHome is the XDG_CONFIG_HOME of the cluster's commands (where kiln ctl's context is).
func (c *cluster) configHome() string {
	home := "" // the last one counts, as for exec
	for _, e := range c.env {
		if v, ok := strings.CutPrefix(e, "XDG_CONFIG_HOME="); ok {
			home = v
		}
	}
	return home
}

func (c *cluster) machine(node string) string { return "kiln-" + c.name + "-" + node }

func (c *cluster) kilnRun(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.kiln, args...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (c *cluster) docker(args ...string) string {
	c.t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// get is what my-app on node answers ("" when it does not).
func (c *cluster) get(node string) string {
	resp, err := c.http.Get("http://" + c.ips[node] + ":8080/")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// waitInstances waits until n my-app instances answer from n different machines, each with
// its machine's name, and returns unit: node from kiln ctl units.
func (c *cluster) waitInstances(n int, timeout time.Duration) map[string]string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		at := c.placements()
		nodes := map[string]bool{}
		ok := true
		for i := 1; i <= n; i++ {
			node := at[fmt.Sprintf("my-app@%d.service", i)]
			if node == "" || nodes[node] || c.get(node) != node {
				ok = false
				break
			}
			nodes[node] = true
		}
		if ok {
			return at
		}
		last = fmt.Sprint(at)
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%d instances of my-app not answering on %d machines after %v (last placements %s)", n, n, timeout, last)
	return nil
}

// placements is unit: node of the running units (from kiln ctl units and machines).
func (c *cluster) placements() map[string]string {
	var units []struct {
		Name       string `json:"name"`
		Placements []struct {
			Machine string `json:"machine"`
			Report  *struct {
				ActiveState string `json:"activeState"`
			} `json:"report"`
		} `json:"placements"`
	}
	var machines []struct {
		ID       string `json:"id"`
		Hostname string `json:"hostname"`
	}
	cmd := exec.Command(c.kiln, "ctl", "units", "-o", "json")
	cmd.Env = c.env
	out, err := cmd.Output()
	if err != nil || json.Unmarshal(out, &units) != nil {
		return nil
	}
	cmd = exec.Command(c.kiln, "ctl", "machines", "-o", "json")
	cmd.Env = c.env
	out, err = cmd.Output()
	if err != nil || json.Unmarshal(out, &machines) != nil {
		return nil
	}
	host := map[string]string{}
	for _, m := range machines {
		host[m.ID] = m.Hostname
	}
	at := map[string]string{}
	for _, u := range units {
		for _, p := range u.Placements {
			if p.Report != nil && p.Report.ActiveState == "active" {
				at[u.Name] = host[p.Machine]
			}
		}
	}
	return at
}

func (c *cluster) freeNode(at map[string]string) string {
	for _, n := range c.nodes {
		if !slices.Contains(slices.Collect(mapValues(at)), n) {
			return n
		}
	}
	c.t.Fatalf("no machine free of my-app: %v", at)
	return ""
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// waitAnswer waits until my-app answers on node and returns the name it answers with.
func (c *cluster) waitAnswer(node string, timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if got := c.get(node); got != "" {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("my-app does not answer on %s after %v", node, timeout)
	return ""
}

// sample asks my-app on node every interval until the returned function is called, which
// returns how many requests failed, of how many.
func (c *cluster) sample(node string, interval time.Duration) func() (failed, total int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed, total int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			total++
			if c.get(node) != node {
				failed++
			}
		}
	}()
	return func() (int, int) {
		close(stop)
		wg.Wait()
		return failed, total
	}
}

func (c *cluster) waitRegistered(node string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		cmd := exec.Command(c.kiln, "ctl", "machines", "-o", "json")
		cmd.Env = c.env
		out, err := cmd.Output()
		var ms []struct {
			Hostname string `json:"hostname"`
			Health   string `json:"health"`
		}
		if err == nil && json.Unmarshal(out, &ms) == nil {
			for _, m := range ms {
				if m.Hostname == node && m.Health == "healthy" {
					return
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("%s not registered healthy after %v", node, timeout)
}

func (c *cluster) startedAt(node string) string {
	return c.docker("inspect", "--format", "{{.State.StartedAt}}", c.machine(node))
}

func (c *cluster) running(node string) bool {
	out, err := exec.Command("docker", "inspect", "--format", "{{.State.Running}}", c.machine(node)).Output()
	return err == nil && strings.TrimSpace(string(out)) == "true"
}

// watchRollingReboot samples, until every machine has rebooted (its container started again)
// and the lock is free, that at most one machine is down and at most one holds the lock, and
// that my-app answers somewhere. It returns each holder's hold time.
func (c *cluster) watchRollingReboot(before map[string]string, timeout time.Duration) map[string]time.Duration {
	c.t.Helper()
	cli, _ := c.etcd()
	defer cli.Close()
	const semaphore = "coreos.com/updateengine/rebootlock/semaphore"
	first, last := map[string]time.Time{}, map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	silent := 0
	for {
		now := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := cli.Get(ctx, semaphore)
		cancel()
		var holders []string
		if err == nil && len(resp.Kvs) == 1 {
			var sem struct {
				Holders []string `json:"holders"`
			}
			if json.Unmarshal(resp.Kvs[0].Value, &sem) == nil {
				holders = sem.Holders
			}
		}
		if len(holders) > 1 {
			c.t.Errorf("%d holders of the reboot lock at once: %v", len(holders), holders)
		}
		for _, h := range holders {
			if _, ok := first[h]; !ok {
				first[h] = now
			}
			last[h] = now
		}
		var down []string
		rebooted := 0
		for _, n := range c.nodes {
			if !c.running(n) {
				down = append(down, n)
			} else if c.startedAt(n) != before[n] {
				rebooted++
			}
		}
		if len(down) > 1 {
			c.t.Errorf("%d machines down at once: %v", len(down), down)
		}
		answering := false
		for _, n := range c.nodes {
			if c.get(n) != "" {
				answering = true
				break
			}
		}
		if !answering {
			silent++
			c.t.Logf("rolling reboot: no machine answers at %v (down: %v, lock holders: %v, placements: %v)",
				now.Sub(deadline.Add(-timeout)).Round(time.Millisecond), down, holders, c.placements())
		}
		if rebooted == len(c.nodes) && len(holders) == 0 && len(down) == 0 {
			break
		}
		if now.After(deadline) {
			c.t.Fatalf("rolling reboot not done after %v: %d of %d rebooted, holders %v, down %v", timeout, rebooted, len(c.nodes), holders, down)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if silent > 0 {
		c.t.Errorf("my-app answered on no machine in %d samples of the rolling reboot", silent)
	}
	holds := map[string]time.Duration{}
	for h := range first {
		holds[h[:12]] = last[h].Sub(first[h]).Round(100 * time.Millisecond)
	}
	if len(holds) != len(c.nodes) {
		c.t.Errorf("%d machines took the lock, want %d: %v", len(holds), len(c.nodes), holds)
	}
	return holds
}

// etcd is a client of the cluster, from the context kiln up left, and that context.
func (c *cluster) etcd() (*clientv3.Client, *clusterctx.Context) {
	c.t.Helper()
	cc, err := clusterctx.LoadContext(filepath.Join(c.out, "pki", clusterctx.ContextFile))
	if err != nil {
		c.t.Fatal(err)
	}
	cli, err := etcdconn.New(cc.Endpoints, cc.CA, cc.Cert, cc.Key)
	if err != nil {
		c.t.Fatal(err)
	}
	return cli, cc
}

// leader is the node whose etcd member leads.
func (c *cluster) leader() string {
	c.t.Helper()
	cli, cc := c.etcd()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ep := range cc.Endpoints {
		st, err := cli.Status(ctx, ep)
		if err != nil || st.Leader != st.Header.MemberId {
			continue
		}
		for n, ip := range c.ips {
			if strings.Contains(ep, "//"+ip+":") {
				return n
			}
		}
	}
	c.t.Fatal("no etcd leader found")
	return ""
}

// assertGone checks that no container or network of the cluster is left.
func (c *cluster) assertGone() {
	c.t.Helper()
	if out := c.docker("ps", "-a", "--format", "{{.Names}}", "--filter", "label=dev.kiln.cluster="+c.name); out != "" {
		c.t.Errorf("containers left after kiln down: %s", out)
	}
	if out := c.docker("network", "ls", "--format", "{{.Name}}"); slices.Contains(strings.Fields(out), "kiln-"+c.name) {
		c.t.Errorf("network kiln-%s left after kiln down", c.name)
	}
	if _, err := os.Stat(filepath.Join(c.out, "up.json")); err == nil {
		c.t.Error("up.json left after kiln down")
	}
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*99+99)/100 - 1
	return s[min(i, len(s)-1)]
}
