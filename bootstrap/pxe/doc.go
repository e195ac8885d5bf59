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
//	GET /ignition?mac=[&token=]        the machine's Ignition config, without private keys
//	POST /enrol                        a node's certificate requests (kiln-node enrol), JSON
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
// # Secrets and enrolment
//
// MACs, UUIDs and host names are no secret: anyone on the boot network can claim them. So the
// configs served carry no private key and no node certificate (render.EnrolOptions), only the
// cluster CA and kiln-enrol.service, which runs kiln-node enrol before etcd and kiln-node: the
// node makes its keys, POSTs one certificate request per certificate to /enrol, and waits. The
// server reads only the requests' public keys (each request's signature checked): the
// certificates get the names, addresses and usages of the node in the spec, signed with the
// cluster CA (pki.Bundle.Sign). Whether they are signed is the Policy's or the operator's
// decision: PolicyApprove waits for kiln pxe approve; PolicyFirst signs the first keys that claim
// a node and refuses, logs at ERROR and counts (kiln_pxe_enrol_conflicts_total) any other. The
// state (Enrolments) lives in the PKI folder, so it survives restarts and only who can write the
// PKI can approve.
//
// The assets folder never serves private keys (*.key, or any file that starts as a PEM private
// key), anything under a pki folder, or kiln's own config.ign and config.bu; it serves regular
// files only, opened without blocking.
//
// # Tokens
//
// With a token secret, every config URL the server writes carries token=HMAC-SHA256(secret, MAC),
// and /ignition refuses (403) a request without the right one. The boot scripts carry the token,
// so whoever can fetch /ipxe for a MAC learns its token: a token keeps /ignition from answering
// a bare guess of a MAC where it is reachable from more places than the boot scripts, or where a
// machine's kernel arguments come from elsewhere (a BMC, an ISO, a DHCP server's per-MAC
// options). It protects no secret: the configs hold none.
package pxe
