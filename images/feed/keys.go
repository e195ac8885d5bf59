package feed

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// The projects' public signing keys: Flatcar's image signing key (flatcar.org/security/
// image-signing-key) and the Fedora primary keys that sign Fedora CoreOS artifacts (as
// coreos-installer embeds them).
//
//go:embed keys/*.asc
var embedded embed.FS

// Keyring is a set of public keys that signatures are checked against.
type Keyring = openpgp.EntityList

// EmbeddedKeys returns the signing keys kiln embeds for an OS.
func EmbeddedKeys(o *catalog.OS) (Keyring, error) {
	if o.Feed.KeyFile == "" {
		return nil, fmt.Errorf("%w: kiln embeds none for %s: pass --keyring", ErrNoKeys, o.Name)
	}
	raw, err := embedded.ReadFile("keys/" + o.Feed.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKeys, err)
	}
	return ParseKeys(raw)
}

// ReadKeyring reads a keyring file (--keyring): armored public key blocks, one or more, or a
// binary keyring (gpg --export).
func ReadKeyring(path string) (Keyring, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKeys, err)
	}
	k, err := ParseKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

const armorBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"

// ParseKeys parses public keys: armored blocks (any number, one after the other) or binary.
func ParseKeys(raw []byte) (Keyring, error) {
	var out Keyring
	if !bytes.Contains(raw, []byte(armorBegin)) {
		l, err := openpgp.ReadKeyRing(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoKeys, err)
		}
		out = l
	}
	for _, block := range strings.Split(string(raw), armorBegin)[1:] {
		l, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armorBegin + block))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoKeys, err)
		}
		out = append(out, l...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the keyring holds no key", ErrNoKeys)
	}
	return out, nil
}

// CheckSignature checks a detached signature (binary or armored) of signed against the keyring.
// Keys are taken as valid at the signature's own creation time, as gpgv does for a project's
// yearly rotated signing subkeys: a release signed while its subkey was valid stays valid.
func CheckSignature(keys Keyring, signed io.Reader, sig []byte) error {
	if len(sig) == 0 {
		return fmt.Errorf("%w: empty signature", ErrSignature)
	}
	bin := sig
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN")) {
		b, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
		if bin, err = io.ReadAll(b.Body); err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
	}
	p, err := packet.Read(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		return fmt.Errorf("%w: not a signature packet", ErrSignature)
	}
	at := s.CreationTime
	cfg := &packet.Config{Time: func() time.Time { return at }}
	if _, err := openpgp.CheckDetachedSignature(keys, signed, bytes.NewReader(bin), cfg); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}
