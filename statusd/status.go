package statusd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-kit/log/level"
)

// Values of the status and backend_status fields.
const (
	statusOK       = "ok"
	statusCritical = "critical"
)

// maxJoinedErrors bounds how many tunnels' errors the fleet backend_error
// lists.
const maxJoinedErrors = 10

// statusResponse is GET /_status. The field order is upstream's, plus
// tunnels. ListenAddress and ForwardAddress are set only in a one-tunnel
// process (pointers, so that an empty address is still printed then).
type statusResponse struct {
	OK             bool         `json:"ok"`
	Status         string       `json:"status"`
	ListenAddress  *string      `json:"listen_address,omitempty"`
	ForwardAddress *string      `json:"forward_address,omitempty"`
	BackendOK      bool         `json:"backend_ok"`
	BackendStatus  string       `json:"backend_status"`
	BackendError   string       `json:"backend_error,omitempty"`
	Time           string       `json:"time"`
	LastReload     string       `json:"last_reload"`
	Hostname       string       `json:"hostname"`
	Message        string       `json:"message"`
	Revision       string       `json:"revision"`
	Compiler       string       `json:"compiler"`
	Tunnels        []tunnelJSON `json:"tunnels"`
	Config         any          `json:"config,omitempty"`
}

// tunnelJSON is one tunnel in /_status.
type tunnelJSON struct {
	Name            string           `json:"name"`
	Mode            string           `json:"mode"`
	State           string           `json:"state"`
	ListenAddress   string           `json:"listen_address"`
	ForwardAddress  string           `json:"forward_address"`
	BackendOK       bool             `json:"backend_ok"`
	BackendStatus   string           `json:"backend_status"`
	BackendError    string           `json:"backend_error,omitempty"`
	OpenConns       int64            `json:"open_conns"`
	LastReload      string           `json:"last_reload"`
	LastReloadError string           `json:"last_reload_error,omitempty"`
	CredentialSrc   string           `json:"credential_source,omitempty"`
	NextRotation    string           `json:"next_rotation,omitempty"`
	Certificate     *certificateJSON `json:"certificate,omitempty"`
}

// tunnelStatusResponse is GET /_status/NAME: upstream's shape for one
// tunnel, plus its name and certificate.
type tunnelStatusResponse struct {
	OK             bool             `json:"ok"`
	Status         string           `json:"status"`
	ListenAddress  string           `json:"listen_address"`
	ForwardAddress string           `json:"forward_address"`
	BackendOK      bool             `json:"backend_ok"`
	BackendStatus  string           `json:"backend_status"`
	BackendError   string           `json:"backend_error,omitempty"`
	Time           string           `json:"time"`
	LastReload     string           `json:"last_reload"`
	Hostname       string           `json:"hostname"`
	Message        string           `json:"message"`
	Revision       string           `json:"revision"`
	Compiler       string           `json:"compiler"`
	Name           string           `json:"name"`
	Certificate    *certificateJSON `json:"certificate,omitempty"`
}

// handleStatus serves GET /_status: 200 when the fleet is listening and
// every backend is healthy, 503 with the same body otherwise.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	ts := nonNil(s.cfg.Source.Tunnels())
	errs := s.checks.check(r.Context(), ts, true)
	certs := s.certs.current()
	now := time.Now()
	stopping := s.cfg.Stopping()

	resp := statusResponse{
		BackendOK: true,
		Time:      now.Format(time.RFC3339Nano),
		Hostname:  s.cfg.Hostname,
		Message:   fleetMessage(stopping, len(ts)),
		Revision:  s.cfg.Revision,
		Compiler:  s.cfg.Compiler,
		Tunnels:   make([]tunnelJSON, 0, len(ts)),
	}
	var lastReload time.Time
	var failed []string
	nfailed := 0
	var current []int // rows of the tunnels not retiring
	for i, t := range ts {
		snap := t.Snapshot()
		tj := tunnelJSON{
			Name:            t.Name(),
			Mode:            t.Mode(),
			State:           stateOf(snap),
			ListenAddress:   snap.Listen,
			ForwardAddress:  snap.Target,
			BackendOK:       errs[i] == nil,
			BackendStatus:   statusOK,
			OpenConns:       snap.OpenConns,
			LastReload:      formatReload(snap.LastReload),
			LastReloadError: snap.LastReloadError,
			CredentialSrc:   snap.CredentialSource,
			Certificate:     certs.describe(t),
		}
		if !snap.NextRotation.IsZero() {
			tj.NextRotation = snap.NextRotation.UTC().Format(time.RFC3339)
		}
		// A tunnel a reload removed or replaced drains on while the fleet
		// serves: its backend may well be gone, and that is no reason to
		// report the fleet unhealthy (and have it restarted). It shows in
		// its own row, and is left out of the fleet's answer.
		retiring := !stopping && snap.State == StateStopping
		if !retiring {
			current = append(current, len(resp.Tunnels))
		}
		if errs[i] != nil {
			tj.BackendStatus = statusCritical
			tj.BackendError = errs[i].Error()
		}
		if errs[i] != nil && !retiring {
			resp.BackendOK = false
			if nfailed++; len(failed) < maxJoinedErrors {
				failed = append(failed, tj.Name+": "+tj.BackendError)
			}
		}
		if !stopping && !retiring {
			resp.Message = mergeState(resp.Message, tj.State)
		}
		if snap.LastReload.After(lastReload) {
			lastReload = snap.LastReload
		}
		resp.Tunnels = append(resp.Tunnels, tj)
	}
	if s.cfg.LastReload != nil {
		lastReload = s.cfg.LastReload()
	}
	if s.cfg.ConfigStatus != nil {
		resp.Config = s.cfg.ConfigStatus()
	}
	resp.LastReload = formatReload(lastReload)

	if len(current) == 1 || len(ts) == 1 {
		tj := resp.Tunnels[0]
		if len(current) == 1 {
			tj = resp.Tunnels[current[0]]
		}
		resp.ListenAddress, resp.ForwardAddress = &tj.ListenAddress, &tj.ForwardAddress
		resp.BackendError = tj.BackendError
	} else if nfailed > 0 {
		resp.BackendError = strings.Join(failed, "; ")
		if more := nfailed - len(failed); more > 0 {
			resp.BackendError += fmt.Sprintf("; and %d more", more)
		}
	}
	resp.BackendStatus = statusOf(resp.BackendOK)
	resp.OK = resp.Message == StateListening && resp.BackendOK
	resp.Status = statusOf(resp.OK)
	s.writeJSON(w, httpStatus(resp.OK), resp)
}

// handleTunnelStatus serves GET /_status/NAME: 200 when that tunnel is
// listening with a healthy backend, 503 otherwise, 404 if there is no such
// tunnel.
func (s *Server) handleTunnelStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var t Tunnel
	for _, c := range s.cfg.Source.Tunnels() {
		if c != nil && c.Name() == name {
			t = c
			break
		}
	}
	if t == nil {
		s.writeJSON(w, http.StatusNotFound, struct {
			Error string `json:"error"`
		}{fmt.Sprintf("unknown tunnel %q", name)})
		return
	}
	err := s.checks.check(r.Context(), []Tunnel{t}, false)[0]
	now := time.Now()
	snap := t.Snapshot()
	resp := tunnelStatusResponse{
		ListenAddress:  snap.Listen,
		ForwardAddress: snap.Target,
		BackendOK:      err == nil,
		Time:           now.Format(time.RFC3339Nano),
		LastReload:     formatReload(snap.LastReload),
		Hostname:       s.cfg.Hostname,
		Message:        stateOf(snap),
		Revision:       s.cfg.Revision,
		Compiler:       s.cfg.Compiler,
		Name:           t.Name(),
		Certificate:    s.certs.current().describe(t),
	}
	if s.cfg.Stopping() {
		resp.Message = StateStopping
	}
	if err != nil {
		resp.BackendError = err.Error()
	}
	resp.BackendStatus = statusOf(resp.BackendOK)
	resp.OK = resp.Message == StateListening && resp.BackendOK
	resp.Status = statusOf(resp.OK)
	s.writeJSON(w, httpStatus(resp.OK), resp)
}

// writeJSON writes v as a JSON response with the given HTTP status.
func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		level.Error(s.logger).Log("msg", "encoding status response", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// fleetMessage is the fleet state before looking at the tunnels: stopping
// when the process drains; initializing while there is no tunnel yet;
// otherwise listening, to be lowered by mergeState.
func fleetMessage(stopping bool, tunnels int) string {
	switch {
	case stopping:
		return StateStopping
	case tunnels == 0:
		return StateInitializing
	default:
		return StateListening
	}
}

// mergeState folds a tunnel's state into the fleet state: reloading wins
// over initializing, which wins over listening.
func mergeState(fleet, tunnel string) string {
	switch {
	case fleet == StateReloading || tunnel == StateReloading:
		return StateReloading
	case fleet == StateInitializing || tunnel == StateInitializing:
		return StateInitializing
	default:
		return fleet
	}
}

// stateOf returns the tunnel's state, initializing if unset.
func stateOf(st TunnelStatus) string {
	if st.State == "" {
		return StateInitializing
	}
	return st.State
}

// formatReload formats a reload time as upstream does: RFC 3339, with the
// zero time as 0001-01-01T00:00:00Z.
func formatReload(t time.Time) string {
	if t.IsZero() {
		return time.Time{}.Format(time.RFC3339)
	}
	return t.Format(time.RFC3339)
}

func statusOf(ok bool) string {
	if ok {
		return statusOK
	}
	return statusCritical
}

func httpStatus(ok bool) int {
	if ok {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

// nonNil drops nil tunnels.
func nonNil(ts []Tunnel) []Tunnel {
	for i, t := range ts {
		if t == nil {
			out := append(make([]Tunnel, 0, len(ts)), ts[:i]...)
			for _, t := range ts[i+1:] {
				if t != nil {
					out = append(out, t)
				}
			}
			return out
		}
	}
	return ts
}
