// Package pxe is kiln's network boot server: it boots the machines of a cluster spec over iPXE or
// GRUB and hands each one its own Ignition config, compiled once when the server starts and again
// when the spec (or a file it names) changes on disk, never per request.
//
// # Routes
//
//	GET /boot.ipxe                     the script a DHCP server or iPXE's bootfile points at; it
//	                                   chains to /ipxe with the machine's MAC, UUID and hostname
//	GET /ipxe?mac=&uuid=&hostname=     the machine's iPXE script: kernel, initrd and kernel arguments
//	GET /grub[?mac=&uuid=&hostname=]   the same for GRUB (UEFI HTTP boot); without a selector it
//	                                   loads itself again with GRUB's $net_default_mac
//	GET /ignition?mac=[&token=]        the machine's Ignition config
//	GET /assets/PATH                   a file under the assets folder (ranges, HEAD)
//	GET /metrics                       Prometheus metrics
//	GET /healthz                       200 once a config is loaded
//
// A machine is found by its MAC first (any usual spelling: 52:54:00:aa:bb:01, 52-54-00-AA-BB-01,
// 5254.00aa.bb01, 525400aabb01), then by its SMBIOS UUID (the node's metadata key "uuid"), then by
// its hostname (the node's name). A machine that matches no node gets 404 with a body that says
// so, never an empty config.
//
// # Assets
//
// The assets folder (--assets DIR) holds the OS images by OS and channel, in the names their
// projects publish them under, without versions:
//
//	DIR/flatcar/<channel>/flatcar_production_pxe.vmlinuz
//	DIR/flatcar/<channel>/flatcar_production_pxe_image.cpio.gz
//	DIR/fcos/<stream>/fedora-coreos-live-kernel-x86_64
//	DIR/fcos/<stream>/fedora-coreos-live-initramfs.x86_64.img
//	DIR/fcos/<stream>/fedora-coreos-live-rootfs.x86_64.img
//
// and anything else the nodes fetch, such as the kiln-node and etcd binaries of an air-gapped
// cluster (DIR/kiln-node, served at /assets/kiln-node: point the spec's cluster.kilnNode.url there,
// with a sha512 or a file so that Ignition verifies it). No request ever reads outside DIR: paths
// with "..", encoded slashes, or symbolic links that lead out of DIR are refused.
//
// # Tokens
//
// With a token secret, every config URL the server writes carries token=HMAC-SHA256(secret, MAC),
// and /ignition refuses (403) a request without the right one, so that guessing a MAC is not
// enough to read a machine's config. The boot scripts carry the token to the machine, so whoever
// can fetch /ipxe for a MAC learns its token: the token protects /ignition where it is reachable
// from more places than the boot scripts, or when a machine's kernel arguments come from
// elsewhere (a BMC, an ISO's kernel arguments, a DHCP server's per-MAC options).
package pxe
