//go:build cgo && libvirt_dlopen

package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	virt "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/images/catalog"
)

// uploader streams size bytes of r into vol; tests on libvirt's test driver, which cannot
// upload, replace it.
type uploader func(ctx context.Context, conn *virt.Connect, vol *virt.StorageVol, r io.Reader, size uint64) error

var uploadFunc uploader = streamUpload

// session is one run of up or down: the connection and what it has looked up.
type session struct {
	d      *Driver
	conn   *virt.Connect
	plan   *up.Plan
	rep    up.Reporter
	st     *state
	upload uploader
}

func connect(uri string) (*virt.Connect, error) {
	conn, err := virt.NewConnect(uri)
	if err != nil && strings.Contains(err.Error(), "libvirt.so.0") {
		return nil, fmt.Errorf("%w: %w", ErrNoLibrary, err)
	} else if err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s: %w", uri, err)
	}
	return conn, nil
}

func isCode(err error, code virt.ErrorNumber) bool {
	var e virt.Error
	return errors.As(err, &e) && e.Code == code
}

func (d *Driver) up(ctx context.Context, p *up.Plan, r up.Reporter, set settings) error {
	domType, diskSize := set.domType, set.diskSize
	st, err := loadState(p.StateDir)
	if err != nil {
		return err
	}
	if st == nil {
		st = &state{}
	}
	st.URI, st.Pool = d.URI, d.Pool
	conn, err := connect(d.URI)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &session{d: d, conn: conn, plan: p, rep: r, st: st, upload: uploadFunc}

	imagePath, err := d.imagePath(p)
	if err != nil {
		return err
	}
	r.Step("", up.StepImage, "checking "+imagePath)
	img, err := inspectImage(imagePath)
	if err != nil {
		return err
	}
	pool, err := s.pool(d.Pool)
	if err != nil {
		return err
	}
	defer pool.Free()
	base, err := s.baseVolume(ctx, pool, img)
	if err != nil {
		r.Failed("", up.StepImage, err, "")
		return err
	}
	r.Step("", up.StepImage, base)

	network, err := s.network()
	if err != nil {
		r.Failed("", up.StepNetwork, err, "")
		return err
	}
	r.Step("", up.StepNetwork, network)

	if domType == "auto" {
		domType = s.hostDomainType()
	}
	owner, group := s.qemuOwner(domType)
	for i := range p.Compiled.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &p.Compiled.Nodes[i]
		m, err := s.node(ctx, pool, n, base, img, diskSize, domType, network, owner, group)
		if err != nil {
			err = fmt.Errorf("node %s: %w", n.Name, err)
			r.Failed(n.Name, up.StepMachine, err, tail(m.ConsoleLog, 30))
			return err
		}
		r.Step(n.Name, up.StepMachine, m.Name+" running")
	}
	return nil
}

// pool returns the named pool, started; a missing pool is created as a directory pool in
// libvirt's usual place.
func (s *session) pool(name string) (*virt.StoragePool, error) {
	pool, err := s.conn.LookupStoragePoolByName(name)
	if isCode(err, virt.ERR_NO_STORAGE_POOL) {
		dir := s.defaultPoolDir()
		x, err := poolXML(name, dir)
		if err != nil {
			return nil, err
		}
		if pool, err = s.conn.StoragePoolDefineXML(x, 0); err != nil {
			return nil, fmt.Errorf("define storage pool %s at %s: %w", name, dir, err)
		}
		if err := pool.Build(virt.STORAGE_POOL_BUILD_NEW); err != nil && !isCode(err, virt.ERR_NO_SUPPORT) {
			pool.Undefine()
			pool.Free()
			return nil, fmt.Errorf("build storage pool %s at %s: %w", name, dir, err)
		}
		pool.SetAutostart(true)
	} else if err != nil {
		return nil, fmt.Errorf("storage pool %s: %w", name, err)
	}
	if active, err := pool.IsActive(); err == nil && !active {
		if err := pool.Create(0); err != nil {
			pool.Free()
			return nil, fmt.Errorf("start storage pool %s: %w", name, err)
		}
	}
	pool.Refresh(0)
	return pool, nil
}

// defaultPoolDir is where libvirt keeps images: the system's folder, or the user's for a
// session connection.
func (s *session) defaultPoolDir() string {
	u, _ := url.Parse(s.d.URI)
	if u != nil && u.Path == "/session" {
		if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
			return filepath.Join(dir, "libvirt", "images")
		}
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, ".local", "share", "libvirt", "images")
		}
	}
	return "/var/lib/libvirt/images"
}

// baseVolume returns the path of the volume that holds img, uploading it when the pool has no
// volume of that checksum yet. A failed upload deletes the volume it made.
func (s *session) baseVolume(ctx context.Context, pool *virt.StoragePool, img *image) (string, error) {
	name := img.baseVolumeName()
	if vol, err := pool.LookupStorageVolByName(name); err == nil {
		defer vol.Free()
		return vol.GetPath()
	} else if !isCode(err, virt.ERR_NO_STORAGE_VOL) {
		return "", err
	}
	vol, err := createVolume(pool, baseVolume(name, img.Format, img.VirtualSize))
	if err != nil {
		return "", err
	}
	defer vol.Free()
	f, err := os.Open(img.Path)
	if err != nil {
		vol.Delete(0)
		return "", err
	}
	defer f.Close()
	s.rep.Step("", up.StepImage, fmt.Sprintf("uploading %s (%d MiB) into %s", img.Path, img.Size>>20, name))
	if err := s.upload(ctx, s.conn, vol, f, img.Size); err != nil {
		vol.Delete(0)
		return "", fmt.Errorf("upload %s into volume %s: %w", img.Path, name, err)
	}
	return vol.GetPath()
}

// createVolume makes a volume of the pool from its definition.
func createVolume(pool *virt.StoragePool, def *libvirtxml.StorageVolume) (*virt.StorageVol, error) {
	x, err := def.Marshal()
	if err != nil {
		return nil, err
	}
	vol, err := pool.StorageVolCreateXML(x, 0)
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", def.Name, err)
	}
	return vol, nil
}

// streamUpload sends r through a libvirt stream, so that remote connections work too.
func streamUpload(ctx context.Context, conn *virt.Connect, vol *virt.StorageVol, r io.Reader, size uint64) error {
	stream, err := conn.NewStream(0)
	if err != nil {
		return err
	}
	defer stream.Free()
	if err := vol.Upload(stream, 0, size, 0); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			stream.Abort()
			return err
		}
		n, rerr := r.Read(buf)
		for off := 0; off < n; {
			m, err := stream.Send(buf[off:n])
			if err != nil {
				stream.Abort()
				return err
			}
			off += m
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			stream.Abort()
			return rerr
		}
	}
	return stream.Finish()
}

// network returns the network the domains go on: the user's (which must exist), or
// kiln-<cluster>, defined and started when missing.
func (s *session) network() (string, error) {
	if name := s.d.Network; name != "" {
		net, err := s.conn.LookupNetworkByName(name)
		if isCode(err, virt.ERR_NO_NETWORK) {
			return "", fmt.Errorf("%w: %s", ErrNoNetwork, name)
		} else if err != nil {
			return "", err
		}
		defer net.Free()
		s.st.Network = name
		if active, err := net.IsActive(); err == nil && !active {
			if err := net.Create(); err != nil {
				return "", fmt.Errorf("start network %s: %w", name, err)
			}
		}
		return name, s.st.save(s.plan.StateDir)
	}
	name := "kiln-" + s.plan.Cluster()
	net, err := s.conn.LookupNetworkByName(name)
	switch {
	case err == nil:
		if s.st.MadeNetwork != name {
			net.Free()
			return "", fmt.Errorf("network %s %w (or name it with --libvirt-network to use it)", name, ErrNotOurs)
		}
	case isCode(err, virt.ERR_NO_NETWORK):
		sn, err := subnetOf(s.plan.Compiled.Spec)
		if err != nil {
			return "", err
		}
		x, err := networkXML(name, sn, s.d.isolated)
		if err != nil {
			return "", err
		}
		s.st.Network, s.st.MadeNetwork = name, name
		if err := s.st.save(s.plan.StateDir); err != nil {
			return "", err
		}
		if net, err = s.conn.NetworkDefineXML(x); err != nil {
			return "", fmt.Errorf("define network %s: %w", name, err)
		}
		net.SetAutostart(true)
	default:
		return "", err
	}
	defer net.Free()
	if active, err := net.IsActive(); err == nil && !active {
		if err := net.Create(); err != nil {
			return "", fmt.Errorf("start network %s: %w", name, err)
		}
	}
	return name, nil
}

// capabilities parses the host's capabilities.
func (s *session) capabilities() *libvirtxml.Caps {
	x, err := s.conn.GetCapabilities()
	if err != nil {
		return nil
	}
	var caps libvirtxml.Caps
	if caps.Unmarshal(x) != nil {
		return nil
	}
	return &caps
}

// hostDomainType is kvm when the host offers it for x86_64 guests, else qemu (TCG), else what
// the host offers (libvirt's test driver: test).
func (s *session) hostDomainType() string {
	offered := map[string]bool{}
	first := ""
	if caps := s.capabilities(); caps != nil {
		for _, g := range caps.Guests {
			if g.OSType != "hvm" || g.Arch.Name != "x86_64" && g.Arch.Name != "i686" {
				continue
			}
			for _, dom := range g.Arch.Domains {
				offered[dom.Type] = true
				if first == "" {
					first = dom.Type
				}
			}
		}
	}
	for _, t := range []string{"kvm", "qemu"} {
		if offered[t] {
			return t
		}
	}
	if first != "" {
		return first
	}
	return "qemu"
}

// qemuOwner is the user and group QEMU runs as, from libvirt's DAC base label ("+64055:+64055");
// -1 when libvirt has none (session connections, where QEMU runs as the connection's user).
func (s *session) qemuOwner(domType string) (int, int) {
	caps := s.capabilities()
	if caps == nil {
		return -1, -1
	}
	for _, m := range caps.Host.SecModel {
		if m.Name != "dac" {
			continue
		}
		for _, l := range m.Labels {
			if l.Type != domType {
				continue
			}
			u, g, ok := strings.Cut(l.Value, ":")
			uid, err1 := strconv.Atoi(strings.TrimPrefix(u, "+"))
			gid, err2 := strconv.Atoi(strings.TrimPrefix(g, "+"))
			if ok && err1 == nil && err2 == nil {
				return uid, gid
			}
		}
	}
	return -1, -1
}

// node converges one node: its config volume (rewritten every time, so a re-rendered config
// reaches the next boot), its disk, its domain, running.
func (s *session) node(ctx context.Context, pool *virt.StoragePool, n *render.Node, base string, img *image,
	diskSize uint64, domType, network string, owner, group int) (machine, error) {
	name := up.MachineName(s.plan.Cluster(), n.Name)
	m := machine{
		Name: name, Cluster: s.plan.Cluster(), Node: n.Name,
		MAC: s.plan.Compiled.Spec.Nodes[s.nodeIndex(n.Name)].MAC, Type: domType,
		MemoryMiB: s.d.MemoryMiB, CPUs: s.d.CPUs,
		FwCfgName: catalog.Of(s.plan.Compiled.Spec.Cluster.OS).FwCfgName,
		Network:   network, ConsoleLog: s.consoleLog(n.Name),
		Kernel: s.d.kernel, Initrd: s.d.initrd, Cmdline: s.d.cmdline,
	}
	diskVol, cfgVol := name+".qcow2", name+".ign"
	addName(&s.st.Volumes, cfgVol)
	addName(&s.st.Volumes, diskVol)
	addName(&s.st.Domains, name)
	if err := s.st.save(s.plan.StateDir); err != nil {
		return m, err
	}
	// The domain first: one kiln did not make stops here, before any volume of its name is
	// touched.
	dom, err := s.conn.LookupDomainByName(name)
	if err == nil {
		defer dom.Free()
		if err := checkOurs(dom, m); err != nil {
			return m, err
		}
	} else if !isCode(err, virt.ERR_NO_DOMAIN) {
		return m, err
	}

	if m.FwCfgFile, err = s.configVolume(ctx, pool, cfgVol, n.Ignition, owner, group); err != nil {
		return m, err
	}
	if m.Disk, err = s.diskVolume(pool, diskVol, base, img, diskSize); err != nil {
		return m, err
	}
	if dom == nil {
		x, err := domainXML(m)
		if err != nil {
			return m, err
		}
		if m.ConsoleLog != "" && !remote(s.d.URI) {
			if err := os.MkdirAll(filepath.Dir(m.ConsoleLog), 0o700); err != nil {
				return m, err
			}
		}
		if dom, err = s.conn.DomainDefineXML(x); err != nil {
			return m, fmt.Errorf("define domain %s: %w", name, err)
		}
		defer dom.Free()
	}
	if active, err := dom.IsActive(); err != nil {
		return m, err
	} else if !active {
		if err := dom.Create(); err != nil {
			return m, fmt.Errorf("start domain %s: %w", name, err)
		}
	}
	return m, nil
}

func (s *session) nodeIndex(name string) int {
	for i, n := range s.plan.Compiled.Spec.Nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}

// consoleLog is where the node's serial console is written: in the state folder for a local
// connection (libvirt opens the file and hands QEMU the descriptor, so the folder may be
// private), in libvirt's log folder on a remote host.
func (s *session) consoleLog(node string) string {
	if remote(s.d.URI) {
		return "/var/log/libvirt/qemu/" + up.MachineName(s.plan.Cluster(), node) + ".console.log"
	}
	return consoleLog(s.plan, node)
}

// remote tells a URI that names a host.
func remote(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Host != ""
}

// checkOurs refuses a domain that lacks kiln's mark for this node.
func checkOurs(dom *virt.Domain, m machine) error {
	x, err := dom.GetXMLDesc(virt.DOMAIN_XML_INACTIVE)
	if err != nil {
		return err
	}
	mark, err := markOf(x)
	if err != nil {
		return err
	}
	if mark == nil || mark.Cluster != m.Cluster || mark.Node != m.Node {
		return fmt.Errorf("domain %s %w", m.Name, ErrNotOurs)
	}
	return nil
}

// configVolume (re)writes the node's config into its volume and returns the volume's path.
func (s *session) configVolume(ctx context.Context, pool *virt.StoragePool, name string, cfg []byte, owner, group int) (string, error) {
	if vol, err := pool.LookupStorageVolByName(name); err == nil {
		err := vol.Delete(0)
		vol.Free()
		if err != nil {
			return "", fmt.Errorf("replace volume %s: %w", name, err)
		}
	} else if !isCode(err, virt.ERR_NO_STORAGE_VOL) {
		return "", err
	}
	vol, err := createVolume(pool, configVolume(name, uint64(len(cfg)), owner, group))
	if err != nil {
		return "", err
	}
	defer vol.Free()
	if err := s.upload(ctx, s.conn, vol, strings.NewReader(string(cfg)), uint64(len(cfg))); err != nil {
		return "", fmt.Errorf("upload the config into volume %s: %w", name, err)
	}
	return vol.GetPath()
}

// diskVolume returns the path of the node's copy-on-write disk, creating it when missing.
func (s *session) diskVolume(pool *virt.StoragePool, name, base string, img *image, size uint64) (string, error) {
	if vol, err := pool.LookupStorageVolByName(name); err == nil {
		defer vol.Free()
		return vol.GetPath()
	} else if !isCode(err, virt.ERR_NO_STORAGE_VOL) {
		return "", err
	}
	vol, err := createVolume(pool, diskVolume(name, max(size, img.VirtualSize), base, img.Format))
	if err != nil {
		return "", err
	}
	defer vol.Free()
	return vol.GetPath()
}

// down removes what the state (and kiln's mark on domains) says kiln made.
func (d *Driver) down(ctx context.Context, p *up.Plan, r up.Reporter) error {
	st, err := loadState(p.StateDir)
	if err != nil {
		return err
	}
	if st == nil {
		// Up records what it is about to make before making it: no record, nothing made.
		return nil
	}
	conn, err := connect(st.URI)
	if err != nil {
		return err
	}
	defer conn.Close()
	domains := append([]string(nil), st.Domains...)
	for _, n := range p.Compiled.Nodes {
		addName(&domains, up.MachineName(p.Cluster(), n.Name))
	}
	volumes := append([]string(nil), st.Volumes...)
	var errs []error
	for _, name := range domains {
		if err := ctx.Err(); err != nil {
			return err
		}
		node := strings.TrimPrefix(name, "kiln-"+p.Cluster()+"-")
		paths, found, err := removeDomain(conn, name, p.Cluster(), node)
		if err != nil {
			r.Failed(node, up.StepMachine, err, "")
			errs = append(errs, err)
			continue
		}
		if !found {
			continue
		}
		for _, path := range paths {
			if vol, err := conn.LookupStorageVolByPath(path); err == nil {
				if n, err := vol.GetName(); err == nil {
					addName(&volumes, n)
				}
				vol.Free()
			}
		}
		r.Step(node, up.StepMachine, name+" removed")
	}
	if pool, err := conn.LookupStoragePoolByName(st.Pool); err == nil {
		pool.Refresh(0)
		for _, name := range volumes {
			vol, err := pool.LookupStorageVolByName(name)
			if isCode(err, virt.ERR_NO_STORAGE_VOL) {
				continue
			} else if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := vol.Delete(0); err != nil {
				errs = append(errs, fmt.Errorf("delete volume %s: %w", name, err))
			}
			vol.Free()
		}
		pool.Free()
	} else if !isCode(err, virt.ERR_NO_STORAGE_POOL) {
		errs = append(errs, err)
	}
	if st.MadeNetwork != "" {
		if net, err := conn.LookupNetworkByName(st.MadeNetwork); err == nil {
			if active, _ := net.IsActive(); active {
				if err := net.Destroy(); err != nil {
					errs = append(errs, fmt.Errorf("stop network %s: %w", st.MadeNetwork, err))
				}
			}
			if err := net.Undefine(); err != nil {
				errs = append(errs, fmt.Errorf("undefine network %s: %w", st.MadeNetwork, err))
			}
			net.Free()
		} else if !isCode(err, virt.ERR_NO_NETWORK) {
			errs = append(errs, err)
		}
		r.Step("", up.StepNetwork, st.MadeNetwork+" removed")
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return st.remove(p.StateDir)
}

// removeDomain destroys and undefines a domain of kiln's mark and returns the files it used
// (its volumes) and whether it was there; a missing domain is no error, one without kiln's mark
// is left alone.
func removeDomain(conn *virt.Connect, name, cluster, node string) (paths []string, found bool, err error) {
	dom, err := conn.LookupDomainByName(name)
	if isCode(err, virt.ERR_NO_DOMAIN) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(virt.DOMAIN_XML_INACTIVE)
	if err != nil {
		return nil, true, err
	}
	if mark, err := markOf(x); err != nil || mark == nil || mark.Cluster != cluster || mark.Node != node {
		return nil, true, fmt.Errorf("domain %s %w", name, ErrNotOurs)
	}
	var def libvirtxml.Domain
	if def.Unmarshal(x) == nil {
		if def.Devices != nil {
			for _, disk := range def.Devices.Disks {
				if disk.Source != nil && disk.Source.File != nil {
					paths = append(paths, disk.Source.File.File)
				}
			}
		}
		for _, si := range def.SysInfo {
			if si.FWCfg != nil {
				for _, e := range si.FWCfg.Entry {
					if e.File != "" {
						paths = append(paths, e.File)
					}
				}
			}
		}
	}
	if active, _ := dom.IsActive(); active {
		if err := dom.Destroy(); err != nil && !isCode(err, virt.ERR_OPERATION_INVALID) {
			return nil, true, fmt.Errorf("stop domain %s: %w", name, err)
		}
	}
	if err := dom.UndefineFlags(virt.DOMAIN_UNDEFINE_MANAGED_SAVE | virt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA); err != nil {
		return nil, true, fmt.Errorf("undefine domain %s: %w", name, err)
	}
	return paths, true, nil
}
