package main

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-cluster/kiln/internal/exitcode"
	"github.com/kiln-cluster/kiln/node/config"
	"github.com/kiln-cluster/kiln/node/enrol"
)

func init() { register(newEnrolCmd) }

func newEnrolCmd() *cobra.Command {
	var (
		configPath, etcdDir, server, cmdline string
		timeout                              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "enrol",
		Short: "Make this node's private keys and have the boot server sign their certificates",
		Long: `Enrol makes the node's private keys on the machine (ECDSA P-256, mode 0600, at the paths of the
config file: etcd.key, and with --etcd-dir the etcd member's peer.key and server.key), sends one
certificate request per key to the boot server, waits until the server signs them (the operator
runs kiln pxe approve, or the server's policy approves; refused keys wait for the operator too),
checks that each certificate chains to the cluster CA (etcd.ca) and fits its key, and writes them
beside the keys. The keys are kept across tries, so the fingerprint the operator approves stays.

A node whose certificates are already in place and fit its keys does nothing: reboots do not
enrol again. Without --server, the server is the one named by ignition.config.url on the kernel
command line: the one that served the node's config. The unit kiln-enrol.service runs this
before etcd and kiln-node on machines booted over the network.`,
		Example: `  kiln-node enrol --config /etc/kiln/node.json --etcd-dir /etc/kiln/pki/etcd
  kiln-node enrol --config /etc/kiln/node.json --server http://10.0.0.1:8080`,
		Args: func(cmd *cobra.Command, a []string) error { return exitcode.UserErr(cobra.NoArgs(cmd, a)) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(configPath)
			if err != nil {
				return exitcode.UserErr(err)
			}
			if c.Hostname == "" || c.Etcd.CA == "" || c.Etcd.Cert == "" || c.Etcd.Key == "" {
				return exitcode.UserErr(errors.New(configPath + ": enrolment needs hostname, etcd.ca, etcd.cert and etcd.key"))
			}
			if server == "" {
				raw, err := os.ReadFile(cmdline)
				if err != nil {
					return exitcode.UserErr(err)
				}
				if server, err = enrol.ServerFromCmdline(string(raw)); err != nil {
					return exitcode.UserErr(err)
				}
			}
			certs := []enrol.Cert{{Kind: enrol.KindClient, CertPath: c.Etcd.Cert, KeyPath: c.Etcd.Key}}
			if etcdDir != "" {
				for _, k := range []string{enrol.KindPeer, enrol.KindServer} {
					certs = append(certs, enrol.Cert{Kind: k, CertPath: filepath.Join(etcdDir, k+".crt"), KeyPath: filepath.Join(etcdDir, k+".key")})
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if timeout == 0 {
				timeout = -1 // no bound
			}
			err = enrol.Run(ctx, enrol.Config{
				Server: server, Node: c.Hostname, CA: c.Etcd.CA, Certs: certs, Timeout: timeout,
				Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
			})
			if errors.Is(err, enrol.ErrRefused) || errors.Is(err, enrol.ErrBadCert) {
				return exitcode.UserErr(err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", config.DefaultPath, "the node's config file (hostname and etcd client certificate paths)")
	f.StringVar(&etcdDir, "etcd-dir", "", "an etcd member's folder for peer.crt/key and server.crt/key (members only)")
	f.StringVar(&server, "server", "", "the boot server's URL (default: from ignition.config.url on the kernel command line)")
	f.StringVar(&cmdline, "cmdline", "/proc/cmdline", "the kernel command line to find the boot server in")
	f.DurationVar(&timeout, "timeout", time.Hour, "give up after this long; 0: wait until the server signs (kiln-enrol.service does)")
	return cmd
}
