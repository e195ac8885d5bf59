#!/usr/bin/env bash
# mkroot.sh TARBALL: the root filesystem of kiln's node image (`kiln images build-node`), written
# as a gzipped tarball to TARBALL. It is Debian bookworm made by debootstrap (minbase variant, with
# systemd, D-Bus, iproute2, procps and busybox), trimmed. Nothing is pulled from a registry: the
# packages come from the Debian mirror of this machine's apt sources (or $KILN_DEBIAN_MIRROR).
# Needs root and debootstrap. The image's tag is a hash of this file: any change here makes a new
# image.
set -euo pipefail

out=${1:?usage: mkroot.sh TARBALL}
suite=bookworm
packages=systemd,systemd-sysv,dbus,iproute2,procps,busybox

# mirror prints the first Debian archive URI of the apt sources that serves $suite (deb822
# .sources files and one-line .list files), skipping the security archive.
mirror() {
	if [ -n "${KILN_DEBIAN_MIRROR:-}" ]; then
		echo "$KILN_DEBIAN_MIRROR"
		return
	fi
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		case $f in
		*.sources)
			# One stanza per paragraph: remember URIs and Suites, print at the paragraph's end.
			awk -v suite="$suite" '
				function flush() {
					if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris !~ /security/) {
						split(uris, u, " "); print u[1]; found = 1; exit
					}
					uris = ""; suites = ""; types = ""
				}
				/^[ \t]*#/ { next }
				/^[ \t]*$/ { flush(); next }
				/^URIs:/ { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
				/^Suites:/ { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
				/^Types:/ { $1 = ""; types = $0; sub(/^ +/, "", types) }
				END { if (!found) flush() }
			' "$f"
			;;
		*)
			awk -v suite="$suite" '
				$1 == "deb" {
					i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
					if ($(i + 1) == suite && $i !~ /security/) { print $i; exit }
				}
			' "$f"
			;;
		esac
	done | head -n1 | grep . || echo http://deb.debian.org/debian
}

if [ "$(id -u)" != 0 ]; then
	echo "debootstrap needs root: run kiln images build-node as root once (the image is cached)" >&2
	exit 1
fi
command -v debootstrap >/dev/null 2>&1 || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
url=$(mirror)
work=$(mktemp -d "$(dirname "$out")/rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "debootstrap $suite from $url (minbase + $packages)"
start=$SECONDS
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$url" >"$work/debootstrap.log" 2>&1; then
	tail -n 30 "$work/debootstrap.log" >&2
	[ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
	echo "debootstrap failed" >&2
	exit 1
fi
echo "debootstrap took $((SECONDS - start)) s"

# Every container gets its own machine ID: systemd writes one at first boot when the file is
# empty (and D-Bus reads the same one). An empty machine ID is also what makes systemd apply
# the presets that Ignition writes for enabled units, as on a machine's first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
# Docker provides these; the build host's copies do not belong in the image.
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
# Units that have nothing to do in a container (consoles, periodic apt and disk jobs, pstore):
# without them the machine boots to "running" rather than "degraded".
rm -f "$root"/etc/systemd/system/getty.target.wants/* \
	"$root"/etc/systemd/system/timers.target.wants/* \
	"$root/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service" \
	"$root/etc/systemd/system/sysinit.target.wants/systemd-pstore.service"
# Package caches, indexes and documentation: half of the size.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
	"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
	"$root/debootstrap"

tar --numeric-owner -C "$root" -czf "$work/rootfs.tar.gz" .
mv "$work/rootfs.tar.gz" "$out"
echo "$(du -h "$out" | cut -f1) root filesystem in $((SECONDS - start)) s: $out"
