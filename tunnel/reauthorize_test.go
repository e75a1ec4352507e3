package tunnel

import (
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// TestReauthorize: with reauthorize on, an allow-list change closes the
// open connections of peers it no longer admits and leaves the others.
func TestReauthorize(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.AllowAll = false
	cfg.AllowCN = []string{"client", "other"}
	cfg.Reauthorize = true
	tun := start(t, cfg)

	other := p.ca.Issue("other", testpki.Options{CN: "other", Client: true})
	keep := openEcho(t, tun.Addr().String(), p.clientTLS(), "a")
	oc := p.clientTLS()
	oc.Certificates[0] = other.TLS()
	drop := openEcho(t, tun.Addr().String(), oc, "b")

	next := cfg
	next.AllowCN = []string{"client"}
	if err := tun.Apply(next); err != nil {
		t.Fatal(err)
	}
	drop.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := drop.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection of a peer the new rules refuse stayed open")
	}
	if got, err := roundTrip(keep, "still fine"); err != nil || got != "still fine" {
		t.Fatalf("admitted peer's connection: %q %v", got, err)
	}
	if v := tun.m.reauthClosed.Value(); v != 1 {
		t.Fatalf("reauthorize closed %v connections, want 1", v)
	}

	// Without reauthorize, open connections carry on.
	cfg2 := p.serverTunnel(backend.addr())
	cfg2.AllowAll = false
	cfg2.AllowCN = []string{"other"}
	tun2 := start(t, cfg2)
	c2, err := dialTLS(tun2.Addr().String(), oc)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	roundTrip(c2, "x")
	next2 := cfg2
	next2.AllowCN = []string{"client"}
	tun2.Apply(next2)
	if got, err := roundTrip(c2, "carry on"); err != nil || got != "carry on" {
		t.Fatalf("without reauthorize an open connection was disturbed: %q %v", got, err)
	}
}
