package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/up"
	_ "github.com/kiln-cluster/kiln/bootstrap/up/docker" // registers the docker driver
	"github.com/kiln-cluster/kiln/images/nodeimage"
	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func init() {
	register(newUpCmd)
	register(newDownCmd)
}

// upFlags are the flags kiln up and kiln down share.
type upFlags struct {
	file, out, driver string
	strict            bool
	// drivers holds the driver values whose flags were added: Lookup makes a new one each time.
	drivers map[string]up.Driver
}

func (f *upFlags) add(cmd *cobra.Command, withDriver bool) {
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "file", "f", "cluster.yaml", "the cluster spec")
	fs.StringVarP(&f.out, "output", "o", "", "the cluster's state folder: its rendered configs, PKI and what kiln up made (default ~/.local/state/kiln/<cluster>, or $XDG_STATE_HOME/kiln/<cluster>)")
	fs.BoolVar(&f.strict, "strict", false, "treat warnings as errors")
	if withDriver {
		fs.StringVar(&f.driver, "driver", "docker", fmt.Sprintf("what runs the machines: one of %v", up.Names()))
	}
	f.drivers = map[string]up.Driver{}
	for _, name := range up.Names() {
		if d, err := up.Lookup(name); err == nil {
			f.drivers[name] = d
			if fl, ok := d.(up.Flagger); ok {
				fl.AddFlags(fs)
			}
		}
	}
}

// stateDir is -o, else the cluster's default state folder (named after the cluster: its
// name is read from the spec first).
func (f *upFlags) stateDir(w io.Writer) (string, error) {
	if f.out != "" {
		return f.out, nil
	}
	s, err := deliver.Validate(deliverOptions(f.file, "", f.strict, w))
	if err != nil {
		return "", err
	}
	return up.DefaultStateDir(s.Cluster.Name)
}

// lookup returns the named driver with its flags set.
func (f *upFlags) lookup(name string) (up.Driver, error) {
	if d, ok := f.drivers[name]; ok {
		return d, nil
	}
	return up.Lookup(name)
}

func newUpCmd() *cobra.Command {
	var f upFlags
	var wait, explain bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up -f SPEC [--driver docker|libvirt|vsphere] [-o OUT]",
		Short: "Bring a whole cluster up on this machine (docker) or a provider (libvirt, vsphere), and make it kiln ctl's context",
		Long: `Up renders the spec as kiln render does (same PKI rules) into the cluster's state folder, makes
a machine kiln-<cluster>-<node> for every node with the driver, and waits until etcd is healthy
and every kiln-node has registered (the nodes' etcd addresses must be reachable from here). It
then leaves the cluster as kiln ctl's current context. Up on a cluster that exists converges: it
makes what is missing, starts what is stopped and leaves the rest. The driver and what it made
are recorded in the state folder, so kiln down needs no driver flags.

--driver docker (the default) runs every node as a container with systemd as PID 1 on a Docker
network kiln-<cluster> whose subnet holds the nodes' addresses. Each node's config.ign,
unchanged, is applied by the real Ignition binary at the container's first start. --explain
lists what the node image changes to what Flatcar or Fedora CoreOS would do.

--driver libvirt makes per node a domain with the node's MAC, a copy-on-write volume over the
OS disk image (--image, else the cached one of kiln images pull --platform qemu) and the node's
Ignition config through QEMU's fw_cfg, on a network kiln-<cluster> that kiln defines from the
spec's subnet (or --libvirt-network NAME). --libvirt-uri picks the connection (qemu:///system).

--driver vsphere clones every node from --vsphere-template with the node's MAC on its first
NIC and its Ignition config in the guestinfo properties, then powers it on. The connection is
govc's: --vsphere-url or GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD, GOVC_INSECURE.

Bad or missing driver flags are the user's errors (exit 1), found before anything is made.`,
		Example: `  kiln init demo && kiln up -f demo/cluster.yaml
  kiln ctl machines
  kiln up -f demo/cluster.yaml --explain
  kiln down -f demo/cluster.yaml

  kiln images pull --os flatcar --channel stable --platform qemu
  kiln up -f demo/cluster.yaml --driver libvirt --libvirt-uri qemu:///session --memory 4096

  export GOVC_URL=vcenter.example.com GOVC_USERNAME=me@vsphere.local GOVC_PASSWORD=...
  kiln up -f demo/cluster.yaml --driver vsphere --vsphere-template flatcar-stable --vsphere-network "VM Network"`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			if explain {
				fmt.Fprintln(w, "The docker driver's node image differs from Flatcar and Fedora CoreOS here:")
				for _, a := range nodeimage.Adaptations {
					fmt.Fprintf(w, "- %s\n    why: %s\n", a.What, a.Why)
				}
				return nil
			}
			d, err := f.lookup(f.driver)
			if err != nil {
				return exitcode.UserErr(err)
			}
			out, err := f.stateDir(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			c, err := compileForRender(f.file, out, f.strict, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			current, cc, err := writeRendered(c, out)
			if err != nil {
				return err
			}
			st := &up.State{Cluster: c.Spec.Cluster.Name, Driver: d.Name(), Updated: time.Now().UTC()}
			for _, n := range c.Nodes {
				st.Machines = append(st.Machines, up.MachineName(st.Cluster, n.Name))
			}
			if err := up.SaveState(out, st); err != nil {
				return err
			}
			fmt.Fprintf(w, "cluster %s: %d nodes with the %s driver; state in %s\n", st.Cluster, len(c.Nodes), d.Name(), out)
			p := &up.Plan{Compiled: c, StateDir: out, Wait: wait}
			start := time.Now()
			r := up.NewProgress(w, c.Spec.NodeNames(), isTerminal(w))
			if err := up.Up(cmd.Context(), d, p, cc, r, timeout); err != nil {
				return fmt.Errorf("kiln up: %w", err)
			}
			what := "every kiln-node registered"
			if !wait {
				what = "machines running"
			}
			fmt.Fprintf(w, "cluster %s up in %.1fs (%s); kiln ctl's context: %s\n", st.Cluster, time.Since(start).Seconds(), what, current)
			fmt.Fprintf(w, "try: kiln ctl machines; kiln ctl units\ntake it down: kiln down -f %s%s\n", f.file, outFlag(f.out))
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until etcd is healthy and every kiln-node registered (false: return once the machines run)")
	cmd.Flags().BoolVar(&explain, "explain", false, "list what the docker driver's node image changes to what Flatcar or Fedora CoreOS do, and exit")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for etcd and kiln-node")
	return cmd
}

func newDownCmd() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "down -f SPEC [-o OUT]",
		Short: "Remove what kiln up made: machines, network, volumes and kiln ctl's context",
		Long: `Down removes the cluster's machines (with their disks), its network, and kiln ctl's current
context when it is this cluster's, with the driver that kiln up recorded in the state folder.
Removing a cluster that is gone is not an error. The rendered configs and PKI stay in the state
folder (kiln up reuses them).`,
		Example: "  kiln down -f demo/cluster.yaml",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			out, err := f.stateDir(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			c, err := deliver.Compile(deliverOptions(f.file, filepath.Join(out, "pki"), f.strict, cmd.ErrOrStderr()))
			if errors.Is(err, pki.ErrNoPKI) {
				fmt.Fprintf(w, "nothing made by kiln up in %s\n", out)
				return nil
			}
			if err != nil {
				return err
			}
			name := f.driver
			if st, err := up.LoadState(out); err == nil {
				name = st.Driver
			} else if !errors.Is(err, up.ErrNoState) {
				return err
			}
			if name == "" {
				fmt.Fprintf(w, "cluster %s: nothing made by kiln up in %s\n", c.Spec.Cluster.Name, out)
				return nil
			}
			d, err := f.lookup(name)
			if err != nil {
				return exitcode.UserErr(err)
			}
			start := time.Now()
			p := &up.Plan{Compiled: c, StateDir: out}
			if err := up.Down(cmd.Context(), d, p, up.NewProgress(w, c.Spec.NodeNames(), false)); err != nil {
				return fmt.Errorf("kiln down: %w", err)
			}
			fmt.Fprintf(w, "cluster %s down in %.1fs\n", c.Spec.Cluster.Name, time.Since(start).Seconds())
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&f.driver, "driver", "", "the driver, when kiln up's record is gone (default: the one kiln up recorded)")
	return cmd
}

func outFlag(out string) string {
	if out == "" {
		return ""
	}
	return " -o " + out
}

// isTerminal says whether w is a terminal (the progress display redraws its table there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
