package tunnel

// SPIFFE Workload API credentials (use-workload-api): the X.509 SVID and
// trust bundles the agent pushes are used and rotated without a reload and
// without file I/O. Tunnels of one process that talk to the same Workload
// API address share one watch of it (one FetchX509SVID stream), kept in a
// small refcounted registry and closed when its last tunnel closes.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// workloadState is one update of the Workload API, immutable.
type workloadState struct {
	cert *tls.Certificate // the default SVID as presented in handshakes
	// verify checks a peer's chain as an X.509 SVID against this update's
	// bundle of the peer's trust domain.
	verify func(chain []*x509.Certificate) error
}

// workloadSource is one watch of a Workload API address, shared by every
// tunnel of the process that uses that address.
type workloadSource struct {
	addr string
	refs int // guarded by workloadSources.mu

	cancel context.CancelFunc
	client io.Closer     // the Workload API client (spiffe_workloadapi.go)
	done   chan struct{} // closed when the watch has ended for good

	state   atomic.Pointer[workloadState] // nil until the first update
	ready   chan struct{}                 // closed at the first update
	lastErr atomic.Pointer[string]

	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// workloadSources is the process-wide registry of watches, by address.
var workloadSources = struct {
	mu sync.Mutex
	m  map[string]*workloadSource
}{m: make(map[string]*workloadSource)}

// acquireWorkloadSource returns the shared watch of addr ("" for
// $SPIFFE_ENDPOINT_SOCKET), starting it if needed, once it has delivered
// its first SVID: within timeout, or, when it is 0, however long that takes
// (unless the watch ends for good). Each successful call must be matched by
// release.
func acquireWorkloadSource(addr string, timeout time.Duration) (*workloadSource, error) {
	if addr == "" {
		var ok bool
		if addr, ok = defaultWorkloadAddr(); !ok || addr == "" {
			return nil, errors.New("workload API: no address: set use-workload-api-addr or $SPIFFE_ENDPOINT_SOCKET")
		}
	}
	if err := validateWorkloadAddr(addr); err != nil {
		return nil, fmt.Errorf("workload API address %q: %w", addr, err)
	}
	workloadSources.mu.Lock()
	s := workloadSources.m[addr]
	if s != nil {
		select {
		case <-s.done: // a dead watch: its holders keep it, new ones get a fresh one
			s = nil
		default:
		}
	}
	if s == nil {
		var err error
		if s, err = startWorkloadSource(addr); err != nil {
			workloadSources.mu.Unlock()
			return nil, err
		}
		workloadSources.m[addr] = s
	}
	s.refs++
	workloadSources.mu.Unlock()

	var expired <-chan time.Time // 0: wait indefinitely, as upstream
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-s.ready:
		return s, nil
	case <-s.done:
	case <-expired:
	}
	s.release()
	why := "no update yet"
	if e := s.lastErr.Load(); e != nil {
		why = *e
	}
	if timeout <= 0 { // the watch ended for good
		return nil, fmt.Errorf("workload API %s: no X.509 SVID: %s", addr, why)
	}
	return nil, fmt.Errorf("workload API %s: no X.509 SVID within %s: %s", addr, timeout, why)
}

func (s *workloadSource) subscribe(ch chan struct{}) {
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
}

func (s *workloadSource) unsubscribe(ch chan struct{}) {
	s.mu.Lock()
	delete(s.subs, ch)
	s.mu.Unlock()
}

// release drops one reference; the last one stops the watch.
func (s *workloadSource) release() {
	workloadSources.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last && workloadSources.m[s.addr] == s {
		delete(workloadSources.m, s.addr)
	}
	workloadSources.mu.Unlock()
	if last {
		s.cancel()
		_ = s.client.Close()
	}
}

// certificate is the current SVID as a tls.Certificate. After the source
// is closed it keeps returning the last one.
func (s *workloadSource) certificate() *tls.Certificate {
	if st := s.state.Load(); st != nil {
		return st.cert
	}
	return nil
}

// verifyPeer verifies a peer's chain as an X.509 SVID against the current
// bundle of the peer's trust domain. Hostnames play no part.
func (s *workloadSource) verifyPeer(chain []*x509.Certificate) error {
	st := s.state.Load()
	if st == nil {
		return errors.New("workload API: no trust bundle yet")
	}
	if len(chain) == 0 {
		return errors.New("peer presented no certificate")
	}
	return st.verify(chain)
}

// workloadHold is a tunnel's share of the registry: the sources its
// settings generations have used, all released when the tunnel closes (a
// prepared generation may never be committed, so none is released
// earlier), and the channel their updates arrive on.
type workloadHold struct {
	mu      sync.Mutex
	held    map[string]*workloadSource
	updates chan struct{}
	watch   sync.Once
}

// acquire returns the source cfg names, reusing the tunnel's own while its
// watch lives. A watch that has ended for good (the agent refused it) is
// given back and a fresh one started, so a reload recovers from it instead
// of keeping the last SVID and bundles for the life of the tunnel.
func (h *workloadHold) acquire(cfg *configs.Tunnel) (*workloadSource, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.held[cfg.UseWorkloadAPIAddr]; ok {
		select {
		case <-s.done:
			delete(h.held, cfg.UseWorkloadAPIAddr)
			s.unsubscribe(h.updates)
			s.release()
		default:
			return s, nil
		}
	}
	s, err := acquireWorkloadSource(cfg.UseWorkloadAPIAddr, cfg.UseWorkloadAPITimeout.D())
	if err != nil {
		return nil, err
	}
	if h.held == nil {
		h.held = make(map[string]*workloadSource)
		h.updates = make(chan struct{}, 1)
	}
	h.held[cfg.UseWorkloadAPIAddr] = s
	s.subscribe(h.updates)
	return s, nil
}

// releaseAll gives every source back. Idempotent.
func (h *workloadHold) releaseAll() {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, s := range held {
		s.unsubscribe(h.updates)
		s.release()
	}
}

// watchWorkloadAPI starts, once, the loop that keeps cert_not_after in step
// with the SVIDs the Workload API pushes. Called once metrics exist.
func (t *Tunnel) watchWorkloadAPI(g *generation) {
	if g.creds.spiffe == nil {
		return
	}
	t.wl.mu.Lock()
	updates := t.wl.updates
	t.wl.mu.Unlock()
	t.wl.watch.Do(func() {
		go func() {
			for {
				select {
				case <-updates:
				case <-t.stopped:
					return
				}
				g := t.gen.Load()
				if g.creds.spiffe == nil {
					continue
				}
				if c := g.creds.current(); c != nil && c.Leaf != nil {
					t.m.certNotAfter.Set(float64(c.Leaf.NotAfter.Unix()))
					t.log.Log("msg", "workload API: new X.509 SVID", "serial", c.Leaf.SerialNumber.String(),
						"spiffe_id", spiffeID(c.Leaf), "not_after", c.Leaf.NotAfter.Format(time.RFC3339))
				}
			}
		}()
	})
}

// spiffeServerTLS is serverTLS for Workload API credentials: the current
// SVID each handshake, clients verified as SVIDs against the current bundle
// (resumed sessions too), then the allow rules.
func spiffeServerTLS(t *configs.Tunnel, src *workloadSource, a *acl, ticketKeys [][32]byte) *tls.Config {
	cfg := baseTLS(t)
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := src.certificate(); c != nil {
			return c, nil
		}
		return nil, errors.New("workload API: no X.509 SVID")
	}
	if len(ticketKeys) > 0 {
		cfg.SetSessionTicketKeys(ticketKeys)
	}
	if t.DisableAuthentication {
		cfg.ClientAuth = tls.NoClientCert
		return cfg
	}
	// Verification is ours, against the SPIFFE bundle, in VerifyConnection.
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyConnection = verifySVIDPeer(src, a, "client")
	return cfg
}

// spiffeClientTLS is clientTLS for Workload API credentials: the server's
// chain is verified against the bundle of its trust domain instead of a
// hostname, and verify-uri pins its SPIFFE ID.
func spiffeClientTLS(t *configs.Tunnel, src *workloadSource, a *acl) *tls.Config {
	cfg := baseTLS(t)
	cfg.ServerName = serverName(t) // SNI only
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	if !t.DisableAuthentication {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := src.certificate(); c != nil {
				return c, nil
			}
			return nil, errors.New("workload API: no X.509 SVID")
		}
	}
	cfg.InsecureSkipVerify = true // replaced by the SVID verification below
	cfg.VerifyConnection = verifySVIDPeer(src, a, "server")
	return cfg
}

// spiffeID is the URI SAN of an SVID, for logs.
func spiffeID(leaf *x509.Certificate) string {
	if len(leaf.URIs) > 0 {
		return leaf.URIs[0].String()
	}
	return ""
}

// verifySVIDPeer checks the peer (role names it in errors) as an X.509
// SVID against the current bundle, unless a SPKI pin replaces that, then
// the access rules.
func verifySVIDPeer(src *workloadSource, a *acl, role string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%s presented no certificate", role)
		}
		leaf := cs.PeerCertificates[0]
		if !a.pinned() {
			if err := src.verifyPeer(cs.PeerCertificates); err != nil {
				return fmt.Errorf("%s %q: %w", role, peerName(leaf), err)
			}
		}
		if err := a.check(leaf); err != nil {
			return fmt.Errorf("%s %q: %w", role, peerName(leaf), err)
		}
		return nil
	}
}
