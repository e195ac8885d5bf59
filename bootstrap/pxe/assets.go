package pxe

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// errNotRegular: an asset that is a FIFO, a device or a folder; errPrivateKey: a PEM private key.
var (
	errNotRegular = errors.New("not a regular file")
	errPrivateKey = errors.New("a private key")
)

// secretAsset reports whether an assets path names what is never served: a private key (*.key),
// anything under a pki folder, or kiln's own per-node outputs (config.ign, config.bu), as when
// --assets points at kiln render's output.
func secretAsset(rel string) bool {
	for _, el := range strings.Split(rel, "/") {
		if strings.EqualFold(el, "pki") {
			return true
		}
	}
	base := strings.ToLower(path.Base(rel))
	return strings.HasSuffix(base, ".key") || base == "config.ign" || base == "config.bu"
}

// openAsset opens a regular file under the assets folder. It opens without blocking (a FIFO
// would hold the request, and a thread, until a writer came) and refuses anything that is not a
// regular file.
func (s *Server) openAsset(rel string) (*os.File, fs.FileInfo, error) {
	f, err := s.assets.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", rel, errNotRegular)
	}
	// A private key under another name (or a link to one) is refused by its PEM header.
	head := make([]byte, 64)
	n, _ := f.ReadAt(head, 0)
	if line, _, _ := bytes.Cut(head[:n], []byte("\n")); bytes.HasPrefix(line, []byte("-----BEGIN ")) && bytes.Contains(line, []byte("PRIVATE KEY")) {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", rel, errPrivateKey)
	}
	return f, fi, nil
}

// LoadTLS reads and checks the server's certificate and key (both or neither), so that a bad
// pair fails before the server says it serves. Neither: nil, nil.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, ErrTLS
	}
	if certFile == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLS, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, nil
}
