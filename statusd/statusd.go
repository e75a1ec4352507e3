// Package statusd is the one status server of a ghostunnel fleet process: it
// serves /_status, /_metrics, /debug/pprof and /_shutdown for every tunnel of
// the process from a single listener, with the same paths and response shapes
// as upstream Ghostunnel's per-process status port.
//
// Over HTTPS the server presents, per handshake, the current certificate of
// the tunnel the client asked for with SNI (by tunnel name, then by DNS name
// on the tunnel's certificate), falling back to a default tunnel.
//
// statusd knows nothing about tunnels beyond the small Tunnel and Source
// interfaces below; the supervisor adapts its tunnels to them.
package statusd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

// Tunnel states reported by TunnelStatus.State and used as the /_status
// message.
const (
	StateInitializing = "initializing"
	StateListening    = "listening"
	StateReloading    = "reloading"
	StateStopping     = "stopping"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultCheckTimeout  = 5 * time.Second
	DefaultCheckCacheTTL = time.Second
	DefaultMetricsPrefix = "ghostunnel"
)

// HTTP server hardening.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Tunnel is what statusd needs of a tunnel. The supervisor adapts tunnels to
// it. All methods may be called concurrently, from any goroutine.
type Tunnel interface {
	// Name is the tunnel's unique name.
	Name() string
	// Mode is "server" or "client".
	Mode() string
	// Snapshot returns the tunnel's current status. It must be cheap and
	// must not block.
	Snapshot() TunnelStatus
	// Certificate returns the tunnel's current certificate, or nil if it has
	// none. Leaf may be set. It is called on every status handshake, so it
	// must be cheap, and it should return the same pointer until the
	// certificate changes; a returned certificate must never be modified
	// (statusd caches what it derives from a certificate by pointer).
	Certificate() *tls.Certificate
	// CheckBackend checks the tunnel's backend; nil means healthy. It must
	// honour ctx's deadline.
	CheckBackend(ctx context.Context) error
}

// CertificatePender is a Tunnel that has no certificate yet but is getting
// one (from an ACME CA, say): the status server then serves https from the
// start, as asked, rather than plain http for the life of the process.
type CertificatePender interface {
	CertificatePending() bool
}

// CheckTimeouter is a Tunnel whose backend checks have a timeout of their
// own (a tunnel's connect timeout), instead of Config.CheckTimeout.
type CheckTimeouter interface {
	CheckTimeout() time.Duration
}

// Source gives the current set of tunnels. The set may change at runtime;
// Tunnels is called per status request and per status handshake.
//
// The returned slice must not be modified afterwards. Returning the same
// (immutable, copy-on-write) slice for as long as the set is unchanged makes
// the per-handshake change check O(1); a fresh copy costs one pointer
// comparison per tunnel.
type Source interface {
	Tunnels() []Tunnel
}

// TunnelStatus is a point-in-time view of a tunnel.
type TunnelStatus struct {
	State           string // StateInitializing, StateListening, StateReloading or StateStopping
	Listen, Target  string // listen and forward addresses, as configured
	OpenConns       int64
	LastReload      time.Time // zero until the first reload
	LastReloadError string    // empty if the last reload succeeded
	// CredentialSource says where the certificate comes from (files,
	// pkcs11, spiffe, acme, none); empty to leave it out.
	CredentialSource string
	// NextRotation is when the certificate is next expected to change;
	// zero when nothing is scheduled.
	NextRotation time.Time
}

// Config configures a Server.
type Config struct {
	// Addr is where to serve: HOST:PORT or https://HOST:PORT (HTTPS),
	// http://HOST:PORT (plain HTTP), unix:PATH (plain HTTP on a unix socket),
	// or systemd:NAME / launchd:NAME together with Listener.
	Addr string
	// Listener, if set, is used instead of binding Addr (for example a
	// socket passed by systemd socket activation); Addr then only selects
	// HTTP or HTTPS. The Server closes it on shutdown.
	Listener net.Listener

	// EnablePprof serves /debug/pprof/; otherwise it is 404.
	EnablePprof bool
	// EnableShutdown serves POST /_shutdown; otherwise it is 404.
	EnableShutdown bool
	// EnableReload serves POST /_reload, which calls Reload and answers 200
	// with "ok", or 500 with the error; otherwise it is 404.
	EnableReload bool
	Reload       func() error
	// ConfigStatus, if set, is added to /_status as "config" (the fleet
	// file's generation, digest and last reload).
	ConfigStatus func() any
	// Routes are extra handlers by path, contributed by the supervisor;
	// statusd serves them without looking inside.
	Routes map[string]http.Handler

	// Shutdown is called (once) by POST /_shutdown. It must not block: it
	// should only start the drain (which will in turn shut this server down).
	Shutdown func()

	// DefaultTunnel names the tunnel whose certificate is presented when SNI
	// matches no tunnel. Empty means the first tunnel from Source.
	DefaultTunnel string
	// Source gives the tunnels. Nil means none.
	Source Source

	// Gatherer is rendered by /_metrics. Nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// MetricsPrefix is the prefix of the tunnel metric families, "ghostunnel"
	// if empty.
	MetricsPrefix string

	// Logger receives the server's logs, including net/http's. Nil discards.
	Logger log.Logger

	// Hostname is reported in /_status and /_metrics; os.Hostname() if empty.
	Hostname string
	// Revision and Compiler are reported in /_status. Compiler defaults to
	// runtime.Version().
	Revision, Compiler string
	// Stopping reports whether the process is draining. Nil means never.
	Stopping func() bool
	// LastReload returns the time of the process's last reload. Nil means
	// the latest of the tunnels' LastReload.
	LastReload func() time.Time

	// CheckTimeout bounds a tunnel's backend check, unless the tunnel has a
	// timeout of its own (CheckTimeouter); DefaultCheckTimeout if
	// zero. The supervisor passes the connect timeout.
	CheckTimeout time.Duration
	// CheckCacheTTL is how long a finished backend check result is reused;
	// DefaultCheckCacheTTL if zero. If negative, results are not reused, but
	// concurrent requests still share in-flight checks.
	CheckCacheTTL time.Duration
}

// Server is the status server. Create it with New, run it with Serve, and
// stop it with Shutdown or Close.
type Server struct {
	cfg     Config
	logger  log.Logger
	network string
	addr    string
	wantTLS bool
	ln      net.Listener

	certs   *certIndex
	checks  *checker
	metrics *metricsHandler
	http    *http.Server

	serving      atomic.Bool
	shutdownOnce sync.Once // guards Config.Shutdown
	closeOnce    sync.Once
	closeErr     error
}

// New validates cfg, parses its address and binds the listener, so that an
// address in use is reported before anything runs. Call Serve to serve.
func New(cfg Config) (*Server, error) {
	network, addr, wantTLS, err := ParseAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.EnableShutdown && cfg.Shutdown == nil {
		return nil, errors.New("status server: shutdown endpoint enabled without a shutdown function")
	}
	if cfg.Logger == nil {
		cfg.Logger = log.NewNopLogger()
	}
	if cfg.Source == nil {
		cfg.Source = emptySource{}
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.MetricsPrefix == "" {
		cfg.MetricsPrefix = DefaultMetricsPrefix
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Compiler == "" {
		cfg.Compiler = runtime.Version()
	}
	if cfg.Stopping == nil {
		cfg.Stopping = func() bool { return false }
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.CheckCacheTTL == 0 {
		cfg.CheckCacheTTL = DefaultCheckCacheTTL
	}

	ln := cfg.Listener
	if ln == nil {
		ln, err = listen(network, addr)
		if err != nil {
			return nil, fmt.Errorf("status server: listen on %s: %w", cfg.Addr, err)
		}
	}
	if network == "unix" {
		wantTLS = false
	}

	s := &Server{
		cfg:     cfg,
		logger:  cfg.Logger,
		network: network,
		addr:    addr,
		wantTLS: wantTLS,
		ln:      ln,
		certs:   newCertIndex(cfg.Source, cfg.DefaultTunnel),
		checks:  newChecker(cfg.CheckTimeout, cfg.CheckCacheTTL),
		metrics: newMetricsHandler(cfg.Gatherer, cfg.MetricsPrefix, cfg.Hostname, cfg.Logger),
	}
	errLog := stdlog.New(log.NewStdlibAdapter(level.Error(log.With(cfg.Logger, "component", "status"))), "", 0)
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			ClientAuth:     tls.NoClientCert,
			GetCertificate: s.certs.getCertificate,
		},
	}
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown or Close, and then returns nil. It serves
// HTTPS when the address asks for it and some tunnel has a certificate when
// Serve starts; otherwise plain HTTP (as upstream does, with a log line).
func (s *Server) Serve() error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("status server: serve called twice")
	}
	var err error
	switch {
	case s.wantTLS && (s.certs.anyCertificate() || s.certificatePending()):
		level.Info(s.logger).Log("msg", "serving status over https", "addr", s.ln.Addr())
		err = s.http.ServeTLS(s.ln, "", "")
	case s.wantTLS:
		level.Warn(s.logger).Log("msg", "no tunnel has a certificate: serving status over plain http", "addr", s.ln.Addr())
		err = s.http.Serve(s.ln)
	default:
		level.Info(s.logger).Log("msg", "serving status over http", "addr", s.ln.Addr())
		err = s.http.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// certificatePending reports whether some tunnel is getting a certificate.
func (s *Server) certificatePending() bool {
	for _, t := range s.cfg.Source.Tunnels() {
		if p, ok := t.(CertificatePender); ok && p.CertificatePending() {
			return true
		}
	}
	return false
}

// Shutdown stops the server gracefully: it aborts running backend checks,
// stops accepting, waits for active requests until ctx is done and then
// closes the remaining connections. A unix socket file is removed. It is
// safe to call more than once and before Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.checks.close()
		err := s.http.Shutdown(ctx)
		if err != nil {
			_ = s.http.Close()
		}
		// The http.Server only knows the listener once Serve has run.
		if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
		if werr := s.checks.wait(ctx); werr != nil && err == nil {
			err = werr
		}
		s.closeErr = err
	})
	return s.closeErr
}

// Close is Shutdown; it exists so the server fits run groups that call
// Close.
func (s *Server) Close(ctx context.Context) error { return s.Shutdown(ctx) }

// ParseAddr parses a status address. HOST:PORT and https://HOST:PORT give
// ("tcp", HOST:PORT, true); http://HOST:PORT gives ("tcp", HOST:PORT, false);
// unix:PATH gives ("unix", PATH, false); systemd:NAME and launchd:NAME give
// ("systemd"|"launchd", NAME, true) and need Config.Listener.
func ParseAddr(s string) (network, addr string, useTLS bool, err error) {
	if s == "" {
		return "", "", false, errors.New("empty status address")
	}
	for _, p := range []string{"unix", "systemd", "launchd"} {
		if rest, ok := strings.CutPrefix(s, p+":"); ok {
			if rest == "" {
				return "", "", false, fmt.Errorf("invalid status address %q: missing %s name", s, p)
			}
			return p, rest, p != "unix", nil
		}
	}
	hostport, useTLS := s, true
	if rest, ok := strings.CutPrefix(s, "http://"); ok {
		hostport, useTLS = rest, false
	} else if rest, ok := strings.CutPrefix(s, "https://"); ok {
		hostport = rest
	} else if strings.Contains(s, "://") {
		return "", "", false, fmt.Errorf("invalid status address %q: unsupported scheme", s)
	}
	hostport = strings.TrimSuffix(hostport, "/")
	if _, port, err := net.SplitHostPort(hostport); err != nil {
		return "", "", false, fmt.Errorf("invalid status address %q: %w", s, err)
	} else if port == "" {
		return "", "", false, fmt.Errorf("invalid status address %q: missing port", s)
	}
	return "tcp", hostport, useTLS, nil
}

// listen binds network/addr. A unix socket file left behind by a dead
// process is replaced; a live one is reported as in use.
func listen(network, addr string) (net.Listener, error) {
	switch network {
	case "tcp":
		var lc net.ListenConfig
		lc.SetMultipathTCP(false) // Landlock's TCP bind rules do not cover MPTCP sockets
		return lc.Listen(context.Background(), "tcp", addr)
	case "unix":
		if fi, err := os.Lstat(addr); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, errors.New("file exists and is not a socket")
			}
			if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
				_ = c.Close()
				return nil, errors.New("address already in use")
			}
			if err := os.Remove(addr); err != nil {
				return nil, err
			}
		}
		ln, err := net.Listen("unix", addr)
		if err != nil {
			return nil, err
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(true)
		return ln, nil
	default:
		return nil, fmt.Errorf("%s sockets must be passed in Config.Listener", network)
	}
}

type emptySource struct{}

func (emptySource) Tunnels() []Tunnel { return nil }
