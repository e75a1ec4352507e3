package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Session resumption, made cheap without giving up what the full handshake
// bought.
//
// A TLS 1.3 resumption in crypto/tls always runs a fresh key exchange
// (psk_dhe_ke), and with Go's default groups that is the hybrid
// X25519MLKEM768: an ML-KEM key generation, encapsulation and decapsulation
// plus two X25519 operations per connection, a third of a resumed
// connection's CPU. A client tunnel therefore makes its resumption attempts
// offering P-256 ECDHE only. That keeps forward secrecy against today's
// attackers, and a resumed connection's keys still depend on the PSK, which
// descends from a full handshake that used the hybrid exchange, so traffic
// recorded now stays protected against a future quantum computer as long as
// the session ticket does. What a resumed connection gives up is
// post-quantum forward secrecy after a later theft of that ticket (or of
// the server's ticket key).
//
// A connection must never end up protected by the classical exchange alone,
// so a resumption attempt the server declines (a restart or key rotation
// there, an expired ticket) is stopped before the client sends its
// certificate or any data, and the connection is made again with a full,
// hybrid handshake. Until a full-config connection resumes again (the server
// is known to take our tickets), no more classical attempts are made, so a
// server that never accepts tickets costs one extra handshake, not one per
// connection. A server that refuses the attempt outright (an alert: no
// P-256, say) gets no more of them from this settings generation.

// errNotResumed stops a resumption attempt the server declined.
var errNotResumed = errors.New("session ticket declined; retrying with a full handshake")

// resumeGroups are the groups a resumption attempt offers.
var resumeGroups = []tls.CurveID{tls.CurveP256}

// clientConfigs is a client tunnel's TLS setup for one generation.
type clientConfigs struct {
	full   *tls.Config // full handshakes: Go's default groups, hybrid first
	resume *tls.Config // resumption attempts; nil when they are not worth it
	key    string      // the session cache key crypto/tls uses (ServerName)
	// state is resumeOn, resumeWait (a session was declined: off until the
	// server takes one on the full config) or resumeOff (refused).
	state atomic.Int32
}

const (
	resumeOn int32 = iota
	resumeWait
	resumeOff
)

// newClientConfigs derives the resumption config from full. Resumption attempts
// are not split off for TLS 1.2 (its resumption has no key exchange to
// save), nor without a session cache or an SNI name to look sessions up by.
func newClientConfigs(full *tls.Config) *clientConfigs {
	c := &clientConfigs{full: full, key: full.ServerName}
	if full.ClientSessionCache == nil || full.ServerName == "" || full.MaxVersion == tls.VersionTLS12 {
		return c
	}
	r := full.Clone()
	r.CurvePreferences = resumeGroups
	verify := full.VerifyConnection
	r.VerifyConnection = func(cs tls.ConnectionState) error {
		if !cs.DidResume {
			return errNotResumed
		}
		if verify != nil {
			return verify(cs)
		}
		return nil
	}
	c.resume = r
	return c
}

// config is the config for the next connection: the resumption one when a
// session is cached for the target and the server has been taking them.
func (c *clientConfigs) config() *tls.Config {
	if c.resume != nil && c.state.Load() == resumeOn {
		if s, ok := c.full.ClientSessionCache.Get(c.key); ok && s != nil {
			return c.resume
		}
	}
	return c.full
}

// handshakeDone records what a handshake on cfg says about the server. A
// failed resumption attempt (the caller then retries with the full config)
// turns attempts off: for good when the server answered with an alert,
// until a full-config handshake resumes otherwise.
func (c *clientConfigs) handshakeDone(cfg *tls.Config, resumed bool, err error) {
	switch {
	case c.resume == nil:
	case cfg == c.resume && err != nil:
		if isRemoteAlert(err) {
			c.state.Store(resumeOff)
		} else {
			c.state.CompareAndSwap(resumeOn, resumeWait)
		}
	case cfg == c.full && err == nil && resumed:
		c.state.CompareAndSwap(resumeWait, resumeOn)
	}
}

// isRemoteAlert reports a handshake the peer ended with a TLS alert
// (crypto/tls reports those as a "remote error").
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// chainCache remembers which client chains a server generation verified, so
// that a resumed session's chain, checked again on every resumption against
// the current CA pool, costs a hash and a map lookup instead of signature
// checks. A generation has one pool and one cache: a reload that changes
// the pool starts an empty one. Entries keep the verified chain's validity
// window and are not used outside it.
type chainCache struct {
	mu sync.Mutex
	m  map[credKey]validity
}

type validity struct{ notBefore, notAfter time.Time }

// chainCacheSize bounds a generation's cache; when full, an arbitrary entry
// makes room (a miss only costs a verification).
const chainCacheSize = 4096

// chainKey identifies a presented chain (credcache.go's digest).
func chainKey(certs []*x509.Certificate) credKey {
	raws := make([][]byte, len(certs))
	for i, c := range certs {
		raws[i] = c.Raw
	}
	return keyOf("presented chain", raws...)
}

// verified says whether certs were verified before and are valid at now.
func (c *chainCache) verified(key credKey, now time.Time) bool {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	return ok && !now.Before(v.notBefore) && !now.After(v.notAfter)
}

// add remembers that the presented certificates (key) verified to chain.
func (c *chainCache) add(key credKey, chain []*x509.Certificate) {
	if len(chain) == 0 {
		return
	}
	v := validity{notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, cert := range chain[1:] {
		if cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(v.notAfter) {
			v.notAfter = cert.NotAfter
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[credKey]validity)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= chainCacheSize {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = v
}

// dialTLS connects a client tunnel to its target and makes the handshake,
// once more with the full config when a resumption attempt fails. On
// failure tc is nil if the dial failed, and the connection is closed.
func (g *generation) dialTLS(deadline time.Time) (s *sock, tc *tls.Conn, err error) {
	cfg := g.client.config()
	for {
		bc, err := g.dialTargetBy(deadline)
		if err != nil {
			return nil, nil, err
		}
		s = newSock(bc)
		tc = tls.Client(s, cfg)
		tc.SetDeadline(deadline)
		err = tc.Handshake()
		g.client.handshakeDone(cfg, err == nil && tc.ConnectionState().DidResume, err)
		if err == nil {
			return s, tc, nil
		}
		bc.Close()
		if cfg != g.client.resume || !time.Now().Before(deadline) {
			return s, tc, err
		}
		cfg = g.client.full
	}
}
