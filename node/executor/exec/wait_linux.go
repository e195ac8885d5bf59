package exec

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pidPoll waits for a process's end through its pidfd in Go's network poller: no thread is
// held while the process runs (cmd.Wait blocks one in waitid(2), about 50 KiB of the daemon's
// memory a running unit), and no goroutine either: the activation goroutine blocks in the
// poller itself, and a stop request wakes it by a read deadline in the past (poke).
type pidPoll struct{ f *os.File }

// openPidPoll opens pid's pidfd; nil where pidfds are missing (Linux before 5.3).
func openPidPoll(pid int) *pidPoll {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil
	}
	return &pidPoll{f: os.NewFile(uintptr(fd), "pidfd")}
}

// block waits until the process has exited (true), the deadline set by arm or poke passes
// (false, nil), or the poller fails (the error: the caller waits another way).
func (p *pidPoll) block() (bool, error) {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return false, err
	}
	err = rc.Read(func(fd uintptr) bool {
		// readable once the process has exited (a zombie until cmd.Wait reaps it)
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, nil
	}
	return false, err
}

// arm sets when block gives up (zero: never).
func (p *pidPoll) arm(deadline time.Time) error { return p.f.SetReadDeadline(deadline) }

// poke makes a block in progress (or the next one) return now.
func (p *pidPoll) poke() { _ = p.f.SetReadDeadline(time.Unix(1, 0)) }

func (p *pidPoll) close() { _ = p.f.Close() }
