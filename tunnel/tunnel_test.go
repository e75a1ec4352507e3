package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

func pinOf(l *testpki.Leaf) string {
	sum := sha256.Sum256(l.Cert.RawSubjectPublicKeyInfo)
	return "sha256:" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestServerAccessControl(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	other := testpki.NewCA(t.TempDir(), "other")
	stranger := other.Issue("stranger", testpki.Options{CN: "client", Client: true})

	cases := []struct {
		name  string
		set   func(c *configs.Tunnel)
		allow bool
	}{
		{"allow-all", func(c *configs.Tunnel) {}, true},
		{"allow-cn match", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowCN = []string{"client"} }, true},
		{"allow-cn miss", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowCN = []string{"other"} }, false},
		{"allow-ou match", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowOU = []string{"team-a"} }, true},
		{"allow-ou miss", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowOU = []string{"team-b"} }, false},
		{"allow-dns match", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowDNS = []string{"client.example"} }, true},
		{"allow-dns miss", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowDNS = []string{"x.example"} }, false},
		{"allow-ip match", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowIP = []string{"10.1.2.3"} }, true},
		{"allow-ip miss", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowIP = []string{"10.1.2.4"} }, false},
		{"allow-uri exact", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowURI = []string{"spiffe://example.org/client/web"} }, true},
		{"allow-uri one segment", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowURI = []string{"spiffe://example.org/client/*"} }, true},
		{"allow-uri one segment too short", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowURI = []string{"spiffe://example.org/*"} }, false},
		{"allow-uri many segments", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowURI = []string{"spiffe://example.org/**"} }, true},
		{"allow-uri miss", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowURI = []string{"spiffe://other.org/**"} }, false},
		{"or of rules", func(c *configs.Tunnel) {
			c.AllowAll = false
			c.AllowCN = []string{"nobody"}
			c.AllowDNS = []string{"client.example"}
		}, true},
		{"spki pin match", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowSPKIPin = []string{pinOf(p.client)} }, true},
		{"spki pin miss", func(c *configs.Tunnel) { c.AllowAll = false; c.AllowSPKIPin = []string{pinOf(p.server)} }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := p.serverTunnel(backend.addr())
			tc.set(&cfg)
			tun := start(t, cfg)
			err := echoOK(tun.Addr().String(), p.clientTLS())
			if tc.allow && err != nil {
				t.Fatalf("want admitted, got %v", err)
			}
			if !tc.allow && err == nil {
				t.Fatal("want refused, got through")
			}
		})
	}

	t.Run("untrusted issuer with an allowed name", func(t *testing.T) {
		cfg := p.serverTunnel(backend.addr())
		cfg.AllowAll = false
		cfg.AllowCN = []string{"client"}
		tun := start(t, cfg)
		c := p.clientTLS()
		c.Certificates = []tls.Certificate{stranger.TLS()}
		if err := echoOK(tun.Addr().String(), c); err == nil {
			t.Fatal("certificate from another CA got through")
		}
	})
	t.Run("spki pin without chain", func(t *testing.T) {
		// The pin replaces chain verification: a self-made CA's leaf whose
		// key is pinned is admitted.
		cfg := p.serverTunnel(backend.addr())
		cfg.AllowAll = false
		cfg.AllowSPKIPin = []string{pinOf(stranger)}
		tun := start(t, cfg)
		c := p.clientTLS()
		c.Certificates = []tls.Certificate{stranger.TLS()}
		if err := echoOK(tun.Addr().String(), c); err != nil {
			t.Fatalf("pinned key refused: %v", err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		tun := start(t, p.serverTunnel(backend.addr()))
		c := p.clientTLS()
		c.Certificates = nil
		if err := echoOK(tun.Addr().String(), c); err == nil {
			t.Fatal("client without certificate got through")
		}
	})
	t.Run("disable-authentication", func(t *testing.T) {
		cfg := p.serverTunnel(backend.addr())
		cfg.AllowAll = false
		cfg.DisableAuthentication = true
		tun := start(t, cfg)
		c := p.clientTLS()
		c.Certificates = nil
		if err := echoOK(tun.Addr().String(), c); err != nil {
			t.Fatalf("want admitted without certificate: %v", err)
		}
	})
	t.Run("expired and not yet valid", func(t *testing.T) {
		tun := start(t, p.serverTunnel(backend.addr()))
		for _, o := range []testpki.Options{
			{CN: "client", Client: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
			{CN: "client", Client: true, NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)},
		} {
			l := p.ca.Issue("odd", o)
			c := p.clientTLS()
			c.Certificates = []tls.Certificate{l.TLS()}
			if err := echoOK(tun.Addr().String(), c); err == nil {
				t.Fatalf("certificate valid %v..%v got through", o.NotBefore, o.NotAfter)
			}
		}
	})
}

// TestClientVerification runs a client tunnel against a server tunnel.
func TestClientVerification(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	srv := start(t, p.serverTunnel(backend.addr()))
	target := "localhost:" + portOf(srv.Addr())

	cases := []struct {
		name string
		set  func(c *configs.Tunnel)
		ok   bool
	}{
		{"hostname only", func(c *configs.Tunnel) {}, true},
		{"wrong hostname", func(c *configs.Tunnel) { c.OverrideServerName = "db.internal" }, false},
		{"override matches", func(c *configs.Tunnel) {
			c.Target = "127.0.0.1:" + portOf(srv.Addr())
			c.OverrideServerName = "localhost"
		}, true},
		{"verify-cn match", func(c *configs.Tunnel) { c.VerifyCN = []string{"localhost"} }, true},
		{"verify-cn miss", func(c *configs.Tunnel) { c.VerifyCN = []string{"db"} }, false},
		{"verify-dns match", func(c *configs.Tunnel) { c.VerifyDNS = []string{"localhost"} }, true},
		{"verify-dns miss", func(c *configs.Tunnel) { c.VerifyDNS = []string{"db.internal"} }, false},
		{"verify-ip match", func(c *configs.Tunnel) { c.VerifyIP = []string{"127.0.0.1"} }, true},
		{"verify-ip miss", func(c *configs.Tunnel) { c.VerifyIP = []string{"10.0.0.1"} }, false},
		{"verify-ou miss", func(c *configs.Tunnel) { c.VerifyOU = []string{"x"} }, false},
		{"verify-uri miss", func(c *configs.Tunnel) { c.VerifyURI = []string{"spiffe://example.org/*"} }, false},
		{"verify-spki-pin match", func(c *configs.Tunnel) { c.VerifySPKIPin = []string{pinOf(p.server)} }, true},
		{"verify-spki-pin miss", func(c *configs.Tunnel) { c.VerifySPKIPin = []string{pinOf(p.client)} }, false},
		{"untrusted CA", func(c *configs.Tunnel) { c.CACert = testpki.NewCA(t.TempDir(), "x").CAFile }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := p.clientTunnel(target)
			tc.set(&cfg)
			err := clientThrough(t, cfg)
			if tc.ok && err != nil {
				t.Fatalf("want through, got %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("want refused, got through")
			}
		})
	}

	t.Run("disable-authentication sends no certificate", func(t *testing.T) {
		cfg := p.clientTunnel(target)
		cfg.Cert, cfg.Key = "", ""
		cfg.DisableAuthentication = true
		cli := start(t, cfg)
		c, err := net.Dial("tcp", cli.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := roundTrip(c, "x"); err == nil {
			t.Fatal("server requiring client certs let a certificate-less client through")
		}
	})
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// TestHalfClose checks EOF travels each way while the other way keeps
// flowing, through a client tunnel chained into a server tunnel.
func TestHalfClose(t *testing.T) {
	p := newPKI(t)
	// The backend reads until EOF, then answers with what it read, reversed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
					b[i], b[j] = b[j], b[i]
				}
				c.Write(b)
			}()
		}
	}()
	srv := start(t, p.serverTunnel(ln.Addr().String()))
	cli := start(t, p.clientTunnel("localhost:"+portOf(srv.Addr())))

	t.Run("client half-closes", func(t *testing.T) {
		c, err := net.Dial("tcp", cli.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "abcdef")
		closeWrite(c)
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "fedcba" {
			t.Fatalf("got %q, %v", b, err)
		}
	})

	t.Run("backend half-closes first", func(t *testing.T) {
		// The backend sends a greeting and half-closes; the client can still
		// send after reading EOF, and the backend receives it.
		bl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer bl.Close()
		got := make(chan string, 1)
		go func() {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "hello")
			closeWrite(c)
			b, _ := io.ReadAll(c)
			got <- string(b)
		}()
		srv2 := start(t, p.serverTunnel(bl.Addr().String()))
		cli2 := start(t, p.clientTunnel("localhost:"+portOf(srv2.Addr())))
		c, err := net.Dial("tcp", cli2.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "hello" {
			t.Fatalf("greeting %q, %v", b, err)
		}
		io.WriteString(c, "still here")
		closeWrite(c)
		select {
		case s := <-got:
			if s != "still here" {
				t.Fatalf("backend got %q", s)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("backend never got the data sent after the half-close")
		}
	})
}

// TestLargeTransfer pushes 100 MiB each way at once through a client and a
// server tunnel and compares checksums.
func TestLargeTransfer(t *testing.T) {
	size := 100 << 20
	if testing.Short() {
		size = 16 << 20
	}
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	srv := start(t, p.serverTunnel(backend.addr()))
	cli := start(t, p.clientTunnel("localhost:"+portOf(srv.Addr())))
	c, err := net.Dial("tcp", cli.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))

	want := sha256.New()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 256<<10)
		for sent := 0; sent < size; sent += len(buf) {
			r.Read(buf)
			want.Write(buf)
			if _, err := c.Write(buf); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
		closeWrite(c)
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	wg.Wait()
	if err != nil || n != int64(size) {
		t.Fatalf("read %d of %d bytes: %v", n, size, err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("checksum mismatch")
	}
}

func TestUnixSockets(t *testing.T) {
	p := newPKI(t)
	dir, err := os.MkdirTemp("", "gt")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	backend := newEcho(t, "unix", filepath.Join(dir, "backend.sock"))
	scfg := p.serverTunnel(backend.addr())
	scfg.Listen = "unix:" + filepath.Join(dir, "server.sock")
	srv := start(t, scfg)
	ccfg := p.clientTunnel("localhost:1") // replaced below: a client target must be TCP
	_ = ccfg
	cfg := p.clientTLS()
	c, err := tls.Dial("unix", filepath.Join(dir, "server.sock"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "over unix"); err != nil || got != "over unix" {
		t.Fatalf("got %q, %v", got, err)
	}
	_ = srv

	// A client tunnel listening on a unix socket.
	tcpSrv := start(t, p.serverTunnel(backend.addr()))
	cc := p.clientTunnel("localhost:" + portOf(tcpSrv.Addr()))
	cc.Listen = "unix:" + filepath.Join(dir, "client.sock")
	start(t, cc)
	uc, err := net.Dial("unix", filepath.Join(dir, "client.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if got, err := roundTrip(uc, "plain unix"); err != nil || got != "plain unix" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReloadUnderOpenConnection(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	// The tunnel reads its own copy of the files, which the test rewrites.
	cfg.Cert = filepath.Join(p.dir, "live.crt")
	cfg.Key = filepath.Join(p.dir, "live.key")
	copyFile(t, p.server.CertFile, cfg.Cert)
	copyFile(t, p.server.KeyFile, cfg.Key)
	tun := start(t, cfg)

	old := openEcho(t, tun.Addr().String(), p.clientTLS(), "before")

	o := testpki.Localhost()
	o.Server = true
	next := p.ca.Issue("server2", o)
	copyFile(t, next.CertFile, cfg.Cert)
	copyFile(t, next.KeyFile, cfg.Key)
	if err := tun.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got, err := roundTrip(old, "after"); err != nil || got != "after" {
		t.Fatalf("old connection after reload: %q %v", got, err)
	}
	fresh, err := dialTLS(tun.Addr().String(), p.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if s := fresh.ConnectionState().PeerCertificates[0].SerialNumber; s.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("new connection got serial %v, want the reloaded %v", s, next.Cert.SerialNumber)
	}

	// A half-written file keeps the current certificate.
	os.WriteFile(cfg.Cert, next.CertPEM[:len(next.CertPEM)/2], 0o644)
	err = tun.Reload()
	if err == nil || !strings.Contains(err.Error(), cfg.Cert) {
		t.Fatalf("broken reload: want an error naming %s, got %v", cfg.Cert, err)
	}
	if s := tun.Snapshot(); s.LastReloadError == "" {
		t.Fatal("snapshot does not show the reload error")
	}
	again, err := dialTLS(tun.Addr().String(), p.clientTLS())
	if err != nil {
		t.Fatalf("tunnel broken after a failed reload: %v", err)
	}
	defer again.Close()
	if s := again.ConnectionState().PeerCertificates[0].SerialNumber; s.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatal("failed reload changed the certificate")
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// TestResumedSessionRechecked resumes a TLS session after the allow-list
// stopped admitting the client: the resumption must be refused.
func TestResumedSessionRechecked(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.AllowAll = false
	cfg.AllowCN = []string{"client"}
	tun := start(t, cfg)

	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(ver), func(t *testing.T) {
			cc := p.clientTLS()
			cc.MaxVersion = ver
			cc.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			if err := echoOK(tun.Addr().String(), cc); err != nil {
				t.Fatal(err)
			}
			// A resumed connection while still allowed.
			c, err := dialTLS(tun.Addr().String(), cc)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(c, "x")
			if !c.ConnectionState().DidResume {
				t.Fatal("session was not resumed: the test proves nothing")
			}
			c.Close()

			tightened := cfg
			tightened.AllowCN = []string{"someone-else"}
			if err := tun.Apply(tightened); err != nil {
				t.Fatal(err)
			}
			defer tun.Apply(cfg)
			if err := echoOK(tun.Addr().String(), cc); err == nil {
				t.Fatal("resumed session got through after the allow-list dropped the client")
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.ConnectTimeout = configs.Duration(300 * time.Millisecond)
	tun := start(t, cfg)
	c, err := net.Dial("tcp", tun.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	startAt := time.Now()
	_, err = c.Read(make([]byte, 1))
	if err == nil || time.Since(startAt) > 4*time.Second {
		t.Fatalf("silent client not dropped: %v after %v", err, time.Since(startAt))
	}
}

func TestBackendDownCostsOneConnection(t *testing.T) {
	p := newPKI(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tun := start(t, p.serverTunnel(addr))
	if err := echoOK(tun.Addr().String(), p.clientTLS()); err == nil {
		t.Fatal("connection to a dead backend succeeded")
	}
	if err := tun.CheckBackend(context.Background()); err == nil {
		t.Fatal("backend check passed for a dead backend")
	}
	// The backend comes up: the same tunnel serves.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port reused by someone else: %v", err)
	}
	ln2.Close()
	e := newEcho(t, "tcp", addr)
	_ = e
	if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
		t.Fatalf("tunnel did not recover: %v", err)
	}
	if err := tun.CheckBackend(context.Background()); err != nil {
		t.Fatalf("backend check: %v", err)
	}
}

func TestMaxConcurrentConns(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.MaxConcurrentConns = 2
	tun := start(t, cfg)
	var open []*tls.Conn
	for i := 0; i < 2; i++ {
		open = append(open, openEcho(t, tun.Addr().String(), p.clientTLS(), "x"))
	}
	// The third waits in the backlog: its handshake does not complete.
	raw, err := net.Dial("tcp", tun.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	third := tls.Client(raw, p.clientTLS())
	third.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := third.Handshake(); err == nil {
		t.Fatal("third connection handshook while two were open with a limit of 2")
	}
	raw.Close() // or it takes the next free slot and sits in its handshake
	// Freeing a slot lets a new one through.
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := echoOK(tun.Addr().String(), p.clientTLS())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMaxConnLifetime(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.MaxConnLifetime = configs.Duration(400 * time.Millisecond)
	tun := start(t, cfg)
	c := openEcho(t, tun.Addr().String(), p.clientTLS(), "x")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	startAt := time.Now()
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatal("read data from an idle echo")
	}
	if el := time.Since(startAt); el > 3*time.Second {
		t.Fatalf("connection outlived its lifetime: closed after %v (%v)", el, err)
	}
}

func TestProxyProtocol(t *testing.T) {
	p := newPKI(t)
	for _, mode := range []string{"", "tls", "tls-full"} {
		t.Run("mode="+mode, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			hdr := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 16)
				io.ReadFull(c, b)
				rest := make([]byte, int(b[14])<<8|int(b[15]))
				io.ReadFull(c, rest)
				hdr <- append(b, rest...)
			}()
			cfg := p.serverTunnel(ln.Addr().String())
			// proxy-protocol alone sends conn; a mode alone turns it on too.
			cfg.ProxyProtocol = mode == ""
			cfg.ProxyProtocolMode = mode
			tun := start(t, cfg)
			c, err := dialTLS(tun.Addr().String(), p.clientTLS())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var b []byte
			select {
			case b = <-hdr:
			case <-time.After(5 * time.Second):
				t.Fatal("no header")
			}
			info, err := parseProxyHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if info.Family != 0x11 || info.Src.String() != c.LocalAddr().String() || info.Dst.String() != tun.Addr().String() {
				t.Fatalf("addresses %v -> %v, want %v -> %v", &info.Src, &info.Dst, c.LocalAddr(), tun.Addr())
			}
			switch mode {
			case "":
				if info.Version != "" || info.CN != "" {
					t.Fatal("conn mode carried TLS TLVs")
				}
			default:
				if info.Version != "TLSv1.3" || info.CN != "client" || info.Cipher == "" ||
					info.SSLClient != pp2ClientSSL|pp2ClientCertConn|pp2ClientCertSess || info.SSLVerify != 0 {
					t.Fatalf("TLS TLVs: %+v", info)
				}
				if mode == "tls-full" && !bytes.Equal(info.ClientCert, p.client.Cert.Raw) {
					t.Fatal("tls-full did not carry the client certificate")
				}
				if mode == "tls" && info.ClientCert != nil {
					t.Fatal("tls mode carried the client certificate")
				}
			}
		})
	}
}

func TestKeystores(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	for _, kt := range []testpki.KeyType{testpki.ECDSA, testpki.RSA, testpki.Ed25519} {
		t.Run(fmt.Sprint("key type ", kt), func(t *testing.T) {
			o := testpki.Localhost()
			o.KeyType = kt
			l := p.ca.Issue(fmt.Sprintf("k%d", kt), o)
			cfg := p.serverTunnel(backend.addr())
			cfg.Cert, cfg.Key = "", ""
			cfg.Keystore = l.Combined
			tun := start(t, cfg)
			if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("pkcs12", func(t *testing.T) {
		path := filepath.Join(p.dir, "server.p12")
		p.server.WritePKCS12(path, "secret")
		cfg := p.serverTunnel(backend.addr())
		cfg.Cert, cfg.Key = "", ""
		cfg.Keystore, cfg.Storepass = path, "secret"
		tun := start(t, cfg)
		if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
			t.Fatal(err)
		}
		cfg.Storepass = "wrong"
		if _, err := New(cfg, Deps{}); err == nil || strings.Contains(err.Error(), "secret") {
			t.Fatalf("wrong password: %v", err)
		}
	})
	t.Run("key does not match", func(t *testing.T) {
		cfg := p.serverTunnel(backend.addr())
		cfg.Key = p.client.KeyFile
		_, err := New(cfg, Deps{})
		if err == nil {
			t.Fatal("mismatched key accepted")
		}
	})
}

// TestBackendUpFollowsConnections: backend_up follows the tunnel's own
// connections to the backend, with no health check run: a refused dial
// sets it to 0, the next successful one back to 1.
func TestBackendUpFollowsConnections(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	tun := start(t, cfg)
	if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
		t.Fatal(err)
	}
	if v := tun.m.backendUp.Value(); v != 1 {
		t.Fatalf("after a proxied connection, backend_up = %v", v)
	}
	// The same tunnel pointed at a port nothing listens on.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Target = dead.Addr().String()
	dead.Close()
	if err := tun.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := echoOK(tun.Addr().String(), p.clientTLS()); err == nil {
		t.Fatal("a connection went through to a closed backend")
	}
	if v := tun.m.backendUp.Value(); v != 0 {
		t.Fatalf("after a refused backend dial, backend_up = %v", v)
	}
	cfg.Target = backend.addr()
	if err := tun.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
		t.Fatal(err)
	}
	if v := tun.m.backendUp.Value(); v != 1 {
		t.Fatalf("after the backend came back, backend_up = %v", v)
	}
}

// TestTargetResolvedAtStartup: a target name that does not resolve fails
// the start of server and client tunnels alike, with upstream's "invalid
// target address", unless skip-resolve; unix targets are not looked up.
func TestTargetResolvedAtStartup(t *testing.T) {
	orig := lookupHost
	t.Cleanup(func() { lookupHost = orig })
	var asked []string
	lookupHost = func(_ context.Context, host string) ([]string, error) {
		asked = append(asked, host)
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	p := newPKI(t)
	srv := p.serverTunnel("backend.example:80")
	srv.UnsafeTarget = true
	cli := p.clientTunnel("server.example:443")
	for _, cfg := range []configs.Tunnel{srv, cli} {
		if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "invalid target address") {
			t.Errorf("%s tunnel with an unresolvable target: %v", cfg.Mode, err)
		}
		cfg.SkipResolve = true
		tun, err := New(cfg, Deps{})
		if err != nil {
			t.Fatalf("%s tunnel with skip-resolve: %v", cfg.Mode, err)
		}
		tun.Close()
	}
	if len(asked) != 2 {
		t.Errorf("looked up %v, want one lookup per tunnel without skip-resolve", asked)
	}
	unix := p.serverTunnel("unix:" + filepath.Join(t.TempDir(), "app.sock"))
	asked = nil
	tun, err := New(unix, Deps{})
	if err != nil {
		t.Fatalf("unix target: %v", err)
	}
	tun.Close()
	if len(asked) != 0 {
		t.Errorf("a unix target was looked up: %v", asked)
	}
}

// TestTargetStatusErrorRedacted: a failed target-status check, which
// /_status shows, names the URL without its password.
func TestTargetStatusErrorRedacted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })}
	go srv.Serve(ln)
	defer srv.Close()
	p := newPKI(t)
	cfg := p.serverTunnel("127.0.0.1:1")
	cfg.TargetStatus = "http://monitor:S3cret@" + ln.Addr().String() + "/health"
	tun := start(t, cfg)
	err = tun.CheckBackend(context.Background())
	if err == nil || strings.Contains(err.Error(), "S3cret") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("check error %v: want the 500, without the password", err)
	}
}
