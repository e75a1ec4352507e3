package tunnel

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// handshakeLog is a TLS echo server that records, per connection, whether
// the client's ClientHello arrived and how the handshake ended.
type handshakeLog struct {
	mu     sync.Mutex
	hellos int
	done   []tls.ConnectionState
}

func (h *handshakeLog) snapshot() (int, []tls.ConnectionState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hellos, append([]tls.ConnectionState(nil), h.done...)
}

// startTLSEcho serves TLS echo on 127.0.0.1 with p's server certificate,
// requiring p's client. ticketKeys, when set, gives the session ticket keys
// for each ClientHello (fresh keys make every ticket undecryptable); curves,
// when set, are the only key exchanges the server takes.
func startTLSEcho(t *testing.T, p *pki, ticketKeys func() [][32]byte, curves ...tls.CurveID) (*handshakeLog, *tls.Config, string) {
	t.Helper()
	h := &handshakeLog{}
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{p.server.TLS()},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        p.ca.Pool(),
		CurvePreferences: curves,
	}
	cfg.SetSessionTicketKeys([][32]byte{randomKey(t)})
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		h.mu.Lock()
		h.done = append(h.done, cs)
		h.mu.Unlock()
		return nil
	}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		h.mu.Lock()
		h.hellos++
		h.mu.Unlock()
		if ticketKeys == nil {
			return nil, nil
		}
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.SetSessionTicketKeys(ticketKeys())
		return c, nil
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, func(_ *connServer, c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, c)
	})
	return h, cfg, ln.Addr().String()
}

func randomKey(t *testing.T) [32]byte {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// throughClient makes one round trip through a client tunnel.
func throughClient(t *testing.T, cli *Tunnel) {
	t.Helper()
	if err := echoThrough(cli.Addr().String()); err != nil {
		t.Fatalf("round trip through the client tunnel: %v", err)
	}
}

// kex names how a server saw a handshake end: "full/GROUP" or
// "resumed/GROUP".
func kex(cs tls.ConnectionState) string {
	how := "full"
	if cs.DidResume {
		how = "resumed"
	}
	return how + "/" + cs.CurveID.String()
}

// TestClientResumesWithClassicalExchange: the first connection is a full
// handshake with the hybrid post-quantum exchange, the next ones resume
// with P-256 ECDHE, and the server still sees the client certificate.
func TestClientResumesWithClassicalExchange(t *testing.T) {
	p := newPKI(t)
	h, _, addr := startTLSEcho(t, p, nil)
	cli := start(t, p.clientTunnel(addr))
	for range 3 {
		throughClient(t, cli)
	}
	hellos, done := h.snapshot()
	want := []string{"full/X25519MLKEM768", "resumed/CurveP256", "resumed/CurveP256"}
	if hellos != 3 || len(done) != 3 {
		t.Fatalf("server saw %d ClientHellos and %d handshakes, want 3 and 3", hellos, len(done))
	}
	for i, cs := range done {
		if got := kex(cs); got != want[i] {
			t.Errorf("connection %d: %s, want %s", i+1, got, want[i])
		}
		if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != "client" {
			t.Errorf("connection %d: server did not see the client certificate", i+1)
		}
	}
}

// TestClientRetriesDeclinedResumption: when the server declines the ticket
// (its keys changed), the classical attempt is stopped and the connection
// made again with a full hybrid handshake; no connection is ever set up by
// the classical exchange alone. The next connection resumes on the hybrid
// config, which turns classical attempts back on.
func TestClientRetriesDeclinedResumption(t *testing.T) {
	p := newPKI(t)
	h, cfg, addr := startTLSEcho(t, p, nil)
	cli := start(t, p.clientTunnel(addr))
	throughClient(t, cli)
	cfg.SetSessionTicketKeys([][32]byte{randomKey(t)}) // a server restart, as tickets see it
	for range 3 {
		throughClient(t, cli)
	}
	hellos, done := h.snapshot()
	want := []string{"full/X25519MLKEM768", "full/X25519MLKEM768", "resumed/X25519MLKEM768", "resumed/CurveP256"}
	if hellos != 5 || len(done) != 4 {
		t.Fatalf("server saw %d ClientHellos and %d handshakes, want 5 (one declined attempt) and 4", hellos, len(done))
	}
	for i, cs := range done {
		if got := kex(cs); got != want[i] {
			t.Errorf("connection %d: %s, want %s", i+1, got, want[i])
		}
	}
}

// TestClientStopsResumingWithServerThatDeclines: a server that issues
// tickets but never takes them back costs one declined attempt, not one
// per connection.
func TestClientStopsResumingWithServerThatDeclines(t *testing.T) {
	p := newPKI(t)
	h, _, addr := startTLSEcho(t, p, func() [][32]byte { return [][32]byte{randomKey(t)} })
	cli := start(t, p.clientTunnel(addr))
	const n = 6
	for range n {
		throughClient(t, cli)
	}
	hellos, done := h.snapshot()
	if hellos != n+1 || len(done) != n {
		t.Fatalf("server saw %d ClientHellos and %d handshakes, want %d and %d", hellos, len(done), n+1, n)
	}
	for i, cs := range done {
		if got := kex(cs); got != "full/X25519MLKEM768" {
			t.Errorf("connection %d: %s, want a full hybrid handshake", i+1, got)
		}
	}
}

// TestClientTLS12ResumesAsBefore: with max-tls-version TLS1.2 there is no
// key exchange to save, so no resumption config is split off.
func TestClientTLS12ResumesAsBefore(t *testing.T) {
	p := newPKI(t)
	c := p.clientTunnel("127.0.0.1:1")
	c.MaxTLSVersion = "TLS1.2"
	tun := start(t, c)
	if g := tun.gen.Load(); g.client.resume != nil {
		t.Fatal("a TLS 1.2 client tunnel has a resumption config")
	}
	if g := start(t, p.clientTunnel("127.0.0.1:1")).gen.Load(); g.client.resume == nil {
		t.Fatal("a TLS 1.3 client tunnel has no resumption config")
	}
}

func TestChainCache(t *testing.T) {
	now := time.Now()
	leaf := &x509.Certificate{Raw: []byte("leaf"), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	ca := &x509.Certificate{Raw: []byte("ca"), NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(30 * time.Minute)}
	var c chainCache
	key := chainKey([]*x509.Certificate{leaf})
	if c.verified(key, now) {
		t.Fatal("empty cache says verified")
	}
	c.add(key, []*x509.Certificate{leaf, ca})
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{now, true},
		{now.Add(-time.Hour - time.Second), false}, // before the leaf's NotBefore
		{now.Add(31 * time.Minute), false},         // after the CA's NotAfter
	} {
		if got := c.verified(key, tc.at); got != tc.want {
			t.Errorf("verified at %v: %v, want %v", tc.at.Sub(now), got, tc.want)
		}
	}
	if other := chainKey([]*x509.Certificate{leaf, ca}); other == key || c.verified(other, now) {
		t.Fatal("a different presented chain shares the entry")
	}
	for i := range chainCacheSize + 10 {
		k := key
		k[0], k[1] = byte(i), byte(i>>8)
		c.add(k, []*x509.Certificate{leaf})
	}
	if len(c.m) > chainCacheSize {
		t.Fatalf("cache holds %d entries, bound is %d", len(c.m), chainCacheSize)
	}
}

// TestClientStopsResumingWithServerWithoutP256: a server that refuses the
// classical attempt with an alert (it has no P-256) costs one refused
// attempt; later connections resume on the hybrid config.
func TestClientStopsResumingWithServerWithoutP256(t *testing.T) {
	p := newPKI(t)
	h, _, addr := startTLSEcho(t, p, nil, tls.X25519MLKEM768, tls.X25519)
	cli := start(t, p.clientTunnel(addr))
	const n = 6
	for range n {
		throughClient(t, cli)
	}
	hellos, done := h.snapshot()
	if hellos != n+1 || len(done) != n {
		t.Fatalf("server saw %d ClientHellos and %d handshakes, want %d and %d", hellos, len(done), n+1, n)
	}
	// crypto/tls drops a session whose resumption failed, so the retry is
	// a full handshake; from then on the hybrid config resumes.
	for i, cs := range done {
		want := "resumed/X25519MLKEM768"
		if i < 2 {
			want = "full/X25519MLKEM768"
		}
		if got := kex(cs); got != want {
			t.Errorf("connection %d: %s, want %s", i+1, got, want)
		}
	}
}

// TestTicketKeysRotate: a server tunnel adds a session ticket key every
// rotation period and accepts tickets for ticketKeysKept periods: a
// ticket still resumes after a rotation, not once the last key that could
// open it is gone.
func TestTicketKeysRotate(t *testing.T) {
	old := ticketKeyRotation
	ticketKeyRotation = 100 * time.Millisecond
	t.Cleanup(func() { ticketKeyRotation = old })
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	srv := start(t, p.serverTunnel(backend.addr()))
	cfg := p.clientTLS()
	cfg.ClientSessionCache = &firstTicket{ClientSessionCache: tls.NewLRUClientSessionCache(1)}
	connect := func() bool {
		t.Helper()
		c, err := dialTLS(srv.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := roundTrip(c, "ping"); err != nil || got != "ping" {
			t.Fatalf("echo: %q %v", got, err)
		}
		return c.ConnectionState().DidResume
	}
	connect() // the ticket, under the first key
	first := srv.tickets.current()[0]
	for deadline := time.Now().Add(10 * time.Second); len(srv.tickets.current()) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no key rotation within 10 s")
		}
	}
	if !connect() {
		t.Fatal("no resumption one rotation after the ticket was issued")
	}
	for deadline := time.Now().Add(10 * time.Second); slices.Contains(srv.tickets.current(), first); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first key never aged out")
		}
	}
	if connect() {
		t.Fatalf("a ticket resumed after its key aged out (%d keys kept)", ticketKeysKept)
	}
}

// firstTicket is a session cache that keeps the first ticket it is given,
// whatever comes later.
type firstTicket struct {
	tls.ClientSessionCache
	mu  sync.Mutex
	set bool
}

func (c *firstTicket) Put(key string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.set && s != nil {
		c.ClientSessionCache.Put(key, s)
		c.set = true
	}
}

// TestTicketRotationDuringCommit: a rotation that lands while a reload
// commits reaches the generation put in use. (Commit hands the keys to the
// new generation; without a common lock a Commit that read the keys before
// the rotation installed the old set after it, for a whole period.)
func TestTicketRotationDuringCommit(t *testing.T) {
	field, ok := reflect.TypeFor[tls.Config]().FieldByName("sessionTicketKeys")
	if !ok || field.Type.Kind() != reflect.Slice {
		t.Skip("crypto/tls keeps its ticket keys elsewhere in this Go version")
	}
	inUse := func(tun *Tunnel) int {
		return reflect.ValueOf(tun.gen.Load().server).Elem().FieldByIndex(field.Index).Len()
	}
	old := ticketKeyRotation
	ticketKeyRotation = 10 * time.Millisecond
	t.Cleanup(func() { ticketKeyRotation = old })
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	for trial := range 30 {
		tun, err := New(cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		var prepared [2]*Prepared
		for i := range prepared {
			if prepared[i], err = tun.Prepare(cfg); err != nil {
				t.Fatal(err)
			}
		}
		served := make(chan error, 1)
		go func() { served <- tun.Serve() }()
		// Commit over and over until the first rotation has run.
		for i, deadline := 0, time.Now().Add(5*time.Second); len(tun.tickets.current()) == 1; i++ {
			if time.Now().After(deadline) {
				t.Fatal("no ticket key rotation within 5s")
			}
			tun.Commit(prepared[i%2])
		}
		tun.reloadMu.Lock() // the rotation has finished handing out its keys
		want, got := len(tun.tickets.current()), inUse(tun)
		tun.reloadMu.Unlock()
		tun.Close()
		<-served
		if got < want {
			t.Fatalf("trial %d: the generation in use has %d ticket keys, the tunnel %d", trial, got, want)
		}
	}
}
