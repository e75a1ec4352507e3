package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"golang.org/x/crypto/acme"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// pebbleVersion is the Let's Encrypt test ACME server the test builds from
// the Go module proxy.
const pebbleVersion = "v2.8.0"

// acmeTunnel is a server tunnel getting its certificate for name from the
// ACME directory at dir.
func acmeTunnel(p *pki, target, name, dir string, cache string) configs.Tunnel {
	c := p.serverTunnel(target)
	c.Name = "acme"
	c.Cert, c.Key = "", ""
	c.AllowAll = false
	c.AllowCN = []string{"client"}
	c.AutoACMECert, c.AutoACMEEmail, c.AutoACMEAgreeToTOS = name, "ops@test.example", true
	c.AutoACMETestCA, c.AutoACMECache = dir, cache
	return c
}

// serveOn builds a tunnel on ln and serves it until the test ends.
func serveOn(t *testing.T, cfg configs.Tunnel, ln net.Listener) *Tunnel {
	t.Helper()
	return startWith(t, cfg, Deps{Listener: ln})
}

func TestACMESettings(t *testing.T) {
	c := configs.Tunnel{Name: "web"}
	if got := acmeDirectory(&c); got != acme.LetsEncryptURL {
		t.Errorf("default directory %q", got)
	}
	c.AutoACMECA = "https://ca.example/dir"
	if got := acmeDirectory(&c); got != c.AutoACMECA {
		t.Errorf("directory %q, want auto-acme-ca", got)
	}
	c.AutoACMETestCA = "https://test.example/dir"
	if got := acmeDirectory(&c); got != c.AutoACMETestCA {
		t.Errorf("directory %q, want auto-acme-testca", got)
	}
	if base, err := os.UserCacheDir(); err == nil {
		if got, _ := acmeCacheDir(&c); got != filepath.Join(base, "ghostunnel", "acme", "web") {
			t.Errorf("default cache %q", got)
		}
	}
	c.AutoACMECache = "/var/cache/x"
	if got, _ := acmeCacheDir(&c); got != "/var/cache/x" {
		t.Errorf("cache %q", got)
	}
}

// TestACMEManagerReuse checks that a reload with the same settings keeps the
// manager (its account, cached certificate and renewal) and a change makes a
// new one.
func TestACMEManagerReuse(t *testing.T) {
	p := newPKI(t)
	cfg := acmeTunnel(p, "127.0.0.1:1", "a.example", "https://127.0.0.1:1/dir", t.TempDir())
	var a acmeManagers
	s1, err := a.source(&cfg)
	if err != nil || s1 == nil {
		t.Fatal(s1, err)
	}
	if s2, _ := a.source(&cfg); s2 != s1 {
		t.Error("same settings: want the same manager")
	}
	cfg.AutoACMEEmail = "other@test.example"
	if s3, _ := a.source(&cfg); s3 == s1 {
		t.Error("new email: want a new manager")
	}
	cfg.AutoACMECert = ""
	if s4, err := a.source(&cfg); s4 != nil || err != nil {
		t.Error("no auto-acme-cert: want no source", s4, err)
	}
	var nilSrc *acmeCert
	if c := new(tls.Config); nilSrc.serverTLS(c) != c || c.GetConfigForClient != nil {
		t.Error("nil source must leave the config alone")
	}
}

// TestACMEChallengeNotForwarded checks that an acme-tls/1 handshake never
// reaches the target and never gets past client authentication, with or
// without a pending challenge, while normal clients still need a
// certificate the CA bundle trusts.
func TestACMEChallengeNotForwarded(t *testing.T) {
	p := newPKI(t)
	e := newEcho(t, "tcp", "127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// No CA answers at port 1: no certificate is ever obtained.
	tun := serveOn(t, acmeTunnel(p, e.addr(), "a.example", "https://127.0.0.1:1/dir", t.TempDir()), ln)
	if tun.Certificate() != nil {
		t.Error("Certificate before any ACME certificate: want nil")
	}
	cfg := p.clientTLS()
	cfg.ServerName, cfg.NextProtos, cfg.InsecureSkipVerify = "a.example", []string{acme.ALPNProto}, true
	if err := echoOK(tun.Addr().String(), cfg); err == nil {
		t.Error("acme-tls/1 connection was forwarded")
	}
	// Give the tunnel a token certificate, as during a real challenge.
	g := tun.gen.Load()
	tok := p.ca.Issue("token", testpki.Options{CN: "a.example", DNS: []string{"a.example"}, Server: true})
	if err := g.acme.m.Cache.Put(context.Background(), "a.example+token", append(tok.KeyPEM, tok.CertPEM...)); err != nil {
		t.Fatal(err)
	}
	c, err := dialTLS(tun.Addr().String(), cfg)
	if err == nil {
		if c.ConnectionState().NegotiatedProtocol != acme.ALPNProto {
			t.Errorf("negotiated %q, want %q", c.ConnectionState().NegotiatedProtocol, acme.ALPNProto)
		}
		if got, err := roundTrip(c, "ping"); err == nil {
			t.Errorf("challenge connection forwarded: read %q", got)
		}
		c.Close()
	} else {
		t.Errorf("challenge handshake with a token certificate: %v", err)
	}
	e.mu.Lock()
	n := len(e.conns)
	e.mu.Unlock()
	if n != 0 {
		t.Errorf("target saw %d connections, want 0", n)
	}
}

// TestACMEPebble obtains a certificate from pebble, Let's Encrypt's test
// ACME server, answering TLS-ALPN-01 on the tunnel's own listener, then
// serves a client with it while still asking for the client's certificate.
func TestACMEPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pebble; skipped with -short")
	}
	bin := pebbleBinary(t)
	p := newPKI(t)
	dir := p.dir
	pebbleCert := p.ca.Issue("pebble", func() testpki.Options { o := testpki.Localhost(); o.Server = true; return o }())
	dnsAddr := fakeDNS(t)
	apiPort, mgmtPort, httpPort := freePort(t), freePort(t), freePort(t)

	e := newEcho(t, "tcp", "127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := ln.Addr().(*net.TCPAddr).Port

	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", apiPort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    pebbleCert.CertFile,
		"privateKey":                     pebbleCert.KeyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	data, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var out testnet.Buffer
	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("pebble output:\n%s", out.String()) // shown with -v or on failure
	})
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool()}}}
	directory := fmt.Sprintf("https://127.0.0.1:%d/dir", apiPort)
	waitFor(t, 30*time.Second, "pebble to serve its directory", func() bool {
		resp, err := api.Get(directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// cacert trusts both the client certificates and pebble's HTTPS API.
	tun := serveOn(t, acmeTunnel(p, e.addr(), "test.example", directory, filepath.Join(dir, "acme-cache")), ln)
	waitFor(t, 60*time.Second, "the ACME certificate", func() bool { return tun.Certificate() != nil })

	// The issued chain ends at pebble's root of this run.
	resp, err := api.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root: %q", rootPEM)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: "test.example", Certificates: []tls.Certificate{p.client.TLS()}}
	c, err := dialTLS(tun.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("handshake with the ACME certificate: %v", err)
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	if got, err := roundTrip(c, "ping"); err != nil || got != "ping" {
		t.Errorf("echo: %q, %v", got, err)
	}
	c.Close()
	if err := leaf.VerifyHostname("test.example"); err != nil {
		t.Error(err)
	}
	if bytes.Equal(leaf.RawIssuer, p.ca.Cert.RawSubject) {
		t.Error("leaf issued by the test CA, want pebble")
	}
	if cur := tun.Certificate(); cur == nil || cur.Leaf == nil || !cur.Leaf.Equal(leaf) {
		t.Error("Certificate is not the served ACME certificate")
	}
	waitFor(t, 10*time.Second, "cert_not_after", func() bool {
		return tun.m.certNotAfter.Value() == float64(leaf.NotAfter.Unix())
	})

	// A reload with the same settings keeps the manager and its certificate.
	if err := tun.Reload(); err != nil {
		t.Fatal(err)
	}
	if cur := tun.Certificate(); cur == nil || cur.Leaf == nil || !cur.Leaf.Equal(leaf) {
		t.Error("after a reload: Certificate is not the ACME certificate")
	}
	if err := echoOK(tun.Addr().String(), cfg); err != nil {
		t.Errorf("after a reload: %v", err)
	}

	// Client authentication still applies to normal connections.
	noCert := &tls.Config{RootCAs: roots, ServerName: "test.example"}
	if err := echoOK(tun.Addr().String(), noCert); err == nil {
		t.Error("client without a certificate was let through")
	}
	// And the account and certificate are in the cache directory.
	if files, _ := os.ReadDir(filepath.Join(dir, "acme-cache")); len(files) < 2 {
		t.Errorf("cache holds %d files, want the account key and the certificate", len(files))
	}
}

// pebbleBinary installs pebble from the module proxy once per machine and
// returns its path, or skips the test.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "ghostunnel-pebble-"+pebbleVersion)
	bin := filepath.Join(dir, "pebble")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("pebble not installed and no go tool to build it: %v", err)
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "ghostunnel-pebble-build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot install pebble %s (no network?): %v\n%s", pebbleVersion, err, out)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "pebble"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// fakeDNS answers every A query with 127.0.0.1 and every other query with
// no answer, over UDP, and returns its address.
func fakeDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				pc.WriteTo(resp, addr)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// dnsAnswer builds the response to a one-question query.
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qEnd := i + 5
	qtype := binary.BigEndian.Uint16(q[i+1:])
	resp := make([]byte, 0, qEnd+16)
	resp = append(resp, q[0], q[1])           // ID
	resp = append(resp, 0x84|q[2]&0x01, 0x80) // QR, AA, RD copied; RA
	resp = append(resp, 0, 1)                 // QDCOUNT
	if qtype == 1 {
		resp = append(resp, 0, 1) // ANCOUNT
	} else {
		resp = append(resp, 0, 0)
	}
	resp = append(resp, 0, 0, 0, 0) // NSCOUNT, ARCOUNT
	resp = append(resp, q[12:qEnd]...)
	if qtype == 1 {
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	}
	return resp
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestACMEOverdueRenewalLogged: a certificate autocert has not managed to
// renew (the CA unreachable here) is still served, and the tunnel says so
// instead of going on silently until, and past, its expiry.
func TestACMEOverdueRenewalLogged(t *testing.T) {
	p := newPKI(t)
	l := p.ca.Issue("acme", testpki.Options{CN: "tunnel.example.com", DNS: []string{"tunnel.example.com"}, Server: true,
		NotAfter: time.Now().Add(time.Hour)})
	cache := t.TempDir()
	if err := os.WriteFile(filepath.Join(cache, "tunnel.example.com"), append(append([]byte{}, l.KeyPEM...), l.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := p.serverTunnel("127.0.0.1:1")
	cfg.Cert, cfg.Key = "", ""
	cfg.AutoACMECert, cfg.AutoACMEEmail, cfg.AutoACMEAgreeToTOS = "tunnel.example.com", "ops@example.com", true
	cfg.AutoACMECA = "https://127.0.0.1:1/directory" // renewal cannot succeed
	cfg.AutoACMECache = cache
	var logs testnet.Buffer
	startWith(t, cfg, Deps{Logger: log.NewLogfmtLogger(&logs)})
	waitFor(t, 10*time.Second, "the overdue renewal logged", func() bool {
		return strings.Contains(logs.String(), "ACME certificate not renewed yet")
	})
}
