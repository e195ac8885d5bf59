package spec

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-cluster/kiln/bootstrap/report"
	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/internal/inputfile"
)

var (
	nameRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	groupRe = regexp.MustCompile(`^[a-zA-Z0-9.-]+$`)
	metaRe  = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)
	dayRe   = regexp.MustCompile(`^(Sun|Mon|Tue|Wed|Thu|Fri|Sat)$`)
)

// validator reports problems against the spec's own lines.
type validator struct {
	s *Spec
	r report.Report
}

func (v *validator) errorf(path, format string, a ...any) {
	line, col := v.s.Pos(path)
	v.r.Errorf(v.s.File, line, col, path, format, a...)
}

func (v *validator) warnf(path, format string, a ...any) {
	line, col := v.s.Pos(path)
	v.r.Warnf(v.s.File, line, col, path, format, a...)
}

// oneOf checks that value is among allowed, suggesting the nearest on a typo.
func (v *validator) oneOf(path, what, value string, allowed []string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	msg := fmt.Sprintf("%s %q does not exist: expected one of %s", what, value, strings.Join(allowed, ", "))
	if s := nearest(value, allowed); s != "" {
		msg = fmt.Sprintf("%s %q does not exist: did you mean %q? (expected one of %s)", what, value, s, strings.Join(allowed, ", "))
	}
	v.errorf(path, "%s", msg)
	return false
}

// Validate reports every problem of a spec whose defaults were applied: in the spec itself, in
// the unit files and in the Butane snippets it names (those at their own lines).
func (s *Spec) Validate() report.Report {
	v := &validator{s: s}
	v.cluster()
	v.nodes()
	v.etcd()
	v.units()
	v.snippets()
	v.r.Sort()
	return v.r
}

func (v *validator) cluster() {
	c := &v.s.Cluster
	if !nameRe.MatchString(c.Name) {
		v.errorf("cluster.name", "cluster name %q: expected lower-case letters, digits and dashes (at most 63)", c.Name)
	}
	if v.oneOf("cluster.os", "os", c.OS, OSes) {
		v.oneOf("cluster.channel", "channel of "+c.OS, c.Channel, catalog.Of(c.OS).Channels)
	}
	if len(c.SSHAuthorizedKeys) == 0 {
		v.warnf("cluster", "no sshAuthorizedKeys: nobody will be able to log in as core")
	}
	for i, k := range c.SSHAuthorizedKeys {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			v.errorf(fmt.Sprintf("cluster.sshAuthorizedKeys.%d", i), "not an SSH public key (expected a line of authorized_keys, such as \"ssh-ed25519 AAAA... me@laptop\")")
		}
	}
	u := &c.Updates
	v.oneOf("cluster.updates.strategy", "update strategy", u.Strategy, Strategies)
	if u.MaxConcurrent < 1 {
		v.errorf("cluster.updates.maxConcurrent", "maxConcurrent must be at least 1, not %d", u.MaxConcurrent)
	}
	if !groupRe.MatchString(u.Group) {
		v.errorf("cluster.updates.group", "reboot group %q: expected letters, digits, dots and dashes", u.Group)
	}
	if u.Window != nil {
		if _, _, err := ParseWindowStart(u.Window.Start); err != nil {
			v.errorf("cluster.updates.window.start", "reboot window start %q: %v", u.Window.Start, err)
		}
		if d, err := time.ParseDuration(u.Window.Length); err != nil || d <= 0 || d > 7*24*time.Hour {
			v.errorf("cluster.updates.window.length", "reboot window length %q: expected a duration between 1m and 168h, such as 2h or 1h30m", u.Window.Length)
		}
		if u.Strategy == "reboot" || u.Strategy == "off" {
			v.warnf("cluster.updates.window", "a reboot window has no effect with strategy %q", u.Strategy)
		}
	}
	if u.Server != "" && u.Server != "disabled" {
		if o := catalog.Of(c.OS); !o.Updates.Server {
			v.errorf("cluster.updates.server", "an update server cannot be set for %s (%s has its own)", o.Name, o.Updates.Agent)
		} else {
			v.url("cluster.updates.server", u.Server, "the update server")
		}
	}
	if v.oneOf("cluster.runtime", "container runtime", c.Runtime.Engine, Engines) {
		for _, reg := range slices.Sorted(maps.Keys(c.Runtime.Mirrors)) {
			p := "cluster.runtime.mirrors." + Key(reg)
			if strings.ContainsAny(reg, "/: ") || reg == "" {
				v.errorf("cluster.runtime.mirrors.~"+Key(reg), "registry %q: expected a host name such as docker.io", reg)
			}
			if c.Runtime.Engine == "docker" && reg != "docker.io" {
				v.warnf("cluster.runtime.mirrors.~"+Key(reg), "docker mirrors only docker.io; the mirrors of %s are ignored (use podman to mirror other registries)", reg)
			}
			for i, m := range c.Runtime.Mirrors[reg] {
				v.url(fmt.Sprintf("%s.%d", p, i), m, "a mirror")
			}
		}
	}
	v.binary("cluster.kilnNode", &c.KilnNode)
	if c.Network.Gateway != "" {
		if _, err := netip.ParseAddr(c.Network.Gateway); err != nil {
			v.errorf("cluster.network.gateway", "gateway %q is not an IP address", c.Network.Gateway)
		}
	}
	for i, d := range c.Network.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			v.errorf(fmt.Sprintf("cluster.network.dns.%d", i), "DNS server %q is not an IP address", d)
		}
	}
}

func (v *validator) url(path, raw, what string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(path, "%s %q: expected an http or https URL", what, raw)
	}
}

func (v *validator) binary(path string, b *Binary) {
	if b.URL == "" {
		return
	}
	v.url(path+".url", b.URL, "URL")
	switch {
	case b.SHA512 != "":
		if raw, err := hex.DecodeString(b.SHA512); err != nil || len(raw) != 64 {
			v.errorf(path+".sha512", "sha512 must be 128 hexadecimal digits")
		}
	case b.File != "":
		// The file is hashed whole: a FIFO or a device would hang the render or never end.
		if fi, err := os.Stat(v.s.Path(b.File)); err != nil {
			v.errorf(path+".file", "cannot read %s: %v", b.File, unwrapPathErr(err))
		} else if !fi.Mode().IsRegular() {
			v.errorf(path+".file", "%s: %v", b.File, inputfile.ErrNotRegular)
		}
	default:
		v.warnf(path, "no sha512 and no file to compute it from: Ignition will fetch %s without verifying it", b.URL)
	}
}

func (v *validator) nodes() {
	if len(v.s.Nodes) == 0 {
		v.errorf("nodes", "the spec has no nodes: expected a list of nodes with at least a name")
		return
	}
	names := map[string]int{}
	macs := map[string]int{}
	ips := map[netip.Addr]int{}
	for i, n := range v.s.Nodes {
		p := fmt.Sprintf("nodes.%d", i)
		switch {
		case n.Name == "":
			v.errorf(p, "node without a name")
		case !nameRe.MatchString(n.Name):
			v.errorf(p+".name", "node name %q: expected a host name of lower-case letters, digits and dashes", n.Name)
		case slices.Contains(ReservedNames, n.Name):
			v.errorf(p+".name", "node name %q is reserved: kiln render writes its own %s folder beside the nodes' folders", n.Name, n.Name)
		default:
			if j, dup := names[n.Name]; dup {
				v.errorf(p+".name", "duplicate node name %q (also node %d, line %d)", n.Name, j, lineOf(v.s, fmt.Sprintf("nodes.%d.name", j)))
			} else {
				names[n.Name] = i
			}
		}
		if n.MAC != "" {
			hw, err := net.ParseMAC(n.MAC)
			if err != nil || len(hw) != 6 {
				v.errorf(p+".mac", "MAC address %q: expected six hex bytes such as 52:54:00:00:00:01", n.MAC)
			} else if why := badMAC(hw); why != "" {
				v.errorf(p+".mac", "MAC address %s is %s: expected a network card's own (unicast) address", hw, why)
			} else if j, dup := macs[hw.String()]; dup {
				v.errorf(p+".mac", "duplicate MAC address %s (also node %s)", hw, v.s.Nodes[j].Name)
			} else {
				macs[hw.String()] = i
			}
		}
		if n.IP != "" {
			pfx, err := netip.ParsePrefix(n.IP)
			if err != nil {
				v.errorf(p+".ip", "IP %q: expected an address with its prefix length, such as 10.0.0.11/24 (or no ip for DHCP)", n.IP)
			} else if why := badHostPrefix(pfx); why != "" {
				v.errorf(p+".ip", "IP %s: %s", n.IP, why)
			} else if j, dup := ips[pfx.Addr().Unmap()]; dup {
				v.errorf(p+".ip", "duplicate IP address %s (also node %s)", pfx.Addr().Unmap(), v.s.Nodes[j].Name)
			} else {
				ips[pfx.Addr().Unmap()] = i
				if n.Gateway != "" {
					if gw, err := netip.ParseAddr(n.Gateway); err != nil {
						v.errorf(p+".gateway", "gateway %q is not an IP address", n.Gateway)
					} else if !pfx.Masked().Contains(gw) {
						v.warnf(p+".gateway", "gateway %s is outside the node's network %s", gw, pfx.Masked())
					}
				}
			}
		} else if n.Gateway != "" {
			v.warnf(p+".gateway", "a gateway without an ip has no effect (the node uses DHCP)")
		}
		for j, d := range n.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				v.errorf(fmt.Sprintf("%s.dns.%d", p, j), "DNS server %q is not an IP address", d)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(n.Metadata)) {
			if !metaRe.MatchString(k) {
				v.errorf(p+".metadata.~"+Key(k), "metadata key %q: expected letters, digits, dots, dashes and underscores", k)
			}
			if strings.ContainsAny(n.Metadata[k], ",=\"\n") {
				v.errorf(p+".metadata."+Key(k), "metadata value %q: must not hold commas, equals signs, quotes or newlines", n.Metadata[k])
			}
		}
		if !groupRe.MatchString(n.Group) {
			v.errorf(p+".group", "reboot group %q: expected letters, digits, dots and dashes", n.Group)
		}
		for j, sn := range n.Snippets {
			v.snippet(fmt.Sprintf("%s.snippets.%d", p, j), sn)
		}
	}
}

// ReservedNames are names no node may have: kiln render writes these folders in OUT beside
// the nodes' folders.
var ReservedNames = []string{"pki"}

// badMAC says why hw cannot be a node's own MAC address, or "" when it can.
func badMAC(hw net.HardwareAddr) string {
	switch {
	case bytes.Equal(hw, net.HardwareAddr{0, 0, 0, 0, 0, 0}):
		return "all zeros"
	case bytes.Equal(hw, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}):
		return "the broadcast address"
	case hw[0]&1 == 1:
		return "a multicast address (the lowest bit of its first byte is set)"
	}
	return ""
}

// badHostPrefix says why p cannot be a node's address with its network, or "" when it can.
func badHostPrefix(p netip.Prefix) string {
	a := p.Addr().Unmap()
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	switch {
	case a.IsUnspecified():
		return "the unspecified address is no node's address"
	case a.IsLoopback():
		return "a loopback address is no node's address (other machines cannot reach it)"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address is no node's address"
	case a.IsMulticast():
		return "a multicast address is no node's address"
	case bits <= 0:
		return "a prefix length of 0 puts the whole internet on the node's link: expected the length of its network, such as /24"
	}
	if a.Is4() && bits < 31 {
		net := netip.PrefixFrom(a, bits).Masked()
		if a == net.Addr() {
			return fmt.Sprintf("%s is the address of the network %s itself, not of a host in it", a, net)
		}
		if a == lastAddr(net) {
			return fmt.Sprintf("%s is the broadcast address of the network %s", a, net)
		}
	}
	return ""
}

// lastAddr is the highest address of an IPv4 network.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := range 4 {
		hostBits := 8*(i+1) - p.Bits() // bits of byte i that belong to the host part
		switch {
		case hostBits >= 8:
			b[i] = 0xff
		case hostBits > 0:
			b[i] |= byte(1<<hostBits - 1)
		}
	}
	return netip.AddrFrom4(b)
}

func lineOf(s *Spec, path string) int {
	l, _ := s.Pos(path)
	return l
}

func (v *validator) etcd() {
	e := &v.s.Cluster.Etcd
	seen := map[string]bool{}
	for i, m := range e.Members {
		p := fmt.Sprintf("cluster.etcd.members.%d", i)
		n := v.s.Node(m)
		switch {
		case seen[m]:
			v.errorf(p, "etcd member %q is listed twice", m)
		case n == nil:
			msg := fmt.Sprintf("etcd member %q is not a node", m)
			if s := nearest(m, v.s.NodeNames()); s != "" {
				msg += fmt.Sprintf(": did you mean %q?", s)
			}
			v.errorf(p, "%s", msg)
		case n.IP == "":
			v.warnf(p, "etcd member %q has no static ip: its peers reach it by the name %q, which your DNS must resolve", m, m)
		}
		seen[m] = true
	}
	if n := len(e.Members); n > 0 && n%2 == 0 {
		v.warnf("cluster.etcd.members", "%d etcd members: an even count tolerates no more failures than %d, and needs more votes", n, n-1)
	}
	for _, pp := range []struct {
		path string
		port int
	}{{"cluster.etcd.clientPort", e.ClientPort}, {"cluster.etcd.peerPort", e.PeerPort}} {
		if pp.port < 1 || pp.port > 65535 {
			v.errorf(pp.path, "port %d: expected 1 to 65535", pp.port)
		}
	}
	if e.ClientPort == e.PeerPort {
		v.errorf("cluster.etcd.peerPort", "the peer port must differ from the client port (%d)", e.ClientPort)
	}
	v.binary("cluster.etcd.binary", &e.Binary)
}

func (v *validator) units() {
	names := map[string]int{}
	for i, u := range v.s.Cluster.Units {
		p := fmt.Sprintf("cluster.units.%d", i)
		if u.File == "" {
			v.errorf(p, "unit without a file")
			continue
		}
		name := filepath.Base(u.File)
		if j, dup := names[name]; dup {
			v.errorf(p+".file", "unit %s is listed twice (also units.%d)", name, j)
		}
		names[name] = i
		v.oneOf(p+".state", "unit state", u.State, States)
		if IsTemplate(name) {
			if u.Instances < 1 {
				v.errorf(p+".instances", "instances must be at least 1, not %d", u.Instances)
			}
		} else if u.Instances > 1 {
			v.errorf(p+".instances", "%s is not a template (name@.service): it runs once, so instances cannot be %d", name, u.Instances)
		}
		raw, err := inputfile.Read(v.s.Path(u.File), inputfile.SnippetLimit)
		if err != nil {
			v.errorf(p+".file", "cannot read unit %s: %v", u.File, unwrapPathErr(err))
			continue
		}
		v.r.Merge(checkUnit(v.s.Path(u.File), name, raw))
	}
}

func (v *validator) snippets() {
	for i, sn := range v.s.Snippets {
		v.snippet(fmt.Sprintf("snippets.%d", i), sn)
	}
}

func (v *validator) snippet(path, file string) {
	raw, err := inputfile.Read(v.s.Path(file), inputfile.SnippetLimit)
	if err != nil {
		v.errorf(path, "cannot read snippet %s: %v", file, unwrapPathErr(err))
		return
	}
	r, err := CheckSnippet(v.s.Path(file), raw, v.s.Cluster.OS)
	if err != nil {
		v.errorf(path, "%v", err)
	}
	v.r.Merge(r)
}

// ParseWindowStart parses a reboot window start such as "04:00", "Sun 04:00" or "Mon,Thu 03:30",
// giving the days (none: every day) and the minutes after midnight.
func ParseWindowStart(s string) (days []time.Weekday, minute int, err error) {
	f := strings.Fields(s)
	clock := ""
	switch len(f) {
	case 1:
		clock = f[0]
	case 2:
		for _, d := range strings.Split(f[0], ",") {
			if !dayRe.MatchString(d) {
				return nil, 0, fmt.Errorf("day %q: expected Sun, Mon, Tue, Wed, Thu, Fri or Sat", d)
			}
			days = append(days, weekday(d))
		}
		clock = f[1]
	default:
		return nil, 0, fmt.Errorf("expected [days] HH:MM, such as \"Sun 04:00\"")
	}
	hh, mm, ok := strings.Cut(clock, ":")
	h, errH := strconv.Atoi(hh)
	m, errM := strconv.Atoi(mm)
	if !ok || errH != nil || errM != nil || h < 0 || h > 23 || m < 0 || m > 59 || len(mm) != 2 {
		return nil, 0, fmt.Errorf("time %q: expected HH:MM from 00:00 to 23:59", clock)
	}
	return days, h*60 + m, nil
}

func weekday(d string) time.Weekday {
	for w := time.Sunday; w <= time.Saturday; w++ {
		if w.String()[:3] == d {
			return w
		}
	}
	return time.Sunday
}

// Node returns the named node, or nil.
func (s *Spec) Node(name string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// NodeNames lists the nodes' names in spec order.
func (s *Spec) NodeNames() []string {
	names := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		names[i] = n.Name
	}
	return names
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
