package tunnel

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// reauthorizing starts a server tunnel that admits the CNs client and
// other, with reauthorize on.
func reauthorizing(t *testing.T) (*pki, *echo, configs.Tunnel, *Tunnel) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.AllowAll = false
	cfg.AllowCN = []string{"client", "other"}
	cfg.Reauthorize = true
	return p, backend, cfg, start(t, cfg)
}

// TestReauthorize: with reauthorize on, an allow-list change closes the
// open connections of peers it no longer admits and leaves the others.
func TestReauthorize(t *testing.T) {
	p, backend, cfg, tun := reauthorizing(t)

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

// TestReauthorizeHandshakeInFlight: a connection whose handshake started
// under the old rules and finished after a reauthorizing reload committed
// is checked against the new rules too (the reload's pass over the open
// connections ran before it was one).
func TestReauthorizeHandshakeInFlight(t *testing.T) {
	p, _, cfg, tun := reauthorizing(t)
	other := p.ca.Issue("other", testpki.Options{CN: "other", Client: true}).TLS()

	// dialHeld starts a handshake with cert and holds it, after the server
	// has asked for the client certificate, until release is closed.
	dialHeld := func(cert tls.Certificate) (held chan struct{}, release chan struct{}, done chan *tls.Conn) {
		held, release, done = make(chan struct{}), make(chan struct{}), make(chan *tls.Conn, 1)
		oc := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				close(held)
				<-release
				return &cert, nil
			}}
		go func() {
			c, err := dialTLS(tun.Addr().String(), oc)
			if err != nil {
				t.Errorf("handshake: %v", err)
			}
			done <- c
		}()
		return held, release, done
	}
	heldOther, releaseOther, doneOther := dialHeld(other)
	heldClient, releaseClient, doneClient := dialHeld(p.client.TLS())
	<-heldOther
	<-heldClient

	next := cfg
	next.AllowCN = []string{"client"}
	if err := tun.Apply(next); err != nil {
		t.Fatal(err)
	}
	close(releaseOther)
	close(releaseClient)

	refused := <-doneOther
	if refused == nil {
		t.FailNow()
	}
	defer refused.Close()
	refused.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := roundTrip(refused, "after the reload"); err == nil {
		t.Fatalf("a peer the new rules refuse got through: %q", got)
	}
	if v := tun.m.reauthClosed.Value(); v != 1 {
		t.Errorf("reauthorize closed %v connections, want 1", v)
	}

	admitted := <-doneClient
	if admitted == nil {
		t.FailNow()
	}
	defer admitted.Close()
	if got, err := roundTrip(admitted, "still admitted"); err != nil || got != "still admitted" {
		t.Fatalf("a peer the new rules admit: %q %v", got, err)
	}
}
