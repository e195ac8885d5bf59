// Package catalog holds, as data, everything kiln knows about the operating systems it installs:
// their channels, Butane variant, fw_cfg name, paths, update agent, network configuration,
// network-boot arguments, Vagrant boxes, release feed and downloadable artifacts. Every other
// package asks the catalog instead of branching on an OS name.
//
// Adding an OS means one more entry in the list below (and, for its update agent and network
// manager, templates under configs/templates when it needs others than the ones named here), plus
// a feed reader in images/feed when its release feed is of a new kind.
package catalog

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// OS is what kiln knows about one operating system.
type OS struct {
	// Name is the spec's name of the OS (cluster.os).
	Name string
	// Title is the name people read.
	Title string
	// Channels are the update channels (streams) the OS publishes, in the order shown.
	Channels []string
	// DefaultChannel is the channel a spec gets when it names none.
	DefaultChannel string
	// ButaneVariant and ButaneVersion are the Butane config kiln writes; IgnitionVersion the
	// Ignition spec version that Butane translates it to.
	ButaneVariant, ButaneVersion, IgnitionVersion string
	// FwCfgName is the QEMU fw_cfg entry that Ignition reads its config from.
	FwCfgName string
	// BinDir is where fetched binaries go (the OS's /usr is read-only).
	BinDir string
	// Updates is the OS's update agent and how kiln configures it.
	Updates Updates
	// Network is how a node's static address is written.
	Network Network
	// PXE is how the OS boots over the network.
	PXE PXE
	// Vagrant is the OS's Vagrant box.
	Vagrant Vagrant
	// Feed is where releases are published.
	Feed Feed
	// Platforms are the artifacts kiln can download, by platform name (pxe, qemu, vmware, iso).
	Platforms map[string]Platform
}

// Updates says which agent updates the OS and what kiln writes for it.
type Updates struct {
	// Agent names the update agent (update_engine, zincati).
	Agent string
	// ConfigPath is the file kiln writes, from the template of configs/templates named
	// ConfigTemplate. The template gets Channel, Server, Strategy, Group and FleetLock.
	ConfigPath, ConfigTemplate string
	// PerNode: the file names the node's own reboot group, so every node gets its own; else it
	// is the same on every node.
	PerNode bool
	// Overwrite: the OS ships this file, and kiln's replaces it.
	Overwrite bool
	// Mask are the OS's units that kiln masks because kiln-node does their job (reboots).
	Mask []string
	// Server: the spec may name an update server (cluster.updates.server).
	Server bool
	// FleetLock: the agent asks a FleetLock server before rebooting, so kiln-node serves one
	// even when the cluster's strategy is etcd-lock.
	FleetLock bool
}

// Network says how a node's static address is configured.
type Network struct {
	// Manager names the network manager (systemd-networkd, NetworkManager).
	Manager string
	// Path is the file kiln writes, from the template of configs/templates named Template
	// (which gets MAC, IP, Gateway and DNS), with mode Mode.
	Path, Template string
	Mode           int
}

// PXE says how a network boot goes: which artifacts, named how, and which kernel arguments.
type PXE struct {
	// InitrdName is the name the boot loader gives the initrd (the kernel's initrd= argument);
	// "" means the initrd file's own name.
	InitrdName string
	// RootfsArg is the kernel argument that says where the live root filesystem is ("" when the
	// initrd holds the whole OS).
	RootfsArg string
	// FirstBoot are the kernel arguments that make Ignition run on this boot.
	FirstBoot []string
	// ConfigArg is the kernel argument naming the Ignition config URL of a live boot.
	ConfigArg string
	// InstallDevArg and InstallConfigArg are the arguments of an install to disk from the live
	// system ("" when the OS has no such installer in its PXE image).
	InstallDevArg, InstallConfigArg string
}

// Vagrant names the OS's Vagrant box; {channel} in them stands for the cluster's channel.
type Vagrant struct {
	// Box is the box name; BoxURL the URL of its metadata, "" when the OS publishes no box (the
	// user adds one under Box's name).
	Box, BoxURL string
}

// Feed kinds: how a release feed is read.
const (
	// FeedStream is Fedora CoreOS's stream metadata: <base>/streams/<stream>.json.
	FeedStream = "coreos-stream"
	// FeedFlatcar is Flatcar's release server: a folder per version with version.txt and, per
	// artifact, .DIGESTS and a detached .sig.
	FeedFlatcar = "flatcar-release"
)

// Feed is where an OS publishes its releases.
type Feed struct {
	// Kind is FeedStream or FeedFlatcar.
	Kind string
	// URL is the default base; {channel} stands for the channel. For FeedStream the stream is
	// read from URL/streams/<stream>.json; for FeedFlatcar, URL/<version|current>/ holds a
	// release.
	URL string
	// MirrorPath is what follows a mirror's base URL (--base-url) to make URL: "" for
	// FeedStream, "/{channel}/amd64-usr" for Flatcar.
	MirrorPath string
	// Arch is the architecture kiln downloads.
	Arch string
	// KeyFile names the signing keys embedded in kiln (images/feed/keys/<KeyFile>), "" when kiln
	// embeds none and --keyring is required.
	KeyFile string
}

// Artifact roles.
const (
	Kernel    = "kernel"
	Initramfs = "initramfs"
	Rootfs    = "rootfs"
	Disk      = "disk"
)

// Platform is the set of artifacts one platform boots.
type Platform struct {
	// Artifacts, in download order.
	Artifacts []Artifact
}

// Artifact is one downloadable file.
type Artifact struct {
	// Role is Kernel, Initramfs, Rootfs or Disk.
	Role string
	// Name is the file's name in the cache and in `kiln pxe serve --assets` (under
	// <os>/<channel>/), once decompressed when Decompress is set.
	Name string
	// Remote is the file's name on a FeedFlatcar release server.
	Remote string
	// StreamPlatform, StreamFormat and StreamArtifact find the file in FeedStream metadata:
	// architectures.<arch>.artifacts.<platform>.formats.<format>.<artifact>.
	StreamPlatform, StreamFormat, StreamArtifact string
	// Decompress: the download is compressed (xz, bz2, gz: told by its name) and is stored
	// decompressed.
	Decompress bool
}

// all is the catalog. Keep the default first.
var all = []*OS{
	{
		Name:           "flatcar",
		Title:          "Flatcar Container Linux",
		Channels:       []string{"alpha", "beta", "stable", "lts"},
		DefaultChannel: "stable",
		ButaneVariant:  "flatcar", ButaneVersion: "1.1.0", IgnitionVersion: "3.4.0",
		FwCfgName: "opt/org.flatcar-linux/config",
		BinDir:    "/opt/bin",
		Updates: Updates{
			Agent:      "update_engine",
			ConfigPath: "/etc/flatcar/update.conf", ConfigTemplate: "update.conf",
			Overwrite: true,
			Mask:      []string{"locksmithd.service"},
			Server:    true,
		},
		Network: Network{Manager: "systemd-networkd", Path: "/etc/systemd/network/00-kiln.network", Template: "node.network", Mode: 0o644},
		PXE: PXE{
			FirstBoot: []string{"flatcar.first_boot=1"},
			ConfigArg: "ignition.config.url",
		},
		Vagrant: Vagrant{
			Box:    "flatcar-{channel}",
			BoxURL: "https://{channel}.release.flatcar-linux.net/amd64-usr/current/flatcar_production_vagrant.json",
		},
		Feed: Feed{
			Kind:       FeedFlatcar,
			URL:        "https://{channel}.release.flatcar-linux.net/amd64-usr",
			MirrorPath: "/{channel}/amd64-usr",
			Arch:       "amd64",
			KeyFile:    "flatcar.asc",
		},
		Platforms: map[string]Platform{
			"pxe": {Artifacts: []Artifact{
				{Role: Kernel, Name: "flatcar_production_pxe.vmlinuz", Remote: "flatcar_production_pxe.vmlinuz"},
				{Role: Initramfs, Name: "flatcar_production_pxe_image.cpio.gz", Remote: "flatcar_production_pxe_image.cpio.gz"},
			}},
			"qemu": {Artifacts: []Artifact{
				{Role: Disk, Name: "flatcar_production_qemu_image.img", Remote: "flatcar_production_qemu_image.img.bz2", Decompress: true},
			}},
			"vmware": {Artifacts: []Artifact{
				{Role: Disk, Name: "flatcar_production_vmware_ova.ova", Remote: "flatcar_production_vmware_ova.ova"},
			}},
			"iso": {Artifacts: []Artifact{
				{Role: Disk, Name: "flatcar_production_iso_image.iso", Remote: "flatcar_production_iso_image.iso"},
			}},
		},
	},
	{
		Name:           "fcos",
		Title:          "Fedora CoreOS",
		Channels:       []string{"stable", "testing", "next"},
		DefaultChannel: "stable",
		ButaneVariant:  "fcos", ButaneVersion: "1.7.0", IgnitionVersion: "3.6.0",
		FwCfgName: "opt/com.coreos/config",
		BinDir:    "/usr/local/bin",
		Updates: Updates{
			Agent:      "zincati",
			ConfigPath: "/etc/zincati/config.d/55-kiln-updates.toml", ConfigTemplate: "zincati.toml",
			PerNode:   true,
			FleetLock: true,
		},
		Network: Network{Manager: "NetworkManager", Path: "/etc/NetworkManager/system-connections/kiln.nmconnection", Template: "node.nmconnection", Mode: 0o600},
		PXE: PXE{
			InitrdName:    "main",
			RootfsArg:     "coreos.live.rootfs_url",
			FirstBoot:     []string{"ignition.firstboot", "ignition.platform.id=metal"},
			ConfigArg:     "ignition.config.url",
			InstallDevArg: "coreos.inst.install_dev", InstallConfigArg: "coreos.inst.ignition_url",
		},
		Vagrant: Vagrant{Box: "fedora-coreos-{channel}"},
		Feed: Feed{
			Kind:    FeedStream,
			URL:     "https://builds.coreos.fedoraproject.org",
			Arch:    "x86_64",
			KeyFile: "fedora.asc",
		},
		Platforms: map[string]Platform{
			"pxe": {Artifacts: []Artifact{
				{Role: Kernel, Name: "fedora-coreos-live-kernel-x86_64", StreamPlatform: "metal", StreamFormat: "pxe", StreamArtifact: "kernel"},
				{Role: Initramfs, Name: "fedora-coreos-live-initramfs.x86_64.img", StreamPlatform: "metal", StreamFormat: "pxe", StreamArtifact: "initramfs"},
				{Role: Rootfs, Name: "fedora-coreos-live-rootfs.x86_64.img", StreamPlatform: "metal", StreamFormat: "pxe", StreamArtifact: "rootfs"},
			}},
			"qemu": {Artifacts: []Artifact{
				{Role: Disk, Name: "fedora-coreos-qemu.x86_64.qcow2", StreamPlatform: "qemu", StreamFormat: "qcow2.xz", StreamArtifact: "disk", Decompress: true},
			}},
			"vmware": {Artifacts: []Artifact{
				{Role: Disk, Name: "fedora-coreos-vmware.x86_64.ova", StreamPlatform: "vmware", StreamFormat: "ova", StreamArtifact: "disk"},
			}},
			"iso": {Artifacts: []Artifact{
				{Role: Disk, Name: "fedora-coreos-live.x86_64.iso", StreamPlatform: "metal", StreamFormat: "iso", StreamArtifact: "disk"},
			}},
		},
	},
}

// Default is the OS of a spec that names none.
var Default = all[0]

// All returns every OS of the catalog, the default first.
func All() []*OS { return slices.Clone(all) }

// Names lists the OS names, the default first.
func Names() []string {
	names := make([]string, len(all))
	for i, o := range all {
		names[i] = o.Name
	}
	return names
}

// Get returns the OS of that name.
func Get(name string) (*OS, error) {
	for _, o := range all {
		if o.Name == name {
			return o, nil
		}
	}
	return nil, fmt.Errorf("%w %q: choose one of %s", ErrUnknownOS, name, strings.Join(Names(), ", "))
}

// Of returns the OS of that name, or Default when there is none: for names that spec
// validation has already checked.
func Of(name string) *OS {
	if o, err := Get(name); err == nil {
		return o
	}
	return Default
}

// HasChannel says whether the OS publishes that channel.
func (o *OS) HasChannel(c string) bool { return slices.Contains(o.Channels, c) }

// Channel checks a channel name.
func (o *OS) Channel(c string) error {
	if !o.HasChannel(c) {
		return fmt.Errorf("%w %q for %s: choose one of %s", ErrUnknownChannel, c, o.Name, strings.Join(o.Channels, ", "))
	}
	return nil
}

// PlatformNames lists the platforms kiln can download for the OS, sorted.
func (o *OS) PlatformNames() []string {
	return slices.Sorted(maps.Keys(o.Platforms))
}

// Platform returns the artifacts of a platform.
func (o *OS) Platform(name string) (Platform, error) {
	p, ok := o.Platforms[name]
	if !ok {
		return Platform{}, fmt.Errorf("%w %q for %s: choose one of %s", ErrUnknownPlatform, name, o.Name, strings.Join(o.PlatformNames(), ", "))
	}
	return p, nil
}

// Artifact returns the platform's artifact of a role, and whether it has one.
func (p Platform) Artifact(role string) (Artifact, bool) {
	for _, a := range p.Artifacts {
		if a.Role == role {
			return a, true
		}
	}
	return Artifact{}, false
}

// BinPath is where the fetched binary of that name goes.
func (o *OS) BinPath(name string) string { return path.Join(o.BinDir, name) }

// Box returns the Vagrant box name and metadata URL of a channel.
func (o *OS) Box(channel string) (name, url string) {
	return expand(o.Vagrant.Box, channel), expand(o.Vagrant.BoxURL, channel)
}

// FeedURL is the base URL of a channel's releases: the OS's own, or under a mirror's base
// (--base-url) when mirror is not "".
func (o *OS) FeedURL(channel, mirror string) string {
	if mirror != "" {
		return strings.TrimRight(mirror, "/") + expand(o.Feed.MirrorPath, channel)
	}
	return expand(o.Feed.URL, channel)
}

// AssetPath is where an artifact of a channel lives under a `kiln pxe serve --assets` folder
// and in the image cache: <os>/<channel>/<name>.
func (o *OS) AssetPath(channel string, a Artifact) string {
	return path.Join(o.Name, channel, a.Name)
}

func expand(s, channel string) string { return strings.ReplaceAll(s, "{channel}", channel) }
