//go:build !linux

package exec

import "syscall"

// sysProcAttr puts a command in its own process group (no Pdeathsig outside Linux).
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

type stat struct {
	state byte
	pgrp  int
	start uint64
}

func procStat(pid int) (stat, bool) {
	if syscall.Kill(pid, 0) != nil {
		return stat{}, false
	}
	return stat{state: 'R', pgrp: pid}, true
}

func groupAlive(pgid int) bool { return pgid > 0 && syscall.Kill(-pgid, 0) == nil }

func currentBootID() string { return "" }
