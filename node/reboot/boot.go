package reboot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// DefaultBootMarker is where kiln-node keeps its boot marker: /run is a fresh tmpfs at every
// boot of a real machine and at every start of a systemd container (the docker driver mounts
// --tmpfs /run), so a marker there lives exactly as long as the boot.
const DefaultBootMarker = "/run/kiln-node/boot-marker"

// kernelBootID is the kernel's boot ID; a variable so that tests can stand in for the kernel.
var kernelBootID = "/proc/sys/kernel/random/boot_id"

// Boot returns this boot's identity: the kernel's boot ID joined with a random marker kept in
// the file marker (made on the boot's first call). The kernel's boot ID alone does not do in a
// container, where it is the host's and a container restart (a reboot of the node) keeps it;
// the marker alone would make a deleted marker file look like a reboot on a real machine even
// though the kernel says otherwise, so both count: the identity changes when either does.
// An empty marker path gives the kernel's boot ID alone.
//
// What this guards is the rule that a reboot slot is released only after a reboot: a marker
// that survives a container restart (a /run that is not a tmpfs) makes the node keep its slot
// (safe; kiln ctl unlock frees it), never release it early.
func Boot(marker string) (string, error) {
	raw, err := os.ReadFile(kernelBootID)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoBootID, err)
	}
	kernel := strings.TrimSpace(string(raw))
	if kernel == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrNoBootID, kernelBootID)
	}
	if marker == "" {
		return kernel, nil
	}
	m, err := bootMarker(marker)
	if err != nil {
		return "", err
	}
	return kernel + "+" + m, nil
}

// bootMarker reads the marker file, making it (random, 128 bits) when it does not exist yet.
func bootMarker(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		m := strings.TrimSpace(string(raw))
		if validMarker(m) {
			return m, nil
		}
		return "", fmt.Errorf("%w: %s holds %q, not a marker kiln-node wrote (remove it to start a new one)", ErrNoBootID, path, truncate(m, 40))
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: boot marker: %v", ErrNoBootID, err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	m := hex.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("%w: boot marker: %v", ErrNoBootID, err)
	}
	if err := atomicfile.Write(path, []byte(m+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("%w: boot marker: %v", ErrNoBootID, err)
	}
	return m, nil
}

func validMarker(m string) bool {
	if len(m) != 32 {
		return false
	}
	_, err := hex.DecodeString(m)
	return err == nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
