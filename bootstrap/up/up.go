package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
	"github.com/kiln-cluster/kiln/node/etcdconn"
	"github.com/kiln-cluster/kiln/node/registry"
)

// StateFile is the file in a cluster's state folder that says what `kiln up` made.
const StateFile = "up.json"

// State is what `kiln up` made, so that `kiln down` needs no --driver.
type State struct {
	Cluster  string    `json:"cluster"`
	Driver   string    `json:"driver"`
	Machines []string  `json:"machines"`
	Updated  time.Time `json:"updated"`
}

// DefaultStateDir is the state folder of a cluster when `kiln up` is given no -o:
// $XDG_STATE_HOME/kiln/<cluster>, else ~/.local/state/kiln/<cluster>.
func DefaultStateDir(cluster string) (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "kiln", cluster), nil
}

// SaveState records s in dir.
func SaveState(dir string, s *State) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, StateFile), append(raw, '\n'), 0o644)
}

// LoadState reads what `kiln up` recorded in dir; ErrNoState when it made nothing there.
func LoadState(dir string) (*State, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoState, dir)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return &s, nil
}

// Journaler is implemented by a driver that can show a node's last log lines (its journal or
// console), which the progress display prints when the node fails.
type Journaler interface {
	Journal(ctx context.Context, p *Plan, node string, lines int) string
}

// Up brings the plan's cluster up with d and, when p.Wait, waits until every etcd member of the
// context answers healthy and every node's kiln-node has registered, reporting each step to r.
// timeout bounds the wait (not the driver's work).
func Up(ctx context.Context, d Driver, p *Plan, cc *clusterctx.Context, r Reporter, timeout time.Duration) error {
	if err := d.Up(ctx, p, r); err != nil {
		return err
	}
	if !p.Wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := waitCluster(wctx, p, cc, r)
	if err != nil {
		if j, ok := d.(Journaler); ok {
			var f *NodeError
			if errors.As(err, &f) {
				r.Failed(f.Node, f.Step, f.Err, j.Journal(ctx, p, f.Node, 30))
				return err
			}
		}
		r.Failed("", StepRegistered, err, "")
	}
	return err
}

// NodeError is a node that failed at a step.
type NodeError struct {
	Node string
	Step Step
	Err  error
}

func (e *NodeError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Node, e.Step, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

// waitCluster polls etcd's members and the machine registry until all are there.
func waitCluster(ctx context.Context, p *Plan, cc *clusterctx.Context, r Reporter) error {
	members := p.Compiled.Spec.Cluster.Etcd.Members
	healthy := map[string]bool{}
	registered := map[string]bool{}
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			_ = cli.Close()
		}
	}()
	var last error
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		// Members: each endpoint on its own, so that progress is per node.
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, m := range members {
			if healthy[m] || i >= len(cc.Endpoints) {
				continue
			}
			wg.Add(1)
			go func(m, ep string) {
				defer wg.Done()
				if err := memberHealthy(ctx, ep, cc); err != nil {
					mu.Lock()
					last = &NodeError{Node: m, Step: StepEtcd, Err: err}
					mu.Unlock()
					return
				}
				mu.Lock()
				healthy[m] = true
				mu.Unlock()
				r.Step(m, StepEtcd, "healthy")
			}(m, cc.Endpoints[i])
		}
		wg.Wait()
		if len(healthy) > 0 {
			if cli == nil {
				c, err := etcdconn.New(cc.Endpoints, cc.CA, cc.Cert, cc.Key)
				if err != nil {
					return err
				}
				cli = c
			}
			lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			ms, err := registry.List(lctx, cli)
			cancel()
			if err == nil {
				for _, m := range ms {
					if n := p.Compiled.Node(m.Hostname); n != nil && !registered[m.Hostname] {
						registered[m.Hostname] = true
						r.Step(m.Hostname, StepRegistered, shortID(m.ID))
					}
				}
			} else {
				last = err
			}
		}
		if len(healthy) == len(members) && len(registered) == len(p.Compiled.Nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return waitError(p, members, healthy, registered, last)
		case <-tick.C:
		}
	}
}

// waitError names the first node that is not there yet, and at which step.
func waitError(p *Plan, members []string, healthy, registered map[string]bool, last error) error {
	for _, m := range members {
		if !healthy[m] {
			var ne *NodeError
			if errors.As(last, &ne) && ne.Node == m {
				return fmt.Errorf("%w: %w", ErrTimeout, ne)
			}
			return fmt.Errorf("%w: %w", ErrTimeout, &NodeError{Node: m, Step: StepEtcd, Err: errors.New("not healthy")})
		}
	}
	var missing []string
	for _, n := range p.Compiled.Nodes {
		if !registered[n.Name] {
			missing = append(missing, n.Name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return fmt.Errorf("%w: %w", ErrTimeout, &NodeError{Node: missing[0], Step: StepRegistered,
			Err: fmt.Errorf("kiln-node has not registered (%s missing)", strings.Join(missing, ", "))})
	}
	return ErrTimeout
}

// memberHealthy asks the member at ep for its status, with the context's client certificate.
func memberHealthy(ctx context.Context, ep string, cc *clusterctx.Context) error {
	cli, err := etcdconn.New([]string{ep}, cc.CA, cc.Cert, cc.Key)
	if err != nil {
		return err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := cli.Status(sctx, ep)
	if err != nil {
		return err
	}
	if len(st.Errors) > 0 {
		return errors.New(strings.Join(st.Errors, "; "))
	}
	if st.Leader == 0 {
		return errors.New("no leader")
	}
	return nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return "machine " + id[:12]
	}
	return "machine " + id
}

// Down removes the cluster with d, then the current context of kiln ctl when it is this
// cluster's, and the state folder's record.
func Down(ctx context.Context, d Driver, p *Plan, r Reporter) error {
	if err := d.Down(ctx, p, r); err != nil {
		return err
	}
	if cur, path, err := clusterctx.LoadCurrentContext(); err == nil && cur.Name == p.Cluster() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(filepath.Join(p.StateDir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
