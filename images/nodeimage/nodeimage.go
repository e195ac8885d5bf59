// Package nodeimage builds the node image of `kiln up --driver docker` (`kiln images build-node`):
// a Docker image, made with no registry, of a Debian bookworm root filesystem with systemd as PID
// 1 (debootstrap, mkroot.sh) and the Ignition binary, the etcd server and kiln-node inside, plus
// the overlay that adapts a Flatcar or Fedora CoreOS node config to a container (overlay/, listed
// by Adaptations).
//
// Two images, each tagged by a hash of what made it, so that they are reused until their recipe
// changes:
//
//   - the base, BaseImage(): the root filesystem alone, imported from a tarball cached in the
//     cache folder; the systemd test harness (internal/systemdtest) runs it too.
//   - the node image, kiln-node:<hash>: the base plus the overlay and the three binaries.
package nodeimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

//go:embed mkroot.sh
var mkroot []byte

//go:embed all:overlay
var overlay embed.FS

const (
	// BaseRepository and Repository are the image names; the tags are hashes.
	BaseRepository = "kiln-node-base"
	Repository     = "kiln-node"
	// Label is set on both images; LabelKilnNodeSHA512 on the node image holds the hash of its
	// kiln-node (what Ignition verifies when a config fetches kiln-node).
	Label               = "dev.kiln.nodeimage"
	LabelKilnNodeSHA512 = Label + ".kiln-node-sha512"
)

// Paths inside the node image.
const (
	EtcdPath     = "/usr/local/bin/etcd"
	IgnitionPath = "/usr/local/bin/ignition"
	// KilnNodePath is the kiln-node that the image serves to Ignition when a config fetches it.
	KilnNodePath = "/usr/lib/kiln/kiln-node"
	// StateDir holds the first boot's files: config.ign and serve (written by the driver before
	// the container starts), ignition.log, and ignition.done or ignition.failed.
	StateDir = "/var/lib/kiln-image"
	// Entrypoint applies Ignition on the first boot, then runs systemd.
	Entrypoint = "/usr/lib/kiln/boot"
)

// RunFlags are the docker run flags that let systemd run as PID 1 without --privileged (which
// is refused on machines that lack CAP_SYS_RESOURCE): every capability but that one, no seccomp
// filter, the host's cgroup tree writable, tmpfs on /run and /run/lock (so that a restart is a
// reboot with a fresh /run). Stop signals SIGRTMIN+3, systemd's "halt" (SIGTERM only makes it
// re-execute itself).
var RunFlags = []string{
	"--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
	"--security-opt", "seccomp=unconfined",
	"--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
	"--tmpfs", "/run", "--tmpfs", "/run/lock",
	"--stop-signal", "SIGRTMIN+3",
}

// Adaptation is one way the node image differs from Flatcar or Fedora CoreOS, and why.
type Adaptation struct {
	What, Why string
}

// Adaptations lists every change the image makes to what a node config expects of its OS: the
// one place that `kiln up --explain` and the README list.
var Adaptations = []Adaptation{
	{What: "Ignition applies the config at the first start of the container (" + Entrypoint + "), then runs systemd; Ignition runs without Docker's mounts over /etc/hostname, /etc/hosts and /etc/resolv.conf, so that a file it writes there replaces Docker's",
		Why: "a container has no initramfs, and Docker mounts those three files"},
	{What: "files the config fetches over HTTP that the image holds (kiln-node) are served from the image at their URL's address, on the machine's loopback, during Ignition",
		Why: "no node fetches from outside the machine; the hash in the config is still verified"},
	{What: "kiln-etcd.service runs " + EtcdPath + " (drop-in kiln-etcd.service.d/10-node-image.conf)",
		Why: "Flatcar and Fedora CoreOS run etcd as a container, which cannot run inside this container"},
	{What: "docker.service and podman.service are stand-ins that do nothing",
		Why: "there is no container engine in the container; units that require one start, units that run /usr/bin/docker fail"},
	{What: "no update_engine, locksmithd or Zincati; /etc/flatcar/update.conf is written but unread",
		Why: "updates are the image's: rebuild it; reboots that kiln-node coordinates restart the container (/run is a fresh tmpfs)"},
	{What: "systemd-networkd does not run (preset 10-kiln-node-image.preset); Docker gives each container its spec address on the cluster's network",
		Why: "the container's network is Docker's"},
}

// Options are the inputs of the node image.
type Options struct {
	// Etcd, Ignition and KilnNode are the binaries to put in the image (paths on this host).
	// Ignition is linked against libblkid and glibc: build it on a system no newer than bookworm.
	Etcd, Ignition, KilnNode string
	// CacheDir holds the root filesystem tarball; empty: DefaultCacheDir().
	CacheDir string
	// Log receives progress lines (debootstrap, import, commit); nil: discarded.
	Log io.Writer
}

// DefaultCacheDir is $XDG_CACHE_HOME/kiln/nodeimage, else ~/.cache/kiln/nodeimage.
func DefaultCacheDir() string {
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "kiln-cache", "nodeimage")
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "kiln", "nodeimage")
}

// BaseImage is the tag of the base image: a hash of its recipe (mkroot.sh).
func BaseImage() string {
	sum := sha256.Sum256(mkroot)
	return BaseRepository + ":" + hex.EncodeToString(sum[:6])
}

// Image is a node image that Build made or found.
type Image struct {
	Tag string
	// KilnNodeSHA512 is the hex SHA-512 of the image's kiln-node.
	KilnNodeSHA512 string
	// Built: Build made it now (false: it existed).
	Built bool
}

// input is a file of the node image: its path in the image, its mode and where it comes from.
type input struct {
	path string
	mode int64
	data []byte
}

// inputs reads the overlay and the binaries, in a fixed order.
func (o Options) inputs() ([]input, error) {
	var in []input
	err := fs.WalkDir(overlay, "overlay", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := overlay.ReadFile(p)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if strings.HasPrefix(string(data), "#!") {
			mode = 0o755
		}
		in = append(in, input{path: strings.TrimPrefix(p, "overlay"), mode: mode, data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range []struct{ name, src, dst string }{
		{"etcd", o.Etcd, EtcdPath}, {"ignition", o.Ignition, IgnitionPath}, {"kiln-node", o.KilnNode, KilnNodePath},
	} {
		if b.src == "" {
			return nil, fmt.Errorf("%w: %s", ErrNoBinary, b.name)
		}
		data, err := os.ReadFile(b.src)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoBinary, b.name, err)
		}
		in = append(in, input{path: b.dst, mode: 0o755, data: data})
	}
	sort.Slice(in, func(i, j int) bool { return in[i].path < in[j].path })
	return in, nil
}

// tag is the node image's tag: a hash of the base's tag and every input.
func tag(in []input) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", BaseImage())
	for _, f := range in {
		fmt.Fprintf(h, "%s %o %d\n", f.path, f.mode, len(f.data))
		h.Write(f.data)
	}
	return Repository + ":" + hex.EncodeToString(h.Sum(nil)[:6])
}

// Build makes sure the node image of o exists, building the base and the image when they are
// missing, and returns it.
func Build(ctx context.Context, o Options) (*Image, error) {
	in, err := o.inputs()
	if err != nil {
		return nil, err
	}
	img := &Image{Tag: tag(in)}
	for _, f := range in {
		if f.path == KilnNodePath {
			sum := sha512.Sum512(f.data)
			img.KilnNodeSHA512 = hex.EncodeToString(sum[:])
		}
	}
	if Exists(ctx, img.Tag) {
		return img, nil
	}
	if err := BuildBase(ctx, o.CacheDir, o.Log); err != nil {
		return nil, err
	}
	logf(o.Log, "building %s on %s", img.Tag, BaseImage())
	start := time.Now()
	name := "kiln-nodeimage-build-" + strings.TrimPrefix(img.Tag, Repository+":")
	_, _ = docker(ctx, nil, "rm", "--force", name)
	if _, err := docker(ctx, nil, "create", "--name", name, BaseImage()); err != nil {
		return nil, err
	}
	defer func() { _, _ = docker(context.Background(), nil, "rm", "--force", name) }()
	var buf bytes.Buffer
	if err := writeTar(&buf, in); err != nil {
		return nil, err
	}
	if _, err := docker(ctx, &buf, "cp", "-", name+":/"); err != nil {
		return nil, err
	}
	if _, err := docker(ctx, nil, "commit",
		"--change", `CMD ["`+Entrypoint+`"]`,
		"--change", "ENV container=docker",
		"--change", "LABEL "+Label+"=1",
		"--change", "LABEL "+LabelKilnNodeSHA512+"="+img.KilnNodeSHA512,
		name, img.Tag); err != nil {
		return nil, err
	}
	img.Built = true
	logf(o.Log, "built %s in %v", img.Tag, time.Since(start).Round(time.Millisecond))
	return img, nil
}

// BuildBase makes sure the base image exists: it imports the root filesystem tarball from the
// cache folder, made first by mkroot.sh (debootstrap, a few minutes, as root) when missing.
func BuildBase(ctx context.Context, cacheDir string, log io.Writer) error {
	base := BaseImage()
	if Exists(ctx, base) {
		return nil
	}
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return err
	}
	tarball := filepath.Join(cacheDir, strings.ReplaceAll(base, ":", "-")+".tar.gz")
	if _, err := os.Stat(tarball); err != nil {
		script := filepath.Join(cacheDir, "mkroot.sh")
		if err := os.WriteFile(script, mkroot, 0o755); err != nil {
			return err
		}
		logf(log, "making the root filesystem of %s (debootstrap: a few minutes, once)", base)
		cmd := exec.CommandContext(ctx, "bash", script, tarball)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if log != nil {
			cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, log), io.MultiWriter(&out, log)
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: %v\n%s", ErrRootFS, err, tail(out.String(), 20))
		}
	}
	logf(log, "importing %s", base)
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = docker(ctx, f, "import",
		"--change", "ENV container=docker",
		"--change", `CMD ["/sbin/init"]`,
		"--change", "LABEL "+Label+"=1",
		"-", base)
	return err
}

// Exists reports whether the docker image ref exists.
func Exists(ctx context.Context, ref string) bool {
	_, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

func writeTar(w io.Writer, in []input) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range in {
		// Parent folders first, as root-owned 0755 (they exist in the base; tar needs them).
		var parents []string
		for d := filepath.Dir(f.path); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(parents[i], "/") + "/", Mode: 0o755}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// docker runs the docker CLI with stdin and returns its standard output; errors carry its
// standard error.
func docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func logf(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DefaultOptions finds the binaries as kiln does: $KILN_ETCD_BIN, $KILN_IGNITION_BIN and
// $KILN_NODE_BIN, else etcd, ignition and kiln-node beside the running program or in tools/
// beside it (as `make build tools` lays them out).
func DefaultOptions() Options {
	return Options{
		Etcd:     FindBinary("KILN_ETCD_BIN", "etcd"),
		Ignition: FindBinary("KILN_IGNITION_BIN", "ignition"),
		KilnNode: FindBinary("KILN_NODE_BIN", "kiln-node"),
	}
}

// FindBinary is $env, else name beside the running program or in tools/ beside it; "" when none.
func FindBinary(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	for _, p := range []string{filepath.Join(filepath.Dir(exe), name), filepath.Join(filepath.Dir(exe), "tools", name)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
