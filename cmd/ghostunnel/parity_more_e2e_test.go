package main

// Upstream-parity features from the built binary: SPIFFE Workload API,
// PKCS#11 (SoftHSM), --proxy, and --metrics-graphite. Each test fails if the
// feature stops working in the real process.

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testhsm"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testproxy"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testspiffe"
)

// parityPort is the port of a host:port.
func parityPort(t testing.TB, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// parityTLSEcho dials addr with cfg, round-trips msg, and returns the
// connection state.
func parityTLSEcho(t testing.TB, addr string, cfg *tls.Config, msg string) tls.ConnectionState {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer c.Close()
	roundTripE2E(t, c, msg)
	return c.ConnectionState()
}

// parityStop ends p with SIGTERM and checks it exits 0.
func parityStop(t testing.TB, p *proc) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, p.out.String())
	}
}

// TestParitySPIFFEWorkloadAPIFromBinary: a server and a client tunnel that
// take their SVIDs and bundles from the Workload API carry data from the
// client to the backend, and each checks the other's SPIFFE ID.
func TestParitySPIFFEWorkloadAPIFromBinary(t *testing.T) {
	pki := testspiffe.NewPKI(t)
	srvLeaf, srvResp := pki.Issue(t, "server", "spiffe://example.org/server", time.Time{})
	cliLeaf, cliResp := pki.Issue(t, "client", "spiffe://example.org/client", time.Time{})
	srvAgent := testspiffe.Start(t, srvResp)
	cliAgent := testspiffe.Start(t, cliResp)
	backend := echoServer(t)
	srvAddr, cliAddr := freeAddr(t), freeAddr(t)

	srv := startProc(t, nil, "server", "--listen", srvAddr, "--target", backend,
		"--use-workload-api-addr", srvAgent.Addr, "--allow-uri", "spiffe://example.org/client")
	cli := startProc(t, nil, "client", "--listen", cliAddr, "--target", srvAddr,
		"--use-workload-api-addr", cliAgent.Addr, "--verify-uri", "spiffe://example.org/server")
	waitListening(t, srvAddr)
	waitListening(t, cliAddr)
	echoThrough(t, cliAddr, "hello over SPIFFE")
	if srvAgent.Fetches.Load() < 1 || cliAgent.Fetches.Load() < 1 {
		t.Fatalf("Workload API streams: server %d, client %d, want both >= 1",
			srvAgent.Fetches.Load(), cliAgent.Fetches.Load())
	}

	// The server presents the SVID from its agent, verified against the
	// bundle, and admits the client SVID.
	cfg := &tls.Config{RootCAs: pki.CA.Pool(), InsecureSkipVerify: true,
		Certificates: []tls.Certificate{cliLeaf.TLS()}}
	st := parityTLSEcho(t, srvAddr, cfg, "direct")
	if got := st.PeerCertificates[0].SerialNumber; got.Cmp(srvLeaf.Cert.SerialNumber) != 0 {
		t.Fatalf("server presents serial %v, want the SVID's %v", got, srvLeaf.Cert.SerialNumber)
	}

	// An SVID outside --allow-uri is refused.
	other, _ := pki.Issue(t, "web", "spiffe://example.org/web", time.Time{})
	if err := parityTryTLS(srvAddr, &tls.Config{InsecureSkipVerify: true,
		Certificates: []tls.Certificate{other.TLS()}}); err == nil {
		t.Fatal("server admitted spiffe://example.org/web with --allow-uri spiffe://example.org/client")
	}

	// A rotation pushed by the agent reaches new handshakes.
	next, nextResp := pki.Issue(t, "server2", "spiffe://example.org/server", time.Now().Add(48*time.Hour))
	srvAgent.Push(nextResp)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := parityTLSEcho(t, srvAddr, cfg, "rotated?")
		if st.PeerCertificates[0].SerialNumber.Cmp(next.Cert.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server still presents the old SVID 10s after the agent rotated it")
		}
		time.Sleep(50 * time.Millisecond)
	}
	echoThrough(t, cliAddr, "after rotation")
	parityStop(t, cli)
	parityStop(t, srv)
}

// TestParitySPIFFEWrongServerIDFromBinary: a client whose --verify-uri does
// not match the server's SVID refuses it, so nothing reaches the backend.
func TestParitySPIFFEWrongServerIDFromBinary(t *testing.T) {
	pki := testspiffe.NewPKI(t)
	_, srvResp := pki.Issue(t, "server", "spiffe://example.org/server", time.Time{})
	_, cliResp := pki.Issue(t, "client", "spiffe://example.org/client", time.Time{})
	srvAgent := testspiffe.Start(t, srvResp)
	cliAgent := testspiffe.Start(t, cliResp)
	backend := echoServer(t)
	srvAddr, cliAddr := freeAddr(t), freeAddr(t)
	startProc(t, nil, "server", "--listen", srvAddr, "--target", backend,
		"--use-workload-api-addr", srvAgent.Addr, "--allow-uri", "spiffe://example.org/client")
	cli := startProc(t, nil, "client", "--listen", cliAddr, "--target", srvAddr,
		"--use-workload-api-addr", cliAgent.Addr, "--verify-uri", "spiffe://example.org/db")
	waitListening(t, srvAddr)
	waitListening(t, cliAddr)
	c, err := net.DialTimeout("tcp", cliAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	if n, err := c.Read(make([]byte, 1)); err == nil && n == 1 {
		t.Fatal("client with --verify-uri spiffe://example.org/db reached the backend of spiffe://example.org/server")
	}
	// Refused by the client's --verify-uri, not for some other reason.
	cli.waitLog("access denied by access control rules", 5*time.Second)
}

// parityTryTLS dials addr and round-trips a byte, returning the error.
func parityTryTLS(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

// TestParityPKCS11FromBinary: a server tunnel whose private key is only in
// a SoftHSM token serves TLS clients; landlock turns itself off for it.
func TestParityPKCS11FromBinary(t *testing.T) {
	hsm := testhsm.New(t) // skips without SoftHSM2
	p := newE2EPKI(t)
	o := testpki.Localhost()
	o.Server = true
	leaf := hsm.Issue(t, p.ca, "hsm-server", o, "server", "01")
	if _, err := os.Stat(leaf.KeyFile); !os.IsNotExist(err) {
		t.Fatalf("key file %s still there: %v", leaf.KeyFile, err)
	}
	backend := echoServer(t)
	addr := freeAddr(t)
	srv := startProc(t, []string{hsm.Env()}, "server", "--listen", addr, "--target", backend,
		"--cert", leaf.CertFile, "--pkcs11-module", hsm.Module, "--pkcs11-token-label", hsm.Label,
		"--pkcs11-pin", hsm.PIN, "--cacert", p.ca.CAFile, "--allow-cn", "client")
	waitListening(t, addr)
	srv.waitLog("landlock disabled: PKCS#11", 5*time.Second)
	cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}}
	for _, max := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c := cfg.Clone()
		c.MaxVersion = max
		st := parityTLSEcho(t, addr, c, "signed in the token")
		if got := st.PeerCertificates[0].SerialNumber; got.Cmp(leaf.Cert.SerialNumber) != 0 {
			t.Fatalf("server presents serial %v, want %v", got, leaf.Cert.SerialNumber)
		}
	}
	if strings.Contains(srv.out.String(), hsm.PIN) {
		t.Fatalf("the PIN is in the output:\n%s", srv.out.String())
	}
	parityStop(t, srv)
}

// TestParityProxyFromBinary: `ghostunnel client --proxy http://user:pass@...`
// reaches its server only through the proxy, and never logs the password.
func TestParityProxyFromBinary(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	px := testproxy.Start(t, testproxy.HTTP, "alice", "pr0xyPass")
	srvAddr, cliAddr := freeAddr(t), freeAddr(t)
	srv := startProc(t, nil, "server", "--listen", srvAddr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client")
	target := "localhost:" + parityPort(t, srvAddr)
	cli := startProc(t, nil, "client", "--listen", cliAddr, "--target", target,
		"--keystore", p.client.Combined, "--cacert", p.ca.CAFile,
		"--proxy", "http://alice:pr0xyPass@"+px.Addr)
	waitListening(t, srvAddr)
	waitListening(t, cliAddr)
	echoThrough(t, cliAddr, "through the proxy")
	if n := px.Opened(); n < 1 {
		t.Fatalf("the proxy carried %d connections, want >= 1", n)
	}
	for _, tg := range px.Targets() {
		if tg != target {
			t.Fatalf("proxy tunnel to %q, want %q", tg, target)
		}
	}
	before := px.Opened()
	echoThrough(t, cliAddr, "again")
	if px.Opened() <= before {
		t.Fatal("a second connection did not go through the proxy")
	}

	// A wrong proxy password: the proxy refuses, nothing gets through.
	badAddr := freeAddr(t)
	bad := startProc(t, nil, "client", "--listen", badAddr, "--target", target,
		"--keystore", p.client.Combined, "--cacert", p.ca.CAFile,
		"--proxy", "http://alice:wr0ngPass@"+px.Addr)
	waitListening(t, badAddr)
	before = px.Opened()
	c, err := net.DialTimeout("tcp", badAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	if n, err := c.Read(make([]byte, 1)); err == nil && n == 1 {
		t.Fatal("a client with the wrong proxy password reached the backend")
	}
	c.Close()
	if px.Opened() != before {
		t.Fatal("the proxy opened a tunnel for the wrong password")
	}

	parityStop(t, bad)
	parityStop(t, cli)
	parityStop(t, srv)
	for _, out := range []string{cli.out.String(), bad.out.String(), srv.out.String()} {
		if strings.Contains(out, "pr0xyPass") || strings.Contains(out, "wr0ngPass") {
			t.Fatalf("a proxy password is in the output:\n%s", out)
		}
	}
}

// parityGraphite is a graphite plaintext receiver collecting lines.
type parityGraphite struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func parityGraphiteReceiver(t testing.TB) *parityGraphite {
	t.Helper()
	g := &parityGraphite{}
	g.addr = serveConns(t, func(c net.Conn) {
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			g.mu.Lock()
			g.lines = append(g.lines, sc.Text())
			g.mu.Unlock()
		}
	})
	return g
}

// waitLine waits for a line for metric whose value satisfies ok, and
// returns its value and timestamp fields.
func (g *parityGraphite) waitLine(t testing.TB, metric string, ok func(v int64) bool, d time.Duration) (int64, string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		g.mu.Lock()
		for _, l := range g.lines {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != metric {
				continue
			}
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil && ok(v) {
				g.mu.Unlock()
				return v, f[2]
			}
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			g.mu.Lock()
			defer g.mu.Unlock()
			t.Fatalf("no matching %s line after %v (%d lines received):\n%s", metric, d, len(g.lines), strings.Join(g.lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// latest is the value of the last line received for metric, or -1.
func (g *parityGraphite) latest(metric string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.lines) - 1; i >= 0; i-- {
		if f := strings.Fields(g.lines[i]); len(f) == 3 && f[0] == metric {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestParityGraphiteFromBinary: --metrics-graphite with --metrics-interval
// 100ms delivers ghostunnel.accept.total, counting the connections made.
func TestParityGraphiteFromBinary(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	g := parityGraphiteReceiver(t)
	addr := freeAddr(t)
	srv := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
		"--metrics-graphite", g.addr, "--metrics-interval", "100ms")
	waitListening(t, addr)
	const metric = "ghostunnel.accept.total"
	g.waitLine(t, metric, func(int64) bool { return true }, 10*time.Second)
	// Let the waitListening probe settle into a report, then count from
	// the latest value.
	time.Sleep(300 * time.Millisecond)
	base := g.latest(metric)
	cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}}
	for i := 0; i < 3; i++ {
		parityTLSEcho(t, addr, cfg, "counted")
	}
	_, ts := g.waitLine(t, metric, func(v int64) bool { return v >= base+3 }, 10*time.Second)
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Hour {
		t.Fatalf("graphite timestamp %q is not the current unix time", ts)
	}
	parityStop(t, srv)
}
