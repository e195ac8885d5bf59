// Package mirrortest serves a mirror of both OS release feeds on loopback, in their real layouts
// (Fedora CoreOS stream metadata; Flatcar's release server with version.txt, .DIGESTS and
// detached .sig per artifact), with small artifacts signed by a test key made at start. Tests
// break it on purpose: cut a connection mid-file, change a file after signing, drop a signature.
package mirrortest

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/coreos/stream-metadata-go/stream"
	"github.com/ulikunitz/xz"

	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/images/feed"
	"github.com/kiln-cluster/kiln/internal/testkit"
)

// Versions the mirror publishes.
const (
	FlatcarVersion = "4230.2.3"
	FCOSVersion    = "42.20250901.3.0"
)

// Mirror is a running mirror. Its URL is the --base-url of both OSes.
type Mirror struct {
	URL string
	// KeyringFile is the test key's public part, armored (--keyring).
	KeyringFile string
	// Keys is the same key as a keyring.
	Keys feed.Keyring

	signer *openpgp.Entity
	mu     sync.Mutex
	files  map[string][]byte
	cuts   map[string]int
	stalls map[string]int
	ranges map[string][]string
	// stored is what each artifact becomes in the cache: "<os>/<channel>/<name>" → content.
	stored map[string][]byte
}

// New starts a mirror that serves the stable channel of both OSes, platforms pxe and qemu.
func New(t testing.TB) *Mirror {
	t.Helper()
	m := &Mirror{files: map[string][]byte{}, cuts: map[string]int{}, stalls: map[string]int{}, ranges: map[string][]string{}, stored: map[string][]byte{}}
	var err error
	m.signer, err = openpgp.NewEntity("kiln test", "", "test@kiln.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	aw, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.signer.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	m.KeyringFile = filepath.Join(t.TempDir(), "test-key.asc")
	if err := os.WriteFile(m.KeyringFile, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if m.Keys, err = feed.ParseKeys(pub.Bytes()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	m.flatcar(t)
	m.fcos(t)
	return m
}

// size is the test size of an artifact: small for those compressed on the mirror, which Go's
// compressors take long to make of random bytes.
func size(a catalog.Artifact) int {
	if a.Decompress {
		return 64 << 10
	}
	return 200 << 10
}

// payload is deterministic test content of n bytes.
func payload(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func (m *Mirror) flatcar(t testing.TB) {
	o := catalog.Of("flatcar")
	dir := "/stable/amd64-usr/" + FlatcarVersion + "/"
	vt := []byte("FLATCAR_VERSION=" + FlatcarVersion + "\nFLATCAR_VERSION_ID=" + FlatcarVersion + "\nFLATCAR_BUILD_ID=\"\"\nFLATCAR_SDK_VERSION=" + FlatcarVersion + "\n")
	m.files[dir+"version.txt"] = vt
	m.files["/stable/amd64-usr/current/version.txt"] = vt
	for i, pn := range []string{"pxe", "qemu"} {
		for j, a := range o.Platforms[pn].Artifacts {
			content := payload(uint64(10*i+j+1), size(a))
			if a.Role == catalog.Initramfs {
				content = gz(t, content)
			}
			m.stored["flatcar/stable/"+a.Name] = content
			dl := content
			if a.Decompress {
				dl = bz2(t, content)
			}
			m.Publish(dir+a.Remote, dl)
		}
	}
}

// Publish puts a Flatcar-style artifact at p: the file, its .DIGESTS and its .sig.
func (m *Mirror) Publish(p string, content []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[p] = content
	m.files[p+".DIGESTS"] = digests(path.Base(p), content)
	m.files[p+".sig"] = m.sign(content)
}

// digests writes a .DIGESTS file as Flatcar's release tooling does.
func digests(name string, b []byte) []byte {
	var out bytes.Buffer
	md, s1, s512 := md5.Sum(b), sha1.Sum(b), sha512.Sum512(b)
	fmt.Fprintf(&out, "# MD5 HASH\n%x  %s\n# SHA1 HASH\n%x  %s\n# SHA512 HASH\n%x  %s\n", md, name, s1, name, s512, name)
	return out.Bytes()
}

func (m *Mirror) fcos(t testing.TB) {
	o := catalog.Of("fcos")
	base := m.URL + "/prod/streams/stable/builds/" + FCOSVersion + "/x86_64/"
	st := stream.Stream{Stream: "stable", Metadata: stream.Metadata{LastModified: time.Now().UTC().Format(time.RFC3339), Generator: "kiln mirrortest"},
		Architectures: map[string]stream.Arch{"x86_64": {Artifacts: map[string]stream.PlatformArtifacts{}}}}
	arts := st.Architectures["x86_64"].Artifacts
	for i, pn := range []string{"pxe", "qemu"} {
		for j, a := range o.Platforms[pn].Artifacts {
			content := payload(uint64(100+10*i+j), size(a))
			m.stored["fcos/stable/"+a.Name] = content
			dl := content
			remote := "fedora-coreos-" + FCOSVersion + "-" + a.Name
			sa := &stream.Artifact{}
			if a.Decompress {
				dl = xzip(t, content)
				remote += ".xz"
				sa.UncompressedSha256 = sum256(content)
			}
			m.files["/prod/streams/stable/builds/"+FCOSVersion+"/x86_64/"+remote] = dl
			m.files["/prod/streams/stable/builds/"+FCOSVersion+"/x86_64/"+remote+".sig"] = m.sign(dl)
			sa.Location, sa.Signature, sa.Sha256 = base+remote, base+remote+".sig", sum256(dl)
			pa := arts[a.StreamPlatform]
			pa.Release = FCOSVersion
			if pa.Formats == nil {
				pa.Formats = map[string]stream.ImageFormat{}
			}
			f := pa.Formats[a.StreamFormat]
			switch a.StreamArtifact {
			case "kernel":
				f.Kernel = sa
			case "initramfs":
				f.Initramfs = sa
			case "rootfs":
				f.Rootfs = sa
			case "disk":
				f.Disk = sa
			}
			pa.Formats[a.StreamFormat] = f
			arts[a.StreamPlatform] = pa
		}
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	m.files["/streams/stable.json"] = raw
}

// FCOSPath is the URL path of a Fedora CoreOS artifact of the mirror's stream, by catalog name
// (with .xz when it is published compressed).
func FCOSPath(name string) string {
	return "/prod/streams/stable/builds/" + FCOSVersion + "/x86_64/fedora-coreos-" + FCOSVersion + "-" + name
}

// FlatcarPath is the URL path of a Flatcar artifact of the mirror's release, by remote name.
func FlatcarPath(remote string) string { return "/stable/amd64-usr/" + FlatcarVersion + "/" + remote }

// Stored is what an artifact of the stable channel must be in the cache.
func (m *Mirror) Stored(osName, name string) []byte { return m.stored[osName+"/stable/"+name] }

// Set replaces a file as it is served (its signature and digests stay as they were).
func (m *Mirror) Set(p string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[p] = b
}

// File returns a served file.
func (m *Mirror) File(p string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[p]
}

// Delete stops serving a file.
func (m *Mirror) Delete(p string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, p)
}

// Sign returns a detached signature of b by the test key.
func (m *Mirror) Sign(b []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sign(b)
}

func (m *Mirror) sign(b []byte) []byte {
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, m.signer, bytes.NewReader(b), nil); err != nil {
		panic(err) // signing in memory with a fresh key does not fail
	}
	return sig.Bytes()
}

// CutOnce makes the next full request of p end after n bytes of the body, the connection
// closed.
func (m *Mirror) CutOnce(p string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cuts[p] = n
}

// StallOnce makes the next full request of p send n bytes of the body, then nothing until the
// client gives up.
func (m *Mirror) StallOnce(p string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stalls[p] = n
}

// Ranges returns the Range headers of the requests of p ("" for a whole file).
func (m *Mirror) Ranges(p string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ranges[p]...)
}

func (m *Mirror) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	b, ok := m.files[r.URL.Path]
	cut, isCut := m.cuts[r.URL.Path]
	if isCut && r.Header.Get("Range") == "" {
		delete(m.cuts, r.URL.Path)
	} else {
		isCut = false
	}
	stallAt, isStall := m.stalls[r.URL.Path]
	if isStall && r.Header.Get("Range") == "" {
		delete(m.stalls, r.URL.Path)
	} else {
		isStall = false
	}
	m.ranges[r.URL.Path] = append(m.ranges[r.URL.Path], r.Header.Get("Range"))
	m.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if isStall {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:stallAt])
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		return
	}
	if isCut {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:cut])
		rc := http.NewResponseController(w)
		rc.Flush()
		if conn, _, err := rc.Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	http.ServeContent(w, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(b))
}

func sum256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func gz(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func xzip(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w, err := xz.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// bz2 compresses with the bzip2 tool (Go's library only decompresses).
func bz2(t testing.TB, b []byte) []byte {
	cmd := exec.Command(testkit.RequireTool(t, "bzip2"), "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bzip2 (to make Flatcar's compressed qemu image): %v", err)
	}
	return out
}

// Truncate cuts a served file to its first half and re-signs it and its digests, so that only
// decompression can tell (a truncated compressed artifact that its publisher signed).
func (m *Mirror) Truncate(p string, fcos bool) []byte {
	m.mu.Lock()
	b := m.files[p]
	b = b[:len(b)/2]
	m.mu.Unlock()
	if !fcos {
		m.Publish(p, b)
		return b
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[p] = b
	m.files[p+".sig"] = m.sign(b)
	var st stream.Stream
	json.Unmarshal(m.files["/streams/stable.json"], &st)
	for pn, pa := range st.Architectures["x86_64"].Artifacts {
		for fn, f := range pa.Formats {
			for _, a := range []*stream.Artifact{f.Disk, f.Kernel, f.Initramfs, f.Rootfs} {
				if a != nil && strings.HasSuffix(a.Location, p) {
					a.Sha256 = sum256(b)
				}
			}
			pa.Formats[fn] = f
		}
		st.Architectures["x86_64"].Artifacts[pn] = pa
	}
	raw, _ := json.MarshalIndent(st, "", "  ")
	m.files["/streams/stable.json"] = raw
	return b
}

// NewFlatcarRelease publishes another Flatcar stable release of the pxe platform, with new
// content, and makes it current.
func (m *Mirror) NewFlatcarRelease(t testing.TB, version string, seed uint64) {
	o := catalog.Of("flatcar")
	dir := "/stable/amd64-usr/" + version + "/"
	vt := []byte("FLATCAR_VERSION=" + version + "\n")
	for j, a := range o.Platforms["pxe"].Artifacts {
		content := payload(seed+uint64(j), 100<<10)
		if a.Role == catalog.Initramfs {
			content = gz(t, content)
		}
		m.mu.Lock()
		m.stored["flatcar/stable/"+a.Name] = content
		m.mu.Unlock()
		m.Publish(dir+a.Remote, content)
	}
	m.Set(dir+"version.txt", vt)
	m.Set("/stable/amd64-usr/current/version.txt", vt)
}
