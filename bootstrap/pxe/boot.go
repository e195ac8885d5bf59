package pxe

import (
	"path"
	"strings"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Assets are the files a network boot of one OS and channel loads, as paths under the assets
// folder (and under /assets/ in URLs).
type Assets struct {
	Kernel string
	Initrd string
	// Rootfs is Fedora CoreOS's live root filesystem, fetched by its initramfs; "" for Flatcar,
	// whose initrd holds the whole OS.
	Rootfs string
}

// AssetPaths returns where the boot files of an OS and channel live under the assets folder:
// the layout `kiln pxe serve --assets DIR` expects, and the one `kiln images pull --platform pxe`
// writes (the catalog's pxe artifacts under <os>/<channel>/).
func AssetPaths(os, channel string) Assets {
	o := catalog.Of(os)
	p := o.Platforms["pxe"]
	var a Assets
	for _, role := range []struct {
		name string
		dst  *string
	}{{catalog.Kernel, &a.Kernel}, {catalog.Initramfs, &a.Initrd}, {catalog.Rootfs, &a.Rootfs}} {
		if art, ok := p.Artifact(role.name); ok {
			*role.dst = o.AssetPath(channel, art)
		}
	}
	return a
}

// DefaultConsole are the console arguments of a boot unless told otherwise: the screen, then the
// first serial port, which the kernel makes /dev/console because it comes last.
var DefaultConsole = []string{"console=tty0", "console=ttyS0,115200n8"}

// bootPlan is what a machine's boot script says, whatever the boot loader: the kernel, the
// initrd and the kernel's arguments, as absolute URLs and final strings.
type bootPlan struct {
	kernel, initrd, initrdName string
	args                       []string
}

// plan works out a machine's boot against base, the server's URL as the machine reaches it.
//
// Flatcar (its PXE documentation): flatcar.first_boot=1 makes Ignition run, ignition.config.url
// says where the config is; the PXE image chooses its platform itself. Fedora CoreOS (its live PXE
// documentation): coreos.live.rootfs_url, ignition.firstboot and ignition.platform.id=metal, then
// ignition.config.url for a live boot, or coreos.inst.install_dev with coreos.inst.ignition_url for
// an install to disk (when the node's kernelArgs name an install_dev, or the server has one).
// Then the console arguments, then the node's own kernelArgs, so that they win.
func (s *Server) plan(m *machine, base string) bootPlan {
	o := catalog.Of(m.os).PXE
	a := AssetPaths(m.os, m.channel)
	assets := base + "/assets/"
	cfg := s.configURL(m, base)
	p := bootPlan{kernel: assets + a.Kernel, initrd: assets + a.Initrd, initrdName: o.InitrdName}
	args := make([]string, 0, 8+len(s.console)+len(m.kargs))
	// The initrd's name as the boot loader knows it (the EFI stub loads initrds by name).
	name := o.InitrdName
	if name == "" {
		name = path.Base(a.Initrd)
	}
	args = append(args, "initrd="+name)
	if o.RootfsArg != "" {
		args = append(args, o.RootfsArg+"="+assets+a.Rootfs)
	}
	args = append(args, o.FirstBoot...)
	switch {
	case o.InstallConfigArg != "" && m.installDev:
		args = append(args, o.InstallConfigArg+"="+cfg)
	case o.InstallConfigArg != "" && s.cfg.InstallDev != "":
		args = append(args, o.InstallDevArg+"="+s.cfg.InstallDev, o.InstallConfigArg+"="+cfg)
	default:
		args = append(args, o.ConfigArg+"="+cfg)
	}
	args = append(args, s.console...)
	p.args = append(args, m.kargs...)
	return p
}

// configURL is the URL of the machine's Ignition config, with its token when tokens are on.
func (s *Server) configURL(m *machine, base string) string {
	u := base + "/ignition?" + m.query
	if m.token != "" {
		u += "&token=" + m.token
	}
	return u
}

// ipxeChain is /boot.ipxe: it asks for the machine's own script, relative to where it came from.
const ipxeChain = "#!ipxe\nchain ipxe?mac=${mac:hexhyp}&uuid=${uuid}&hostname=${hostname}\n"

// ipxeScript writes a machine's iPXE script.
func ipxeScript(b *strings.Builder, cluster string, m *machine, p bootPlan) {
	b.WriteString("#!ipxe\n# kiln: node ")
	b.WriteString(m.name)
	b.WriteString(" of cluster ")
	b.WriteString(cluster)
	b.WriteString(" (")
	b.WriteString(m.os)
	b.WriteString(" ")
	b.WriteString(m.channel)
	b.WriteString(")\nkernel ")
	b.WriteString(p.kernel)
	for _, a := range p.args {
		b.WriteByte(' ')
		b.WriteString(a)
	}
	b.WriteString("\ninitrd ")
	if p.initrdName != "" {
		b.WriteString("--name ")
		b.WriteString(p.initrdName)
		b.WriteByte(' ')
	}
	b.WriteString(p.initrd)
	b.WriteString("\nboot\n")
}

// grubDevice turns an http base URL into GRUB's device syntax: (http,host:port). GRUB speaks
// plain HTTP only; an https base is written as it is and GRUB will fail on it, which the
// server's log warns about at start.
func grubDevice(base string) string {
	host := base
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	return "(http," + host + ")"
}

// grubChain is /grub without a selector: GRUB loads the machine's own entry by its MAC.
func grubChain(b *strings.Builder, base string) {
	b.WriteString("# kiln: load this machine's entry\nconfigfile \"")
	b.WriteString(grubDevice(base))
	b.WriteString("/grub?mac=${net_default_mac}\"\n")
}

// grubScript writes a machine's GRUB configuration: one entry, booted at once.
func grubScript(b *strings.Builder, cluster string, m *machine, base string, p bootPlan) {
	dev := grubDevice(base)
	strip := func(u string) string { return dev + strings.TrimPrefix(u, base) }
	b.WriteString("# kiln: node ")
	b.WriteString(m.name)
	b.WriteString(" of cluster ")
	b.WriteString(cluster)
	b.WriteString("\nset default=0\nset timeout=0\nmenuentry ")
	b.WriteString(grubQuote("kiln " + cluster + "/" + m.name))
	b.WriteString(" {\n  echo 'Loading the kernel'\n  linux ")
	b.WriteString(grubQuote(strip(p.kernel)))
	for _, a := range p.args {
		b.WriteByte(' ')
		b.WriteString(grubQuote(a))
	}
	b.WriteString("\n  echo 'Loading the initrd'\n  initrd ")
	b.WriteString(grubQuote(strip(p.initrd)))
	b.WriteString("\n}\n")
}

// grubQuote quotes a word for GRUB's shell-like script language when it holds anything the
// language treats specially; single quotes keep every character as it is.
func grubQuote(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\"'\\$&;|<>{}#*?[]~") {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
