// Package tunnel is one TLS tunnel: its listener, credentials, access
// control, proxy loop and reload. A server tunnel accepts TLS and forwards
// plaintext to its target; a client tunnel accepts plaintext and forwards
// over TLS. A tunnel knows nothing of other tunnels or of the status server.
package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// States a tunnel goes through. Stopping is terminal.
const (
	StateInitializing = "initializing"
	StateListening    = "listening"
	StateReloading    = "reloading"
	StateStopping     = "stopping"
)

// Quiet silences log families, as --quiet does.
type Quiet struct {
	Conns         bool // opening pipe / closed pipe
	ConnErrs      bool // dial and copy errors
	HandshakeErrs bool // TLS handshake errors
}

// Deps are what a tunnel is given rather than builds.
type Deps struct {
	// Logger carries tunnel=NAME already. Nil discards.
	Logger log.Logger
	Quiet  Quiet
	// Listener, when set, is used instead of binding the configured address.
	Listener net.Listener
	// Metrics are the tunnel's series (MetricFamilies.For); a tunnel that
	// replaces another of the same name is given its counters. Nil: series
	// of its own that nothing exports.
	Metrics *Metrics
}

// generation is one immutable set of settings: everything a new connection
// needs, swapped atomically on reload so the connection path takes no lock.
type generation struct {
	cfg       configs.Tunnel
	creds     *credentials
	acl       *acl
	server    *tls.Config    // server mode
	client    *clientConfigs // client mode
	dialNet   string
	dialAddr  string
	proxy     *proxyDialer // client tunnels with a proxy; nil otherwise
	checkHTTP *http.Client
	acme      *acmeCert // server tunnels with auto-acme-cert (acme.go)
}

// dialTargetBy is dialTarget with a deadline, without a context on the
// direct path.
func (g *generation) dialTargetBy(deadline time.Time) (net.Conn, error) {
	if g.proxy != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		return g.proxy.dial(ctx, g.dialAddr)
	}
	d := net.Dialer{Deadline: deadline}
	return d.Dial(g.dialNet, g.dialAddr)
}

// dialTarget connects to the target, through the proxy if there is one.
func (g *generation) dialTarget(ctx context.Context) (net.Conn, error) {
	if g.proxy != nil {
		return g.proxy.dial(ctx, g.dialAddr)
	}
	var d net.Dialer
	return d.DialContext(ctx, g.dialNet, g.dialAddr)
}

// Tunnel is one running tunnel.
type Tunnel struct {
	name, mode string
	log        log.Logger
	quiet      Quiet
	m          *Metrics
	ln         net.Listener
	tickets    *ticketKeys // server mode (tickets.go)
	limit      *limiter
	started    time.Time
	ownMetrics bool          // created here, so removed on Close
	changed    chan struct{} // signalled when settings change

	gen        atomic.Pointer[generation]
	state      atomic.Pointer[string]
	lastReload atomic.Pointer[reloadResult]
	reloadMu   sync.Mutex // one reload at a time
	modeMu     sync.Mutex
	looseKeys  map[string]bool // key files warned about (warnFileModes)

	mu    sync.Mutex
	pipes map[*pipe]struct{}
	wg    sync.WaitGroup // open connections, and handshakes in progress

	stopOnce sync.Once
	stopped  chan struct{}
	bg       sync.WaitGroup // the timed reload and ACME loops
	// bgMu guards starting those loops: each starts once the tunnel
	// serves and its settings need it (most tunnels need neither), and
	// never after Stop.
	bgMu                     sync.Mutex
	serving, reloading, acme bool
	acmeSrc                  acmeManagers // ACME source kept across reloads (acme.go)

	wl workloadHold // SPIFFE Workload API sources in use (spiffe.go)
}

type reloadResult struct {
	at  time.Time
	err string
}

// Snapshot is a tunnel's state for the status page.
type Snapshot struct {
	State           string
	Listen, Target  string
	OpenConns       int64
	LastReload      time.Time
	LastReloadError string
	// CredentialSource is files, pkcs11, spiffe, acme or none.
	CredentialSource string
	// NextRotation estimates the next certificate change (zero: none due).
	NextRotation time.Time
}

// New builds a tunnel: it loads the credentials, compiles the access rules,
// checks the target and binds the listener. Everything that can fail at
// startup fails here, before anything is served.
func New(cfg configs.Tunnel, deps Deps) (_ *Tunnel, err error) {
	logger := deps.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	t := &Tunnel{
		name: cfg.Name, mode: cfg.Mode, log: logger, quiet: deps.Quiet,
		pipes: make(map[*pipe]struct{}), stopped: make(chan struct{}),
		limit: newLimiter(cfg.MaxConcurrentConns), changed: make(chan struct{}, 1),
	}
	t.setState(StateInitializing)
	t.started = time.Now()
	t.lastReload.Store(&reloadResult{})
	if cfg.Mode == configs.ModeServer {
		if t.tickets, err = newTicketKeys(); err != nil {
			return nil, err
		}
	}
	t.warnFileModes(&cfg)
	defer func() {
		if err != nil {
			t.wl.releaseAll()
		}
	}()
	g, err := t.build(cfg)
	if err != nil {
		return nil, err
	}
	// The target's name must resolve at startup in both modes, as upstream
	// checks it, unless skip-resolve. Through a proxy (client tunnels) it
	// may only resolve on the proxy's side, as upstream assumes too.
	if !cfg.SkipResolve && (cfg.Mode == configs.ModeServer || cfg.Proxy == "") {
		if network, addr, err := configs.ParseAddress(cfg.Target); err == nil && network == configs.NetworkTCP {
			if err := resolveTarget(addr, cfg.ConnectTimeout.D()); err != nil {
				return nil, fmt.Errorf("invalid target address: %w", err)
			}
		}
	}
	t.m = deps.Metrics
	if t.m == nil {
		fam, err := NewMetricFamilies(nil, "")
		if err != nil {
			return nil, err
		}
		t.m = fam.For(cfg.Name, cfg.Mode)
		t.ownMetrics = true
	}
	t.gen.Store(g)
	t.m.certNotAfter.Set(float64(g.creds.notAfter().Unix()))
	if g.creds.current() == nil {
		t.m.certNotAfter.Set(0)
	}
	t.watchWorkloadAPI(g)
	t.ln = deps.Listener
	if t.ln == nil {
		if t.ln, err = Listen(cfg.Listen); err != nil {
			if t.ownMetrics {
				t.m.Unregister()
			}
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	return t, nil
}

// build makes a settings generation from cfg, reading credential files.
func (t *Tunnel) build(cfg configs.Tunnel) (*generation, error) {
	creds, err := loadCredentials(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.UseWorkloadAPI {
		if creds.spiffe, err = t.wl.acquire(&cfg); err != nil {
			return nil, err
		}
	}
	g := &generation{cfg: cfg, creds: creds}
	if cfg.ConnectTimeout <= 0 {
		g.cfg.ConnectTimeout = configs.Duration(configs.DefaultConnectTimeout)
	}
	if g.dialNet, g.dialAddr, err = configs.ParseAddress(cfg.Target); err != nil {
		return nil, fmt.Errorf("invalid target address: %w", err)
	}
	switch cfg.Mode {
	case configs.ModeServer:
		if creds.current() == nil && cfg.AutoACMECert == "" {
			return nil, errors.New("a server tunnel needs a certificate (keystore, or cert and key)")
		}
		if g.acl, err = serverACL(&cfg); err != nil {
			return nil, err
		}
		g.server = serverTLS(&cfg, creds, g.acl, t.tickets.current())
		if g.acme, err = t.acmeSrc.source(&cfg); err != nil {
			return nil, err
		}
		g.server = g.acme.serverTLS(g.server)
	case configs.ModeClient:
		if g.acl, err = clientACL(&cfg); err != nil {
			return nil, err
		}
		if cfg.Proxy != "" {
			if g.proxy, err = newProxyDialer(cfg.Proxy.Reveal()); err != nil {
				return nil, err
			}
		}
		g.client = clientTLS(&cfg, creds, g.acl)
	default:
		return nil, fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	if cfg.TargetStatus != "" {
		g.checkHTTP = &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: creds.pool},
			DisableKeepAlives: true,
		}}
	}
	return g, nil
}

func resolveTarget(target string, timeout time.Duration) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = lookupHost(ctx, host)
	return err
}

// lookupHost resolves names for resolveTarget (a var for the tests, which
// have no DNS).
var lookupHost = net.DefaultResolver.LookupHost

// Name is the tunnel's name.
func (t *Tunnel) Name() string { return t.name }

// Mode is "server" or "client".
func (t *Tunnel) Mode() string { return t.mode }

// Addr is the bound listener address.
func (t *Tunnel) Addr() net.Addr { return t.ln.Addr() }

// Config is the tunnel's current settings.
func (t *Tunnel) Config() configs.Tunnel { return t.gen.Load().cfg }

// Certificate is the certificate the tunnel presents now (nil if none).
func (t *Tunnel) Certificate() *tls.Certificate { return t.gen.Load().presented() }

func (t *Tunnel) setState(s string) { t.state.Store(&s) }

// State is initializing, listening, reloading or stopping.
func (t *Tunnel) State() string { return *t.state.Load() }

// Snapshot reports the tunnel's state without blocking.
func (t *Tunnel) Snapshot() Snapshot {
	g := t.gen.Load()
	r := t.lastReload.Load()
	t.mu.Lock()
	open := int64(len(t.pipes))
	t.mu.Unlock()
	return Snapshot{
		State: t.State(), Listen: g.cfg.Listen, Target: g.cfg.Target,
		OpenConns: open, LastReload: r.at, LastReloadError: r.err,
		CredentialSource: credentialSource(&g.cfg), NextRotation: t.nextRotation(g, r.at),
	}
}

// Serve accepts connections until Stop. Accept errors (a full descriptor
// table, an aborted connection) back off and retry; they never end the
// tunnel. It returns nil once stopped.
func (t *Tunnel) Serve() error {
	select {
	case <-t.stopped:
		return nil
	default:
	}
	t.setState(StateListening)
	t.log.Log("msg", "listening for connections", "listen", t.ln.Addr().String(), "target", t.Config().Target, "mode", t.mode)
	t.bgMu.Lock()
	t.serving = true
	t.bgMu.Unlock()
	t.startLoops(t.gen.Load())
	t.rotateTicketKeys()
	var backoff time.Duration
	for {
		if !t.limit.acquire() {
			return nil
		}
		c, err := t.ln.Accept()
		if err != nil {
			t.release()
			select {
			case <-t.stopped:
				return nil
			default:
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.log.Log("level", "error", "msg", "error accepting connection", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-t.stopped:
				return nil
			}
			continue
		}
		backoff = 0
		t.m.accepts.Inc()
		t.wg.Add(1)
		go t.handle(c)
	}
}

func (t *Tunnel) release() { t.limit.release() }

// startLoops starts the background loops g needs that are not running
// yet: the timed reload when timed-reload is set, the ACME loop when the
// certificate comes from ACME. It runs when the tunnel starts serving and
// after every settings change; a loop, once started, runs until Stop.
func (t *Tunnel) startLoops(g *generation) {
	t.bgMu.Lock()
	defer t.bgMu.Unlock()
	select {
	case <-t.stopped:
		return
	default:
	}
	if !t.serving {
		return
	}
	if !t.reloading && g.cfg.TimedReload.D() > 0 {
		t.reloading = true
		t.bg.Add(1)
		go t.timedReload()
	}
	if !t.acme && g.acme != nil {
		t.acme = true
		t.bg.Add(1)
		go t.acmeLoop()
	}
}

// timedReload reloads every timed-reload interval; the interval is read
// afresh whenever the settings change, so a reload can change or stop it.
func (t *Tunnel) timedReload() {
	defer t.bg.Done()
	for {
		var tick <-chan time.Time
		var timer *time.Timer
		if d := t.Config().TimedReload.D(); d > 0 {
			timer = time.NewTimer(d)
			tick = timer.C
		}
		select {
		case <-tick:
			t.Reload()
		case <-t.changed:
		case <-t.stopped:
		}
		if timer != nil {
			timer.Stop()
		}
		select {
		case <-t.stopped:
			return
		default:
		}
	}
}

// Reload re-reads the credentials and rebuilds the settings. New handshakes
// use the new ones; open connections are untouched. On error the tunnel
// keeps its old credentials, logs the error and returns it. During a drain
// reloads are ignored.
func (t *Tunnel) Reload() error {
	if t.State() == StateStopping {
		return nil
	}
	base := t.gen.Load()
	p, err := t.Prepare(base.cfg)
	if err != nil {
		return err
	}
	t.commit(p, base)
	return nil
}

// Apply switches the tunnel to new settings with the same listen address:
// new connections use them at once, open connections carry on.
func (t *Tunnel) Apply(cfg configs.Tunnel) error {
	p, err := t.Prepare(cfg)
	if err != nil {
		return err
	}
	t.Commit(p)
	return nil
}

// Prepared is a settings generation built and checked, not yet in use.
type Prepared struct {
	t *Tunnel
	g *generation
}

// CanApply reports whether cfg can replace the tunnel's settings in place;
// a different mode or listen address needs a new tunnel.
func (t *Tunnel) CanApply(cfg configs.Tunnel) bool {
	cur := t.Config()
	return cfg.Mode == cur.Mode && cfg.Listen == cur.Listen && cfg.Name == cur.Name
}

// warnFileModes warns about each private key file of cfg that group or
// others can read: at startup, and on a reload that brings one (a new path,
// or a file replaced with looser permissions); a file is warned about once
// while it stays so.
func (t *Tunnel) warnFileModes(cfg *configs.Tunnel) {
	loose := insecureFileModes(cfg)
	t.modeMu.Lock()
	defer t.modeMu.Unlock()
	warned := make(map[string]bool, len(loose))
	for _, f := range loose {
		if !t.looseKeys[f] {
			t.log.Log("level", "warn", "msg", "private key file is readable by group or others", "path", f)
		}
		warned[f] = true
	}
	t.looseKeys = warned
}

// Prepare builds the settings generation for cfg, reading every file it
// names, without changing anything. On error the failure is recorded (last
// reload error, failure counter) and logged.
func (t *Tunnel) Prepare(cfg configs.Tunnel) (*Prepared, error) {
	if !t.CanApply(cfg) {
		return nil, fmt.Errorf("mode and listen address cannot change in place")
	}
	t.warnFileModes(&cfg)
	g, err := t.build(cfg)
	if err != nil {
		t.m.reloadFailures.Inc()
		t.lastReload.Store(&reloadResult{at: time.Now(), err: err.Error()})
		t.log.Log("level", "error", "msg", "reload failed, keeping the current settings", "err", err)
		return nil, err
	}
	return &Prepared{t: t, g: g}, nil
}

// Commit puts a prepared generation in use. It cannot fail. During a drain
// it does nothing.
func (t *Tunnel) Commit(p *Prepared) { t.commit(p, nil) }

// commit is Commit; with a base, only if base is still the generation in
// use. A credential reload (Reload: SIGHUP, timed-reload) rebuilds the
// settings it started from, which can take a while (a slow file system, a
// keystore's key derivation, a PKCS#11 login); settings applied meanwhile
// (a fleet reload) are newer and read their files afresh, so the reload's
// generation is dropped rather than put back over them.
func (t *Tunnel) commit(p *Prepared, base *generation) {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	if t.State() == StateStopping {
		return
	}
	if base != nil && t.gen.Load() != base {
		return
	}
	g := p.g
	if g.server != nil && t.tickets != nil {
		g.server.SetSessionTicketKeys(t.tickets.current()) // keys rotated since Prepare
	}
	t.gen.Store(g)
	t.limit.setMax(g.cfg.MaxConcurrentConns)
	select {
	case t.changed <- struct{}{}:
	default:
	}
	t.startLoops(g)
	t.m.reloads.Inc()
	t.watchWorkloadAPI(g)
	// The certificate the tunnel now presents (an ACME one included), and
	// 0 when it presents none (a client tunnel that no longer has one).
	na := g.notAfter()
	if na.IsZero() {
		t.m.certNotAfter.Set(0)
	} else {
		t.m.certNotAfter.Set(float64(na.Unix()))
	}
	t.lastReload.Store(&reloadResult{at: time.Now()})
	t.log.Log("msg", "reloaded credentials", "not_after", na.Format(time.RFC3339))
	if g.cfg.Reauthorize {
		t.reauthorize(g)
	}
}

// reauthorize closes the open connections whose peer g's rules refuse.
//
// The open pipes are listed under t.mu, after g was stored (pipes that
// register later check g themselves, in handle), and checked outside it:
// a chain verification or a policy evaluation per pipe must not hold up
// new connections and finishing ones.
func (t *Tunnel) reauthorize(g *generation) {
	t.mu.Lock()
	open := make([]*pipe, 0, len(t.pipes))
	for p := range t.pipes {
		open = append(open, p)
	}
	t.mu.Unlock()
	var refused []*pipe
	for _, p := range open {
		if err := g.admits(p.chain); err != nil {
			refused = append(refused, p)
		}
	}
	for _, p := range refused {
		t.m.reauthClosed.Inc()
		t.log.Log("msg", "closing connection refused by the new access rules", "peer", p.peer)
		p.abort()
	}
}

// admits applies g's access rules to an established peer, as a new
// handshake would: the chain against the current CA bundle (unless pinned
// or unauthenticated), then the allow or verify rules.
func (g *generation) admits(chain []*x509.Certificate) error {
	if g.cfg.Mode == configs.ModeServer && g.cfg.DisableAuthentication {
		return nil
	}
	if len(chain) == 0 {
		return errors.New("peer presented no certificate")
	}
	leaf := chain[0]
	if !g.acl.pinned() && g.creds.spiffe != nil {
		if err := g.creds.spiffe.verifyPeer(chain); err != nil {
			return err
		}
	} else if !g.acl.pinned() {
		usage, host := x509.ExtKeyUsageClientAuth, ""
		if g.cfg.Mode == configs.ModeClient {
			usage, host = x509.ExtKeyUsageServerAuth, serverName(&g.cfg)
		}
		if _, err := verifyChain(leaf, chain[1:], g.creds.pool, usage, host); err != nil {
			return err
		}
	}
	return g.acl.check(leaf)
}

// Stop stops accepting: the listener closes, open connections carry on.
func (t *Tunnel) Stop() {
	t.stopOnce.Do(func() {
		t.setState(StateStopping)
		t.bgMu.Lock() // no loop starts after this (startLoops)
		close(t.stopped)
		t.bgMu.Unlock()
		t.stopTicketRotation()
		t.limit.stop()
		t.ln.Close()
		t.log.Log("msg", "stopped accepting, draining connections")
	})
}

// Wait blocks until every connection has closed, or ctx ends.
func (t *Tunnel) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		t.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseAll closes every open connection at once.
func (t *Tunnel) CloseAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.pipes {
		p.abort()
	}
}

// Close stops the tunnel, closes its connections and removes its metrics
// unless they were handed in through Deps.
func (t *Tunnel) Close() {
	t.Stop()
	t.CloseAll()
	t.wl.releaseAll()
	if t.ownMetrics {
		t.m.Unregister()
	}
}

// Metrics are the tunnel's series.
func (t *Tunnel) Metrics() *Metrics { return t.m }

// CheckBackend runs the backend health check: an HTTP GET of target-status
// expecting 200 when set, else a TCP dial of the target (server mode) or a
// full TLS handshake with it (client mode).
func (t *Tunnel) CheckBackend(ctx context.Context) error {
	err := t.checkBackend(ctx)
	t.backendReached(err == nil)
	return err
}

// backendReached records in backend_up whether the tunnel could just reach
// its backend, by a health check or by a connection it proxies (a dial, and
// in client mode the TLS handshake): the gauge follows traffic without
// checks of its own, which would open connections to every backend.
func (t *Tunnel) backendReached(ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	if t.m.backendUp.Value() != v {
		t.m.backendUp.Set(v)
	}
}

func (t *Tunnel) checkBackend(ctx context.Context) error {
	g := t.gen.Load()
	if deadline := time.Now().Add(g.cfg.ConnectTimeout.D()); true {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if g.checkHTTP != nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.TargetStatus, nil)
		if err != nil {
			return err
		}
		resp, err := g.checkHTTP.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			// Redacted: /_status shows this, and the URL may carry a password.
			return fmt.Errorf("target-status %s returned %s", req.URL.Redacted(), resp.Status)
		}
		return nil
	}
	c, err := g.dialTarget(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if g.client == nil {
		return nil
	}
	cfg := g.client.full.Clone()
	cfg.ClientSessionCache = nil // a check must do the real handshake
	tc := tls.Client(c, cfg)
	return tc.HandshakeContext(ctx)
}

// isTimeout reports a deadline or timeout error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isNormalClose reports the errors not worth an "error during copy" line:
// none, and our own close of a connection (the other half of a pipe that
// already ended). A peer's reset or broken pipe is logged, as upstream's
// proxy logs every copy error but a closed connection: operators grep for
// them.
func isNormalClose(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed)
}
