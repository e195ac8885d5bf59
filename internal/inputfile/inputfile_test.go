package inputfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	big := filepath.Join(dir, "big")
	fifo := filepath.Join(dir, "fifo")
	link := filepath.Join(dir, "link")
	if err := os.WriteFile(small, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, 101), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       string
		err        error
		inMsg      string
	}{
		{name: "regular", path: small, want: "hello"},
		{name: "symlink followed", path: link, want: "hello"},
		{name: "over the limit", path: big, err: ErrTooLarge, inMsg: "100 bytes"},
		{name: "fifo", path: fifo, err: ErrNotRegular, inMsg: "FIFO"},
		{name: "folder", path: dir, err: ErrNotRegular, inMsg: "folder"},
		{name: "char device", path: "/dev/zero", err: ErrNotRegular, inMsg: "device"},
		{name: "missing", path: filepath.Join(dir, "nope"), err: os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var got []byte
			var err error
			go func() { got, err = Read(tc.path, 100); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Read hangs")
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.inMsg) {
					t.Fatalf("err = %v, want %v naming %s and %q", err, tc.err, tc.path, tc.inMsg)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}
