package statusd

// Fuzz targets: certificate selection by SNI, directly and through a
// running HTTPS status server receiving ClientHellos with odd server names.

import (
	"bytes"
	"context"
	"crypto/tls"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testhello"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
)

var oddSNIs = []string{"alpha", "ALPHA", "alpha.", "beta", "x.beta.example.com", "X.BETA.EXAMPLE.COM.",
	"beta.example.com", "*.beta.example.com", "*", ".", "..", "", "gamma.example.org", "localhost",
	"\x00", "alpha\x00", "\xff\xfe", "bücher.example", "xn--bcher-kva.example", "127.0.0.1", "[::1]",
	"a b", "%2e%2e", "../alpha", strings.Repeat("a.", 100), strings.Repeat("\xc3", 300)}

// FuzzGetCertificate: whatever the SNI, the status server presents some
// tunnel's certificate and never fails or panics.
func FuzzGetCertificate(f *testing.F) {
	fl := newFleet(f)
	x := newCertIndex(fl.source, "")
	for _, s := range oddSNIs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sni string) {
		c, err := x.getCertificate(&tls.ClientHelloInfo{ServerName: sni})
		if err != nil || c == nil {
			t.Fatalf("SNI %q: %v, %v", sni, c, err)
		}
		// The name of a tunnel, in any case, selects that tunnel.
		if name := normalizeHost(sni); fl.leaves[name] != nil && !bytes.Equal(c.Certificate[0], fl.leaves[name].Cert.Raw) {
			t.Fatalf("SNI %q did not select tunnel %q", sni, name)
		}
	})
}

// FuzzStatusSNI sends ClientHellos with fuzzed server names to one running
// HTTPS status server; it must not panic and must still answer a good
// client's GET /_status afterwards.
func FuzzStatusSNI(f *testing.F) {
	fl := newFleet(f)
	s := serve(f, Config{Addr: "127.0.0.1:0", Source: fl.source, Gatherer: fl.registry, Logger: log.NewNopLogger()})
	addr := s.Addr().String()
	for _, sni := range oddSNIs {
		f.Add([]byte(sni))
	}
	// Tens of kilobytes stall Go's fuzzing engine; TestLongStatusSNI sends
	// those.
	f.Add(bytes.Repeat([]byte("label."), 60))

	f.Fuzz(func(t *testing.T, sni []byte) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(testhello.ClientHello(sni, true)); err == nil {
			c.Read(make([]byte, 4096))
		}
		c.Close()

		d := &tls.Dialer{Config: &tls.Config{ServerName: "localhost", RootCAs: fl.ca.Pool()}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("good client refused after SNI %q: %v", sni, err)
		}
		defer gc.Close()
		gc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := gc.Write([]byte("GET /_status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 12)
		if n, err := gc.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 ") {
			t.Fatalf("GET /_status after SNI %q: %q, %v", sni, buf[:n], err)
		}
	})
}

// TestLongStatusSNI sends server names of 18 KB and 60000 bytes to the
// status server, then checks a good client.
func TestLongStatusSNI(t *testing.T) {
	fl := newFleet(t)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: fl.source, Gatherer: fl.registry, Logger: log.NewNopLogger()})
	for _, sni := range [][]byte{bytes.Repeat([]byte("label."), 3000), bytes.Repeat([]byte{0xff}, 60000)} {
		c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(testhello.ClientHello(sni, true))
		c.Read(make([]byte, 4096))
		c.Close()
		if got := presented(t, s.Addr().String(), "alpha", fl.ca.Pool()); got.Subject.CommonName != "alpha" {
			t.Fatalf("after a %d-byte SNI, SNI alpha got %q", len(sni), got.Subject.CommonName)
		}
	}
}

// TestRawClientHelloStatus checks the hand-made hello reaches certificate
// selection: the status server answers with a ServerHello.
func TestRawClientHelloStatus(t *testing.T) {
	fl := newFleet(t)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: fl.source, Gatherer: fl.registry, Logger: log.NewNopLogger()})
	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(testhello.ClientHello([]byte("beta.example.com"), true))
	got := make([]byte, 6)
	if n, _ := c.Read(got); n < 6 || got[0] != 22 || got[5] != 2 {
		t.Fatalf("answer % x, want a ServerHello", got[:n])
	}
}

// FuzzRedactArgs: a secret flag's value never survives in the pprof command
// line, whichever secret flag and form it is, and nothing else is changed.
func FuzzRedactArgs(f *testing.F) {
	f.Add("SECRET-xyz", uint8(0))
	f.Add("p=ss word", uint8(1))
	f.Add("--storepass", uint8(2))
	f.Add("", uint8(3))
	f.Add("\x00\xff", uint8(4))
	f.Fuzz(func(t *testing.T, secret string, form uint8) {
		flag := []string{"--storepass", "-storepass", "--pkcs11-pin", "-pkcs11-pin", "--proxy", "--connect-proxy"}[int(form&^4)%6]
		args := []string{"ghostunnel", "server", "--listen", "127.0.0.1:1", flag, secret, "--allow-all"}
		want := append([]string(nil), args...)
		want[5] = "<redacted>"
		if form&4 != 0 {
			args = []string{"ghostunnel", "server", flag + "=" + secret, "--allow-all"}
			want = []string{"ghostunnel", "server", flag + "=<redacted>", "--allow-all"}
		}
		if out := redactArgs(args); !slices.Equal(out, want) {
			t.Fatalf("redactArgs(%q) = %q, want %q", args, out, want)
		}
	})
}

// TestRedactURLPasswords: a URL flag value's password (--metrics-url,
// --target-status) is hidden in the pprof command line, in both forms;
// URLs without one are left as they are.
func TestRedactURLPasswords(t *testing.T) {
	args := []string{"ghostunnel", "--metrics-url", "https://push:hunter2@m.example.com/in",
		"server", "--target-status=http://mon:hunter2@127.0.0.1:8081/health", "--target", "127.0.0.1:8080",
		"--metrics-graphite", "g.example.com:2003", "--status", "https://127.0.0.1:9000"}
	out := strings.Join(redactArgs(args), " ")
	if strings.Contains(out, "hunter2") {
		t.Fatalf("a URL password survived: %s", out)
	}
	for _, keep := range []string{"https://push:xxxxx@m.example.com/in", "--target-status=http://mon:xxxxx@127.0.0.1:8081/health", "https://127.0.0.1:9000"} {
		if !strings.Contains(out, keep) {
			t.Errorf("%q not in %s", keep, out)
		}
	}
}
