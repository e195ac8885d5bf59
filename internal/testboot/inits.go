package testboot

import (
	"fmt"
	"strings"
)

// The lines around what a guest prints (base64, so that any bytes come back exactly), and the
// prefix of the line a script prints when it fails.
const (
	BeginMarker = "===== kiln-testboot begin (base64) ====="
	EndMarker   = "===== kiln-testboot end ====="
	ErrorPrefix = "kiln-testboot error: "
)

// udhcpcScript configures the interface udhcpc leased an address for (busybox ships no default).
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
	for r in $router; do route add default gw "$r" dev "$interface"; break; done
	;;
esac
`

// dhcpUp waits for eth0 and brings it up with DHCP.
const dhcpUp = `
i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i+1)); [ $i -gt 100 ] && fail "no eth0"; sleep 0.1
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /bin/udhcpc.script -n -q -t 10 -T 1 >/dev/null 2>&1 || fail "no dhcp lease on eth0"
`

// NetInit is an Init whose script brings eth0 up with DHCP before script runs: the start of
// every guest that talks to the host (10.0.2.2 on QEMU's user network).
func NetInit(script string) Init {
	return Init{
		Modules: NetModules,
		Files:   map[string][]byte{"bin/udhcpc.script": []byte(udhcpcScript)},
		Script:  dhcpUp + script,
	}
}

// FetchInit brings eth0 up with DHCP, downloads the URL in the kernel argument ignition.config.url
// and prints it: the guest side of a PXE boot. Busybox 1.35's wget -T crashes, so timeout(1)
// bounds the download instead.
var FetchInit = NetInit(`
url=
for arg in $(cat /proc/cmdline); do
	case "$arg" in ignition.config.url=*) url="${arg#ignition.config.url=}" ;; esac
done
[ -n "$url" ] || fail "no ignition.config.url on the kernel command line"
timeout 60 wget -q -O /tmp/fetched "$url" || fail "fetching $url failed"
emit /tmp/fetched
finish
`)

// FwCfgInit prints the QEMU fw_cfg entry name (e.g. opt/org.flatcar-linux/config) as the guest's
// kernel sees it under /sys/firmware/qemu_fw_cfg/by_name.
func FwCfgInit(name string) Init {
	return Init{
		Modules: FwCfgModules,
		Script: fmt.Sprintf(`
f=/sys/firmware/qemu_fw_cfg/by_name/%s/raw
i=0
while [ ! -e "$f" ]; do
	i=$((i+1)); [ $i -gt 50 ] && fail "no fw_cfg entry %s"; sleep 0.1
done
cat "$f" >/tmp/fwcfg
emit /tmp/fwcfg
finish
`, shellPath(name), shellPath(name)),
	}
}

// ISOInit prints /config.ign: the Ignition config that a live ISO's boot loader loaded as a second
// initramfs (the embed area) and the kernel unpacked over the first one (xz: CONFIG_RD_XZ).
var ISOInit = Init{
	Script: `
[ -f /config.ign ] || fail "no /config.ign in the root file system (was the embed area loaded as an initrd?)"
emit /config.ign
finish
`,
}

// shellPath keeps a fw_cfg name to the characters such names use, so it can sit in a script.
func shellPath(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("/._-", r):
			return r
		}
		return '_'
	}, s)
}
