//go:build !linux

package exec

import "os/exec"

// waitCmd is cmd.Wait (see wait_linux.go).
func waitCmd(cmd *osexec.Cmd) error { return cmd.Wait() }
