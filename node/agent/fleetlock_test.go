package agent_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/lock"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestIntegrationFleetLockServer: kiln-node with strategy fleetlock serves Zincati's protocol
// on the cluster's semaphore, and its metrics.
func TestIntegrationFleetLockServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kiln-node")
	}
	c := etcdtest.Start(t)
	fl, met := freeAddr(t), freeAddr(t)
	n := newNode(t, c, "fcos-1", "--strategy", "fleetlock", "--fleetlock-listen", fl, "--metrics-listen", met, "--max-concurrent", "1")
	n.start(t)
	t.Cleanup(n.stop)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)

	post := func(path, id string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+fl+path, strings.NewReader(`{"client_params":{"id":"`+id+`","group":"default"}}`))
		req.Header.Set(lock.ProtocolHeader, "true")
		var resp *http.Response
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			if resp, err = http.DefaultClient.Do(req); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
			req.Body = io.NopCloser(strings.NewReader(`{"client_params":{"id":"` + id + `","group":"default"}}`))
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := post(lock.PreRebootPath, "zincati-a"); code != 200 {
		t.Fatalf("pre-reboot: %d %s", code, b)
	}
	if code, b := post(lock.PreRebootPath, "zincati-b"); code != 409 || !strings.Contains(b, lock.KindFailedLock) {
		t.Fatalf("second pre-reboot: %d %s", code, b)
	}
	if code, b := post(lock.SteadyStatePath, "zincati-a"); code != 200 {
		t.Fatalf("steady-state: %d %s", code, b)
	}
	if code, b := post(lock.PreRebootPath, "zincati-b"); code != 200 {
		t.Fatalf("pre-reboot after release: %d %s", code, b)
	}
	resp, err := http.Get("http://" + met + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"kiln_node_fleetlock_requests_total", "kiln_node_registered 1", "go_goroutines"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}
