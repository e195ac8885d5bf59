package journal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/journal"
)

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 50 {
		lines = append(lines, strings.Repeat("x", i))
	}
	if err := os.WriteFile(filepath.Join(dir, "a.service.log"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := journal.FileSource(dir)
	cases := []struct {
		name string
		unit string
		n    int
		want []string
		err  error
	}{
		{"last three", "a.service", 3, lines[47:], nil},
		{"more than there are", "a.service", 100, lines, nil},
		{"no log", "b.service", 3, nil, journal.ErrNoLog},
		{"bad name", "../a.service", 3, nil, errors.New("any")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := src(context.Background(), tc.unit, tc.n)
			if (err != nil) != (tc.err != nil) || (tc.err == journal.ErrNoLog && !errors.Is(err, journal.ErrNoLog)) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %d lines, want %d", len(got), len(tc.want))
			}
		})
	}
}

// TestIntegrationJournal: kiln ctl's request reaches the machine's server through etcd and the
// lines come back; the request and its answer are gone afterwards.
func TestIntegrationJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.service.log"), []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = journal.Serve(ctx, cli, "m1", journal.FileSource(dir), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(200 * time.Millisecond) // the server's watch is in place

	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	lines, err := journal.Ask(actx, cli, "m1", "web.service", 2)
	if err != nil || !slices.Equal(lines, []string{"two", "three"}) {
		t.Fatalf("Ask = %q, %v", lines, err)
	}
	if _, err := journal.Ask(actx, cli, "m1", "other.service", 2); err == nil || !strings.Contains(err.Error(), journal.ErrNoLog.Error()) {
		t.Fatalf("Ask for a unit without a log: %v", err)
	}
	short, scancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer scancel()
	if _, err := journal.Ask(short, cli, "m2", "web.service", 2); err == nil {
		t.Fatal("a machine without a server answered")
	}
	resp, err := cli.Get(context.Background(), "/kiln/journal/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("journal keys left: %v %v", resp, err)
	}
}
