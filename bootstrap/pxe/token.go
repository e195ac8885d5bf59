package pxe

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TokenSecretFile is the name of the token secret beside the cluster's PKI.
const TokenSecretFile = "pxe-token.key"

// LoadOrCreateSecret reads the token secret at path, or writes a new random one there (256
// bits, hex, mode 0600) when there is none. A secret shorter than 32 bytes is refused.
func LoadOrCreateSecret(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		rand.Read(b)
		raw = []byte(hex.EncodeToString(b) + "\n")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(raw); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	secret := bytes.TrimSpace(raw)
	if len(secret) < 32 {
		return nil, fmt.Errorf("%s: %w", path, ErrTokenSecret)
	}
	return secret, nil
}

// validToken compares a given token with the machine's in constant time.
func validToken(given, want string) bool {
	return len(given) == len(want) && hmac.Equal([]byte(given), []byte(want))
}
