package etcdconn_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/etcdconn"
)

// connectedMembers returns, for each member, how many TCP connections this process has
// established to its client port (from /proc/net/tcp and this process's socket descriptors).
func connectedMembers(t *testing.T, endpoints []string) []int {
	t.Helper()
	ports := map[int]int{} // client port -> member index
	for i, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(u.Port())
		ports[p] = i
	}
	mine := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp:", err)
	}
	counts := make([]int, len(endpoints))
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" || !mine[f[9]] { // 01: established
			continue
		}
		_, remPort, _ := strings.Cut(f[2], ":")
		p, _ := strconv.ParseInt(remPort, 16, 32)
		if i, ok := ports[int(p)]; ok {
			counts[i]++
		}
	}
	return counts
}

// A kiln client keeps one connection to one member (not one to each, as etcd's round-robin
// balancing would), and when that member dies it goes on with another: requests succeed and
// a watch started before sees what is written after.
func TestIntegrationOneConnectionFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	c := etcdtest.Start(t, etcdtest.Members(3))
	tl := c.ClientTLS()
	cli, err := etcdconn.New(c.Endpoints(), tl.CA, tl.Cert, tl.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "/failover/a", "1"); err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), "/failover/", clientv3.WithPrefix(), clientv3.WithRev(1))
	counts := connectedMembers(t, c.Endpoints())
	connected, total := -1, 0
	for i, n := range counts {
		total += n
		if n > 0 {
			connected = i
		}
	}
	if total != 1 {
		t.Fatalf("connections to the members: %v, want one in all", counts)
	}
	c.Kill(connected)
	// A put may fail while the cluster elects a leader (when the dead member led it): the
	// callers retry, as here; it must succeed once the client is on another member.
	for {
		_, err := cli.Put(ctx, "/failover/b", "2")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("put after member %d died: %v", connected, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := map[string]bool{}
	for !seen["/failover/b"] {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatalf("watch closed; seen %v", seen)
			}
			for _, ev := range resp.Events {
				seen[string(ev.Kv.Key)] = true
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %v, not /failover/b, after member %d died", seen, connected)
		}
	}
	if counts := connectedMembers(t, c.Endpoints()); counts[connected] != 0 || fmt.Sprint(counts) == "[0 0 0]" {
		t.Fatalf("connections after member %d died: %v", connected, counts)
	}
}
