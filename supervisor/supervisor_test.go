package supervisor

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// fixture is a PKI and backends for fleet tests.
type fixture struct {
	t      *testing.T
	dir    string
	ca     *testpki.CA
	server *testpki.Leaf
	client *testpki.Leaf
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	ca := testpki.NewCA(dir, "ca")
	o := testpki.Localhost()
	o.Server = true
	return &fixture{t: t, dir: dir, ca: ca, server: ca.Issue("server", o),
		client: ca.Issue("client", testpki.Options{CN: "client", Client: true})}
}

// clientTLS is a TLS client config presenting cert (the fixture's client
// when nil).
func (f *fixture) clientTLS(cert *testpki.Leaf) *tls.Config {
	if cert == nil {
		cert = f.client
	}
	return &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{cert.TLS()}}
}

// write writes a fleet file and returns its path.
func (f *fixture) write(name, body string) string {
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p+".tmp", []byte(body), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// backend is an echo server that counts accepted connections.
type backend struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newBackend(t testing.TB) *backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.accepted++
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted
}

// running starts a supervisor for the file at path and stops it at the end.
func running(t *testing.T, path string) *Supervisor {
	t.Helper()
	s, _ := runSupervisor(t, path)
	return s
}

// runSupervisor is running that also says when Run has returned.
func runSupervisor(t *testing.T, path string) (*Supervisor, <-chan struct{}) {
	t.Helper()
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		s.Run(ctx, Options{})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	return s, exited
}

func echo(c net.Conn, msg string) error { return testnet.Echo(c, msg, 5*time.Second) }

func echoTLS(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, "ping")
}

func echoPlain(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, "ping")
}

func serverTunnel(name, listen, target string, f *fixture, extra string) string {
	return fmt.Sprintf(`  - name: %s
    mode: server
    listen: %s
    target: %s
    cert: %s
    key: %s
%s`, name, listen, target, f.server.CertFile, f.server.KeyFile, extra)
}

func TestFleetThreeTunnels(t *testing.T) {
	f := newFixture(t)
	b1, b2 := newBackend(t), newBackend(t)
	s1, s2, c1 := freePort(t), freePort(t), freePort(t)
	path := f.write("fleet.yaml", fmt.Sprintf(`defaults:
  cacert: %s
tunnels:
%s%s  - name: c1
    mode: client
    listen: %s
    target: localhost:%s
    cert: %s
    key: %s
`, f.ca.CAFile,
		serverTunnel("s1", s1, b1.addr(), f, "    allow-cn: [client]\n"),
		serverTunnel("s2", s2, b2.addr(), f, "    allow-all: true\n"),
		c1, strings.Split(s1, ":")[1], f.client.CertFile, f.client.KeyFile))
	running(t, path)
	if err := echoTLS(s1, f.clientTLS(nil)); err != nil {
		t.Fatalf("s1: %v", err)
	}
	if err := echoTLS(s2, f.clientTLS(nil)); err != nil {
		t.Fatalf("s2: %v", err)
	}
	if err := echoPlain(c1); err != nil {
		t.Fatalf("c1 -> s1: %v", err)
	}
	if b1.count() != 2 || b2.count() != 1 {
		t.Fatalf("backend connections: b1 %d (want 2), b2 %d (want 1)", b1.count(), b2.count())
	}
}

func TestStartupPortConflictNamesTunnel(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	first := freePort(t)
	path := f.write("fleet.yaml", fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n%s%s",
		f.ca.CAFile, serverTunnel("first", first, b.addr(), f, ""),
		serverTunnel("second", taken.Addr().String(), b.addr(), f, "")))
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), `tunnel "second"`) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("want an error naming tunnel second and the port conflict, got %v", err)
	}
	// All or nothing: the first tunnel's listener was closed again.
	ln, err := net.Listen("tcp", first)
	if err != nil {
		t.Fatalf("first tunnel's port still held after a failed start: %v", err)
	}
	ln.Close()
}

// TestReloadOneBrokenCertificate: SIGHUP with one tunnel's certificate
// broken leaves that tunnel on its old certificate; the others reload.
func TestReloadOneBrokenCertificate(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	a, z := freePort(t), freePort(t)
	certA, keyA := filepath.Join(f.dir, "a.crt"), filepath.Join(f.dir, "a.key")
	certZ, keyZ := filepath.Join(f.dir, "z.crt"), filepath.Join(f.dir, "z.key")
	for _, p := range [][2]string{{f.server.CertFile, certA}, {f.server.KeyFile, keyA}, {f.server.CertFile, certZ}, {f.server.KeyFile, keyZ}} {
		copyFile(t, p[0], p[1])
	}
	body := fmt.Sprintf(`defaults:
  cacert: %s
  allow-all: true
tunnels:
  - {name: a, mode: server, listen: "%s", target: "%s", cert: %s, key: %s}
  - {name: z, mode: server, listen: "%s", target: "%s", cert: %s, key: %s}
`, f.ca.CAFile, a, b.addr(), certA, keyA, z, b.addr(), certZ, keyZ)
	s := running(t, f.write("fleet.yaml", body))

	o := testpki.Localhost()
	o.Server = true
	next := f.ca.Issue("next", o)
	os.WriteFile(certA, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644)
	copyFile(t, next.CertFile, certZ)
	copyFile(t, next.KeyFile, keyZ)
	err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), `tunnel "a"`) {
		t.Fatalf("want the reload error to name tunnel a, got %v", err)
	}
	serial := func(addr string) string {
		c, err := tls.Dial("tcp", addr, f.clientTLS(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(a); got != f.server.Cert.SerialNumber.String() {
		t.Fatalf("tunnel a serves %s after a broken reload, want its old certificate", got)
	}
	if got := serial(z); got != next.Cert.SerialNumber.String() {
		t.Fatalf("tunnel z serves %s, want the reloaded %s", got, next.Cert.SerialNumber)
	}
	if err := echoTLS(a, f.clientTLS(nil)); err != nil {
		t.Fatalf("tunnel a broken: %v", err)
	}
	if v := s.Tunnel("a").Metrics().ReloadFailures(); v != 1 {
		t.Fatalf("tunnel a reload failures = %v, want 1", v)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}
