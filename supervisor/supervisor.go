// Package supervisor turns a configs.Config into running tunnels and one
// status server inside one oklog/run group: an actor per tunnel, one for the
// status server and one for signals. It is the only package that knows both
// tunnels and the status server, and adapts one to the other.
package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/signal"
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
	// Signals makes Run handle SIGTERM/SIGINT (drain) and SIGHUP/SIGUSR1
	// (reload). Tests leave it off and cancel Run's context instead.
	Signals bool
}

// Supervisor owns a fleet of tunnels and the status server.
type Supervisor struct {
	cfg    *configs.Config
	log    log.Logger
	reg    *prometheus.Registry
	status *statusd.Server

	mu      sync.Mutex
	tunnels []*tunnel.Tunnel
	view    []statusd.Tunnel // immutable; replaced when tunnels change

	stopping   atomic.Bool
	timedOut   atomic.Bool
	shutdownCh chan struct{}
	shutdown   sync.Once
	reloadCh   chan chan error
	lastReload atomic.Pointer[time.Time]
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
		shutdownCh: make(chan struct{}), reloadCh: make(chan chan error)}
	var zero time.Time
	s.lastReload.Store(&zero)
	quiet := tunnel.Quiet{
		Conns:         cfg.IsQuiet("conns"),
		ConnErrs:      cfg.IsQuiet("conn-errs"),
		HandshakeErrs: cfg.IsQuiet("handshake-errs"),
	}
	for _, tc := range cfg.Tunnels {
		t, err := tunnel.New(tc, tunnel.Deps{
			Logger:        log.With(logger, "tunnel", tc.Name),
			Registerer:    prometheus.WrapRegistererWith(prometheus.Labels{"tunnel": tc.Name, "mode": tc.Mode}, reg),
			MetricsPrefix: cfg.MetricsPrefix,
			Quiet:         quiet,
		})
		if err != nil {
			s.closeTunnels()
			return nil, fmt.Errorf("tunnel %q: %w", tc.Name, err)
		}
		s.tunnels = append(s.tunnels, t)
	}
	s.publish()
	if cfg.Status != "" {
		st, err := statusd.New(statusd.Config{
			Addr:           cfg.Status,
			EnablePprof:    cfg.EnablePprof,
			EnableShutdown: cfg.EnableShutdown,
			Shutdown:       s.Shutdown,
			DefaultTunnel:  cfg.DefaultTunnel,
			Source:         s,
			Gatherer:       reg,
			MetricsPrefix:  cfg.MetricsPrefix,
			Logger:         log.With(logger, "component", "status"),
			Revision:       opts.Revision,
			Stopping:       s.stopping.Load,
			LastReload:     func() time.Time { return *s.lastReload.Load() },
			CheckTimeout:   s.maxConnectTimeout(),
		})
		if err != nil {
			s.closeTunnels()
			return nil, fmt.Errorf("status: %w", err)
		}
		s.status = st
	}
	return s, nil
}

func (s *Supervisor) maxConnectTimeout() time.Duration {
	d := configs.DefaultConnectTimeout
	for _, t := range s.cfg.Tunnels {
		if t.ConnectTimeout.D() > 0 && t.ConnectTimeout.D() < d {
			d = t.ConnectTimeout.D()
		}
	}
	return d
}

func (s *Supervisor) closeTunnels() {
	for _, t := range s.tunnels {
		t.Close()
	}
}

// publish rebuilds the immutable view the status server reads.
func (s *Supervisor) publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	view := make([]statusd.Tunnel, len(s.tunnels))
	for i, t := range s.tunnels {
		view[i] = adapter{t}
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

// Reload reloads every tunnel's credentials, as SIGHUP does. Each tunnel
// reloads on its own: a broken file on one leaves that one on its old
// certificate and the others reload normally. The returned error joins the
// failures.
func (s *Supervisor) Reload() error {
	if s.stopping.Load() {
		return nil
	}
	s.mu.Lock()
	ts := append([]*tunnel.Tunnel(nil), s.tunnels...)
	s.mu.Unlock()
	var errs []error
	for _, t := range ts {
		if err := t.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name(), err))
		}
	}
	now := time.Now()
	s.lastReload.Store(&now)
	return errors.Join(errs...)
}

// Run serves until ctx ends, a signal or /_shutdown asks for a drain, then
// drains every tunnel at once. It returns nil when all connections closed
// in time, ErrShutdownTimeout when the shutdown timeout cut the drain.
func (s *Supervisor) Run(ctx context.Context, opts Options) error {
	var g run.Group
	drainCtx, drainCancel := context.WithCancel(context.Background())
	defer drainCancel()
	var startDrain sync.Once
	beginDrain := func() {
		startDrain.Do(func() {
			s.stopping.Store(true)
			s.log.Log("msg", "shutting down, draining connections", "timeout", s.cfg.ShutdownTimeout.D())
			time.AfterFunc(s.cfg.ShutdownTimeout.D(), drainCancel)
		})
	}

	// Signals: reloads until a stop is asked for.
	{
		sigs := make(chan os.Signal, 8)
		if opts.Signals {
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
			// Stay subscribed until Run returns, so a SIGHUP during the
			// drain is ignored rather than killing the process.
			defer signal.Stop(sigs)
		}
		cancel := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case sig := <-sigs:
					switch sig {
					case syscall.SIGHUP, syscall.SIGUSR1:
						s.log.Log("msg", "reloading", "signal", sig.String())
						s.Reload()
					default:
						s.log.Log("msg", "received signal", "signal", sig.String())
						return nil
					}
				case reply := <-s.reloadCh:
					reply <- s.Reload()
				case <-s.shutdownCh:
					s.log.Log("msg", "shutdown requested via status endpoint")
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

	// Tunnels.
	s.mu.Lock()
	ts := append([]*tunnel.Tunnel(nil), s.tunnels...)
	s.mu.Unlock()
	var drained sync.WaitGroup
	for _, t := range ts {
		drained.Add(1)
		g.Add(func() error {
			defer drained.Done()
			err := t.Serve()
			if werr := t.Wait(drainCtx); werr != nil {
				s.timedOut.Store(true)
				t.CloseAll()
			}
			return err
		}, func(error) {
			beginDrain()
			t.Stop()
		})
	}

	// Status server: it keeps answering (503, "stopping") during the drain
	// and goes last.
	if s.status != nil {
		allDrained := make(chan struct{})
		go func() { drained.Wait(); close(allDrained) }()
		g.Add(func() error {
			err := s.status.Serve()
			<-allDrained
			return err
		}, func(error) {
			go func() {
				<-allDrained
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				s.status.Shutdown(sctx)
			}()
		})
	}

	err := g.Run()
	for _, t := range ts {
		t.Close()
	}
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
func (a adapter) Snapshot() statusd.TunnelStatus {
	s := a.t.Snapshot()
	return statusd.TunnelStatus{
		State: s.State, Listen: s.Listen, Target: s.Target, OpenConns: s.OpenConns,
		LastReload: s.LastReload, LastReloadError: s.LastReloadError,
	}
}
