//go:build cgo

package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"
	"strings"
	"testing"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testhsm"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// SoftHSM settings of the tests' token.
const (
	hsmToken = testhsm.Label
	hsmPIN   = testhsm.PIN
)

// softHSM is a SoftHSM2 token of its own for one test, with no PKCS#11
// context left over from another test (SoftHSM reads its configuration when
// it is loaded).
type softHSM struct {
	*testhsm.Token
	module string
}

func newSoftHSM(t *testing.T) *softHSM {
	t.Helper()
	testhsm.Module(t) // skips before closing anything when SoftHSM is absent
	closeTokens()
	tok := testhsm.New(t)
	// Cleanups run last registered first: the tunnels a test starts after
	// this stop before their contexts close, and the contexts close before
	// SOFTHSM2_CONF is restored.
	t.Cleanup(closeTokens)
	return &softHSM{Token: tok, module: tok.Module}
}

// importKey puts the private key of l into the token and removes the key
// file so that only the token has it.
func (h *softHSM) importKey(t *testing.T, l *testpki.Leaf, label, id string) {
	t.Helper()
	h.ImportKey(t, l, label, id)
}

// use points cfg at the token for its private key.
func (h *softHSM) use(cfg *configs.Tunnel) {
	cfg.Key = ""
	cfg.PKCS11Module, cfg.PKCS11TokenLabel, cfg.PKCS11Pin = h.module, hsmToken, hsmPIN
}

func TestPKCS11Server(t *testing.T) {
	for _, kt := range []struct {
		name string
		typ  testpki.KeyType
		max  string
	}{
		{"ECDSA", testpki.ECDSA, ""},
		{"ECDSA TLS1.2", testpki.ECDSA, "TLS1.2"},
		{"RSA", testpki.RSA, ""},
		{"RSA TLS1.2", testpki.RSA, "TLS1.2"},
	} {
		t.Run(kt.name, func(t *testing.T) {
			hsm := newSoftHSM(t)
			p := newPKI(t)
			o := testpki.Localhost()
			o.Server, o.KeyType = true, kt.typ
			leaf := p.ca.Issue("hsm-server", o)
			hsm.importKey(t, leaf, "server", "01")

			backend := newEcho(t, "tcp", "127.0.0.1:0")
			cfg := p.serverTunnel(backend.addr())
			cfg.Cert, cfg.MaxTLSVersion = leaf.CertFile, kt.max
			hsm.use(&cfg)
			if ps := configs.Validate(&configs.Config{Tunnels: []configs.Tunnel{cfg}}); ps.HasErrors() {
				t.Fatalf("config does not validate: %v", ps)
			}
			tun := start(t, cfg)
			if k := tun.Certificate().PrivateKey; fmt.Sprintf("%T", k) == fmt.Sprintf("%T", leaf.Key) {
				t.Fatalf("private key is a %T: not from the token", k)
			}
			if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
				t.Fatalf("through the tunnel: %v", err)
			}

			// A new certificate for the same key in the token: the reload
			// picks it up, and the key is found again.
			next := p.ca.IssueFor("hsm-server", leaf.Cert.PublicKey, o)
			if err := tun.Reload(); err != nil {
				t.Fatalf("reload: %v", err)
			}
			c, err := dialTLS(tun.Addr().String(), p.clientTLS())
			if err != nil {
				t.Fatalf("after reload: %v", err)
			}
			defer c.Close()
			if s := c.ConnectionState().PeerCertificates[0].SerialNumber; s.Cmp(next.Cert.SerialNumber) != 0 {
				t.Fatalf("serial %v after reload, want %v", s, next.Cert.SerialNumber)
			}
			if got, err := roundTrip(c, "again"); err != nil || got != "again" {
				t.Fatalf("after reload: %q %v", got, err)
			}

			// A certificate for a key the token does not hold: the reload
			// fails and the tunnel keeps the current one.
			other := p.ca.Issue("other", o)
			copyFile(t, other.CertFile, cfg.Cert)
			err = tun.Reload()
			if err == nil || !strings.Contains(err.Error(), "no private key in the token matches") {
				t.Fatalf("reload with a foreign certificate: %v", err)
			}
			if s := tun.Certificate().Leaf.SerialNumber; s.Cmp(next.Cert.SerialNumber) != 0 {
				t.Fatal("a failed reload changed the certificate")
			}
			if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
				t.Fatalf("after a failed reload: %v", err)
			}
		})
	}
}

// TestPKCS11Client: a client tunnel's certificate with its key generated in
// the token, through a server tunnel that allows only that client.
func TestPKCS11Client(t *testing.T) {
	hsm := newSoftHSM(t)
	p := newPKI(t)
	tok, err := openToken(hsm.module, hsmToken, hsmPIN)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tok.ctx.GenerateECDSAKeyPairWithLabel([]byte{2}, []byte("client"), elliptic.P256())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := key.Public().(*ecdsa.PublicKey); !ok {
		t.Fatalf("token key has a %T public key", key.Public())
	}
	leaf := p.ca.IssueFor("hsm-client", key.Public(), testpki.Options{CN: "hsm-client", Client: true})

	backend := newEcho(t, "tcp", "127.0.0.1:0")
	scfg := p.serverTunnel(backend.addr())
	scfg.AllowAll, scfg.AllowCN = false, []string{"hsm-client"}
	srv := start(t, scfg)

	ccfg := p.clientTunnel("localhost:" + portOf(srv.Addr()))
	ccfg.Cert = leaf.CertFile
	hsm.use(&ccfg)
	if err := clientThrough(t, ccfg); err != nil {
		t.Fatalf("through the client tunnel: %v", err)
	}
}

// TestPKCS11SharedContext: tunnels naming the same module, token and PIN
// share one logged-in context.
func TestPKCS11SharedContext(t *testing.T) {
	hsm := newSoftHSM(t)
	p := newPKI(t)
	o := testpki.Localhost()
	o.Server = true
	a, b := p.ca.Issue("a", o), p.ca.Issue("b", o)
	hsm.importKey(t, a, "a", "0a")
	hsm.importKey(t, b, "b", "0b")
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	for _, l := range []*testpki.Leaf{a, b} {
		cfg := p.serverTunnel(backend.addr())
		cfg.Cert = l.CertFile
		hsm.use(&cfg)
		tun := start(t, cfg)
		if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
			t.Fatal(err)
		}
	}
	tokens.mu.Lock()
	n := len(tokens.m)
	tokens.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d PKCS#11 contexts for one token, want 1", n)
	}
}

func TestPKCS11Errors(t *testing.T) {
	hsm := newSoftHSM(t)
	p := newPKI(t)
	o := testpki.Localhost()
	o.Server = true
	leaf := p.ca.Issue("hsm-server", o)
	hsm.importKey(t, leaf, "server", "01")
	base := p.serverTunnel("127.0.0.1:1")
	base.Cert = leaf.CertFile
	hsm.use(&base)

	const wrongPIN = "97531"
	for _, c := range []struct {
		name string
		set  func(c *configs.Tunnel)
		want string
	}{
		{"wrong PIN", func(c *configs.Tunnel) { c.PKCS11Pin = wrongPIN }, "CKR_PIN_INCORRECT: wrong PIN"},
		{"unknown token", func(c *configs.Tunnel) { c.PKCS11TokenLabel = "nope" }, `token "nope"`},
		{"missing module", func(c *configs.Tunnel) { c.PKCS11Module = "/nonexistent/ghostunnel-test/none.so" }, "none.so"},
		{"no PIN", func(c *configs.Tunnel) { c.PKCS11Pin = "" }, "no PIN was given"},
		{"key not in token", func(c *configs.Tunnel) { c.Cert = p.server.CertFile }, "no private key in the token matches"},
		{"no certificate in file", func(c *configs.Tunnel) { c.Cert = p.server.KeyFile }, "no PEM certificates found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.set(&cfg)
			tun, err := New(cfg, Deps{})
			if err == nil {
				tun.Close()
				t.Fatal("New succeeded")
			}
			t.Logf("New: %v", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			// Paths may hold any digits; the rest of the message no PIN.
			msg := strings.ReplaceAll(err.Error(), cfg.Cert, "CERT")
			for _, pin := range []string{wrongPIN, hsmPIN} {
				if strings.Contains(msg, pin) {
					t.Errorf("error %q shows a PIN", err)
				}
			}
		})
	}

	// After a wrong PIN the right one still works: failures are not cached.
	tun, err := New(base, Deps{})
	if err != nil {
		t.Fatalf("right PIN after a wrong one: %v", err)
	}
	tun.Close()
}
