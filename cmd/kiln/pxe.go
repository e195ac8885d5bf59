package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/pxe"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/internal/exitcode"
)

func init() { register(newPXECmd) }

func newPXECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pxe",
		Short:   "Network-boot the cluster's machines (iPXE, GRUB) with their own Ignition configs",
		Example: `  kiln pxe serve -f cluster.yaml --listen 0.0.0.0:8080 --assets /srv/kiln`,
		Args:    args(cobra.NoArgs),
	}
	cmd.AddCommand(newPXEServeCmd(), newPXEEnrolmentsCmd(), newPXEDecideCmd(true), newPXEDecideCmd(false))
	return cmd
}

func newPXEServeCmd() *cobra.Command {
	var (
		file, listen, assets, pkiDir, certFile, keyFile, secretFile, baseURL, installDev, logLevel, policy string
		console                                                                                            []string
		useToken, strict                                                                                   bool
		poll                                                                                               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve -f SPEC --listen ADDR --assets DIR",
		Short: "Serve boot scripts, Ignition configs and boot files to the cluster's machines",
		Long: `Serve compiles every node's Ignition config once, then answers the machines that boot over
the network: a DHCP server (or iPXE's bootfile) points them at http://ADDR/boot.ipxe, which sends
each machine its own kernel, initrd and kernel arguments, with ignition.config.url back to this
server. Machines are known by MAC, SMBIOS UUID (metadata.uuid) or hostname (the node's name);
any other gets 404. GRUB (UEFI HTTP boot) loads http://ADDR/grub.

The spec and the files it names are watched: when they change the configs are compiled again,
and a spec that fails to compile leaves the last good configs in service (the log says why).
SIGHUP recompiles at once; SIGINT and SIGTERM stop the server gracefully.

The assets folder (--assets) holds the boot files by OS and channel
  DIR/flatcar/<channel>/flatcar_production_pxe.vmlinuz
  DIR/flatcar/<channel>/flatcar_production_pxe_image.cpio.gz
  DIR/fcos/<stream>/fedora-coreos-live-kernel-x86_64
  DIR/fcos/<stream>/fedora-coreos-live-initramfs.x86_64.img
  DIR/fcos/<stream>/fedora-coreos-live-rootfs.x86_64.img
(the layout kiln images pull writes into its cache, served when --assets is not given)
and whatever else nodes fetch, served under /assets/: for an air-gapped cluster, put kiln-node
(and etcd) there and point cluster.kilnNode.url (cluster.etcd.binary.url) at
http://ADDR/assets/kiln-node. DIR/kiln-node, when present, is the file whose hash the configs
verify unless the spec gives one.

The configs served carry no private key: anyone can ask for any machine's config, so MACs,
UUIDs and names prove nothing. Each node makes its keys on first boot (kiln-enrol.service runs
kiln-node enrol before etcd and kiln-node) and sends certificate requests to POST /enrol. The
server signs them with the cluster CA for the node's names and addresses in the spec, when the
enrolment policy (--enrol) or the operator says so:
  approve  (default) every new key waits for kiln pxe approve NODE; kiln pxe enrolments lists
           them with their fingerprint and the address they came from
  first    the first key to claim a node is signed, hands-off; any other key for that node later
           is refused and reported (log at ERROR, kiln_pxe_enrol_conflicts_total, kiln pxe
           enrolments): a machine that claims another's MAC is detected, not served. A machine
           that loses its keys (a live boot without a disk) needs kiln pxe approve again.
The enrolment state lives in the PKI folder (PKI/enrol), so it survives restarts and only who
can write the PKI can approve.

With --token (or --token-secret FILE), config URLs carry a per-machine token (an HMAC of the
MAC with a secret kept beside the PKI, made on first use) and /ignition refuses requests without
it. The boot scripts carry the token, so it is no secret from whoever can ask for them.
Metrics are at /metrics.`,
		Example: `  # Listen on every interface; the configs' URLs use the address each machine reached
  kiln pxe serve -f configs/examples/demo.yaml --listen 0.0.0.0:8080 --assets /srv/kiln --pki out/pki

  # HTTPS and tokens, Fedora CoreOS installed to /dev/sda
  kiln pxe serve -f cluster.yaml --listen 10.0.0.1:8443 --assets /srv/kiln \
    --tls-cert tls.crt --tls-key tls.key --token --install-dev /dev/sda`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return exitcode.UserErr(fmt.Errorf("--log-level: %w", err))
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			pol, err := pxe.ParsePolicy(policy)
			if err != nil {
				return exitcode.UserErr(fmt.Errorf("--enrol: %w", err))
			}
			if _, err := pxe.LoadTLS(certFile, keyFile); err != nil {
				return exitcode.UserErr(err)
			}
			// A relative --assets is relative to the current directory, for serving and for
			// hashing what the configs verify alike.
			if assets != "" {
				if assets, err = filepath.Abs(assets); err != nil {
					return exitcode.UserErr(fmt.Errorf("--assets: %w", err))
				}
			}
			if fi, err := os.Stat(assets); assets != "" && (err != nil || !fi.IsDir()) {
				return exitcode.UserErr(fmt.Errorf("--assets %s: %w", assets, pxe.ErrNoAssets))
			}
			o := deliverOptions(file, pkiDir, strict, cmd.ErrOrStderr())
			o.Enrol = &render.EnrolOptions{URL: strings.TrimSuffix(baseURL, "/")}
			if p := filepath.Join(assets, "kiln-node"); assets != "" && fileExists(p) {
				o.KilnNodeFile = p
			}
			c, err := deliver.Prepare(o)
			if err != nil {
				return err
			}
			if assets == "" { // the image cache (kiln images pull --platform pxe)
				if assets, err = imageAssets(c.Spec.Cluster.OS, c.Spec.Cluster.Channel); err != nil {
					return exitcode.UserErr(err)
				}
			}
			cfg := pxe.Config{
				Deliver: o, Assets: assets, BaseURL: baseURL,
				InstallDev: installDev, Poll: poll, Logger: log, Enrol: pol,
			}
			if cmd.Flags().Changed("console") {
				cfg.Console = []string{}
				for _, a := range console {
					if a != "" {
						cfg.Console = append(cfg.Console, a)
					}
				}
			}
			if useToken && secretFile == "" {
				secretFile = filepath.Join(pkiDir, pxe.TokenSecretFile)
			}
			if secretFile != "" {
				if cfg.TokenSecret, err = pxe.LoadOrCreateSecret(secretFile); err != nil {
					return exitcode.UserErr(fmt.Errorf("--token-secret: %w", err))
				}
			}
			srv, err := pxe.New(cfg, c)
			if err != nil {
				return exitcode.UserErr(err)
			}
			defer srv.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return exitcode.UserErr(fmt.Errorf("--listen: %w", err))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go reloadOnHangup(ctx, srv)
			scheme := "http"
			if certFile != "" {
				scheme = "https"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving %d nodes of cluster %s at %s://%s (iPXE: /boot.ipxe, GRUB: /grub)\n",
				len(c.Nodes), c.Spec.Cluster.Name, scheme, ln.Addr())
			return srv.Serve(ctx, ln, certFile, keyFile, 10*time.Second)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "cluster.yaml", "the cluster spec")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "the address to listen on (loopback unless told otherwise)")
	f.StringVar(&assets, "assets", "", "the folder served under /assets/ (boot files, kiln-node, etcd; default: the image cache of kiln images pull)")
	f.StringVar(&pkiDir, "pki", defaultPKI, "the cluster's PKI folder (kiln render -o OUT keeps it in OUT/pki)")
	f.StringVar(&certFile, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&keyFile, "tls-key", "", "the key of --tls-cert (PEM)")
	f.BoolVar(&useToken, "token", false, "require a per-machine token in config URLs (secret in the PKI folder, made on first use)")
	f.StringVar(&secretFile, "token-secret", "", "require tokens, made with the secret in this file (made on first use, mode 0600)")
	f.StringVar(&baseURL, "base-url", "", "the server's URL as machines reach it (default: what each request was sent to)")
	f.StringArrayVar(&console, "console", pxe.DefaultConsole, "a console kernel argument (repeat; --console= for none)")
	f.StringVar(&installDev, "install-dev", "", "Fedora CoreOS: install to this disk (coreos.inst.install_dev) instead of booting live")
	f.DurationVar(&poll, "poll", 2*time.Second, "how often the spec and its files are checked for changes")
	f.StringVar(&logLevel, "log-level", "info", "debug, info (access log), warn or error")
	f.BoolVar(&strict, "strict", false, "treat the spec's warnings as errors")
	f.StringVar(&policy, "enrol", string(pxe.PolicyApprove), "who signs a node's keys: approve (kiln pxe approve) or first (the first key per node, later ones refused)")
	return cmd
}

// reloadOnHangup recompiles the spec on every SIGHUP until ctx is done.
func reloadOnHangup(ctx context.Context, srv *pxe.Server) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			srv.Reload() // logs its own failure
		}
	}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
