package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// pki is a CA with a server leaf and a client leaf, in a temp dir.
type pki struct {
	dir    string
	ca     *testpki.CA
	server *testpki.Leaf
	client *testpki.Leaf
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(dir, "ca")
	srv := testpki.Localhost()
	srv.Server = true
	cli := testpki.Options{CN: "client", OU: []string{"team-a"}, DNS: []string{"client.example"},
		IPs: []net.IP{net.IPv4(10, 1, 2, 3)}, URIs: []string{"spiffe://example.org/client/web"}, Client: true}
	return &pki{dir: dir, ca: ca, server: ca.Issue("server", srv), client: ca.Issue("client", cli)}
}

func (p *pki) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}}
}

// serverTunnel is a server tunnel config for p forwarding to target.
func (p *pki) serverTunnel(target string) configs.Tunnel {
	c := configs.DefaultTunnelSettings()
	c.Name, c.Mode = "server", configs.ModeServer
	c.Listen, c.Target = "127.0.0.1:0", target
	c.Cert, c.Key, c.CACert = p.server.CertFile, p.server.KeyFile, p.ca.CAFile
	c.AllowAll = true
	return c
}

// clientTunnel is a client tunnel config for p dialling target.
func (p *pki) clientTunnel(target string) configs.Tunnel {
	c := configs.DefaultTunnelSettings()
	c.Name, c.Mode = "client", configs.ModeClient
	c.Listen, c.Target = "127.0.0.1:0", target
	c.Cert, c.Key, c.CACert = p.client.CertFile, p.client.KeyFile, p.ca.CAFile
	return c
}

// start builds and serves a tunnel until the test ends.
func start(t testing.TB, cfg configs.Tunnel) *Tunnel {
	t.Helper()
	return startWith(t, cfg, Deps{})
}

// startWith is start with deps (a listener handed in, say); a listener in
// deps is closed if the tunnel cannot be built.
func startWith(t testing.TB, cfg configs.Tunnel, deps Deps) *Tunnel {
	t.Helper()
	tun, err := New(cfg, deps)
	if err != nil {
		if deps.Listener != nil {
			deps.Listener.Close()
		}
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- tun.Serve() }()
	t.Cleanup(func() {
		tun.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tun.Wait(ctx); err != nil {
			tun.CloseAll()
		}
		<-done
		tun.Close()
	})
	return tun
}

// clientThrough starts a client tunnel from cfg and reports whether a
// round trip through it succeeds (a refused server shows as an error).
func clientThrough(t *testing.T, cfg configs.Tunnel) error {
	t.Helper()
	return echoThrough(start(t, cfg).Addr().String())
}

// echoThrough dials addr (a client tunnel's listener) and checks one round
// trip of "hello".
func echoThrough(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	got, err := roundTrip(c, "hello")
	if err == nil && got != "hello" {
		err = errors.New("echo mismatch: " + got)
	}
	return err
}

// echo is a backend that echoes each connection and half-closes its write
// side when the peer half-closes.
type echo struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newEcho(t testing.TB, network, addr string) *echo {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				io.Copy(c, c)
				closeWrite(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for _, c := range e.conns {
			c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *echo) addr() string {
	if e.ln.Addr().Network() == "unix" {
		return "unix:" + e.ln.Addr().String()
	}
	return e.ln.Addr().String()
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("no CloseWrite")
}

// roundTrip writes msg on c and reads the same number of bytes back.
func roundTrip(c net.Conn, msg string) (string, error) {
	return testnet.RoundTrip(c, msg, 5*time.Second)
}

// dialTLS connects to a server tunnel and completes the handshake.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// openEcho dials a server tunnel with cfg, checks one round trip of msg and
// returns the connection, open until the test ends.
func openEcho(t *testing.T, addr string, cfg *tls.Config, msg string) *tls.Conn {
	t.Helper()
	c, err := dialTLS(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if got, err := roundTrip(c, msg); err != nil || got != msg {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	return c
}

// echoOK dials a server tunnel with cfg and checks one round trip. A refused
// client may complete its side of a TLS 1.3 handshake and see the failure
// only on first read, so both places count as refused.
func echoOK(addr string, cfg *tls.Config) error {
	c, err := dialTLS(addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	got, err := roundTrip(c, "ping")
	if err != nil {
		return err
	}
	if got != "ping" {
		return errors.New("echo mismatch: " + got)
	}
	return nil
}
