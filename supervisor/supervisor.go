// Package supervisor turns a configs.Config into running tunnels and one
// status server inside one oklog/run group: an actor per tunnel, one for the
// status server and one for signals and reloads. It is the only package that
// knows both tunnels and the status server, and adapts one to the other.
//
// run.Group takes no actors once running, so tunnels a fleet reload adds
// live under the signal actor, which drains them at shutdown; a tunnel a
// reload removes leaves its actor parked until shutdown.
package supervisor

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/statusd"
	"github.com/ghostunnel-fleet/ghostunnel/tunnel"
)

// ErrShutdownTimeout is returned by Run when connections were still open
// when the shutdown timeout fired; the process then exits 1, as upstream.
var ErrShutdownTimeout = errors.New("graceful shutdown timeout: forcing exit")

// Options are what the command line hands the supervisor.
type Options struct {
	Logger   log.Logger // root logger; nil discards
	Revision string     // reported in /_status
	// Registry receives every metric; a new one with Go and process
	// collectors when nil.
	Registry *prometheus.Registry
	// Signals makes the supervisor handle SIGTERM/SIGINT (drain) and
	// SIGHUP/SIGUSR1 (reload). New subscribes before binding anything, so a
	// signal that arrives between bind and Run is queued for Run rather
	// than killing the process. Tests leave it off and cancel Run's context.
	Signals bool
}

// Supervisor owns a fleet of tunnels and the status server.
type Supervisor struct {
	log    log.Logger
	reg    *prometheus.Registry
	status *statusd.Server
	fm     *fleetMetrics
	fam    *tunnel.MetricFamilies // the per-tunnel series

	mu       sync.Mutex
	cfg      *configs.Config
	tunnels  []*tunnel.Tunnel            // in file order
	retiring map[*tunnel.Tunnel]struct{} // removed or replaced, draining
	metrics  map[seriesKey]*series       // per tunnel name and mode, across replacements
	view     []statusd.Tunnel            // immutable; replaced when the set changes
	file     fileState                   // the fleet file as last applied
	reload   reloadState                 // last reload's outcome
	started  bool                        // Run has begun
	active   sync.WaitGroup              // tunnels serving or draining
	quiet    tunnel.Quiet

	stopping    atomic.Bool
	timedOut    atomic.Bool
	draining    chan struct{} // closed when the drain begins
	drainOnce   sync.Once
	drainCtx    context.Context
	drainCancel context.CancelFunc
	shutdownCh  chan struct{}
	shutdown    sync.Once
	reloadMu    sync.Mutex // one reload at a time
	sigs        chan os.Signal
	notify      *notifier     // nil unless run by systemd with Type=notify
	sandbox     *sandboxRules // what Sandbox applied, nil without; guarded by mu
}

// seriesKey names one tunnel's metric series: its labels.
type seriesKey struct{ name, mode string }

// series are the metric series of the tunnels of one name and mode: the
// current one, those draining after a reload replaced them and one being
// built. They go when the last of those does, so a tunnel replaced by one of
// the same name and mode carries its counters on.
type series struct {
	m    *tunnel.Metrics
	refs int
}

// holdSeries returns the series for name and mode, creating them for the
// first holder. Under s.mu.
func (s *Supervisor) holdSeries(name, mode string) *tunnel.Metrics {
	k := seriesKey{name, mode}
	e := s.metrics[k]
	if e == nil {
		e = &series{m: s.fam.For(name, mode)}
		s.metrics[k] = e
	}
	e.refs++
	return e.m
}

// dropSeries lets go of a holdSeries; the last holder unregisters them.
// Under s.mu.
func (s *Supervisor) dropSeries(name, mode string) {
	k := seriesKey{name, mode}
	if e := s.metrics[k]; e != nil {
		if e.refs--; e.refs <= 0 {
			e.m.Unregister()
			delete(s.metrics, k)
		}
	}
}

// fileState identifies the applied fleet file.
type fileState struct {
	generation int
	sha256     string
}

// reloadState is the outcome of the last reload.
type reloadState struct {
	at       time.Time
	ok       bool
	err      string
	restarts []string
}

// New builds every tunnel and the status server, binding all listeners.
// It is all or nothing: if anything fails, whatever was built is closed and
// the error names the tunnel.
func New(cfg *configs.Config, opts Options) (*Supervisor, error) {
	logger := opts.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Supervisor{cfg: cfg, log: logger, reg: reg,
		retiring: make(map[*tunnel.Tunnel]struct{}),
		metrics:  make(map[seriesKey]*series),
		draining: make(chan struct{}), shutdownCh: make(chan struct{}),
		quiet: tunnel.Quiet{
			Conns:         cfg.IsQuiet("conns"),
			ConnErrs:      cfg.IsQuiet("conn-errs"),
			HandshakeErrs: cfg.IsQuiet("handshake-errs"),
		},
	}
	s.sigs = make(chan os.Signal, 8)
	if opts.Signals {
		signal.Notify(s.sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
		defer dieOnStopSignal()()
	}
	s.drainCtx, s.drainCancel = context.WithCancel(context.Background())
	s.notify = newNotifier()
	var err error
	if s.fm, err = newFleetMetrics(reg, cfg.MetricsPrefix); err != nil {
		signal.Stop(s.sigs)
		return nil, err
	}
	if s.fam, err = tunnel.NewMetricFamilies(reg, cfg.MetricsPrefix); err != nil {
		s.fm.unregister()
		signal.Stop(s.sigs)
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if cfg.Path != "" {
		data, err := os.ReadFile(cfg.Path)
		if err == nil {
			s.file = fileState{generation: 1, sha256: digest(data)}
		}
	}
	for _, tc := range cfg.Tunnels {
		t, err := s.newTunnel(tc)
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("tunnel %q: %w", tc.Name, err)
		}
		s.tunnels = append(s.tunnels, t)
	}
	if err := listenClash(s.tunnels); err != nil {
		s.closeAll()
		return nil, err
	}
	s.publishLocked()
	if cfg.Status != "" {
		var ln net.Listener
		if name, ok := strings.CutPrefix(cfg.Status, "systemd:"); ok {
			if ln, err = tunnel.ListenActivated(name); err != nil {
				s.closeAll()
				return nil, fmt.Errorf("status: %w", err)
			}
		}
		st, err := statusd.New(statusd.Config{
			Addr:           cfg.Status,
			Listener:       ln,
			EnablePprof:    cfg.EnablePprof,
			EnableShutdown: cfg.EnableShutdown,
			Shutdown:       s.Shutdown,
			EnableReload:   cfg.EnableReload,
			Reload:         s.Reload,
			ConfigStatus:   s.configStatus,
			Routes:         map[string]http.Handler{"/_config/fingerprint": http.HandlerFunc(s.serveFingerprint)},
			DefaultTunnel:  cfg.DefaultTunnel,
			Source:         s,
			Gatherer:       reg,
			MetricsPrefix:  cfg.MetricsPrefix,
			Logger:         log.With(logger, "component", "status"),
			Revision:       opts.Revision,
			Stopping:       s.stopping.Load,
			LastReload:     func() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.reload.at },
		})
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("status: %w", err)
		}
		s.status = st
	}
	return s, nil
}

// dieOnStopSignal makes SIGTERM and SIGINT end the process at once, as
// they would with no handler, until the returned func is called (when New
// returns). Building the tunnels can take long (the Workload API's first
// SVID may take minutes), and an orchestrator must be able to stop a
// process stuck there; upstream subscribes to signals only once listening.
// SIGHUP and SIGUSR1 wait in s.sigs for Run, so a reload asked for during
// startup is not lost and does not kill the process.
func dieOnStopSignal() (done func()) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	built := make(chan struct{})
	go func() {
		select {
		case sig := <-stop:
			select {
			case <-built: // New returned: Run drains on it (s.sigs has it too)
				return
			default:
			}
			signal.Reset(sig)
			syscall.Kill(syscall.Getpid(), sig.(syscall.Signal))
		case <-built:
		}
	}()
	return func() {
		close(built)
		signal.Stop(stop)
	}
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// newTunnel builds a tunnel, holding the metric series of its name and
// mode (those of an earlier tunnel, when one is still around). It takes
// s.mu only for the series: building reads files, resolves names and may
// wait for a Workload API, and /_status and a drain must not wait on that.
// The caller releases a tunnel it does not keep with discard.
func (s *Supervisor) newTunnel(tc configs.Tunnel) (*tunnel.Tunnel, error) {
	s.mu.Lock()
	m := s.holdSeries(tc.Name, tc.Mode)
	s.mu.Unlock()
	t, err := tunnel.New(tc, tunnel.Deps{
		Logger:  log.With(s.log, "tunnel", tc.Name),
		Metrics: m,
		Quiet:   s.quiet,
	})
	if err != nil {
		s.mu.Lock()
		s.dropSeries(tc.Name, tc.Mode)
		s.mu.Unlock()
		return nil, err
	}
	return t, nil
}

// discardLocked closes a tunnel that newTunnel built and that never served
// (a reload that did not apply), and lets go of its series. Under s.mu.
func (s *Supervisor) discardLocked(t *tunnel.Tunnel) {
	t.Close()
	s.dropSeries(t.Name(), t.Config().Mode)
}

func (s *Supervisor) closeAll() {
	signal.Stop(s.sigs)
	for _, t := range s.tunnels {
		t.Close()
	}
	for _, e := range s.metrics {
		e.m.Unregister()
	}
	s.fam.Unregister()
	s.fm.unregister()
}

// publishLocked rebuilds the immutable view the status server reads: the
// current tunnels, then those still draining.
func (s *Supervisor) publishLocked() {
	view := make([]statusd.Tunnel, 0, len(s.tunnels)+len(s.retiring))
	for _, t := range s.tunnels {
		view = append(view, adapter{t})
	}
	for t := range s.retiring {
		view = append(view, adapter{t})
	}
	s.view = view
}

// Tunnels implements statusd.Source.
func (s *Supervisor) Tunnels() []statusd.Tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

// Tunnel returns the running tunnel named name, or nil.
func (s *Supervisor) Tunnel(name string) *tunnel.Tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tunnels {
		if t.Name() == name {
			return t
		}
	}
	return nil
}

// StatusAddr is the status server's bound address ("" without one).
func (s *Supervisor) StatusAddr() string {
	if s.status == nil {
		return ""
	}
	return s.status.Addr().String()
}

// Registry is where the fleet's metrics live.
func (s *Supervisor) Registry() *prometheus.Registry { return s.reg }

// Shutdown starts a graceful drain, as SIGTERM does. It does not block.
func (s *Supervisor) Shutdown() {
	s.shutdown.Do(func() { close(s.shutdownCh) })
}

func (s *Supervisor) shutdownTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.ShutdownTimeout.D()
}

// beginDrain stops every tunnel from accepting and starts the shutdown
// timeout. Idempotent.
func (s *Supervisor) beginDrain() {
	s.drainOnce.Do(func() {
		s.stopping.Store(true)
		close(s.draining)
		s.notify.send("STOPPING=1")
		d := s.shutdownTimeout()
		s.log.Log("msg", "shutting down, draining connections", "timeout", d)
		time.AfterFunc(d, s.drainCancel)
		s.mu.Lock()
		ts := append([]*tunnel.Tunnel(nil), s.tunnels...)
		s.mu.Unlock()
		for _, t := range ts {
			t.Stop()
		}
	})
}

// serve runs one tunnel until it is stopped, then waits for its
// connections: until the shutdown timeout during a drain, or as long again
// when a reload retired it. Then the tunnel is closed and forgotten.
func (s *Supervisor) serve(t *tunnel.Tunnel) {
	defer s.active.Done()
	if err := t.Serve(); err != nil {
		s.log.Log("level", "error", "tunnel", t.Name(), "msg", "tunnel stopped", "err", err)
	}
	ctx, cancel := context.WithTimeout(s.drainCtx, s.shutdownTimeout())
	defer cancel()
	if err := t.Wait(ctx); err != nil {
		if s.stopping.Load() {
			s.timedOut.Store(true)
		}
		n := t.Snapshot().OpenConns
		s.log.Log("level", "warn", "tunnel", t.Name(), "msg", "drain timed out, closing connections", "open", n)
		t.CloseAll()
	}
	s.forget(t)
}

// forget drops a drained tunnel from the status view and lets go of its
// metric series (which go when no tunnel of that name and mode is left).
func (s *Supervisor) forget(t *tunnel.Tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Close()
	if _, ok := s.retiring[t]; !ok {
		return // still current: shutting down, keep it in /_status
	}
	delete(s.retiring, t)
	s.dropSeries(t.Name(), t.Config().Mode)
	s.publishLocked()
}

// start launches a tunnel's serve loop (for tunnels a reload adds).
func (s *Supervisor) startLocked(t *tunnel.Tunnel) {
	s.active.Add(1)
	go s.serve(t)
}

// Run serves until ctx ends, a signal or /_shutdown asks for a drain, then
// drains every tunnel at once. It returns nil when all connections closed
// in time, ErrShutdownTimeout when the shutdown timeout cut the drain.
func (s *Supervisor) Run(ctx context.Context, opts Options) error {
	var g run.Group

	// Signals and reloads. Tunnels added by reloads live here.
	{
		// Stay subscribed until Run returns, so a SIGHUP during the drain
		// is ignored rather than killing the process.
		sigs := s.sigs
		defer signal.Stop(sigs)
		cancel := make(chan struct{})
		wd, watchdog := s.notify.ticker()
		// Reloads run beside this loop, one at a time (signals arriving
		// meanwhile are coalesced into one more), so that the watchdog
		// keeps being fed and SIGTERM is answered at once however long a
		// reload takes (a Workload API agent that is slow to answer, a
		// slow file system). A drain that begins meanwhile has the last
		// word (the reload starts nothing).
		reloads := make(chan os.Signal, 1)
		go func() {
			for {
				select {
				case sig := <-reloads:
					s.log.Log("msg", "reloading", "signal", sig.String())
					s.notify.send("RELOADING=1")
					s.Reload()
					if !s.stopping.Load() {
						s.notify.send("READY=1")
					}
				case <-s.draining:
					return
				}
			}
		}()
		g.Add(func() error {
			defer func() {
				if wd != nil {
					wd.Stop()
				}
				s.beginDrain()
				s.active.Wait()
				// A reload still being built is not waited for: the
				// drain has stopped everything it could start, and it
				// starts nothing now (errAbandoned).
			}()
			s.notify.send("READY=1")
			for {
				select {
				case <-watchdog:
					s.notify.send("WATCHDOG=1")
				case sig := <-sigs:
					switch sig {
					case syscall.SIGHUP, syscall.SIGUSR1:
						select {
						case reloads <- sig:
						default: // one is already waiting to run
						}
					default:
						s.log.Log("msg", "received signal", "signal", sig.String())
						return nil
					}
				case <-s.shutdownCh:
					return nil
				case <-ctx.Done():
					return nil
				case <-cancel:
					return nil
				}
			}
		}, func(error) {
			close(cancel)
		})
	}

	// One actor per tunnel of the initial file. One that a reload removes
	// parks until shutdown, since an actor returning stops the group.
	s.mu.Lock()
	s.started = true
	for _, t := range s.tunnels {
		s.active.Add(1)
		g.Add(func() error {
			s.serve(t)
			<-s.draining
			return nil
		}, func(error) {
			s.beginDrain()
		})
	}
	s.mu.Unlock()

	// Status server: it keeps answering (503, "stopping") during the drain
	// and shuts down last.
	if s.status != nil {
		allDrained := make(chan struct{})
		go func() {
			<-s.draining
			s.active.Wait()
			close(allDrained)
		}()
		g.Add(func() error {
			err := s.status.Serve()
			if !s.stopping.Load() {
				// Serve gave up on its own (it retries temporary accept
				// errors itself): the fleet drains and the process exits.
				return fmt.Errorf("status server: %w", err)
			}
			<-allDrained
			return err
		}, func(error) {
			s.beginDrain()
			go func() {
				<-allDrained
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				s.status.Shutdown(sctx)
			}()
		})
	}

	// Metrics push (metrics-graphite, metrics-url), when configured.
	if p := s.newPusher(); p != nil {
		g.Add(p.actor())
	}

	err := g.Run()
	s.drainCancel()
	if s.timedOut.Load() {
		return ErrShutdownTimeout
	}
	return err
}

// adapter shows a tunnel to the status server.
type adapter struct{ t *tunnel.Tunnel }

func (a adapter) Name() string                           { return a.t.Name() }
func (a adapter) Mode() string                           { return a.t.Mode() }
func (a adapter) Certificate() *tls.Certificate          { return a.t.Certificate() }
func (a adapter) CheckBackend(ctx context.Context) error { return a.t.CheckBackend(ctx) }

// CertificatePending reports an ACME tunnel still waiting for its first
// certificate (statusd.CertificatePender).
func (a adapter) CertificatePending() bool {
	return a.t.Certificate() == nil && a.t.Config().AutoACMECert != ""
}

// CheckTimeout is the tunnel's own connect timeout (statusd.CheckTimeouter),
// which CheckBackend applies too.
func (a adapter) CheckTimeout() time.Duration { return a.t.Config().ConnectTimeout.D() }
func (a adapter) Snapshot() statusd.TunnelStatus {
	s := a.t.Snapshot()
	return statusd.TunnelStatus{
		State: s.State, Listen: s.Listen, Target: s.Target, OpenConns: s.OpenConns,
		LastReload: s.LastReload, LastReloadError: s.LastReloadError,
		CredentialSource: s.CredentialSource, NextRotation: s.NextRotation,
	}
}
