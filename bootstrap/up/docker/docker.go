// Package docker is the docker driver of `kiln up`: every node of the spec is a container
// kiln-<cluster>-<node> of kiln's node image (images/nodeimage) with systemd as PID 1, on an
// internal Docker network kiln-<cluster> whose subnet holds the nodes' static addresses. The
// node's rendered config.ign, unchanged, is applied by the real Ignition binary at the
// container's first start; what the image changes to what Flatcar or Fedora CoreOS would do is
// listed by nodeimage.Adaptations. A reboot that kiln-node asks for (systemctl reboot: systemd
// exits with 129) restarts the container through its restart policy, with its disk kept and /run
// a fresh tmpfs. It talks to Docker through the docker CLI.
package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/images/nodeimage"
)

func init() { up.Register("docker", func() up.Driver { return &Driver{} }) }

// Labels on every container and network the driver makes.
const (
	LabelCluster = "dev.kiln.cluster"
	LabelNode    = "dev.kiln.node"
)

// Driver is the docker driver. Its zero value builds (or reuses) the node image from the
// binaries found as `kiln images build-node` finds them.
type Driver struct {
	// Image is a node image to run instead of building one (--docker-image).
	Image string
	// ImageOptions are the node image's inputs when Image is empty.
	ImageOptions nodeimage.Options
	// IgnitionTimeout bounds the wait for a node's first boot; zero: two minutes.
	IgnitionTimeout time.Duration
}

// Name implements up.Driver.
func (d *Driver) Name() string { return "docker" }

// AddFlags implements up.Flagger.
func (d *Driver) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&d.Image, "docker-image", "", "docker driver: the node image to run (default: kiln-node:<hash>, built when missing)")
}

// NetworkName is the cluster's Docker network.
func NetworkName(cluster string) string { return "kiln-" + cluster }

// Up implements up.Driver: it converges the cluster to the plan (creates what is missing, starts
// what is stopped) and waits for every node's first boot to have applied Ignition.
func (d *Driver) Up(ctx context.Context, p *up.Plan, r up.Reporter) error {
	image, kilnNodeSum, err := d.image(ctx, r)
	if err != nil {
		r.Failed("", up.StepImage, err, "")
		return err
	}
	r.Step("", up.StepImage, image)
	if err := ensureNetwork(ctx, p); err != nil {
		r.Failed("", up.StepNetwork, err, "")
		return err
	}
	r.Step("", up.StepNetwork, NetworkName(p.Cluster()))

	g, gctx := errgroup.WithContext(ctx)
	for _, n := range p.Compiled.Nodes {
		g.Go(func() error {
			step, err := d.upNode(gctx, p, r, n.Name, n.Ignition, image, kilnNodeSum)
			if err != nil {
				r.Failed(n.Name, step, err, d.Journal(context.WithoutCancel(ctx), p, n.Name, 30))
				return &up.NodeError{Node: n.Name, Step: step, Err: err}
			}
			return nil
		})
	}
	return g.Wait()
}

// image is the node image's tag and its kiln-node's SHA-512.
func (d *Driver) image(ctx context.Context, r up.Reporter) (string, string, error) {
	if d.Image != "" {
		sum, err := dockerCmd(ctx, nil, "image", "inspect", "--format",
			fmt.Sprintf(`{{index .Config.Labels %q}}`, nodeimage.LabelKilnNodeSHA512), d.Image)
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "no such image") {
			return "", "", fmt.Errorf("--docker-image %s: %w", d.Image, ErrNoImage)
		} else if err != nil {
			return "", "", err
		}
		return d.Image, strings.TrimSpace(sum), nil
	}
	o := d.ImageOptions
	if o == (nodeimage.Options{}) {
		o = nodeimage.DefaultOptions()
	}
	img, err := nodeimage.Build(ctx, o)
	if err != nil {
		return "", "", err
	}
	return img.Tag, img.KilnNodeSHA512, nil
}

// upNode converges one node and returns the step it failed at.
func (d *Driver) upNode(ctx context.Context, p *up.Plan, r up.Reporter, node string, ign []byte, image, kilnNodeSum string) (up.Step, error) {
	name := up.MachineName(p.Cluster(), node)
	running, exists := containerState(ctx, name)
	switch {
	case running:
		r.Step(node, up.StepMachine, "running")
	case exists:
		if _, err := dockerCmd(ctx, nil, "start", name); err != nil {
			return up.StepMachine, err
		}
		r.Step(node, up.StepMachine, "started")
	default:
		serve, err := serveList(ign, kilnNodeSum)
		if err != nil {
			return up.StepIgnition, err
		}
		if err := create(ctx, p, node, name, image, ign, serve); err != nil {
			return up.StepMachine, err
		}
		r.Step(node, up.StepMachine, "created")
	}
	if !p.Wait {
		return "", nil
	}
	return up.StepIgnition, d.waitIgnition(ctx, name, node, r)
}

// create makes the node's container, copies its config in, and starts it.
func create(ctx context.Context, p *up.Plan, node, name, image string, ign []byte, serve string) error {
	args := []string{"create", "--name", name, "--hostname", node,
		"--network", NetworkName(p.Cluster()),
		"--label", LabelCluster + "=" + p.Cluster(), "--label", LabelNode + "=" + node,
		// A reboot inside (systemd exits 129) starts the container again; docker stop does not.
		"--restart", "on-failure"}
	if sn := p.Compiled.Spec.Node(node); sn != nil && sn.IP != "" {
		ip, _, err := net.ParseCIDR(sn.IP)
		if err != nil {
			return err
		}
		args = append(args, "--ip", ip.String())
	}
	args = append(args, nodeimage.RunFlags...)
	args = append(args, image)
	if _, err := dockerCmd(ctx, nil, args...); err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := strings.TrimPrefix(nodeimage.StateDir, "/")
	files := []struct {
		name string
		data []byte
		mode int64
	}{{"config.ign", ign, 0o600}, {"serve", []byte(serve), 0o644}}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o700}); err != nil {
		return err
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, f.name), Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if _, err := dockerCmd(ctx, &buf, "cp", "-", name+":/"); err != nil {
		return err
	}
	_, err := dockerCmd(ctx, nil, "start", name)
	return err
}

// waitIgnition waits for the first boot's Ignition to be done (at once on later boots).
func (d *Driver) waitIgnition(ctx context.Context, name, node string, r up.Reporter) error {
	timeout := d.IgnitionTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	check := fmt.Sprintf(`if [ -e %[1]s/ignition.done ]; then echo done; elif [ -e %[1]s/ignition.failed ]; then echo failed; fi`, nodeimage.StateDir)
	for {
		out, _ := dockerCmd(ctx, nil, "exec", name, "sh", "-c", check)
		switch strings.TrimSpace(out) {
		case "done":
			r.Step(node, up.StepIgnition, "applied")
			return nil
		case "failed":
			return ErrIgnition
		}
		if running, exists := containerState(ctx, name); exists && !running {
			return ErrStopped
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ignition: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Journal implements up.Journaler: the node's last journal lines, or its Ignition log when
// systemd never started.
func (d *Driver) Journal(ctx context.Context, p *up.Plan, node string, lines int) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	name := up.MachineName(p.Cluster(), node)
	n := fmt.Sprint(lines)
	script := fmt.Sprintf(`if [ -e %[1]s/ignition.done ]; then journalctl --no-pager -b -n %[2]s -o short-precise; else tail -n %[2]s %[1]s/ignition.log; fi`, nodeimage.StateDir, n)
	// Early in a boot the journal may have no entries yet: then the container's own output.
	if out, err := dockerCmd(ctx, nil, "exec", name, "sh", "-c", script); err == nil && strings.TrimSpace(out) != "" && !strings.HasPrefix(out, "-- No entries --") {
		return out
	}
	out, _ := dockerCmd(ctx, nil, "logs", "--tail", n, name)
	return out
}

// Down implements up.Driver: it removes the cluster's containers (with their volumes) and its
// network. Removing what is not there is not an error.
func (d *Driver) Down(ctx context.Context, p *up.Plan, r up.Reporter) error {
	out, err := dockerCmd(ctx, nil, "ps", "--all", "--format", "{{.Names}}", "--filter", "label="+LabelCluster+"="+p.Cluster())
	if err != nil {
		return err
	}
	ids := strings.Fields(out)
	for _, n := range p.Compiled.Nodes {
		name := up.MachineName(p.Cluster(), n.Name)
		if _, exists := containerState(ctx, name); exists && !slices.Contains(ids, name) {
			ids = append(ids, name)
		}
	}
	if len(ids) > 0 {
		if _, err := dockerCmd(ctx, nil, append([]string{"rm", "--force", "--volumes"}, ids...)...); err != nil && !strings.Contains(err.Error(), "No such container") {
			return err
		}
	}
	for _, n := range p.Compiled.Nodes {
		r.Step(n.Name, up.StepMachine, "removed")
	}
	if _, err := dockerCmd(ctx, nil, "network", "inspect", NetworkName(p.Cluster())); err == nil {
		if _, err := dockerCmd(ctx, nil, "network", "rm", NetworkName(p.Cluster())); err != nil {
			return err
		}
	}
	r.Step("", up.StepNetwork, "removed "+NetworkName(p.Cluster()))
	return nil
}

// ensureNetwork creates the cluster's internal network when it is missing, with the subnet of
// the nodes' static addresses and the spec's gateway (this host's address on it).
func ensureNetwork(ctx context.Context, p *up.Plan) error {
	name := NetworkName(p.Cluster())
	if _, err := dockerCmd(ctx, nil, "network", "inspect", name); err == nil {
		return nil
	}
	args := []string{"network", "create", "--internal", "--label", LabelCluster + "=" + p.Cluster()}
	s := p.Compiled.Spec
	var subnet *net.IPNet
	for _, n := range s.Nodes {
		if n.IP == "" {
			continue
		}
		_, ipnet, err := net.ParseCIDR(n.IP)
		if err != nil {
			return err
		}
		subnet = ipnet
		break
	}
	if subnet != nil {
		args = append(args, "--subnet", subnet.String())
		if gw := net.ParseIP(s.Cluster.Network.Gateway); gw != nil && subnet.Contains(gw) {
			args = append(args, "--gateway", gw.String())
		}
	}
	_, err := dockerCmd(ctx, nil, append(args, name)...)
	if err != nil && subnet != nil && strings.Contains(err.Error(), "overlaps") {
		return fmt.Errorf("%w: %s (%v)", ErrSubnetTaken, subnet, err)
	}
	return err
}

// ignitionConfig is the part of an Ignition config that says what it fetches.
type ignitionConfig struct {
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Contents struct {
				Source       *string `json:"source"`
				Verification struct {
					Hash *string `json:"hash"`
				} `json:"verification"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
}

// serveList is the image's serve file for a node's config: every file fetched over HTTP must be
// the image's kiln-node (by its hash when the config has one), which the image serves at that
// URL during Ignition. Any other remote source is an error: nodes fetch nothing from outside.
func serveList(ign []byte, kilnNodeSum string) (string, error) {
	var c ignitionConfig
	if err := json.Unmarshal(ign, &c); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range c.Storage.Files {
		src := f.Contents.Source
		if src == nil || strings.HasPrefix(*src, "data:") {
			continue
		}
		hash := f.Contents.Verification.Hash
		switch {
		case !strings.HasPrefix(*src, "http://"):
			return "", fmt.Errorf("%w: %s from %s", ErrRemoteSource, f.Path, *src)
		case hash != nil && *hash != "sha512-"+kilnNodeSum, hash == nil && path.Base(f.Path) != "kiln-node":
			return "", fmt.Errorf("%w: %s from %s (the image serves kiln-node only)", ErrRemoteSource, f.Path, *src)
		}
		fmt.Fprintf(&b, "%s %s\n", *src, nodeimage.KilnNodePath)
	}
	return b.String(), nil
}

// containerState says whether the container runs and whether it exists.
func containerState(ctx context.Context, name string) (running, exists bool) {
	out, err := dockerCmd(ctx, nil, "inspect", "--format", "{{.State.Running}}", name)
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(out) == "true", true
}

func dockerCmd(ctx context.Context, stdin *bytes.Buffer, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			return stdout.String(), fmt.Errorf("docker %s: %w", args[0], ctx.Err())
		}
		return stdout.String(), fmt.Errorf("docker %s: %s", args[0], errors.New(msg))
	}
	return stdout.String(), nil
}
