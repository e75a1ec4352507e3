package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/tunnel"
)

// fleetMetrics are the process-wide reload series.
type fleetMetrics struct {
	reg         prometheus.Registerer
	successful  prometheus.Gauge
	successTime prometheus.Gauge
	reloads     *prometheus.CounterVec
}

func newFleetMetrics(reg prometheus.Registerer, prefix string) (*fleetMetrics, error) {
	if prefix == "" {
		prefix = configs.DefaultMetricsPrefix
	}
	m := &fleetMetrics{
		reg: reg,
		successful: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: prefix, Name: "config_last_reload_successful",
			Help: "1 when the last reload of the fleet file succeeded."}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: prefix, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful reload (or of startup), as a Unix timestamp."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: prefix, Name: "config_reloads_total",
			Help: "Reloads by result (success, failure)."}, []string{"result"}),
	}
	m.successful.Set(1)
	m.successTime.SetToCurrentTime()
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors()[:i] {
				reg.Unregister(r)
			}
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *fleetMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.successful, m.successTime, m.reloads}
}

func (m *fleetMetrics) unregister() {
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

// Reload is what SIGHUP, SIGUSR1 and POST /_reload do. From the command line
// it reloads every tunnel's credentials, each on its own. With a fleet file
// it also re-reads the file and applies what changed (see reloadFile).
// During a drain it does nothing.
func (s *Supervisor) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.stopping.Load() {
		return nil
	}
	s.mu.Lock()
	path := s.cfg.Path
	s.mu.Unlock()
	var err error
	if path != "" {
		err = s.reloadFile(path)
	} else {
		err = s.reloadCredentials(nil)
	}
	if err == errAbandoned {
		return nil // as if it had come after the drain began
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, errPlan) {
		// Nothing changed, so what still needs a restart does too.
		s.reload = reloadState{at: time.Now(), ok: false, err: err.Error(), restarts: s.reload.restarts}
		s.fm.successful.Set(0)
		s.fm.reloads.WithLabelValues("failure").Inc()
		return err
	}
	restarts := s.reload.restarts
	s.reload = reloadState{at: time.Now(), ok: true, restarts: restarts}
	if err != nil {
		s.reload.err = err.Error()
	}
	s.fm.successful.Set(1)
	s.fm.successTime.SetToCurrentTime()
	s.fm.reloads.WithLabelValues("success").Inc()
	return err
}

// reloadCredentials reloads the credentials of every current tunnel not in
// skip, each on its own: one tunnel's broken file leaves it on its old
// certificate and the others reload normally.
func (s *Supervisor) reloadCredentials(skip map[*tunnel.Tunnel]bool) error {
	s.mu.Lock()
	ts := append([]*tunnel.Tunnel(nil), s.tunnels...)
	s.mu.Unlock()
	var errs []error
	for _, t := range ts {
		if skip[t] {
			continue
		}
		if err := t.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// errPlan marks a reload that changed nothing because the new file could
// not be applied as a whole.
var errPlan = errors.New("fleet reload failed, nothing changed")

// errAbandoned is a reload that a drain overtook while its plan was built.
var errAbandoned = errors.New("fleet reload abandoned: shutting down")

type planError struct{ errs []error }

func (e *planError) Error() string {
	var b strings.Builder
	b.WriteString(errPlan.Error())
	for _, err := range e.errs {
		b.WriteString("\n")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *planError) Is(target error) bool { return target == errPlan }

// Change is how one tunnel differs between the running fleet and a file.
type Change struct {
	Name string
	Kind string   // added, removed, changed, replaced, unchanged
	Keys []string // the settings that differ, for changed and replaced
}

// Diff compares the running fleet with cfg, by tunnel name, and lists
// process-wide keys that would need a restart.
func Diff(old, cfg *configs.Config) (changes []Change, restart []string) {
	return CompareFingerprints(fingerprint(old, true), fingerprint(cfg, true))
}

// reloadFile re-reads the fleet file and applies it. The new file is parsed,
// validated and every new or changed tunnel built (credentials loaded, new
// listeners bound) before anything changes; if any of that fails, nothing
// changes. Unchanged tunnels then reload their credentials, each on its own.
func (s *Supervisor) reloadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		s.log.Log("level", "error", "msg", "fleet reload failed, nothing changed", "err", err)
		return &planError{errs: []error{err}}
	}
	cfg, err := configs.Parse(data, path, nil)
	if err != nil {
		s.log.Log("level", "error", "msg", "fleet reload failed, nothing changed", "file", path, "err", err)
		return &planError{errs: []error{err}}
	}
	sum := digest(data)

	s.mu.Lock()
	old := s.cfg
	current := make(map[string]*tunnel.Tunnel, len(s.tunnels))
	for _, t := range s.tunnels {
		current[t.Name()] = t
	}
	s.mu.Unlock()

	changes, restart := Diff(old, cfg)
	// The sandbox cannot be widened: refuse what it would break, before
	// anything is built.
	if errs := s.sandboxCheck(path, cfg, changes); len(errs) > 0 {
		s.log.Log("level", "error", "msg", "fleet reload failed, nothing changed", "file", path, "err", errors.Join(errs...))
		return &planError{errs: errs}
	}
	type step struct {
		change   Change
		cfg      configs.Tunnel
		old      *tunnel.Tunnel
		prepared *tunnel.Prepared
		fresh    *tunnel.Tunnel
	}
	steps := make([]step, 0, len(changes))
	var errs []error
	byName := make(map[string]configs.Tunnel)
	for _, t := range cfg.Tunnels {
		byName[t.Name] = t
	}
	// A new tunnel that listens where a retiring one does binds beside it
	// (SO_REUSEPORT), and the kernel sends it a share of the new
	// connections at once, which wait for it to serve, and are reset if
	// the plan fails after all. Such tunnels are built last, once
	// everything else has been, so that a failing plan never binds them.
	retiringAt := make(map[string]bool)
	for _, c := range changes {
		if c.Kind == "removed" || c.Kind == "replaced" {
			retiringAt[current[c.Name].Config().Listen] = true
		}
	}
	build := func(st *step) {
		var err error
		switch st.change.Kind {
		case "changed":
			st.prepared, err = st.old.Prepare(st.cfg)
		case "added", "replaced":
			st.fresh, err = s.newTunnel(st.cfg)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: tunnel %q: %w", path, st.change.Name, err))
		}
	}
	var late []int
	for _, c := range changes {
		st := step{change: c, cfg: byName[c.Name], old: current[c.Name]}
		if (c.Kind == "added" || c.Kind == "replaced") && retiringAt[st.cfg.Listen] {
			late = append(late, len(steps))
		} else {
			build(&st)
		}
		steps = append(steps, st)
	}
	for _, i := range late {
		if len(errs) > 0 {
			break
		}
		build(&steps[i])
	}
	if len(errs) == 0 {
		final := make([]*tunnel.Tunnel, 0, len(steps))
		for _, st := range steps {
			switch st.change.Kind {
			case "unchanged", "changed":
				final = append(final, st.old)
			case "added", "replaced":
				final = append(final, st.fresh)
			}
		}
		if err := listenClash(final); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	discard := func() {
		for _, st := range steps {
			if st.fresh != nil {
				s.discardLocked(st.fresh)
			}
		}
	}
	if len(errs) > 0 {
		s.mu.Lock()
		discard()
		s.mu.Unlock()
		err := &planError{errs: errs}
		s.log.Log("level", "error", "msg", "fleet reload failed, nothing changed", "file", path, "err", errors.Join(errs...))
		return err
	}

	// Everything is built: apply, which cannot fail.
	skip := make(map[*tunnel.Tunnel]bool)
	s.mu.Lock()
	// A drain that began while the plan was built has the last word: it
	// stops the tunnels it found, so none may start now. (beginDrain sets
	// stopping before it takes s.mu to stop the tunnels, and the tunnels
	// started here are added to s.active before it can finish.)
	if s.stopping.Load() {
		discard()
		s.mu.Unlock()
		s.log.Log("msg", "fleet reload abandoned: shutting down")
		return errAbandoned
	}
	byStep := make(map[string]*tunnel.Tunnel, len(steps))
	var retire []*tunnel.Tunnel
	for _, st := range steps {
		switch st.change.Kind {
		case "unchanged":
			byStep[st.change.Name] = st.old
		case "changed":
			st.old.Commit(st.prepared)
			skip[st.old] = true
			byStep[st.change.Name] = st.old
		case "added":
			byStep[st.change.Name] = st.fresh
			skip[st.fresh] = true // just built from its files
		case "replaced":
			byStep[st.change.Name] = st.fresh
			skip[st.fresh] = true
			retire = append(retire, st.old)
		case "removed":
			retire = append(retire, st.old)
		}
		if st.change.Kind != "unchanged" {
			s.log.Log("msg", "fleet reload: tunnel "+st.change.Kind, "tunnel", st.change.Name, "keys", strings.Join(st.change.Keys, ","))
		}
	}
	// Process-wide settings stay as they were, but for the tunnels and the
	// ones applied live (liveProcessKeys): a key added later is then
	// restart-only unless someone makes it live on purpose.
	applied := *old
	applied.Tunnels = cfg.Tunnels
	applied.ShutdownTimeout = cfg.ShutdownTimeout
	s.cfg = &applied
	next := make([]*tunnel.Tunnel, 0, len(cfg.Tunnels))
	for _, t := range cfg.Tunnels { // file order
		next = append(next, byStep[t.Name])
	}
	s.tunnels = next
	if s.started {
		for _, t := range retire {
			s.retiring[t] = struct{}{}
		}
		for _, st := range steps {
			if st.fresh != nil {
				s.startLocked(st.fresh)
			}
		}
	} else {
		// Run has not begun: it serves s.tunnels when it does, and the
		// retired ones never served, so they have nothing to drain.
		for _, t := range retire {
			t.Close()
			s.dropSeries(t.Name(), t.Config().Mode)
		}
		retire = nil
	}
	s.file = fileState{generation: s.file.generation + 1, sha256: sum}
	s.reload.restarts = restart
	s.publishLocked()
	s.mu.Unlock()
	// The new listeners are serving; now the old ones close and drain.
	for _, t := range retire {
		t.Stop()
	}
	if len(restart) > 0 {
		s.log.Log("level", "warn", "msg", "fleet reload: these settings need a restart to change", "keys", strings.Join(restart, ","))
	}
	s.log.Log("msg", "fleet reload applied", "file", path, "generation", s.file.generation, "sha256", sum)
	return s.reloadCredentials(skip)
}

// configStatus is the "config" object of /_status.
func (s *Supervisor) configStatus() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Path == "" {
		return nil
	}
	type status struct {
		Path            string   `json:"path"`
		Generation      int      `json:"generation"`
		SHA256          string   `json:"sha256"`
		LastReload      string   `json:"last_reload"`
		LastReloadOK    bool     `json:"last_reload_ok"`
		LastReloadError string   `json:"last_reload_error,omitempty"`
		NeedsRestart    []string `json:"needs_restart,omitempty"`
	}
	r := s.reload
	st := status{Path: s.cfg.Path, Generation: s.file.generation, SHA256: s.file.sha256,
		LastReload: r.at.UTC().Format(time.RFC3339), LastReloadOK: r.ok || r.at.IsZero(),
		LastReloadError: r.err, NeedsRestart: r.restarts}
	return st
}
