package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-cluster/kiln/bootstrap/deliver"
	"github.com/kiln-cluster/kiln/bootstrap/render"
	"github.com/kiln-cluster/kiln/images/catalog"
	"github.com/kiln-cluster/kiln/node/enrol"
)

// Config says what the server serves and how.
type Config struct {
	// Deliver says which spec to compile and how, through deliver.Prepare (as every delivery
	// does): at start and whenever the spec or a file it names changes. The server sets its own
	// Problems (the spec's errors go into the reload's error, its warnings into the log), never
	// makes a PKI (CreatePKI is ignored) and always renders without private keys (Enrol).
	Deliver deliver.Options
	// Assets is the folder served under /assets/.
	Assets string
	// BaseURL is the server's URL as machines reach it (http://10.0.0.1:8080), written into boot
	// scripts and config URLs; empty: the scheme and Host of each request.
	BaseURL string
	// TokenSecret, when set, turns per-machine tokens on (at least 32 bytes).
	TokenSecret []byte
	// Console replaces DefaultConsole when not nil (an empty, non-nil slice: no console argument).
	Console []string
	// InstallDev, for Fedora CoreOS, installs to this disk (coreos.inst.install_dev) rather than
	// booting live; a node's own coreos.inst.install_dev kernel argument wins.
	InstallDev string
	// Poll is how often the spec's files are checked for changes; 0 means 2 s.
	Poll time.Duration
	// Logger receives the access log and the reloads; nil means slog.Default().
	Logger *slog.Logger
	// Enrol decides the nodes' enrolments that the operator has not; "" is PolicyApprove.
	// Served configs never carry private keys: nodes make theirs and enrol (POST /enrol).
	Enrol Policy
}

// Server is the boot server. It is an http.Handler; Serve runs it on a listener.
type Server struct {
	cfg     Config
	log     *slog.Logger
	console []string
	base    string
	assets  *os.Root
	state   atomic.Pointer[state]
	metrics *metrics

	// reload serializes reloads; fingerprint is the state of the watched files the configs
	// were compiled from, pending their state at the last check.
	reload               sync.Mutex
	fingerprint, pending string

	// enrolMu serializes enrolment decisions; enrolments is their state beside the PKI.
	enrolMu    sync.Mutex
	enrolments *Enrolments
}

// New compiles the spec, keeping new certificates in the PKI folder (unless first, the result of
// an earlier deliver.Prepare of the same spec with the same options, is given), and returns a
// server ready to serve it.
func New(cfg Config, first *render.Compiled) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.TokenSecret != nil && len(cfg.TokenSecret) < 32 {
		return nil, ErrTokenSecret
	}
	var err error
	if cfg.Enrol, err = ParsePolicy(string(cfg.Enrol)); err != nil {
		return nil, err
	}
	// Only kiln render makes a PKI: a missing one here is a mistyped path, not a new cluster.
	cfg.Deliver.CreatePKI = false
	// One rule for a relative assets folder: the current directory, for serving and hashing.
	if cfg.Assets, err = filepath.Abs(cfg.Assets); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoAssets, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, console: DefaultConsole, metrics: newMetrics(),
		enrolments: OpenEnrolments(cfg.Deliver.PKIDir)}
	if cfg.Console != nil {
		s.console = cfg.Console
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || !validHost(u.Host) {
			return nil, fmt.Errorf("%w: %q", ErrBaseURL, cfg.BaseURL)
		}
		s.base = strings.TrimSuffix(cfg.BaseURL, "/")
	}
	// The configs served over the network carry no private key, whatever the caller compiled.
	if e := s.cfg.Deliver.Enrol; e == nil || e.URL != s.base {
		s.cfg.Deliver.Enrol = &render.EnrolOptions{URL: s.base}
		first = nil
	}
	root, err := os.OpenRoot(cfg.Assets)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoAssets, err)
	}
	s.assets = root
	var st *state
	if first == nil {
		st, first, err = s.compile()
	} else {
		st, err = build(first, s.cfg.TokenSecret)
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	s.fingerprint = fingerprint(st.watched)
	s.swap(st)
	s.checkAssets(st, first)
	if o := catalog.Of(first.Spec.Cluster.OS); cfg.InstallDev != "" && o.PXE.InstallDevArg == "" {
		s.log.Warn("the install disk does not apply to "+o.Title+": its machines boot live (install it to disk from a snippet)",
			"install_dev", cfg.InstallDev)
	}
	installs := cfg.InstallDev != ""
	for _, m := range st.nodes {
		installs = installs || m.installDev
	}
	if installs && s.base == "" {
		// An installed system boots without ignition.config.url, where kiln-node enrol finds
		// the server when the config does not name it.
		s.log.Warn("machines installed to disk must be told where to enrol: set --base-url so that their configs name this server")
	}
	return s, nil
}

// Registry holds the server's Prometheus metrics (served at /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// Close releases the assets folder.
func (s *Server) Close() error { return s.assets.Close() }

func (s *Server) swap(st *state) {
	s.state.Store(st)
	s.metrics.nodes.Set(float64(len(st.nodes)))
	s.metrics.loaded.Set(float64(st.loaded.Unix()))
}

// Serve answers HTTP (HTTPS when certFile and keyFile are given) on ln until ctx is done, then
// shuts down gracefully: requests in flight get up to grace to finish. It also watches the spec
// for changes while it runs. It returns nil after a shutdown that ctx asked for.
func (s *Server) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string, grace time.Duration) error {
	tlsConfig, err := LoadTLS(certFile, keyFile)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.Watch(watchCtx)
	}()
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, "", "") // the pair is in TLSConfig, checked above
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	scheme := "http"
	if certFile != "" {
		scheme = "https"
		s.log.Warn("GRUB fetches over plain HTTP only: /grub scripts point at https and GRUB cannot follow them; use iPXE")
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "scheme", scheme, "spec", s.cfg.Deliver.Spec, "assets", s.cfg.Assets,
		"nodes", len(s.state.Load().nodes), "tokens", s.cfg.TokenSecret != nil, "enrol", s.cfg.Enrol)
	select {
	case err = <-errc:
		// The listener failed before anyone asked us to stop.
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		err = srv.Shutdown(sctx)
		cancel()
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
		s.log.Info("stopped", "addr", ln.Addr().String())
	}
	stopWatch()
	<-watched
	return err
}

// ServeHTTP routes a request. Every request is counted, timed and logged once.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w, status: http.StatusOK}
	route := s.route(rw, r)
	s.metrics.observe(route, rw.status, time.Since(start))
	if s.log.Enabled(r.Context(), slog.LevelInfo) {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("query", redact(r.URL.RawQuery)),
			slog.Int("status", rw.status), slog.Int64("bytes", rw.bytes), slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr), slog.String("node", rw.node), slog.String("agent", r.UserAgent()))
	}
}

// The routes, as metrics label them.
const (
	routeBoot     = "boot.ipxe"
	routeIPXE     = "ipxe"
	routeGRUB     = "grub"
	routeIgnition = "ignition"
	routeAssets   = "assets"
	routeMetrics  = "metrics"
	routeHealth   = "healthz"
	routeEnrol    = "enrol"
	routeOther    = "other"
)

func (s *Server) route(w *responseWriter, r *http.Request) string {
	p := r.URL.Path
	route := routeOther
	switch {
	case p == "/ignition":
		route = routeIgnition
	case p == "/boot.ipxe":
		route = routeBoot
	case p == "/ipxe":
		route = routeIPXE
	case p == "/grub":
		route = routeGRUB
	case strings.HasPrefix(p, "/assets/"):
		route = routeAssets
	case p == "/metrics":
		route = routeMetrics
	case p == "/healthz":
		route = routeHealth
	case p == enrol.Path:
		route = routeEnrol
	}
	if route == routeEnrol {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			plain(w, http.StatusMethodNotAllowed, "kiln: enrolments are POSTed by kiln-node enrol\n")
		} else {
			s.serveEnrol(w, r)
		}
		return route
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plain(w, http.StatusMethodNotAllowed, "kiln: only GET and HEAD are served\n")
		return route
	}
	switch route {
	case routeIgnition:
		s.serveIgnition(w, r)
	case routeBoot:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, ipxeChain)
	case routeIPXE, routeGRUB:
		s.serveScript(w, r, route)
	case routeAssets:
		s.serveAsset(w, r)
	case routeMetrics:
		s.metrics.handler.ServeHTTP(w, r)
	case routeHealth:
		plain(w, http.StatusOK, "ok\n")
	default:
		plain(w, http.StatusNotFound, "kiln: no such route: try /boot.ipxe, /ipxe, /grub, /ignition or /assets/\n")
	}
	return route
}

var (
	jsonType    = []string{"application/vnd.coreos.ignition+json"}
	noStore     = []string{"no-store"}
	nosniff     = []string{"nosniff"}
	textType    = []string{"text/plain; charset=utf-8"}
	headerETag  = http.CanonicalHeaderKey("ETag")
	headerCache = http.CanonicalHeaderKey("Cache-Control")
)

// serveIgnition answers a machine's config, compiled before the request came.
func (s *Server) serveIgnition(w *responseWriter, r *http.Request) {
	st := s.state.Load()
	q := r.URL.Query()
	sel := parseSelector(q)
	m := st.find(sel)
	if m == nil {
		s.notFound(w, st, sel)
		return
	}
	w.node = m.name
	if m.token != "" && !validToken(q.Get("token"), m.token) {
		s.metrics.tokenRejected.Inc()
		s.log.Warn("wrong token", "node", m.name, "remote", r.RemoteAddr, "given", q.Get("token") != "")
		plain(w, http.StatusForbidden, "kiln: a missing or wrong token for node "+m.name+": use the config URL of the node's boot script\n")
		return
	}
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Content-Length"] = m.contentLength
	h[headerETag] = m.etag
	h[headerCache] = noStore
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(m.ignition)
	}
}

// serveScript answers a machine's iPXE or GRUB script.
func (s *Server) serveScript(w *responseWriter, r *http.Request, route string) {
	st := s.state.Load()
	base, ok := s.baseURL(r)
	if !ok {
		plain(w, http.StatusBadRequest, "kiln: the Host header is not a host name or address\n")
		return
	}
	sel := parseSelector(r.URL.Query())
	var b strings.Builder
	if route == routeGRUB && sel.empty() && sel.badMAC == "" {
		grubChain(&b, base)
	} else {
		m := st.find(sel)
		if m == nil {
			s.notFound(w, st, sel)
			return
		}
		w.node = m.name
		p := s.plan(m, base)
		if route == routeGRUB {
			grubScript(&b, st.cluster, m, base, p)
		} else {
			ipxeScript(&b, st.cluster, m, p)
		}
	}
	h := w.Header()
	h["Content-Type"] = textType
	h[headerCache] = noStore
	io.WriteString(w, b.String())
}

// notFound answers a machine that matches no node: 404 with a body that says what was asked,
// never an empty config.
func (s *Server) notFound(w *responseWriter, st *state, sel selector) {
	s.metrics.unknown.Inc()
	if sel.empty() && sel.badMAC == "" {
		plain(w, http.StatusNotFound, "kiln: the request names no machine: give mac=, uuid= or hostname=\n")
		return
	}
	plain(w, http.StatusNotFound, fmt.Sprintf("kiln: no node of cluster %s has %s (spec %s: give the node its mac, metadata.uuid or name)\n",
		st.cluster, sel, st.spec))
}

// baseURL is the server's URL as the requesting machine reached it.
func (s *Server) baseURL(r *http.Request) (string, bool) {
	if s.base != "" {
		return s.base, true
	}
	host := r.Host
	if !validHost(host) {
		return "", false
	}
	// GRUB's HTTP client leaves the port out of its Host header: the port is the one it
	// connected to.
	if strings.HasPrefix(r.UserAgent(), "GRUB") && !hasPort(host) {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, port, err := net.SplitHostPort(la.String()); err == nil {
				host = net.JoinHostPort(strings.Trim(host, "[]"), port)
			}
		}
	}
	if r.TLS != nil {
		return "https://" + host, true
	}
	return "http://" + host, true
}

// hasPort reports whether a Host header names a port.
func hasPort(host string) bool {
	i := strings.LastIndexByte(host, ':')
	return i >= 0 && i > strings.LastIndexByte(host, ']')
}

// validHost accepts host names, IPv4 and bracketed IPv6 addresses with an optional port: nothing
// that could break out of a boot script or a kernel argument.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// serveAsset answers a file under the assets folder. The path is checked twice: here (no
// encoded slashes, no "." or ".." elements) and by os.Root, which refuses any path, symbolic
// links included, that resolves outside the folder.
func (s *Server) serveAsset(w *responseWriter, r *http.Request) {
	raw := strings.ToLower(r.URL.EscapedPath())
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%00") {
		plain(w, http.StatusBadRequest, "kiln: encoded slashes, backslashes and NUL are not allowed in asset paths\n")
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, "/assets/")
	if !fs.ValidPath(rel) || rel == "." || strings.Contains(rel, "\\") {
		plain(w, http.StatusBadRequest, "kiln: an asset path must be relative, without . or .. elements\n")
		return
	}
	if secretAsset(rel) {
		s.log.Warn("asset refused: private keys and kiln's own outputs are never served", "path", rel, "remote", r.RemoteAddr)
		plain(w, http.StatusForbidden, "kiln: "+rel+" is a private key or a kiln output (config.ign, config.bu, pki/): never served from assets\n")
		return
	}
	f, fi, err := s.openAsset(rel)
	if err != nil {
		if errors.Is(err, errPrivateKey) {
			s.log.Warn("asset refused: private keys are never served", "path", rel, "remote", r.RemoteAddr)
			plain(w, http.StatusForbidden, "kiln: "+rel+" is a private key: never served from assets\n")
			return
		}
		if errors.Is(err, errNotRegular) {
			plain(w, http.StatusNotFound, "kiln: no asset "+rel+" (not a file)\n")
			return
		}
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("asset refused", "path", rel, "remote", r.RemoteAddr, "err", err)
		}
		plain(w, http.StatusNotFound, "kiln: no asset "+rel+"\n")
		return
	}
	defer f.Close()
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func plain(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h["Content-Type"] = textType
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// redact hides tokens in a query before it is logged. A parameter is a token when its name,
// decoded as the server's query parser decodes it (%74oken is token), is "token".
func redact(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		if dec, err := url.QueryUnescape(name); err != nil || strings.EqualFold(strings.TrimSpace(dec), "token") {
			parts[i] = "token=REDACTED"
		}
	}
	return strings.Join(parts, "&")
}

// responseWriter records what was answered, for the access log and the metrics.
type responseWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	node        string
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path for assets.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wroteHeader = true
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
