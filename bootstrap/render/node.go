package render

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
	"github.com/kiln-cluster/kiln/configs"
	"github.com/kiln-cluster/kiln/internal/inputfile"
	nodeconfig "github.com/kiln-cluster/kiln/node/config"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Where things go on a node.
const (
	NodeConfigPath  = nodeconfig.DefaultPath
	PKIDir          = "/etc/kiln/pki"
	UnitsDir        = nodeconfig.DefaultUnitsDir
	UnitsManifest   = nodeconfig.DefaultManifestPath
	EtcdEnvPath     = "/etc/kiln/etcd.env"
	FleetLockListen = "127.0.0.1:4381"
	MetricsListen   = "127.0.0.1:9438"
	NodeDataDir     = "/var/lib/kiln"
)

// cluster holds what every node's config is made from, computed once per render.
type cluster struct {
	s       *spec.Spec
	os      *catalog.OS
	pki     *pki.Bundle
	variant string
	version string
	// kilnNodeHash and etcdHash are "sha512-<hex>" or empty.
	kilnNodeHash, etcdHash string
	endpoints              []string
	initialCluster         string
	units                  []file // the unit files under UnitsDir, and the manifest
	snippets               []*yaml.Node
	snippetFiles           []string
	// enrol: leave the nodes' keys out; they enrol (nil: keys in the config).
	enrol *EnrolOptions
}

func newCluster(s *spec.Spec, b *pki.Bundle) (*cluster, error) {
	c := &cluster{s: s, os: catalog.Of(s.Cluster.OS), pki: b}
	c.variant, c.version = c.os.ButaneVariant, c.os.ButaneVersion
	var err error
	if c.kilnNodeHash, err = binaryHash(s, &s.Cluster.KilnNode); err != nil {
		return nil, fmt.Errorf("kilnNode: %w", err)
	}
	if c.etcdHash, err = binaryHash(s, &s.Cluster.Etcd.Binary); err != nil {
		return nil, fmt.Errorf("etcd binary: %w", err)
	}
	var peers []string
	for _, m := range s.Cluster.Etcd.Members {
		n := s.Node(m)
		host := nodeHost(n)
		c.endpoints = append(c.endpoints, fmt.Sprintf("https://%s:%d", host, s.Cluster.Etcd.ClientPort))
		peers = append(peers, fmt.Sprintf("%s=https://%s:%d", m, host, s.Cluster.Etcd.PeerPort))
	}
	c.initialCluster = strings.Join(peers, ",")
	var man nodeconfig.Manifest
	for i, u := range s.Cluster.Units {
		raw, err := inputfile.Read(s.Path(u.File), inputfile.SnippetLimit)
		if err != nil {
			return nil, err
		}
		name := filepath.Base(u.File)
		c.units = append(c.units, file{Path: UnitsDir + "/" + name, Mode: 0o644, Contents: contents{Inline: string(raw)}, origin: fmt.Sprintf("cluster.units.%d.file", i)})
		man.Units = append(man.Units, nodeconfig.ManifestUnit{Name: name, Instances: u.Instances, State: u.State})
	}
	if len(man.Units) > 0 {
		raw, err := man.Marshal()
		if err != nil {
			return nil, err
		}
		c.units = append(c.units, file{Path: UnitsManifest, Mode: 0o644, Contents: contents{Inline: string(raw)}, origin: "cluster.units"})
	}
	for _, sn := range s.Snippets {
		n, err := loadSnippet(s.Path(sn))
		if err != nil {
			return nil, err
		}
		c.snippets = append(c.snippets, n)
		c.snippetFiles = append(c.snippetFiles, s.Path(sn))
	}
	return c, nil
}

func loadSnippet(path string) (*yaml.Node, error) {
	raw, err := inputfile.Read(path, inputfile.SnippetLimit)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &n, nil
}

// binaryHash gives Ignition's verification hash of a fetched binary: the spec's sha512, or the
// digest of the local file the spec names.
func binaryHash(s *spec.Spec, b *spec.Binary) (string, error) {
	switch {
	case b.SHA512 != "":
		return "sha512-" + strings.ToLower(b.SHA512), nil
	case b.File != "":
		f, err := os.Open(s.Path(b.File))
		if err != nil {
			return "", err
		}
		defer f.Close()
		h := sha512.New()
		if _, err := io.Copy(h, f); err != nil {
			return "", err
		}
		return "sha512-" + hex.EncodeToString(h.Sum(nil)), nil
	}
	return "", nil
}

// nodeHost is how peers reach a node: its static address, else its name.
func nodeHost(n *spec.Node) string {
	if n.IP != "" {
		if p, err := netip.ParsePrefix(n.IP); err == nil {
			return p.Addr().String()
		}
	}
	return n.Name
}

// role is what decides which shared part a node gets.
type role struct{ member bool }

// shared builds the part of the config that every node of a role shares, cluster snippets
// merged in.
func (c *cluster) shared(r role) (*yaml.Node, origins, error) {
	s := c.s
	d := doc{Variant: c.variant, Version: c.version}
	d.Passwd.Users = []user{{Name: "core", SSHAuthorizedKeys: s.Cluster.SSHAuthorizedKeys}}
	d.Storage.Files = append(d.Storage.Files, file{Path: PKIDir + "/ca.crt", Mode: 0o644, Contents: contents{Inline: string(c.pki.CA)}})

	// OS updates: the channel, and reboots left to kiln-node.
	if !c.os.Updates.PerNode {
		f, err := c.updateConfig(s.Cluster.Updates.Group)
		if err != nil {
			return nil, nil, err
		}
		d.Storage.Files = append(d.Storage.Files, f)
	}
	for _, name := range c.os.Updates.Mask {
		d.Systemd.Units = append(d.Systemd.Units, unit{Name: name, Mask: yes})
	}

	// The container runtime and its mirrors.
	rt := s.Cluster.Runtime
	switch rt.Engine {
	case "docker":
		if m := rt.Mirrors["docker.io"]; len(m) > 0 {
			raw, err := jsonIndent(map[string]any{"registry-mirrors": m})
			if err != nil {
				return nil, nil, err
			}
			d.Storage.Files = append(d.Storage.Files, file{Path: "/etc/docker/daemon.json", Mode: 0o644, Contents: contents{Inline: raw}})
		}
		d.Systemd.Units = append(d.Systemd.Units, unit{Name: "docker.service", Enabled: yes})
	case "podman":
		if len(rt.Mirrors) > 0 {
			type registry struct {
				Name    string
				Mirrors []string
			}
			var regs []registry
			for _, name := range slices.Sorted(maps.Keys(rt.Mirrors)) {
				var ms []string
				for _, m := range rt.Mirrors[name] {
					ms = append(ms, hostPath(m))
				}
				regs = append(regs, registry{name, ms})
			}
			body, err := execute("registries.conf", map[string]any{"Registries": regs})
			if err != nil {
				return nil, nil, err
			}
			d.Storage.Files = append(d.Storage.Files, file{Path: "/etc/containers/registries.conf.d/50-kiln-mirrors.conf", Mode: 0o644, Contents: contents{Inline: body}})
		}
		d.Systemd.Units = append(d.Systemd.Units, unit{Name: "podman.socket", Enabled: yes})
	}

	// etcd, on members.
	if r.member {
		e := s.Cluster.Etcd
		vars := map[string]any{"Cluster": s.Cluster.Name, "Engine": rt.Engine, "Image": e.Image, "Binary": e.Binary.URL != "", "BinaryPath": c.os.BinPath("etcd")}
		if e.Binary.URL != "" {
			d.Storage.Files = append(d.Storage.Files, fetched(c.os.BinPath("etcd"), e.Binary.URL, c.etcdHash))
		}
		body, err := execute("kiln-etcd.service", vars)
		if err != nil {
			return nil, nil, err
		}
		etcd := unit{Name: "kiln-etcd.service", Enabled: yes, Contents: body}
		if c.enrol != nil {
			etcd.Dropins = enrolDropins()
		}
		d.Systemd.Units = append(d.Systemd.Units, etcd)
	}

	// kiln-node and the cluster's units it submits.
	kn := c.os.BinPath("kiln-node")
	d.Storage.Files = append(d.Storage.Files, fetched(kn, s.Cluster.KilnNode.URL, c.kilnNodeHash))
	body, err := execute("kiln-node.service", map[string]any{"Binary": kn, "Member": r.member})
	if err != nil {
		return nil, nil, err
	}
	kiln := unit{Name: "kiln-node.service", Enabled: yes, Contents: body}
	if c.enrol != nil {
		kiln.Dropins = enrolDropins()
		d.Systemd.Units = append(d.Systemd.Units, c.enrolUnit(r.member, kn))
	}
	d.Systemd.Units = append(d.Systemd.Units, kiln)
	d.Storage.Files = append(d.Storage.Files, c.units...)

	n, err := toNode(&d)
	if err != nil {
		return nil, nil, err
	}
	o := origins{}
	for _, f := range d.Storage.Files {
		if f.origin != "" {
			o["storage.files:"+f.Path] = c.at(f.origin)
		}
	}
	for i, sn := range c.snippets {
		merge(n, sn, "")
		o.addSnippet(c.snippetFiles[i], sn)
	}
	return n, o, nil
}

// at is the place of a spec value.
func (c *cluster) at(specPath string) place {
	line, col := c.s.Pos(specPath)
	return place{c.s.File, line, col}
}

// perNode builds what only this node has: its name, addresses, certificates and node.json.
func (c *cluster) perNode(i int) (*doc, error) {
	s := c.s
	n := &s.Nodes[i]
	member := s.IsMember(n.Name)
	p := fmt.Sprintf("nodes.%d", i)
	d := &doc{Variant: c.variant, Version: c.version}
	add := func(f file) { d.Storage.Files = append(d.Storage.Files, f) }
	add(file{Path: "/etc/hostname", Mode: 0o644, Overwrite: yes, Contents: contents{Inline: n.Name + "\n"}, origin: p + ".name"})

	if n.IP != "" {
		vars := map[string]any{"MAC": strings.ToLower(n.MAC), "IP": n.IP, "Gateway": n.Gateway, "DNS": n.DNS}
		nw := c.os.Network
		body, err := execute(nw.Template, vars)
		if err != nil {
			return nil, err
		}
		add(file{Path: nw.Path, Mode: mode(nw.Mode), Contents: contents{Inline: body}, origin: p + ".ip"})
	}

	if c.os.Updates.PerNode {
		// The update agent names the node's reboot group (Zincati in its FleetLock requests).
		f, err := c.updateConfig(n.Group)
		if err != nil {
			return nil, err
		}
		f.origin = p + ".group"
		add(f)
	}

	// With enrolment the node makes its own keys and gets their certificates from the boot server.
	certs := c.pki.Nodes[n.Name]
	if c.enrol == nil {
		add(file{Path: PKIDir + "/client.crt", Mode: 0o644, Contents: contents{Inline: string(certs.Client.Cert)}, origin: p + ".name"})
		add(file{Path: PKIDir + "/client.key", Mode: 0o600, Contents: contents{Inline: string(certs.Client.Key)}, origin: p + ".name"})
	}

	if member {
		e := s.Cluster.Etcd
		host := nodeHost(n)
		body, err := execute("etcd.env", map[string]any{
			"Name": n.Name, "InitialCluster": c.initialCluster, "Token": "kiln-" + s.Cluster.Name,
			"PeerURL": fmt.Sprintf("https://%s:%d", host, e.PeerPort), "ClientURL": fmt.Sprintf("https://%s:%d", host, e.ClientPort),
			"PeerPort": e.PeerPort, "ClientPort": e.ClientPort,
		})
		if err != nil {
			return nil, err
		}
		add(file{Path: EtcdEnvPath, Mode: 0o644, Contents: contents{Inline: body}, origin: p + ".name"})
		for _, kp := range []struct {
			name string
			pair pki.Pair
		}{{"peer", certs.Peer}, {"server", certs.Server}} {
			if c.enrol != nil {
				continue // made on the node
			}
			add(file{Path: EtcdPKIDir + "/" + kp.name + ".crt", Mode: 0o644, Contents: contents{Inline: string(kp.pair.Cert)}, origin: p + ".name"})
			add(file{Path: EtcdPKIDir + "/" + kp.name + ".key", Mode: 0o600, Contents: contents{Inline: string(kp.pair.Key)}, origin: p + ".name"})
		}
	}

	nc := c.nodeConfig(n)
	raw, err := nc.Marshal()
	if err != nil {
		return nil, err
	}
	add(file{Path: NodeConfigPath, Mode: 0o644, Contents: contents{Inline: string(raw)}, origin: p})
	return d, nil
}

// nodeConfig is the node's /etc/kiln/node.json.
func (c *cluster) nodeConfig(n *spec.Node) *nodeconfig.Config {
	s := c.s
	up := s.Cluster.Updates
	nc := &nodeconfig.Config{
		Hostname: n.Name,
		DataDir:  NodeDataDir,
		Metadata: n.Metadata,
		OS:       s.Cluster.OS,
		Channel:  s.Cluster.Channel,
		Etcd: nodeconfig.Etcd{
			Endpoints: c.endpoints,
			CA:        PKIDir + "/ca.crt",
			Cert:      PKIDir + "/client.crt",
			Key:       PKIDir + "/client.key",
		},
		Reboot:        nodeconfig.Reboot{Strategy: up.Strategy, Group: n.Group, MaxConcurrent: up.MaxConcurrent},
		MetricsListen: MetricsListen,
		Executor:      "systemd",
	}
	if up.Window != nil {
		nc.Reboot.Window = &nodeconfig.Window{Start: up.Window.Start, Length: up.Window.Length}
	}
	// An update agent that speaks FleetLock (Zincati) asks kiln-node through it, whatever the
	// cluster's strategy.
	if up.Strategy == "fleetlock" || (c.os.Updates.FleetLock && up.Strategy == "etcd-lock") {
		nc.FleetLockListen = FleetLockListen
	}
	if len(s.Cluster.Units) > 0 {
		nc.UnitsDir = UnitsDir
	}
	return nc
}

// updateConfig is the OS update agent's configuration: the channel, the update server, and
// reboots left to kiln-node (group is the reboot group it names).
func (c *cluster) updateConfig(group string) (file, error) {
	s := c.s
	up := s.Cluster.Updates
	u := c.os.Updates
	body, err := execute(u.ConfigTemplate, map[string]any{
		"Channel": s.Cluster.Channel, "Server": up.Server, "Strategy": up.Strategy, "Group": group, "FleetLock": FleetLockListen,
	})
	if err != nil {
		return file{}, err
	}
	f := file{Path: u.ConfigPath, Mode: 0o644, Contents: contents{Inline: body}}
	if u.Overwrite {
		f.Overwrite = yes
	}
	return f, nil
}

func fetched(path, source, hash string) file {
	f := file{Path: path, Mode: 0o755, Contents: contents{Source: source}}
	if hash != "" {
		f.Contents.Verification = &verification{Hash: hash}
	}
	return f
}

func execute(name string, data any) (string, error) {
	var b bytes.Buffer
	if err := configs.Templates.ExecuteTemplate(&b, name, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

func toNode(v any) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return &n, nil
}

// hostPath strips the scheme from a mirror URL, as containers-registries.conf wants it.
func hostPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return strings.TrimSuffix(u.Host+u.Path, "/")
}

// PKINodes lists what the PKI must issue for the spec: every node's name and addresses.
func PKINodes(s *spec.Spec) []pki.Node {
	nodes := make([]pki.Node, len(s.Nodes))
	for i, n := range s.Nodes {
		pn := pki.Node{Name: n.Name, DNS: []string{n.Name, "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
		if p, err := netip.ParsePrefix(n.IP); err == nil {
			pn.IPs = append(pn.IPs, net.IP(p.Addr().AsSlice()))
		}
		nodes[i] = pn
	}
	return nodes
}

// ClientURL is the etcd client URL of the named member.
func ClientURL(s *spec.Spec, member string) string {
	return fmt.Sprintf("https://%s:%d", nodeHost(s.Node(member)), s.Cluster.Etcd.ClientPort)
}
