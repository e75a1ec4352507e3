package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
)

// pipe is one proxied connection: the accepted side (front) and the dialled
// side (back), copied in both directions by two goroutines that hold no
// buffer while the connection is idle.
type pipe struct {
	t           *Tunnel
	front, back *end
	peer        string
	chain       []*x509.Certificate // the peer's certificates, for reauthorize
	start       time.Time
	// lifetime is the absolute deadline max-conn-lifetime sets (zero: none).
	lifetime     time.Time
	closeTimeout time.Duration

	halves   atomic.Int32 // directions still running
	timedOut atomic.Bool
	// in and out are the bytes each direction wrote, set by its copy
	// goroutine as it ends (before halves drops), read by finish.
	in, out int64
	// from and to are the log lines' endpoints, formatted once.
	from, to string
}

// handle runs the handshake and the backend dial under the connect timeout,
// then starts the two copy goroutines and returns, so the deep handshake
// stack is not kept alive for the life of the connection.
//
// The handshake runs under a deadline on the conn rather than a context:
// every handshake step is I/O on the conn, so the deadline bounds it just
// as well, and tls.Conn.HandshakeContext would start a goroutine (and a
// timer) per connection to watch the context.
func (t *Tunnel) handle(c net.Conn) {
	g := t.gen.Load()
	start := time.Now()
	deadline := start.Add(g.cfg.ConnectTimeout.D())
	front := &end{sock: newSock(c)}
	var back *end
	var peer string
	var chain []*x509.Certificate
	var state *tls.ConnectionState
	fail := func(msg string, err error, quiet bool) {
		if isTimeout(err) {
			t.m.acceptTimeout.Inc()
		} else {
			t.m.acceptError.Inc()
		}
		if !quiet {
			t.log.Log("level", "error", "msg", msg, "from", addrString(c.RemoteAddr()), "err", err)
		}
		c.Close()
		t.release()
		t.wg.Done()
	}

	switch t.mode {
	case "server":
		tc := tls.Server(front.sock, g.server)
		tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			fail("error on TLS handshake", err, t.quiet.HandshakeErrs)
			return
		}
		front.tls = tc
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol == acme.ALPNProto {
			// An ACME validation, not a client: never forwarded.
			fail("error on TLS handshake", errACMEChallenge, true)
			return
		}
		state = &cs
		if len(cs.PeerCertificates) > 0 {
			chain = cs.PeerCertificates
			peer = peerName(chain[0])
		}
		t.m.handshake.Observe(time.Since(start).Seconds())
		d := net.Dialer{Deadline: deadline}
		bc, err := d.Dial(g.dialNet, g.dialAddr)
		t.backendReached(err == nil)
		if err != nil {
			fail("error on dial", err, t.quiet.ConnErrs)
			return
		}
		back = &end{sock: newSock(bc)}
		if g.cfg.ProxyProtocol || g.cfg.ProxyProtocolMode != "" {
			mode := g.cfg.ProxyProtocolMode
			if mode == "" {
				mode = ppModeConn
			}
			hdr, err := proxyHeader(c.RemoteAddr(), c.LocalAddr(), mode, state)
			if err == nil {
				bc.SetWriteDeadline(deadline)
				_, err = bc.Write(hdr)
			}
			if err != nil {
				bc.Close()
				fail("error on dial", err, t.quiet.ConnErrs)
				return
			}
		}
	default:
		s, tc, err := g.dialTLS(deadline)
		t.backendReached(err == nil)
		switch {
		case err == nil:
		case tc == nil:
			fail("error on dial", err, t.quiet.ConnErrs)
			return
		default:
			fail("error on TLS handshake", err, t.quiet.HandshakeErrs)
			return
		}
		t.m.handshake.Observe(time.Since(start).Seconds())
		if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
			chain = cs.PeerCertificates
			peer = peerName(chain[0])
		}
		back = &end{sock: s, tls: tc}
	}

	p := &pipe{t: t, front: front, back: back, peer: peer, chain: chain, start: start, closeTimeout: g.cfg.CloseTimeout.D()}
	if lt := g.cfg.MaxConnLifetime.D(); lt > 0 {
		p.lifetime = time.Now().Add(lt)
	}
	p.setDeadline(p.lifetime)
	t.mu.Lock()
	// A reload may have committed during the handshake and the dial. Its
	// reauthorize pass (under t.mu, after the new generation is stored)
	// checked the pipes registered then, not this one, which the old
	// rules admitted: check it against the new ones here.
	if cur := t.gen.Load(); cur != g && cur.cfg.Reauthorize {
		if err := cur.admits(chain); err != nil {
			t.mu.Unlock()
			t.m.reauthClosed.Inc()
			t.log.Log("msg", "closing connection refused by the new access rules", "peer", peer)
			p.abort()
			fail("connection refused by the new access rules", err, true)
			return
		}
	}
	t.pipes[p] = struct{}{}
	t.mu.Unlock()
	t.m.acceptSuccess.Inc()
	t.m.connOpen.Inc()
	if !t.quiet.Conns {
		p.from, p.to = addrString(c.RemoteAddr()), addrString(back.sock.RemoteAddr())
		t.log.Log("msg", "opening pipe", "from", p.from, "to", p.to, "peer", peer)
	}
	p.halves.Store(2)
	go p.pump(front, back, &p.in, &t.m.bytesIn)
	go p.pump(back, front, &p.out, &t.m.bytesOut)
}

func (p *pipe) setDeadline(d time.Time) {
	p.front.conn().SetDeadline(d)
	p.back.conn().SetDeadline(d)
}

// pump copies one direction, counting bytes into total and the metric.
// The first direction to finish cleanly leaves the other the close timeout
// to finish; one that fails closes both.
func (p *pipe) pump(src, dst *end, total *int64, counter *Counter) {
	n, err := src.copyTo(dst, counter)
	*total = n // published to finish by the halves.Add below
	if err != nil && isTimeout(err) {
		p.timedOut.Store(true)
	}
	if p.halves.Add(-1) == 0 {
		p.finish(err)
		return
	}
	if err != nil {
		if !isNormalClose(err) && !isTimeout(err) && !p.t.quiet.ConnErrs {
			p.t.log.Log("level", "error", "msg", "error during copy", "peer", p.peer, "err", err)
		}
		p.abort()
		return
	}
	d := time.Now().Add(p.closeTimeout)
	if !p.lifetime.IsZero() && p.lifetime.Before(d) {
		d = p.lifetime
	}
	p.setDeadline(d)
}

// abort closes both sides at once, waking both copy goroutines.
func (p *pipe) abort() {
	p.front.conn().Close()
	p.back.conn().Close()
}

func (p *pipe) finish(err error) {
	t := p.t
	p.abort()
	t.mu.Lock()
	delete(t.pipes, p)
	t.mu.Unlock()
	t.m.connOpen.Dec()
	life := time.Since(p.start)
	t.m.lifetime.Observe(life.Seconds())
	if p.timedOut.Load() {
		t.m.connTimeout.Inc()
	}
	if err != nil && !isNormalClose(err) && !isTimeout(err) && !t.quiet.ConnErrs {
		t.log.Log("level", "error", "msg", "error during copy", "peer", p.peer, "err", err)
	}
	if !t.quiet.Conns {
		t.log.Log("msg", "closed pipe", "from", p.from, "to", p.to,
			"peer", p.peer, "bytes_in", p.in, "bytes_out", p.out, "duration", life.Round(time.Millisecond),
			"timeout", p.timedOut.Load())
	}
	t.release()
	t.wg.Done()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
