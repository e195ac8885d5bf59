package testboot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultAppend is the kernel command line for direct kernel boots when Machine.Append is empty.
const DefaultAppend = "console=ttyS0 panic=-1 quiet"

// DefaultMAC is the NIC's address when NIC.MAC is empty.
const DefaultMAC = "52:54:00:12:34:56"

// Machine describes one boot. Set Kernel (and Initrd, Append) for a direct kernel boot, CDROM
// for a boot from an ISO, or NIC with Boot "n" for a network boot through iPXE.
type Machine struct {
	Kernel, Initrd, Append string
	// CDROM is an ISO image attached as the IDE CD-ROM.
	CDROM string
	// Boot is QEMU's -boot order: "d" (CD-ROM), "n" (network, iPXE), "c" (disk); empty: QEMU's
	// default, or "d" when CDROM is set and Kernel is not.
	Boot string
	// NIC adds a virtio-net NIC on a user-mode network; nil means no network at all.
	NIC *NIC
	// FwCfg entries, passed as -fw_cfg name=NAME,file=FILE or string=...
	FwCfg []FwCfg
	// MemoryMiB defaults to 256.
	MemoryMiB int
	// Timeout bounds the whole boot; it defaults to 3 minutes.
	Timeout time.Duration
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
	// Serial, if set, receives the serial console as it comes (e.g. a test log writer).
	Serial io.Writer
}

// NIC is a virtio-net NIC on QEMU's user-mode network (10.0.2.0/24; the host's loopback is
// 10.0.2.2, QEMU's DHCP hands out 10.0.2.15).
type NIC struct {
	// MAC defaults to DefaultMAC.
	MAC string
	// TFTP is a directory QEMU's built-in TFTP server serves.
	TFTP string
	// BootFile is the DHCP boot file name: a path in TFTP, or an http:// URL that iPXE fetches
	// (e.g. http://10.0.2.2:PORT/boot.ipxe from a test's server; iPXE expands ${net0/mac} in
	// the script it gets).
	BootFile string
}

// FwCfg is one QEMU fw_cfg entry: a file's content or a string.
type FwCfg struct {
	Name   string
	File   string
	String string
}

// Result is what a boot printed.
type Result struct {
	// Serial is everything the guest wrote on its serial console.
	Serial string
	// Elapsed is the time from QEMU's start to its exit.
	Elapsed time.Duration
	// Args is QEMU's command line.
	Args []string
}

// Payload decodes what the guest printed between BeginMarker and EndMarker. A line starting with
// ErrorPrefix becomes the error; lines that cannot be base64 (kernel messages) are skipped.
func (r *Result) Payload() ([]byte, error) {
	var b64 strings.Builder
	in := false
	for line := range strings.Lines(r.Serial) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.Contains(line, ErrorPrefix):
			return nil, fmt.Errorf("guest: %s", line[strings.Index(line, ErrorPrefix)+len(ErrorPrefix):])
		case strings.Contains(line, BeginMarker):
			in = true
		case strings.Contains(line, EndMarker):
			if !in {
				return nil, errors.New("end marker without begin marker on the serial console")
			}
			return base64.StdEncoding.DecodeString(b64.String())
		case in && isBase64(line):
			b64.WriteString(line)
		}
	}
	return nil, errors.New("no output between markers on the serial console")
}

// escape doubles commas, which separate QEMU's suboptions.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func isBase64(s string) bool {
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// Args returns QEMU's command line for m.
func (k *Kit) Args(m Machine) []string {
	mem := m.MemoryMiB
	if mem == 0 {
		mem = 256
	}
	a := []string{
		"-accel", "tcg", "-machine", "pc", "-m", fmt.Sprint(mem), "-smp", "1",
		"-nographic", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
	}
	if m.Kernel != "" {
		a = append(a, "-kernel", m.Kernel)
		if m.Initrd != "" {
			a = append(a, "-initrd", m.Initrd)
		}
		app := m.Append
		if app == "" {
			app = DefaultAppend
		}
		a = append(a, "-append", app)
	}
	if m.CDROM != "" {
		a = append(a, "-drive", "file="+escape(m.CDROM)+",media=cdrom,readonly=on,if=ide,index=2")
	}
	boot := m.Boot
	if boot == "" && m.CDROM != "" && m.Kernel == "" {
		boot = "d"
	}
	if boot != "" {
		a = append(a, "-boot", boot)
	}
	if m.NIC != nil {
		nd := "user,id=n0"
		if m.NIC.TFTP != "" {
			nd += ",tftp=" + escape(m.NIC.TFTP)
		}
		if m.NIC.BootFile != "" {
			nd += ",bootfile=" + escape(m.NIC.BootFile)
		}
		mac := m.NIC.MAC
		if mac == "" {
			mac = DefaultMAC
		}
		a = append(a, "-netdev", nd, "-device", "virtio-net-pci,netdev=n0,mac="+mac)
	}
	for _, f := range m.FwCfg {
		if f.File != "" {
			a = append(a, "-fw_cfg", "name="+escape(f.Name)+",file="+escape(f.File))
		} else {
			a = append(a, "-fw_cfg", "name="+escape(f.Name)+",string="+escape(f.String))
		}
	}
	return append(a, m.ExtraArgs...)
}

// Run boots m and waits until QEMU exits (the guest powers off), the guest has printed its end
// marker or an error line (QEMU is then given 10 seconds to exit), or the timeout or ctx ends
// (QEMU is killed). The error is nil when QEMU exited by itself or after the end marker.
func (k *Kit) Run(ctx context.Context, m Machine) (*Result, error) {
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("boot timed out after %v", timeout))
	defer cancel()
	args := k.Args(m)
	cmd := exec.CommandContext(ctx, k.QEMU, args...)
	cmd.Stdin = nil
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	res := &Result{Args: args}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu: %w", err)
	}

	var serial bytes.Buffer
	var mu sync.Mutex
	ended := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		r := bufio.NewReader(stdout)
		once := sync.Once{}
		for {
			line, err := r.ReadString('\n')
			mu.Lock()
			serial.WriteString(line)
			mu.Unlock()
			if m.Serial != nil && line != "" {
				m.Serial.Write([]byte(line))
			}
			if strings.Contains(line, EndMarker) || strings.Contains(line, ErrorPrefix) {
				once.Do(func() { close(ended) })
			}
			if err != nil {
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() {
		<-scanned // all output read before Wait closes the pipe
		waited <- cmd.Wait()
	}()

	var runErr error
	select {
	case runErr = <-waited:
	case <-ended:
		select {
		case runErr = <-waited:
		case <-time.After(10 * time.Second):
			cancel()
			<-waited
		}
	}
	res.Elapsed = time.Since(start)
	mu.Lock()
	res.Serial = serial.String()
	mu.Unlock()
	select {
	case <-ended:
		return res, nil
	default:
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%w; qemu stderr: %s", context.Cause(ctx), strings.TrimSpace(stderr.String()))
	}
	if runErr != nil {
		return res, fmt.Errorf("qemu: %w: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return res, nil
}

// Boot runs m for a test: QEMU is killed when the test ends, the serial console is logged when
// the test fails, and the decoded payload is returned (the test fails if there is none).
func (k *Kit) Boot(t testing.TB, m Machine) (payload []byte, res *Result) {
	t.Helper()
	res, err := k.Run(t.Context(), m)
	if res != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("qemu %s\nserial console:\n%s", strings.Join(res.Args, " "), res.Serial)
			}
		})
	}
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	payload, err = res.Payload()
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	return payload, res
}

// TempFile writes b into a file in a new temporary directory of the test, for -fw_cfg file=.
func TempFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	return TempFileIn(t, t.TempDir(), name, b)
}

// TempFileIn writes b into dir/name (e.g. a TFTP directory) and returns the path.
func TempFileIn(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
