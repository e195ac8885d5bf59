// Package journal brings a unit's log lines from the machine that runs it to kiln ctl journal,
// through etcd (so through its mutual TLS, with no other port to open): kiln ctl writes a
// request under a short lease at keys.JournalRequest(machine, id); the machine's kiln-node,
// which watches its own requests, answers at keys.JournalReply(id) under the same lease; kiln
// ctl reads the answer and revokes the lease, which removes both keys.
package journal

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/node/etcdconn"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Limits of one answer.
const (
	MaxLines = 1000
	MaxBytes = 512 << 10
	// RequestTTL is the lease of a request and its answer, in seconds.
	RequestTTL = 30
)

// Source reads the last n lines of a unit's log on this machine.
type Source func(ctx context.Context, unit string, n int) ([]string, error)

// FileSource reads DIR/<unit>.log, the exec executor's output files.
func FileSource(dir string) Source {
	return func(_ context.Context, name string, n int) ([]string, error) {
		if err := unit.ValidateName(name); err != nil {
			return nil, err
		}
		f, err := os.Open(filepath.Join(dir, name+".log"))
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoLog
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		// read at most the last MaxBytes
		if st, err := f.Stat(); err == nil && st.Size() > MaxBytes {
			if _, err := f.Seek(st.Size()-MaxBytes, io.SeekStart); err != nil {
				return nil, err
			}
		}
		return tail(f, n)
	}
}

// JournalctlSource asks systemd's journal (journalctl -u UNIT -n N).
func JournalctlSource() Source {
	return func(ctx context.Context, name string, n int) ([]string, error) {
		if err := unit.ValidateName(name); err != nil {
			return nil, err
		}
		out, err := exec.CommandContext(ctx, "journalctl", "--no-pager", "-o", "short-iso", "-u", name, "-n", strconv.Itoa(n)).Output()
		if err != nil {
			return nil, fmt.Errorf("journalctl: %w", err)
		}
		return tail(bytes.NewReader(out), n)
	}
}

func tail(r io.Reader, n int) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxBytes)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines, sc.Err()
}

// Client is what the package needs of etcd (a *clientv3.Client has it).
type Client interface {
	clientv3.KV
	clientv3.Watcher
	clientv3.Lease
}

// Serve answers machine's journal requests from src until ctx ends (it returns nil then);
// it watches again, with backoff, when the watch breaks.
func Serve(ctx context.Context, cli Client, machine string, src Source, log *slog.Logger) error {
	prefix := keys.MachineJournalRequests(machine)
	etcdconn.Follow(ctx, cli, prefix, func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if ev.Type != clientv3.EventTypePut || ev.Kv.Version != 1 {
				continue
			}
			id := string(ev.Kv.Key[len(prefix):])
			answer(ctx, cli, machine, id, ev.Kv.Value, clientv3.LeaseID(ev.Kv.Lease), src, log)
		}
	}, log, clientv3.WithPrefix())
	return nil
}

func answer(ctx context.Context, cli Client, machine, id string, raw []byte, lease clientv3.LeaseID, src Source, log *slog.Logger) {
	var req keys.JournalRequestValue
	reply := keys.JournalReplyValue{Machine: machine}
	if err := json.Unmarshal(raw, &req); err != nil {
		reply.Error = "bad request: " + err.Error()
	} else {
		reply.Unit = req.Unit
		n := min(max(req.Lines, 1), MaxLines)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		lines, err := src(rctx, req.Unit, n)
		cancel()
		if err != nil {
			reply.Error = err.Error()
		}
		size := 0
		for i := len(lines) - 1; i >= 0; i-- {
			if size += len(lines[i]) + 1; size > MaxBytes {
				lines = lines[i+1:]
				break
			}
		}
		reply.Lines = lines
	}
	val, _ := json.Marshal(reply)
	opts := []clientv3.OpOption{}
	if lease != clientv3.NoLease {
		opts = append(opts, clientv3.WithLease(lease))
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Put(pctx, keys.JournalReply(id), string(val), opts...); err != nil {
		log.Warn("journal answer not written", "unit", req.Unit, "err", err)
		return
	}
	log.Debug("journal answered", "unit", req.Unit, "lines", len(reply.Lines))
}

// Ask asks machine for the last n lines of a unit's log and waits for the answer until ctx
// ends.
func Ask(ctx context.Context, cli Client, machine, name string, n int) ([]string, error) {
	var b [8]byte
	_, _ = crand.Read(b[:])
	id := hex.EncodeToString(b[:])
	g, err := cli.Grant(ctx, RequestTTL)
	if err != nil {
		return nil, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = cli.Revoke(rctx, g.ID)
	}()
	val, _ := json.Marshal(keys.JournalRequestValue{Unit: name, Lines: n})
	put, err := cli.Put(ctx, keys.JournalRequest(machine, id), string(val), clientv3.WithLease(g.ID))
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range cli.Watch(wctx, keys.JournalReply(id), clientv3.WithRev(put.Header.Revision)) {
		if err := resp.Err(); err != nil {
			return nil, err
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			var reply keys.JournalReplyValue
			if err := json.Unmarshal(ev.Kv.Value, &reply); err != nil {
				return nil, err
			}
			if reply.Error != "" {
				return reply.Lines, fmt.Errorf("%s on %s: %s", name, machine, reply.Error)
			}
			return reply.Lines, nil
		}
	}
	return nil, fmt.Errorf("%s on %s: %w", name, machine, ErrNoAnswer)
}
