//go:build !linux

package exec

import (
	"errors"
	"time"
)

// pidPoll has no pidfds to poll here: openPidPoll always returns nil and procs are waited for
// by a goroutine in cmd.Wait (see wait_linux.go).
type pidPoll struct{}

func openPidPoll(int) *pidPoll        { return nil }
func (*pidPoll) block() (bool, error) { return false, errors.ErrUnsupported }
func (*pidPoll) arm(time.Time) error  { return errors.ErrUnsupported }
func (*pidPoll) poke()                {}
func (*pidPoll) close()               {}
