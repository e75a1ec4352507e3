package tunnel

// Fuzz targets: the PROXY v2 header builder and parser, and TLS ClientHellos
// with odd SNI values sent to a running server tunnel.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testhello"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// fuzzAddr makes an address from fuzz bytes: 16 or more bytes give an IPv6
// address, 4 to 15 an IPv4 one, fewer a unix socket (PROXY family UNSPEC).
func fuzzAddr(b []byte, port uint16) net.Addr {
	switch {
	case len(b) >= 16:
		return &net.TCPAddr{IP: net.IP(append([]byte{}, b[:16]...)), Port: int(port)}
	case len(b) >= 4:
		return &net.TCPAddr{IP: net.IP(append([]byte{}, b[:4]...)), Port: int(port)}
	}
	return &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}
}

// FuzzProxyHeader builds a PROXY v2 header from fuzzed addresses and TLS
// state, parses it back and checks that every field survived.
func FuzzProxyHeader(f *testing.F) {
	v4a, v4b := []byte{127, 0, 0, 1}, []byte{10, 1, 2, 3}
	v6a := net.ParseIP("2001:db8::1")
	mapped := net.ParseIP("::ffff:192.0.2.7")
	f.Add(v4a, v4b, uint16(40000), uint16(8443), uint8(0), false, false, false, "", uint16(0), uint16(0), []byte(nil))
	f.Add(v4a, v4b, uint16(1), uint16(65535), uint8(1), true, true, false, "client", uint16(tls.VersionTLS13), tls.TLS_AES_128_GCM_SHA256, []byte("der"))
	f.Add([]byte(v6a), v4b, uint16(0), uint16(443), uint8(2), true, true, true, "spiffe client", uint16(tls.VersionTLS12), tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, bytes.Repeat([]byte{0x30}, 1500))
	f.Add([]byte(mapped), []byte(v6a), uint16(5), uint16(6), uint8(2), true, false, false, "", uint16(0x0301), uint16(0x1301), []byte(nil))
	f.Add([]byte{1}, []byte(nil), uint16(5), uint16(6), uint8(1), true, true, true, "\xff\x00\xfe", uint16(0xffff), uint16(0xffff), []byte{0})
	// Inputs of tens of kilobytes stall Go's fuzzing engine (execs drop to
	// zero); TestProxyHeaderTooLong covers the oversized cases instead.
	f.Add(v4a, v4b, uint16(1), uint16(2), uint8(2), true, true, false, string(bytes.Repeat([]byte("c"), 300)), uint16(tls.VersionTLS13), uint16(0x1302), bytes.Repeat([]byte{1}, 3000))
	modes := []string{ppModeConn, ppModeTLS, ppModeTLSFull, "bogus"}

	f.Fuzz(func(t *testing.T, srcIP, dstIP []byte, srcPort, dstPort uint16, modeSel uint8, withTLS, withCert, resumed bool, cn string, version, cipher uint16, der []byte) {
		src, dst := fuzzAddr(srcIP, srcPort), fuzzAddr(dstIP, dstPort)
		mode := modes[int(modeSel)%len(modes)]
		var cs *tls.ConnectionState
		if withTLS {
			cs = &tls.ConnectionState{Version: version, CipherSuite: cipher, DidResume: resumed}
			if withCert {
				cs.PeerCertificates = []*x509.Certificate{{Raw: der, Subject: pkix.Name{CommonName: cn}}}
			}
		}
		hdr, err := proxyHeader(src, dst, mode, cs)
		if err != nil {
			// Only oversized TLVs may fail.
			if len(cn)+len(der) < 0xffff-512 {
				t.Fatalf("proxyHeader failed on a small input: %v", err)
			}
			return
		}
		// Trailing application data must not change the parse.
		info, err := parseProxyHeader(append(append([]byte{}, hdr...), "GET / HTTP/1.1\r\n"...))
		if err != nil {
			t.Fatalf("parsing our own header %x: %v", hdr, err)
		}
		if info.Len != len(hdr) {
			t.Fatalf("header length %d, parsed %d", len(hdr), info.Len)
		}
		s, sok := src.(*net.TCPAddr)
		d, dok := dst.(*net.TCPAddr)
		switch {
		case !sok || !dok:
			if info.Family != 0x00 {
				t.Fatalf("family %#x for non-TCP addresses, want UNSPEC", info.Family)
			}
		default:
			want := byte(0x21)
			if s.IP.To4() != nil && d.IP.To4() != nil {
				want = 0x11
			}
			if info.Family != want {
				t.Fatalf("family %#x, want %#x (%v -> %v)", info.Family, want, s, d)
			}
			if !info.Src.IP.Equal(s.IP) || info.Src.Port != s.Port || !info.Dst.IP.Equal(d.IP) || info.Dst.Port != d.Port {
				t.Fatalf("addresses %v -> %v, want %v -> %v", &info.Src, &info.Dst, s, d)
			}
		}
		tlsMode := cs != nil && (mode == ppModeTLS || mode == ppModeTLSFull)
		if !tlsMode {
			if info.SSLClient != 0 || info.Version != "" || info.Cipher != "" || info.CN != "" || info.ClientCert != nil {
				t.Fatalf("mode %q (tls state %v) carried TLS TLVs: %+v", mode, cs != nil, info)
			}
			return
		}
		wantClient, wantVerify := byte(pp2ClientSSL), uint32(1)
		if withCert {
			wantClient, wantVerify = wantClient|pp2ClientCertSess, 0
			if !resumed {
				wantClient |= pp2ClientCertConn
			}
		}
		if info.SSLClient != wantClient || info.SSLVerify != wantVerify {
			t.Fatalf("client bits %#x verify %d, want %#x %d", info.SSLClient, info.SSLVerify, wantClient, wantVerify)
		}
		if info.Version != tlsVersionName(version) || info.Cipher != tls.CipherSuiteName(cipher) {
			t.Fatalf("version %q cipher %q, want %q %q", info.Version, info.Cipher, tlsVersionName(version), tls.CipherSuiteName(cipher))
		}
		wantCN := ""
		if withCert {
			wantCN = cn
		}
		if info.CN != wantCN {
			t.Fatalf("CN %q, want %q", info.CN, wantCN)
		}
		if withCert && (info.SigAlg == "" || info.KeyAlg == "") {
			t.Fatalf("missing signature or key algorithm: %+v", info)
		}
		wantDER := mode == ppModeTLSFull && withCert && der != nil
		if wantDER != (info.ClientCert != nil) || (wantDER && !bytes.Equal(info.ClientCert, der)) {
			t.Fatalf("client certificate TLV %x, want %x (mode %q)", info.ClientCert, der, mode)
		}
	})
}

// TestProxyHeaderTooLong: TLVs that cannot fit the 16-bit lengths are an
// error, never a truncated or wrapped header.
func TestProxyHeaderTooLong(t *testing.T) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for _, tc := range []struct {
		cn  int
		der int
		ok  bool
	}{{100, 60000, true}, {0, 0xffff, false}, {0xffff, 0, false}, {30000, 40000, false}, {40000, 1000, true}} {
		cs := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
			PeerCertificates: []*x509.Certificate{{Raw: make([]byte, tc.der), Subject: pkix.Name{CommonName: strings.Repeat("c", tc.cn)}}}}
		hdr, err := proxyHeader(src, src, ppModeTLSFull, cs)
		if (err == nil) != tc.ok {
			t.Errorf("CN %d bytes, DER %d bytes: err %v, want ok=%v", tc.cn, tc.der, err, tc.ok)
			continue
		}
		if err != nil {
			continue
		}
		info, err := parseProxyHeader(hdr)
		if err != nil || info.Len != len(hdr) || len(info.ClientCert) != tc.der || len(info.CN) != tc.cn {
			t.Errorf("CN %d, DER %d: round trip %v (len %d of %d)", tc.cn, tc.der, err, info.Len, len(hdr))
		}
	}
}

// FuzzParseProxyHeader feeds arbitrary bytes to the parser: it must not
// panic, and a header it accepts must lie within the input.
func FuzzParseProxyHeader(f *testing.F) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234}
	dst := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 8443}
	cs := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		PeerCertificates: []*x509.Certificate{{Raw: []byte("der"), Subject: pkix.Name{CommonName: "client"}}}}
	for _, mode := range []string{ppModeConn, ppModeTLS, ppModeTLSFull} {
		h, err := proxyHeader(src, dst, mode, cs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(h)
		f.Add(h[:len(h)-1])
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	f.Add(append(append([]byte{}, proxySig...), 0x21, 0x11, 0xff, 0xff))
	f.Add(append(append([]byte{}, proxySig...), 0x21, 0x00, 0x00, 0x04, pp2TypeSSL, 0x00, 0x01, 0x01))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseProxyHeader(b)
		if err != nil {
			return
		}
		if info.Len < 16 || info.Len > len(b) {
			t.Fatalf("accepted header of length %d in %d bytes", info.Len, len(b))
		}
	})
}

// sendHello writes hello to addr and reads the first bytes that come back
// (a server flight or an alert) until the server closes or a short deadline
// passes. It returns them, possibly none.
func sendHello(addr string, hello []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(hello); err != nil {
		return nil, nil // the server may refuse before reading it all
	}
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	return buf[:n], nil
}

// TestRawClientHello makes sure the fuzzers' hand-made ClientHello is one a
// tunnel answers with a ServerHello, so fuzzing reaches past the parser,
// and that a name with a trailing dot gets an alert.
func TestRawClientHello(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	tun := start(t, p.serverTunnel(backend.addr()))
	for _, tc := range []struct {
		sni  string
		want byte // record type: 22 handshake, 21 alert
	}{{"localhost", 22}, {"", 21}, {"localhost.", 21}, {"\xff\x00\xfe", 22}} {
		got, err := sendHello(tun.Addr().String(), testhello.ClientHello([]byte(tc.sni), true))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < 6 || got[0] != tc.want || (tc.want == 22 && got[5] != 2) {
			t.Errorf("SNI %q: answered % x, want record type %d", tc.sni, got[:min(len(got), 8)], tc.want)
		}
	}
}

// TestLongSNI sends server names too long for the fuzzer to handle well:
// 18 KB (the hello spans two records) and 60000 bytes (near the 16-bit
// limit), then checks a good client.
func TestLongSNI(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	tun := start(t, p.serverTunnel(backend.addr()))
	for _, sni := range [][]byte{bytes.Repeat([]byte("label."), 3000), bytes.Repeat([]byte{0xff}, 60000), bytes.Repeat([]byte("a"), 65535)} {
		if _, err := sendHello(tun.Addr().String(), testhello.ClientHello(sni, true)); err != nil {
			t.Fatal(err)
		}
		if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
			t.Fatalf("good client refused after a %d-byte SNI: %v", len(sni), err)
		}
	}
}

// FuzzClientHelloSNI sends ClientHellos with fuzzed server names (long,
// empty, non-ASCII, invalid UTF-8, NULs, trailing dots) to one running
// server tunnel. The tunnel must not panic, and must still serve a good
// client after each one.
func FuzzClientHelloSNI(f *testing.F) {
	p := newPKI(f)
	backend := newEcho(f, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.ConnectTimeout = configs.Duration(2 * time.Second) // a hello the server waits on does not pin it long
	tun := start(f, cfg)
	addr := tun.Addr().String()
	good := p.clientTLS()

	for _, s := range []string{"localhost", "", ".", "localhost.", "a..b", "*", "*.example.com",
		"\x00", "ex\x00ample.com", "\xff\xfe\xfd", "bücher.example", "xn--bcher-kva.example",
		"127.0.0.1", "[::1]", "a b c", "UPPER.CASE.EXAMPLE", "-", "%00", "../../etc/passwd"} {
		f.Add([]byte(s), true)
	}
	f.Add([]byte("localhost"), false)
	f.Add(bytes.Repeat([]byte("a"), 255), true)
	f.Add(bytes.Repeat([]byte("label."), 60), true)
	// Names of tens of kilobytes stall Go's fuzzing engine; TestLongSNI
	// sends those.

	f.Fuzz(func(t *testing.T, sni []byte, withSNI bool) {
		if _, err := sendHello(addr, testhello.ClientHello(sni, withSNI)); err != nil {
			t.Fatalf("sending hello: %v", err)
		}
		if err := echoOK(addr, good); err != nil {
			t.Fatalf("good client refused after SNI %q: %v", sni, err)
		}
	})
}
