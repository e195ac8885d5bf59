package lock

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetLock protocol paths, relative to the server's base URL.
const (
	PreRebootPath   = "/v1/pre-reboot"
	SteadyStatePath = "/v1/steady-state"
	// ProtocolHeader must be "true" on every request.
	ProtocolHeader = "fleet-lock-protocol"
)

// Kinds of FleetLock error bodies ({"kind": ..., "value": ...}).
const (
	KindMethodNotAllowed      = "method_not_allowed"
	KindMissingProtocolHeader = "missing_protocol_header"
	KindInvalidBody           = "invalid_body"
	KindInvalidClientIdentity = "invalid_client_identity"
	KindInvalidGroup          = "invalid_group"
	KindUnknownGroup          = "unknown_group"
	KindFailedLock            = "failed_lock"
	KindFailedUnlock          = "failed_unlock"
)

// maxBody bounds a request body; a FleetLock request is a few dozen bytes.
const maxBody = 64 << 10

// FleetRequest is the body of a FleetLock request.
type FleetRequest struct {
	ClientParams *ClientParams `json:"client_params"`
}

// ClientParams identify the client: its id (Zincati sends a machine-specific app id) and group.
type ClientParams struct {
	ID    string `json:"id"`
	Group string `json:"group"`
}

// FleetError is the body of every answer that is not 200.
type FleetError struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

var fleetRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kiln_node_fleetlock_requests_total",
	Help: "FleetLock requests served, by path and HTTP status.",
}, []string{"path", "code"})

// Collectors are the lock package's metrics, for the daemon to register once.
func Collectors() []prometheus.Collector { return []prometheus.Collector{fleetRequests} }

// FleetLock serves the FleetLock protocol (Zincati's fleet_lock strategy) on the manager's
// semaphores: pre-reboot takes a slot of the client's group, steady-state frees it; both are
// recursive (repeating them succeeds).
type FleetLock struct {
	m   *Manager
	log *slog.Logger
}

// NewFleetLock returns the FleetLock handler; mount it at the base URL's path.
func NewFleetLock(m *Manager, log *slog.Logger) *FleetLock {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FleetLock{m: m, log: log}
}

func (f *FleetLock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	var op func(ctx context.Context, p *ClientParams) error
	switch {
	case strings.HasSuffix(path, PreRebootPath):
		path, op = PreRebootPath, f.preReboot
	case strings.HasSuffix(path, SteadyStatePath):
		path, op = SteadyStatePath, f.steadyState
	default:
		f.fail(w, "other", http.StatusNotFound, FleetError{Kind: "not_found", Value: "no such endpoint: want " + PreRebootPath + " or " + SteadyStatePath})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		f.fail(w, path, http.StatusMethodNotAllowed, FleetError{KindMethodNotAllowed, "use POST"})
		return
	}
	if r.Header.Get(ProtocolHeader) != "true" {
		f.fail(w, path, http.StatusBadRequest, FleetError{KindMissingProtocolHeader, "header " + ProtocolHeader + ": true is required"})
		return
	}
	params, fe := parseFleetRequest(r.Body)
	if fe != nil {
		f.fail(w, path, http.StatusBadRequest, *fe)
		return
	}
	if err := op(r.Context(), params); err != nil {
		status, fe := fleetError(path, err)
		f.log.Info("fleetlock request refused", "path", path, "id", params.ID, "group", params.Group, "err", err)
		f.fail(w, path, status, fe)
		return
	}
	fleetRequests.WithLabelValues(path, "200").Inc()
	w.WriteHeader(http.StatusOK)
}

// parseFleetRequest reads and checks the body; a non-nil FleetError says what is wrong.
func parseFleetRequest(body io.Reader) (*ClientParams, *FleetError) {
	raw, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return nil, &FleetError{KindInvalidBody, "reading the body: " + err.Error()}
	}
	if len(raw) > maxBody {
		return nil, &FleetError{KindInvalidBody, "body larger than 64 KiB"}
	}
	var req FleetRequest
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&req); err != nil {
		return nil, &FleetError{KindInvalidBody, "body is not valid JSON: " + err.Error()}
	}
	if req.ClientParams == nil {
		return nil, &FleetError{KindInvalidBody, "body has no client_params"}
	}
	if strings.TrimSpace(req.ClientParams.ID) == "" {
		return nil, &FleetError{KindInvalidClientIdentity, "client_params.id is empty"}
	}
	if err := ValidGroup(req.ClientParams.Group); err != nil {
		return nil, &FleetError{KindInvalidGroup, err.Error()}
	}
	return req.ClientParams, nil
}

func (f *FleetLock) preReboot(ctx context.Context, p *ClientParams) error {
	return f.m.Lock(ctx, p.Group, p.ID, "")
}

func (f *FleetLock) steadyState(ctx context.Context, p *ClientParams) error {
	return f.m.Unlock(ctx, p.Group, p.ID)
}

// fleetError maps a lock error to an HTTP status and error body.
func fleetError(path string, err error) (int, FleetError) {
	kind := KindFailedLock
	if path == SteadyStatePath {
		kind = KindFailedUnlock
	}
	switch {
	case errors.Is(err, ErrUnknownGroup):
		return http.StatusBadRequest, FleetError{KindUnknownGroup, err.Error()}
	case errors.Is(err, ErrInvalidGroup):
		return http.StatusBadRequest, FleetError{KindInvalidGroup, err.Error()}
	case errors.Is(err, ErrInvalidID):
		return http.StatusBadRequest, FleetError{KindInvalidClientIdentity, err.Error()}
	case errors.Is(err, ErrBusy), errors.Is(err, ErrOutsideWindow), errors.Is(err, ErrConflict):
		return http.StatusConflict, FleetError{kind, err.Error()}
	default:
		// etcd unreachable, corrupt value: the client retries later.
		return http.StatusServiceUnavailable, FleetError{kind, err.Error()}
	}
}

func (f *FleetLock) fail(w http.ResponseWriter, path string, status int, fe FleetError) {
	fleetRequests.WithLabelValues(path, strconv.Itoa(status)).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(fe)
}
