#!/usr/bin/env bash
# mkimage.sh IMAGE CACHE_DIR: make sure the docker image IMAGE (the systemd node of the tests in
# internal/systemdtest) exists. It is a Debian bookworm root filesystem made by debootstrap (minbase
# variant, with systemd, D-Bus, iproute2 and procps), trimmed, cached as a tarball in CACHE_DIR and
# imported with `docker import`. Nothing is pulled from a registry: the packages come from the
# Debian mirror of this machine's apt sources (or $KILN_DEBIAN_MIRROR).
#
# Does nothing when the image exists. When docker is missing, its daemon is not reachable or the
# tarball must be built by a user other than root, it says so and exits 0 (the tests then skip, or fail under $CI / $KILN_REQUIRE_TOOLS). A change of
# the recipe below needs a new tag (the Makefile's SYSTEMD_IMAGE and systemdtest.DefaultImage).
set -euo pipefail

image=${1:?usage: mkimage.sh IMAGE CACHE_DIR}
cache=${2:?usage: mkimage.sh IMAGE CACHE_DIR}
suite=bookworm
packages=systemd,systemd-sysv,dbus,iproute2,procps

if ! command -v docker >/dev/null 2>&1; then
	echo "systemd-image: docker is not installed: skipping $image (its tests will skip)" >&2
	exit 0
fi
if ! docker info >/dev/null 2>&1; then
	echo "systemd-image: the docker daemon is not reachable: skipping $image (its tests will skip)" >&2
	exit 0
fi
if docker image inspect "$image" >/dev/null 2>&1; then
	exit 0
fi

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

mkdir -p "$cache"
tarball="$cache/${image//[:\/]/_}.tar.gz"

if [ ! -s "$tarball" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "systemd-image: debootstrap needs root: skipping $image (its tests will skip)" >&2
		exit 0
	fi
	command -v debootstrap >/dev/null 2>&1 || { echo "systemd-image: debootstrap is missing (make deb-deps)" >&2; exit 1; }
	url=$(mirror)
	work=$(mktemp -d "$cache/rootfs.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	root=$work/root
	echo "systemd-image: debootstrap $suite from $url (minbase + $packages)"
	start=$SECONDS
	if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$url" >"$work/debootstrap.log" 2>&1; then
		tail -n 30 "$work/debootstrap.log" >&2
		[ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
		echo "systemd-image: debootstrap failed" >&2
		exit 1
	fi
	echo "systemd-image: debootstrap took $((SECONDS - start)) s"

	# Every container gets its own machine ID: systemd writes one at first boot when the file is
	# empty (and D-Bus reads the same one).
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id"
	ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
	# Docker provides these; the build host's copies do not belong in the image.
	rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
	# Units that have nothing to do in a test container (consoles, periodic apt and disk jobs,
	# pstore): without them the machine boots to "running" rather than "degraded".
	rm -f "$root"/etc/systemd/system/getty.target.wants/* \
		"$root"/etc/systemd/system/timers.target.wants/* \
		"$root/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service" \
		"$root/etc/systemd/system/sysinit.target.wants/systemd-pstore.service"
	# Package caches, indexes and documentation: half of the size.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
		"$root/debootstrap"

	tar --numeric-owner -C "$root" -czf "$work/rootfs.tar.gz" .
	mv "$work/rootfs.tar.gz" "$tarball"
	echo "systemd-image: $(du -h "$tarball" | cut -f1) tarball in $((SECONDS - start)) s: $tarball"
fi

start=$SECONDS
docker import \
	--change 'ENV container=docker' \
	--change 'CMD ["/sbin/init"]' \
	--change "LABEL dev.kiln.systemdtest.image=$image" \
	"$tarball" "$image" >/dev/null
echo "systemd-image: imported $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
