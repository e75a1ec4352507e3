//go:build !nospiffe

package tunnel

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testspiffe"
)

func spiffeServer(addr, target string, allow ...string) configs.Tunnel {
	c := configs.DefaultTunnelSettings()
	c.Name, c.Mode = "spiffe-server", configs.ModeServer
	c.Listen, c.Target = "127.0.0.1:0", target
	c.UseWorkloadAPI, c.UseWorkloadAPIAddr = true, addr
	c.UseWorkloadAPITimeout = configs.Duration(10 * time.Second)
	c.AllowURI = allow
	return c
}

func spiffeClient(addr, target string, verify ...string) configs.Tunnel {
	c := configs.DefaultTunnelSettings()
	c.Name, c.Mode = "spiffe-client", configs.ModeClient
	c.Listen, c.Target = "127.0.0.1:0", target
	c.UseWorkloadAPI, c.UseWorkloadAPIAddr = true, addr
	c.UseWorkloadAPITimeout = configs.Duration(10 * time.Second)
	c.VerifyURI = verify
	return c
}

func dialPlain(t *testing.T, tun *Tunnel) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", tun.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitSPIFFE(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSPIFFEWorkloadAPIEchoAndRotation(t *testing.T) {
	p := testspiffe.NewPKI(t)
	srvLeaf, srvResp := p.Issue(t, "server", "spiffe://example.org/server", time.Time{})
	cliLeaf, cliResp := p.Issue(t, "client", "spiffe://example.org/client", time.Time{})
	srvAgent := testspiffe.Start(t, srvResp)
	cliAgent := testspiffe.Start(t, cliResp)
	backend := newEcho(t, "tcp", "127.0.0.1:0")

	server := start(t, spiffeServer(srvAgent.Addr, backend.addr(), "spiffe://example.org/*"))
	client := start(t, spiffeClient(cliAgent.Addr, server.Addr().String(), "spiffe://example.org/server"))

	if c := server.Certificate(); c == nil || c.Leaf.SerialNumber.Cmp(srvLeaf.Cert.SerialNumber) != 0 {
		t.Fatalf("server Certificate() is not the SVID")
	}
	if got := server.m.certNotAfter.Value(); got != float64(srvLeaf.Cert.NotAfter.Unix()) {
		t.Errorf("cert_not_after = %v, want %v", got, srvLeaf.Cert.NotAfter.Unix())
	}

	c1 := dialPlain(t, client)
	if got, err := roundTrip(c1, "hello"); err != nil || got != "hello" {
		t.Fatalf("echo through the SPIFFE tunnels: %q, %v", got, err)
	}

	// A direct mTLS client with the client SVID sees the server SVID,
	// verified against the bundle (no hostname involved).
	serial := func() string {
		t.Helper()
		cfg := &tls.Config{RootCAs: p.CA.Pool(), InsecureSkipVerify: true,
			Certificates: []tls.Certificate{cliLeaf.TLS()}}
		c, err := dialTLS(server.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("direct dial: %v", err)
		}
		defer c.Close()
		if got, err := roundTrip(c, "x"); err != nil || got != "x" {
			t.Fatalf("direct echo: %q, %v", got, err)
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(); got != srvLeaf.Cert.SerialNumber.String() {
		t.Fatalf("server serial %s, want %s", got, srvLeaf.Cert.SerialNumber)
	}

	// Rotate the server SVID mid-connection.
	newAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	newLeaf, newResp := p.Issue(t, "server2", "spiffe://example.org/server", newAfter)
	srvAgent.Push(newResp)
	waitSPIFFE(t, "the rotated SVID", func() bool {
		c := server.Certificate()
		return c != nil && c.Leaf.SerialNumber.Cmp(newLeaf.Cert.SerialNumber) == 0
	})
	waitSPIFFE(t, "cert_not_after of the rotated SVID", func() bool {
		return server.m.certNotAfter.Value() == float64(newAfter.Unix())
	})
	if got, err := roundTrip(c1, "still there"); err != nil || got != "still there" {
		t.Fatalf("open connection after rotation: %q, %v", got, err)
	}
	if got := serial(); got != newLeaf.Cert.SerialNumber.String() {
		t.Fatalf("new connection: server serial %s, want the rotated %s", got, newLeaf.Cert.SerialNumber)
	}
	c2 := dialPlain(t, client)
	if got, err := roundTrip(c2, "again"); err != nil || got != "again" {
		t.Fatalf("new connection through the tunnels after rotation: %q, %v", got, err)
	}

	// The agent moves the server to another trust domain CA: the client
	// verified (and remembered) under the old bundle is refused now.
	other := testspiffe.NewPKI(t)
	movedLeaf, movedResp := other.Issue(t, "server3", "spiffe://example.org/server", time.Time{})
	srvAgent.Push(movedResp)
	waitSPIFFE(t, "the SVID from the other CA", func() bool {
		c := server.Certificate()
		return c != nil && c.Leaf.SerialNumber.Cmp(movedLeaf.Cert.SerialNumber) == 0
	})
	cfg := &tls.Config{RootCAs: other.CA.Pool(), InsecureSkipVerify: true,
		Certificates: []tls.Certificate{cliLeaf.TLS()}}
	if err := echoOK(server.Addr().String(), cfg); err == nil {
		t.Fatal("a client of the old bundle still got through after the bundle changed")
	}
}

func TestSPIFFEWorkloadAPIWrongIDRefused(t *testing.T) {
	p := testspiffe.NewPKI(t)
	_, srvResp := p.Issue(t, "server", "spiffe://example.org/server", time.Time{})
	_, cliResp := p.Issue(t, "client", "spiffe://example.org/client", time.Time{})
	srvAgent := testspiffe.Start(t, srvResp)
	cliAgent := testspiffe.Start(t, cliResp)
	backend := newEcho(t, "tcp", "127.0.0.1:0")

	anyServer := start(t, spiffeServer(srvAgent.Addr, backend.addr(), "spiffe://example.org/*"))
	right := start(t, spiffeClient(cliAgent.Addr, anyServer.Addr().String(), "spiffe://example.org/server"))
	if got, err := roundTrip(dialPlain(t, right), "ping"); err != nil || got != "ping" {
		t.Fatalf("the right IDs: %q, %v", got, err)
	}
	// The client pins another server ID: refused by the client.
	wrongServer := start(t, spiffeClient(cliAgent.Addr, anyServer.Addr().String(), "spiffe://example.org/db"))
	if got, err := roundTrip(dialPlain(t, wrongServer), "ping"); err == nil {
		t.Fatalf("client accepted a server with the wrong SPIFFE ID (echo %q)", got)
	}

	server := start(t, spiffeServer(srvAgent.Addr, backend.addr(), "spiffe://example.org/web"))
	// The server allows only /web: the /client SVID is refused.
	client := start(t, spiffeClient(cliAgent.Addr, server.Addr().String(), "spiffe://example.org/server"))
	if got, err := roundTrip(dialPlain(t, client), "ping"); err == nil {
		t.Fatalf("server accepted a client outside allow-uri (echo %q)", got)
	}
	// A certificate with the right ID from outside the bundle is refused.
	other := testpki.NewCA(t.TempDir(), "other")
	forged := other.Issue("forged", testpki.Options{URIs: []string{"spiffe://example.org/web"}})
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{forged.TLS()}}
	if err := echoOK(server.Addr().String(), cfg); err == nil {
		t.Fatal("server accepted a client certificate not signed by the bundle")
	}
}

func TestSPIFFEWorkloadAPISharedSource(t *testing.T) {
	p := testspiffe.NewPKI(t)
	_, srvResp := p.Issue(t, "server", "spiffe://example.org/server", time.Time{})
	cliLeaf, _ := p.Issue(t, "client", "spiffe://example.org/client", time.Time{})
	agent := testspiffe.Start(t, srvResp)
	backend := newEcho(t, "tcp", "127.0.0.1:0")

	a, err := New(spiffeServer(agent.Addr, backend.addr(), "spiffe://example.org/client"), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cfgB := spiffeServer(agent.Addr, backend.addr(), "spiffe://example.org/client")
	cfgB.Name = "spiffe-server-b"
	b := start(t, cfgB)
	if n := agent.Fetches.Load(); n != 1 {
		t.Fatalf("%d FetchX509SVID streams for two tunnels on one socket, want 1", n)
	}
	workloadSources.mu.Lock()
	src := workloadSources.m[agent.Addr]
	refs := 0
	if src != nil {
		refs = src.refs
	}
	workloadSources.mu.Unlock()
	if refs != 2 {
		t.Fatalf("shared source refs = %d, want 2", refs)
	}
	a.Close()
	a.Close() // idempotent
	cfg := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cliLeaf.TLS()}}
	if err := echoOK(b.Addr().String(), cfg); err != nil {
		t.Fatalf("the other tunnel after the first closed: %v", err)
	}
	b.Close()
	workloadSources.mu.Lock()
	_, left := workloadSources.m[agent.Addr]
	workloadSources.mu.Unlock()
	if left {
		t.Fatal("source still registered after its last tunnel closed")
	}
}

func TestSPIFFEWorkloadAPITimeout(t *testing.T) {
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := spiffeServer("unix://"+filepath.Join(dir, "none.sock"), "127.0.0.1:1", "spiffe://example.org/*")
	cfg.UseWorkloadAPITimeout = configs.Duration(300 * time.Millisecond)
	if _, err := New(cfg, Deps{}); err == nil {
		t.Fatal("New succeeded without a Workload API")
	}
	workloadSources.mu.Lock()
	n := len(workloadSources.m)
	workloadSources.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sources left registered after a failed New", n)
	}
}

// TestSPIFFEWorkloadAPIDeadWatchReplaced: a reload gives a tunnel whose
// watch has ended for good a fresh one, with the agent's current SVID,
// instead of keeping the last update for the life of the tunnel.
func TestSPIFFEWorkloadAPIDeadWatchReplaced(t *testing.T) {
	p := testspiffe.NewPKI(t)
	_, srvResp := p.Issue(t, "server", "spiffe://example.org/server", time.Time{})
	agent := testspiffe.Start(t, srvResp)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := spiffeServer(agent.Addr, backend.addr(), "spiffe://example.org/*")
	tun := start(t, cfg)

	tun.wl.mu.Lock()
	dead := tun.wl.held[agent.Addr]
	tun.wl.mu.Unlock()
	dead.cancel() // as when the agent refuses the watch: it ends for good
	select {
	case <-dead.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end")
	}
	newLeaf, newResp := p.Issue(t, "server2", "spiffe://example.org/server", time.Time{})
	agent.Push(newResp) // not seen: nothing watches

	if err := tun.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	waitSPIFFE(t, "the agent's current SVID after the reload", func() bool {
		c := tun.Certificate()
		return c != nil && c.Leaf.SerialNumber.Cmp(newLeaf.Cert.SerialNumber) == 0
	})
	if n := agent.Fetches.Load(); n != 2 {
		t.Errorf("%d FetchX509SVID streams, want 2 (the first and its replacement)", n)
	}
}

// TestSPIFFEWorkloadAPITimeoutZero: use-workload-api-timeout 0 waits for
// the first SVID however long it takes (upstream's "0 waits indefinitely"),
// and still gives up when the watch ends for good.
func TestSPIFFEWorkloadAPITimeoutZero(t *testing.T) {
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := "unix://" + filepath.Join(dir, "none.sock")
	got := make(chan error, 1)
	go func() {
		s, err := acquireWorkloadSource(addr, 0)
		if s != nil {
			s.release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("returned at once with no agent and no timeout: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	workloadSources.mu.Lock()
	s := workloadSources.m[addr]
	workloadSources.mu.Unlock()
	if s == nil {
		t.Fatal("no watch registered")
	}
	s.cancel() // the watch ends for good
	select {
	case err := <-got:
		if err == nil || strings.Contains(err.Error(), "within") {
			t.Fatalf("after the watch ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the watch ended")
	}
}
