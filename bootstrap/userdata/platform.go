// Package userdata hands a node's Ignition config to a machine the way its platform expects:
// cloud user data (aws, gcp, azure, digitalocean, openstack), VMware guestinfo properties
// (vsphere) or a QEMU fw_cfg file (qemu), within the platform's size limit.
//
// Ignition on these platforms reads the user data as a config and does not gunzip it, so a config
// over the limit is compressed inside: a small config whose ignition.config.replace is a gzip
// data URL. When even that is too large, a pointer config replaces itself with the full config
// fetched from a URL and checked against its SHA-512.
package userdata

import (
	"fmt"
	"strings"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Kind says how a platform takes the config.
type Kind int

const (
	// Blob: the config is the instance's user data (custom data, metadata value).
	Blob Kind = iota
	// GuestInfo: the config goes base64-encoded into VMware guestinfo properties.
	GuestInfo
	// FwCfg: the config is a file QEMU exposes to the guest through fw_cfg.
	FwCfg
)

// Platform is a place that hands a machine its config at first boot.
type Platform struct {
	Name string
	Kind Kind
	// Limit is the largest value the platform takes, in bytes as it counts them; 0: no limit.
	Limit int
	// LimitEncoded says the platform counts Limit on the base64-encoded value.
	LimitEncoded bool
	// LimitSource is the documentation the limit comes from.
	LimitSource string
	// Usage tells how to pass the output to the platform's tools (%s: the output file).
	Usage string
}

// The guestinfo properties that Ignition's VMware provider reads.
const (
	GuestInfoData     = "guestinfo.ignition.config.data"
	GuestInfoEncoding = "guestinfo.ignition.config.data.encoding"
)

// platforms is the registry: every delivery target, by name.
var platforms = []*Platform{
	{
		Name: "aws", Kind: Blob, Limit: 16384,
		LimitSource: "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html (16 KB, before base64)",
		Usage:       "aws ec2 run-instances --user-data file://%s ...",
	},
	{
		Name: "gcp", Kind: Blob, Limit: 256 << 10,
		LimitSource: "https://cloud.google.com/compute/docs/metadata/setting-custom-metadata#limitations (256 KB per value)",
		Usage:       "gcloud compute instances create --metadata-from-file user-data=%s ...",
	},
	{
		Name: "azure", Kind: Blob, Limit: 65535,
		LimitSource: "https://learn.microsoft.com/rest/api/compute/virtual-machines/create-or-update (osProfile.customData: at most 65535 bytes once decoded)",
		Usage:       "az vm create --custom-data %s ...",
	},
	{
		Name: "digitalocean", Kind: Blob, Limit: 64 << 10,
		LimitSource: "https://docs.digitalocean.com/products/droplets/how-to/provide-user-data/ (64 KiB)",
		Usage:       "doctl compute droplet create --user-data-file %s ...",
	},
	{
		Name: "openstack", Kind: Blob, Limit: 65535, LimitEncoded: true,
		LimitSource: "https://docs.openstack.org/nova/latest/user/metadata.html#user-data (65535 bytes, base64-encoded)",
		Usage:       "openstack server create --user-data %s ...",
	},
	{
		Name: "vsphere", Kind: GuestInfo, Limit: 64 << 10, LimitEncoded: true,
		LimitSource: "VMware guest RPC messages (GUESTMSG_MAX_IN_SIZE, 64 KiB; vmware-tanzu/vm-operator#138)",
		Usage:       "govc vm.change -vm VM $(sed 's/^/-e /' %s)",
	},
	{
		Name: "qemu", Kind: FwCfg,
		LimitSource: "none: fw_cfg files have no practical size limit",
		Usage:       "qemu-system-x86_64 ... %s",
	},
}

// Lookup returns the named platform, or ErrUnknownPlatform.
func Lookup(name string) (*Platform, error) {
	for _, p := range platforms {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w %q: choose one of %s", ErrUnknownPlatform, name, strings.Join(Names(), ", "))
}

// Names lists the platforms, in the registry's order.
func Names() []string {
	names := make([]string, len(platforms))
	for i, p := range platforms {
		names[i] = p.Name
	}
	return names
}

// FwCfgName is the fw_cfg entry Ignition reads on QEMU (the catalog's, per OS).
func FwCfgName(os string) string { return catalog.Of(os).FwCfgName }

// FwCfgArgs are the QEMU arguments that hand the config in file to the guest (a comma in the
// path is doubled, as QEMU's option syntax wants).
func FwCfgArgs(os, file string) []string {
	return []string{"-fw_cfg", "name=" + FwCfgName(os) + ",file=" + strings.ReplaceAll(file, ",", ",,")}
}
