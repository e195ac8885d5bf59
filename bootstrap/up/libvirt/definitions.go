package libvirt

import (
	"encoding/xml"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/kiln-cluster/kiln/bootstrap/spec"
)

// The definitions kiln hands libvirt, as values: pure Go, so that they are tested without libvirt.

// metadataNS is the XML namespace of the <metadata> element that marks a domain as kiln's.
const metadataNS = "https://github.com/kiln-cluster/kiln/libvirt/1"

// machineMark is kiln's element in a domain's <metadata>: whose node the domain is.
type machineMark struct {
	XMLName xml.Name `xml:"https://github.com/kiln-cluster/kiln/libvirt/1 machine"`
	Cluster string   `xml:"cluster,attr"`
	Node    string   `xml:"node,attr"`
}

// machine is everything a node's domain is made of.
type machine struct {
	Name, Cluster, Node string
	MAC                 string
	Type                string // kvm or qemu
	MemoryMiB, CPUs     int
	Disk                string // the path of the node's copy-on-write volume
	FwCfgName           string // opt/org.flatcar-linux/config or opt/com.coreos/config
	FwCfgFile           string // the path of the node's config volume
	Network             string
	ConsoleLog          string
	// Kernel, Initrd and Cmdline boot a kernel directly instead of the disk (tests).
	Kernel, Initrd, Cmdline string
}

// domainXML is the node's domain: the node's MAC on a virtio NIC in the network, the
// copy-on-write volume as a virtio disk, the config through fw_cfg, the serial console into a
// log file, and kiln's mark in the metadata.
func domainXML(m machine) (string, error) {
	mark, err := xml.Marshal(machineMark{Cluster: m.Cluster, Node: m.Node})
	if err != nil {
		return "", err
	}
	port := uint(0)
	d := &libvirtxml.Domain{
		Type:     m.Type,
		Name:     m.Name,
		Metadata: &libvirtxml.DomainMetadata{XML: string(mark)},
		Memory:   &libvirtxml.DomainMemory{Value: uint(m.MemoryMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(m.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Type: "hvm"}, // the host's architecture
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
			Kernel:      m.Kernel,
			Initrd:      m.Initrd,
			Cmdline:     m.Cmdline,
		},
		SysInfo: []libvirtxml.DomainSysInfo{{FWCfg: &libvirtxml.DomainSysInfoFWCfg{
			Entry: []libvirtxml.DomainSysInfoEntry{{Name: m.FwCfgName, File: m.FwCfgFile}},
		}}},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: m.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Interfaces: []libvirtxml.DomainInterface{{
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: m.MAC},
				Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
				Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: m.Network}},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: m.ConsoleLog, Append: "on"}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			RNGs: []libvirtxml.DomainRNG{{
				Model:   "virtio",
				Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
			}},
		},
	}
	return d.Marshal()
}

// markOf returns kiln's mark in a domain's XML, or nil when the domain is not kiln's.
func markOf(domXML string) (*machineMark, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domXML); err != nil {
		return nil, err
	}
	if d.Metadata == nil {
		return nil, nil
	}
	dec := xml.NewDecoder(strings.NewReader(d.Metadata.XML))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil // no kiln element
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Space == metadataNS && se.Name.Local == "machine" {
			var m machineMark
			if err := dec.DecodeElement(&m, &se); err != nil {
				return nil, err
			}
			return &m, nil
		}
	}
}

// subnet is a cluster network's addresses: the gateway (the host's side of the bridge) and its
// prefix, and each node's MAC and address for DHCP.
type subnet struct {
	Gateway netip.Prefix
	Hosts   []libvirtxml.NetworkDHCPHost
}

// subnetOf derives the network from the spec: the nodes' addresses must share one IPv4 prefix;
// the gateway is the spec's (cluster network, else the first node's), else the prefix's first
// address.
func subnetOf(s *spec.Spec) (subnet, error) {
	var sn subnet
	var pfx netip.Prefix
	for _, n := range s.Nodes {
		if n.IP == "" {
			continue
		}
		p, err := netip.ParsePrefix(n.IP)
		if err != nil || !p.Addr().Is4() {
			return sn, fmt.Errorf("%w: node %s has %q", ErrSubnet, n.Name, n.IP)
		}
		if !pfx.IsValid() {
			pfx = p.Masked()
		} else if p.Masked() != pfx {
			return sn, fmt.Errorf("%w: node %s is in %s, not %s", ErrSubnet, n.Name, p.Masked(), pfx)
		}
		sn.Hosts = append(sn.Hosts, libvirtxml.NetworkDHCPHost{MAC: n.MAC, Name: n.Name, IP: p.Addr().String()})
	}
	if !pfx.IsValid() {
		return sn, fmt.Errorf("%w: no node has an address (give the nodes ip: or name a network with --libvirt-network)", ErrSubnet)
	}
	gw := s.Cluster.Network.Gateway
	for _, n := range s.Nodes {
		if gw == "" && n.Gateway != "" {
			gw = n.Gateway
		}
	}
	var addr netip.Addr
	if gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil || !pfx.Contains(a) {
			return sn, fmt.Errorf("%w: the gateway %s is not in %s", ErrSubnet, gw, pfx)
		}
		addr = a
	} else {
		addr = pfx.Addr().Next()
	}
	for _, h := range sn.Hosts {
		if h.IP == addr.String() {
			return sn, fmt.Errorf("%w: node %s has the gateway's address %s", ErrSubnet, h.Name, addr)
		}
	}
	sn.Gateway = netip.PrefixFrom(addr, pfx.Bits())
	return sn, nil
}

// networkXML is the cluster's network: a bridge whose address is the gateway, NAT to the
// host's uplinks (or no forwarding at all when isolated), and a DHCP host entry per node.
func networkXML(name string, sn subnet, isolated bool) (string, error) {
	n := &libvirtxml.Network{
		Name: name,
		IPs: []libvirtxml.NetworkIP{{
			Address: sn.Gateway.Addr().String(),
			Prefix:  uint(sn.Gateway.Bits()),
			DHCP:    &libvirtxml.NetworkDHCP{Hosts: sn.Hosts},
		}},
	}
	if !isolated {
		n.Forward = &libvirtxml.NetworkForward{Mode: "nat"}
	}
	return n.Marshal()
}

// poolXML is a directory pool.
func poolXML(name, dir string) (string, error) {
	p := &libvirtxml.StoragePool{
		Type:   "dir",
		Name:   name,
		Target: &libvirtxml.StoragePoolTarget{Path: dir, Permissions: &libvirtxml.StoragePoolTargetPermissions{Mode: "0711"}},
	}
	return p.Marshal()
}

// baseVolume is the volume the OS image is uploaded into.
func baseVolume(name, format string, capacity uint64) *libvirtxml.StorageVolume {
	v := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity},
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: format},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0644"},
		},
	}
	return v
}

// diskVolume is a node's disk: a qcow2 volume over the base image (copy on write).
func diskVolume(name string, capacity uint64, backing, backingFormat string) *libvirtxml.StorageVolume {
	v := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity},
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0600"},
		},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   backing,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: backingFormat},
		},
	}
	return v
}

// configVolume is the volume a node's Ignition config is copied into: mode 0600, owned by
// the user QEMU runs as (owner and group from libvirt's DAC base label; -1 leaves libvirt's
// default, the connection's user), so that QEMU can open it and nobody else can.
func configVolume(name string, size uint64, owner, group int) *libvirtxml.StorageVolume {
	perm := &libvirtxml.StorageVolumeTargetPermissions{Mode: "0600"}
	if owner >= 0 {
		perm.Owner = strconv.Itoa(owner)
		perm.Group = strconv.Itoa(group)
	}
	v := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: size},
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: "raw"},
			Permissions: perm,
		},
	}
	return v
}
