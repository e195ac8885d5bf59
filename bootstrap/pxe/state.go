package pxe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/render"
)

// machine is one node as the server hands it out: found by MAC, UUID or name, with its Ignition
// and everything a response needs computed once per compile.
type machine struct {
	name, mac, uuid string
	os, channel     string
	kargs           []string
	// installDev: the node's kernelArgs name coreos.inst.install_dev (an install to disk).
	installDev bool
	// member: an etcd member, which enrols for etcd's peer and server certificates too; pki
	// names its addresses, which every certificate it enrols for carries.
	member bool
	pki    pki.Node
	// query selects the machine in the config URL (mac=52-54-00-.. or hostname=name).
	query string
	// token is hex HMAC-SHA256(secret, MAC or name); "" when tokens are off.
	token string

	ignition      []byte
	contentLength []string
	etag          []string
}

// state is one compiled spec: the machines and their indexes. A state never changes once built;
// a reload builds a new one and swaps it in.
type state struct {
	cluster string
	spec    string
	// pki signs enrolments.
	pki    *pki.Bundle
	nodes  []*machine
	byMAC  map[string]*machine
	byUUID map[string]*machine
	byName map[string]*machine
	loaded time.Time
	// watched are the files the configs were made from (the spec, its snippets, units and
	// binaries), whose changes cause a reload.
	watched []string
}

// build turns a compile's result into a state; secret, when set, makes every machine's token.
func build(c *render.Compiled, secret []byte) (*state, error) {
	s := c.Spec
	st := &state{
		cluster: s.Cluster.Name,
		spec:    s.File,
		pki:     c.PKI,
		byMAC:   map[string]*machine{},
		byUUID:  map[string]*machine{},
		byName:  map[string]*machine{},
		loaded:  time.Now(),
		watched: watchedFiles(c),
	}
	pkiNodes := render.PKINodes(s)
	for i := range s.Nodes {
		n := &s.Nodes[i]
		cn := c.Node(n.Name)
		if cn == nil {
			return nil, fmt.Errorf("node %s has no config", n.Name)
		}
		for _, k := range n.KernelArgs {
			if strings.ContainsFunc(k, unicode.IsControl) {
				return nil, fmt.Errorf("node %s: %w: %q", n.Name, ErrKernelArgs, k)
			}
		}
		m := &machine{
			name:     n.Name,
			os:       s.Cluster.OS,
			channel:  s.Cluster.Channel,
			kargs:    n.KernelArgs,
			ignition: cn.Ignition,
			member:   s.IsMember(n.Name),
			pki:      pkiNodes[i],
		}
		for _, k := range n.KernelArgs {
			if strings.HasPrefix(k, "coreos.inst.install_dev=") {
				m.installDev = true
			}
		}
		sum := sha256.Sum256(cn.Ignition)
		m.etag = []string{`"` + hex.EncodeToString(sum[:16]) + `"`}
		m.contentLength = []string{strconv.Itoa(len(cn.Ignition))}
		key := "name:" + n.Name
		if mac, ok := NormalizeMAC(n.MAC); ok {
			m.mac = mac
			st.byMAC[mac] = m
			key = mac
			m.query = "mac=" + hyphenMAC(mac)
		} else {
			m.query = "hostname=" + url.QueryEscape(n.Name)
		}
		if u := normalizeUUID(n.Metadata["uuid"]); u != "" {
			m.uuid = u
			if _, dup := st.byUUID[u]; dup {
				return nil, fmt.Errorf("node %s: uuid %s is also another node's", n.Name, u)
			}
			st.byUUID[u] = m
		}
		if secret != nil {
			m.token = token(secret, key)
		}
		st.byName[n.Name] = m
		st.nodes = append(st.nodes, m)
	}
	return st, nil
}

// token is a machine's token: hex HMAC-SHA256 of its key (its MAC, or "name:" and its name for a
// node without one), cut to 128 bits.
func token(secret []byte, key string) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// find returns the machine a selector names: by MAC, then UUID, then hostname.
func (st *state) find(sel selector) *machine {
	if m := st.byMAC[sel.mac]; m != nil && sel.mac != "" {
		return m
	}
	if m := st.byUUID[sel.uuid]; m != nil && sel.uuid != "" {
		return m
	}
	if sel.hostname == "" {
		return nil
	}
	if m := st.byName[sel.hostname]; m != nil {
		return m
	}
	// A DHCP hostname may be fully qualified.
	if short, _, ok := strings.Cut(sel.hostname, "."); ok {
		return st.byName[short]
	}
	return nil
}

// watchedFiles lists the files a compile read: the spec, the snippets, unit files and the local
// copies of fetched binaries.
func watchedFiles(c *render.Compiled) []string {
	s := c.Spec
	files := []string{s.File}
	add := func(p string) {
		if p != "" {
			files = append(files, s.Path(p))
		}
	}
	for _, p := range s.Snippets {
		add(p)
	}
	for _, n := range s.Nodes {
		for _, p := range n.Snippets {
			add(p)
		}
	}
	for _, u := range s.Cluster.Units {
		add(u.File)
	}
	add(s.Cluster.KilnNode.File)
	add(s.Cluster.Etcd.Binary.File)
	return files
}
