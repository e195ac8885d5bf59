//go:build !linux

package executor

import "os/exec"

// waitCmd is cmd.Wait (see wait_linux.go).
func waitCmd(cmd *exec.Cmd) error { return cmd.Wait() }
