package exec

import (
	osexec "os/exec"
	"time"
)

// proc is a started process of a unit, waited for by the unit's activation goroutine.
type proc struct {
	cmd *osexec.Cmd
	// poll waits in the poller (wait_linux.go); where it is nil, a goroutine in cmd.Wait sends
	// the end on exited.
	poll   *pidPoll
	exited chan error
	ended  bool
	err    error // cmd.Wait's, once ended
}

// newProc starts waiting for cmd, which has been started.
func newProc(cmd *osexec.Cmd) *proc {
	p := &proc{cmd: cmd, poll: openPidPoll(cmd.Process.Pid)}
	if p.poll == nil {
		p.waitInGoroutine()
	}
	return p
}

func (p *proc) waitInGoroutine() {
	p.poll, p.exited = nil, make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait() }()
}

func (p *proc) end(err error) (bool, error) {
	p.ended, p.err = true, err
	return true, err
}

// waitProc waits until p has ended (true, with cmd.Wait's error), stopReq or kill is closed (a
// nil one never is), or deadline passes (zero: never). Meanwhile u.waiting is p, so that a stop
// request wakes the wait (wakeWaiting).
func (u *execUnit) waitProc(p *proc, deadline time.Time, stopReq, kill chan struct{}) (bool, error) {
	if p.ended {
		return true, p.err
	}
	if p.poll == nil {
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case err := <-p.exited:
			return p.end(err)
		case <-stopReq:
		case <-kill:
		case <-timeout:
		}
		return false, nil
	}
	for {
		// Arm first, then check the channels: a stop that closes its channel before this
		// check is seen by it, one that closes it after pokes the armed wait.
		armErr := p.poll.arm(deadline)
		u.setWaiting(p)
		if isClosed(stopReq) || isClosed(kill) {
			u.setWaiting(nil)
			return false, nil
		}
		ended, err := false, armErr
		if err == nil {
			ended, err = p.poll.block()
		}
		u.setWaiting(nil)
		if err != nil { // the poller cannot wait for this process: a goroutine does
			p.poll.close()
			p.waitInGoroutine()
			return u.waitProc(p, deadline, stopReq, kill)
		}
		if ended {
			p.poll.close()
			return p.end(p.cmd.Wait())
		}
		if isClosed(stopReq) || isClosed(kill) || !deadline.IsZero() && !time.Now().Before(deadline) {
			return false, nil
		}
		// woken for a stop that this wait does not watch: wait again
	}
}

func (u *execUnit) setWaiting(p *proc) {
	u.e.mu.Lock()
	u.waiting = p
	u.e.mu.Unlock()
}

// wakeWaiting wakes the activation goroutine's wait for a process, after a stop channel was
// closed; e.mu is held.
func (u *execUnit) wakeWaiting() {
	if u.waiting != nil && u.waiting.poll != nil {
		u.waiting.poll.poke()
	}
}
