package exec

import (
	"os"
	osexec "os/exec"

	"golang.org/x/sys/unix"
)

// waitCmd is cmd.Wait that does not hold an OS thread while the process runs. cmd.Wait blocks
// a thread in waitid(2) for the process's whole life: one thread (and its stacks, about 50 KiB
// of the daemon's memory) per running unit. Here the process's pidfd waits in Go's network
// poller instead, and cmd.Wait runs once the process has exited. Where pidfds are missing
// (Linux before 5.3) it is plain cmd.Wait.
func waitCmd(cmd *osexec.Cmd) error {
	if fd, err := unix.PidfdOpen(cmd.Process.Pid, unix.PIDFD_NONBLOCK); err == nil {
		f := os.NewFile(uintptr(fd), "pidfd")
		if rc, err := f.SyscallConn(); err == nil {
			// readable once the process has exited (a zombie until cmd.Wait reaps it)
			_ = rc.Read(func(fd uintptr) bool {
				var info unix.Siginfo
				err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
				return err != nil || info.Signo != 0
			})
		}
		f.Close()
	}
	return cmd.Wait()
}
