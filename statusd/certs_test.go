package statusd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// TestSNISelection checks which tunnel's certificate real TLS handshakes get
// for each kind of SNI, and that a swapped certificate is served at once.
func TestSNISelection(t *testing.T) {
	f := newFleet(t)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: f.source})
	addr, pool := s.Addr().String(), f.ca.Pool()
	serial := func(name string) string { return f.leaves[name].Cert.SerialNumber.String() }

	for _, tc := range []struct{ sni, want string }{
		{"alpha", "alpha"},
		{"beta", "beta"},
		{"gamma", "gamma"},
		{"GAMMA", "gamma"},
		{"alpha.example.com", "alpha"},
		{"x.beta.example.com", "beta"},
		{"Y.Beta.Example.Com.", "beta"},
		{"gamma.example.org", "gamma"},
		{"beta.example.com", "alpha"},     // the wildcard needs a label
		{"a.b.beta.example.com", "alpha"}, // and only one
		{"", "alpha"},                     // no SNI: default (first) tunnel
		{"unknown.example.net", "alpha"},
	} {
		if got := presented(t, addr, tc.sni, pool); got.SerialNumber.String() != serial(tc.want) {
			t.Errorf("SNI %q: got %s's certificate (%v), want %s's", tc.sni, got.Subject.CommonName, got.DNSNames, tc.want)
		}
	}

	// Swap beta's certificate: the next handshake gets the new one, by name
	// and by DNS name.
	newBeta := f.ca.Issue("beta2", testpki.Options{CN: "beta", DNS: []string{"*.beta.example.com"}, Server: true})
	c := newBeta.TLS()
	f.beta.cert.Store(&c)
	for _, sni := range []string{"beta", "x.beta.example.com"} {
		if got := presented(t, addr, sni, pool); !got.Equal(newBeta.Cert) {
			t.Errorf("SNI %q after swap: got serial %v, want %v", sni, got.SerialNumber, newBeta.Cert.SerialNumber)
		}
	}

	// Swap gamma's certificate for one with a different DNS name: by name
	// at once, by the new DNS name once re-indexed.
	newGamma := f.ca.Issue("gamma2", testpki.Options{CN: "gamma", DNS: []string{"new.example.org"}, Server: true})
	c2 := newGamma.TLS()
	f.gamma.cert.Store(&c2)
	if got := presented(t, addr, "gamma", pool); !got.Equal(newGamma.Cert) {
		t.Errorf("SNI gamma after swap: serial %v", got.SerialNumber)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !presented(t, addr, "new.example.org", pool).Equal(newGamma.Cert) {
		if time.Now().After(deadline) {
			t.Fatal("new DNS name never served")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := presented(t, addr, "gamma.example.org", pool); got.SerialNumber.String() != serial("alpha") {
		t.Errorf("old DNS name still served by gamma")
	}

	// A tunnel without a certificate is skipped.
	f.beta.cert.Store(nil)
	if got := presented(t, addr, "beta", pool); got.SerialNumber.String() != serial("alpha") {
		t.Errorf("SNI beta without a certificate: got %s", got.Subject.CommonName)
	}

	// A tunnel added to the set is found at once.
	delta := f.tunnel("delta", "server", testpki.Options{DNS: []string{"delta.example.com"}, Server: true})
	f.source.set(f.alpha, f.beta, f.gamma, delta)
	for _, sni := range []string{"delta", "delta.example.com"} {
		if got := presented(t, addr, sni, pool); got.SerialNumber.String() != serial("delta") {
			t.Errorf("SNI %q after adding delta: got %s", sni, got.Subject.CommonName)
		}
	}

	// Removing the default tunnel makes the next one the default.
	f.source.set(f.gamma, delta)
	if got := presented(t, addr, "", pool); !got.Equal(newGamma.Cert) {
		t.Errorf("no SNI after removing alpha: got %s", got.Subject.CommonName)
	}
}

// TestDefaultTunnel checks Config.DefaultTunnel, and the fallback when it
// has no certificate.
func TestDefaultTunnel(t *testing.T) {
	f := newFleet(t)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: f.source, DefaultTunnel: "gamma"})
	addr, pool := s.Addr().String(), f.ca.Pool()
	if got := presented(t, addr, "", pool); !got.Equal(f.leaves["gamma"].Cert) {
		t.Errorf("no SNI: got %s, want gamma", got.Subject.CommonName)
	}
	if got := presented(t, addr, "beta", pool); !got.Equal(f.leaves["beta"].Cert) {
		t.Errorf("SNI beta: got %s", got.Subject.CommonName)
	}
	f.gamma.cert.Store(nil)
	if got := presented(t, addr, "", pool); !got.Equal(f.leaves["alpha"].Cert) {
		t.Errorf("no SNI, default without certificate: got %s, want alpha", got.Subject.CommonName)
	}
}

// TestHTTPSOverSNI fetches /_status over HTTPS with a host name, verified
// against the CA.
func TestHTTPSOverSNI(t *testing.T) {
	f := newFleet(t)
	s := serve(t, Config{Addr: "https://127.0.0.1:0", Source: f.source})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool(), ServerName: "x.beta.example.com", MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + s.Addr().String() + "/_status/beta")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.TLS.PeerCertificates[0].Equal(f.leaves["beta"].Cert) {
		t.Errorf("status %d, certificate %s", resp.StatusCode, resp.TLS.PeerCertificates[0].Subject)
	}
	if resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", resp.TLS.Version)
	}

	// TLS 1.1 is refused.
	old := &tls.Config{RootCAs: f.ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, ServerName: "localhost"}
	if c, err := tls.Dial("tcp", s.Addr().String(), old); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
}

// benchFleet makes n fake tunnels with distinct certificates and DNS names.
func benchFleet(b *testing.B, n int) *fakeSource {
	ca := testpki.NewCA(b.TempDir(), "ca")
	ts := make([]*fakeTunnel, n)
	for i := range ts {
		name := fmt.Sprintf("t%d", i)
		leaf := ca.Issue(name, testpki.Options{DNS: []string{name + ".example.com", "*." + name + ".example.net"}, Server: true})
		c := leaf.TLS()
		ts[i] = newFakeTunnel(name, "server", &c)
	}
	return newFakeSource(ts...)
}

// BenchmarkGetCertificate measures certificate selection per handshake for
// fleets of 10 to 1,000 tunnels: the cost must not grow with the fleet.
func BenchmarkGetCertificate(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		src := benchFleet(b, n)
		x := newCertIndex(src, "")
		last := fmt.Sprintf("t%d", n-1)
		for _, tc := range []struct{ kind, sni string }{
			{"name", last},
			{"dns", last + ".example.com"},
			{"wildcard", "a." + last + ".example.net"},
			{"default", ""},
			{"unknown", "nope.example.org"},
		} {
			hello := &tls.ClientHelloInfo{ServerName: tc.sni}
			if _, err := x.getCertificate(hello); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("tunnels=%d/%s", n, tc.kind), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := x.getCertificate(hello); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestGetCertificateFlat checks, without timing, that selection does no
// per-tunnel work: Certificate is called on at most the few candidates.
func TestGetCertificateFlat(t *testing.T) {
	ca := testpki.NewCA(t.TempDir(), "ca")
	var ts []*fakeTunnel
	var calls []*countingTunnel
	for i := range 200 {
		name := fmt.Sprintf("t%d", i)
		leaf := ca.Issue(name, testpki.Options{DNS: []string{name + ".example.com"}, Server: true})
		c := leaf.TLS()
		ts = append(ts, newFakeTunnel(name, "server", &c))
	}
	src := &fakeSource{}
	for _, ft := range ts {
		ct := &countingTunnel{fakeTunnel: ft}
		calls = append(calls, ct)
		src.tunnels = append(src.tunnels, ct)
	}
	x := newCertIndex(src, "")
	hello := &tls.ClientHelloInfo{ServerName: "t150.example.com"}
	if _, err := x.getCertificate(hello); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		c.n = 0
	}
	c, err := x.getCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	if leaf.DNSNames[0] != "t150.example.com" {
		t.Errorf("got %v", leaf.DNSNames)
	}
	total := 0
	for _, c := range calls {
		total += c.n
	}
	if total > 2 {
		t.Errorf("one handshake called Certificate %d times", total)
	}
}

// countingTunnel counts Certificate calls (single goroutine only).
type countingTunnel struct {
	*fakeTunnel
	n int
}

func (c *countingTunnel) Certificate() *tls.Certificate {
	c.n++
	return c.fakeTunnel.Certificate()
}
