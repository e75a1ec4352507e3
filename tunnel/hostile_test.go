package tunnel

// Hostile clients against an in-process server tunnel: every one must be
// refused during the handshake with a clear log line and a counted error,
// and none may reach the backend.

import (
	"crypto/tls"
	"fmt"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testhello"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// countingBackend accepts and counts connections, echoing them.
type countingBackend struct {
	ln       net.Listener
	accepted atomic.Int64
}

func newCountingBackend(t testing.TB) *countingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &countingBackend{ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return b
}

// logRecorder is a go-kit logger keeping every line as "k=v k=v".
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Log(kv ...any) error {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%v=%v ", kv[i], kv[i+1])
	}
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// waitLine waits for a line, after the first `from` lines, containing every
// one of subs, and returns it.
func (r *logRecorder) waitLine(t testing.TB, from int, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		lines := append([]string(nil), r.lines[min(from, len(r.lines)):]...)
		r.mu.Unlock()
	next:
		for _, l := range lines {
			for _, s := range subs {
				if !strings.Contains(l, s) {
					continue next
				}
			}
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q; lines since %d:\n%s", subs, from, strings.Join(lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *logRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lines)
}

// hostileCase is one refused client: do runs it against addr and returns
// once the attempt is over from the client's side.
type hostileCase struct {
	name   string
	do     func(t *testing.T, addr string)
	logErr string // expected in the err of the "error on TLS handshake" line
}

// rawSend writes b, half-closes (so the server sees the end of input rather
// than waiting for its timeout) and waits for the server to close.
func rawSend(b []byte) func(t *testing.T, addr string) {
	return func(t *testing.T, addr string) {
		if err := testnet.Send(addr, b, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// tlsAttempt dials with cfg and, if the client's side of the handshake
// completes (TLS 1.3 clients learn of a refusal only on reading), sends
// data and reads. It fails the test if data comes back.
func tlsAttempt(cfg *tls.Config) func(t *testing.T, addr string) {
	return func(t *testing.T, addr string) {
		c, err := dialTLS(addr, cfg)
		if err != nil {
			return
		}
		defer c.Close()
		if got, err := roundTrip(c, "must not pass"); err == nil {
			t.Fatalf("refused client got data through: %q", got)
		}
	}
}

// forceCert makes cfg send l whatever CAs the server asks for (with
// Certificates, crypto/tls sends nothing when the leaf's issuer is not in
// the server's list, and the test would only prove that).
func forceCert(cfg *tls.Config, l *testpki.Leaf) *tls.Config {
	cert := l.TLS()
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

// hostileCases are shared by the in-process test and described in
// docs/HARDENING.md. p is the tunnel's PKI; other is a second CA.
func hostileCases(p *pki, other *testpki.CA) []hostileCase {
	now := time.Now()
	expired := p.ca.Issue("expired", testpki.Options{CN: "client", Client: true,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	future := p.ca.Issue("future", testpki.Options{CN: "client", Client: true,
		NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
	stranger := other.Issue("stranger", testpki.Options{CN: "stranger", Client: true})
	impostor := other.Issue("impostor", testpki.Options{CN: "client", Client: true})
	denied := p.ca.Issue("denied", testpki.Options{CN: "not-on-the-list", Client: true})
	withCert := func(l *testpki.Leaf) *tls.Config {
		return forceCert(p.clientTLS(), l)
	}
	noCert := p.clientTLS()
	noCert.Certificates = nil
	tls10, tls11 := p.clientTLS(), p.clientTLS()
	tls10.MinVersion, tls10.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	weak := func(suite uint16) *tls.Config {
		c := p.clientTLS()
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{suite}
		return c
	}
	hello := testhello.ClientHello([]byte("localhost"), true)
	return []hostileCase{
		{"garbage", rawSend([]byte("\x00\x01\x02garbage instead of a ClientHello\xff\xfe")), "first record does not look like a TLS handshake"},
		{"plaintext HTTP", rawSend([]byte("GET /_status HTTP/1.1\r\nHost: localhost\r\n\r\n")), "first record does not look like a TLS handshake"},
		{"truncated record", rawSend(hello[:40]), "EOF"},
		{"truncated handshake message", rawSend(append([]byte{22, 3, 1, 0, 8}, hello[5:13]...)), "EOF"},
		{"oversized record", rawSend([]byte{22, 3, 1, 0xff, 0xff, 1, 0, 0}), "oversized record"},
		{"SSLv2-style hello", rawSend([]byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00}), "TLS handshake"},
		{"no client certificate", tlsAttempt(noCert), "certificate"},
		{"expired client certificate", tlsAttempt(withCert(expired)), "expired or is not yet valid"},
		{"not yet valid client certificate", tlsAttempt(withCert(future)), "expired or is not yet valid"},
		{"client certificate from another CA", tlsAttempt(withCert(stranger)), "unknown authority"},
		{"allowed name from an untrusted issuer", tlsAttempt(withCert(impostor)), "unknown authority"},
		{"trusted certificate, name not allowed", tlsAttempt(withCert(denied)), "access denied"},
		{"TLS 1.0", tlsAttempt(tls10), "unsupported versions"},
		{"TLS 1.1", tlsAttempt(tls11), "unsupported versions"},
		{"TLS_RSA_WITH_AES_128_CBC_SHA only", tlsAttempt(weak(tls.TLS_RSA_WITH_AES_128_CBC_SHA)), "no cipher suite"},
		{"TLS_RSA_WITH_AES_128_GCM_SHA256 only", tlsAttempt(weak(tls.TLS_RSA_WITH_AES_128_GCM_SHA256)), "no cipher suite"},
		{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA only", tlsAttempt(weak(tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA)), "no cipher suite"},
		{"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA only", tlsAttempt(weak(tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA)), "no cipher suite"},
		{"TLS_ECDHE_RSA_WITH_RC4_128_SHA only", tlsAttempt(weak(tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA)), "no cipher suite"},
	}
}

// TestHostileClients runs every hostile case against an RSA-keyed server
// tunnel (so the RSA suites are refused for being weak, not for a key
// mismatch) that allows CN "client" only.
func TestHostileClients(t *testing.T) {
	p := newPKI(t)
	other := testpki.NewCA(t.TempDir(), "other")
	o := testpki.Localhost()
	o.Server, o.KeyType = true, testpki.RSA
	rsaLeaf := p.ca.Issue("server-rsa", o)
	backend := newCountingBackend(t)
	cfg := p.serverTunnel(backend.ln.Addr().String())
	cfg.Cert, cfg.Key = rsaLeaf.CertFile, rsaLeaf.KeyFile
	cfg.AllowAll, cfg.AllowCN = false, []string{"client"}
	logs := &logRecorder{}
	tun, err := New(cfg, Deps{Logger: logs})
	if err != nil {
		t.Fatal(err)
	}
	go tun.Serve()
	t.Cleanup(tun.Close)
	addr := tun.Addr().String()
	m := tun.Metrics()

	for _, hc := range hostileCases(p, other) {
		t.Run(hc.name, func(t *testing.T) {
			from := logs.len()
			before := m.acceptError.Value()
			hc.do(t, addr)
			line := logs.waitLine(t, from, "error on TLS handshake", hc.logErr)
			t.Logf("logged: %s", line)
			deadline := time.Now().Add(5 * time.Second)
			for m.acceptError.Value() < before+1 {
				if time.Now().After(deadline) {
					t.Fatalf("accept_error_total stayed at %v", before)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	if n := backend.accepted.Load(); n != 0 {
		t.Fatalf("%d hostile connections reached the backend", n)
	}
	if n := m.acceptSuccess.Value(); n != 0 {
		t.Fatalf("accept_success_total = %v after hostile clients only", n)
	}
	// And a good client, with a modern suite over TLS 1.2 and over 1.3.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := p.clientTLS()
		c.MaxVersion = v
		if err := echoOK(addr, c); err != nil {
			t.Fatalf("good client (%s) refused: %v", tls.VersionName(v), err)
		}
	}
	if n := backend.accepted.Load(); n != 2 {
		t.Fatalf("backend saw %d connections, want the 2 good ones", n)
	}
}

// TestResumedSessionAfterCARotation resumes a session (TLS 1.2 and 1.3)
// after the CA bundle was replaced by one that no longer trusts the
// client's issuer: the resumption must be refused.
func TestResumedSessionAfterCARotation(t *testing.T) {
	p := newPKI(t)
	other := testpki.NewCA(t.TempDir(), "other")
	backend := newCountingBackend(t)
	caPath := filepath.Join(p.dir, "live-ca.pem")
	copyFile(t, p.ca.CAFile, caPath)
	cfg := p.serverTunnel(backend.ln.Addr().String())
	cfg.CACert = caPath
	cfg.AllowAll, cfg.AllowCN = false, []string{"client"}
	logs := &logRecorder{}
	tun, err := New(cfg, Deps{Logger: logs})
	if err != nil {
		t.Fatal(err)
	}
	go tun.Serve()
	t.Cleanup(tun.Close)
	addr := tun.Addr().String()

	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(ver), func(t *testing.T) {
			copyFile(t, p.ca.CAFile, caPath)
			if err := tun.Reload(); err != nil {
				t.Fatal(err)
			}
			cc := forceCert(p.clientTLS(), p.client)
			cc.MaxVersion = ver
			cc.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			if err := echoOK(addr, cc); err != nil {
				t.Fatal(err)
			}
			c, err := dialTLS(addr, cc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := roundTrip(c, "x"); err != nil {
				t.Fatal(err)
			}
			if !c.ConnectionState().DidResume {
				t.Fatal("session was not resumed: the test proves nothing")
			}
			c.Close()

			// Rotate: the bundle now holds only the other CA.
			os.WriteFile(caPath+".tmp", other.CertPEM, 0o644)
			os.Rename(caPath+".tmp", caPath)
			from := logs.len()
			if err := tun.Reload(); err != nil {
				t.Fatal(err)
			}
			if err := echoOK(addr, cc); err == nil {
				t.Fatal("resumed session got through after its issuer left the CA bundle")
			}
			t.Logf("refused: %s", logs.waitLine(t, from, "error on TLS handshake"))
		})
	}
	if n := backend.accepted.Load(); n != 4 {
		t.Fatalf("backend saw %d connections, want the 4 admitted ones", n)
	}
}
