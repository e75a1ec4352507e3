package tunnel

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// PROXY protocol version 2, as HAProxy's proxy-protocol.txt defines it.
var proxySig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// TLV types and SSL sub-types.
const (
	pp2TypeSSL        = 0x20
	pp2SubtypeVersion = 0x21
	pp2SubtypeCN      = 0x22
	pp2SubtypeCipher  = 0x23
	pp2SubtypeSigAlg  = 0x24
	pp2SubtypeKeyAlg  = 0x25
	// pp2TypeClientCert carries the client certificate's DER in tls-full
	// mode; 0xE0 is the first type the spec leaves to applications.
	pp2TypeClientCert = 0xE0

	pp2ClientSSL      = 0x01
	pp2ClientCertConn = 0x02
	pp2ClientCertSess = 0x04
)

// Proxy protocol modes.
const (
	ppModeConn    = "conn"     // addresses only
	ppModeTLS     = "tls"      // plus an SSL TLV: version, cipher, client CN
	ppModeTLSFull = "tls-full" // plus the client certificate DER
)

// proxyHeader builds the v2 header announcing a connection from src to dst.
// cs is nil for conn mode.
func proxyHeader(src, dst net.Addr, mode string, cs *tls.ConnectionState) ([]byte, error) {
	var b bytes.Buffer
	b.Write(proxySig)
	b.WriteByte(0x21) // version 2, PROXY command
	var addr []byte
	s, sok := src.(*net.TCPAddr)
	d, dok := dst.(*net.TCPAddr)
	switch {
	case sok && dok && s.IP.To4() != nil && d.IP.To4() != nil:
		b.WriteByte(0x11) // TCP over IPv4
		addr = append(addr, s.IP.To4()...)
		addr = append(addr, d.IP.To4()...)
		addr = binary.BigEndian.AppendUint16(addr, uint16(s.Port))
		addr = binary.BigEndian.AppendUint16(addr, uint16(d.Port))
	case sok && dok && s.IP.To16() != nil && d.IP.To16() != nil:
		b.WriteByte(0x21) // TCP over IPv6
		addr = append(addr, s.IP.To16()...)
		addr = append(addr, d.IP.To16()...)
		addr = binary.BigEndian.AppendUint16(addr, uint16(s.Port))
		addr = binary.BigEndian.AppendUint16(addr, uint16(d.Port))
	default:
		b.WriteByte(0x00) // UNSPEC: unix sockets and the like
	}
	tlvs, err := proxyTLVs(mode, cs)
	if err != nil {
		return nil, err
	}
	n := len(addr) + len(tlvs)
	if n > 0xffff {
		return nil, errors.New("proxy protocol header too long")
	}
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(n))
	b.Write(l[:])
	b.Write(addr)
	b.Write(tlvs)
	return b.Bytes(), nil
}

func appendTLV(dst []byte, typ byte, v []byte) ([]byte, error) {
	if len(v) > 0xffff {
		return nil, fmt.Errorf("proxy protocol TLV %#x too long", typ)
	}
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...), nil
}

func proxyTLVs(mode string, cs *tls.ConnectionState) ([]byte, error) {
	if cs == nil || (mode != ppModeTLS && mode != ppModeTLSFull) {
		return nil, nil
	}
	// The client flags and the verify field as the spec defines them (and
	// HAProxy sends them): CERT_SESS when the client presented a
	// certificate in the TLS session, CERT_CONN when it did so on this
	// connection (a full handshake, not a resumption); verify is 0 only
	// when a certificate was presented and verified, which every
	// certificate that reaches here was.
	client := byte(pp2ClientSSL)
	verify := []byte{0, 0, 0, 1} // no client certificate
	var leaf []byte
	cn := ""
	if len(cs.PeerCertificates) > 0 {
		client |= pp2ClientCertSess
		if !cs.DidResume {
			client |= pp2ClientCertConn
		}
		verify = []byte{0, 0, 0, 0}
		leaf = cs.PeerCertificates[0].Raw
		cn = cs.PeerCertificates[0].Subject.CommonName
	}
	ssl := append([]byte{client}, verify...)
	var err error
	if ssl, err = appendTLV(ssl, pp2SubtypeVersion, []byte(tlsVersionName(cs.Version))); err != nil {
		return nil, err
	}
	if ssl, err = appendTLV(ssl, pp2SubtypeCipher, []byte(tls.CipherSuiteName(cs.CipherSuite))); err != nil {
		return nil, err
	}
	if cn != "" {
		if ssl, err = appendTLV(ssl, pp2SubtypeCN, []byte(cn)); err != nil {
			return nil, err
		}
	}
	if len(cs.PeerCertificates) > 0 {
		c := cs.PeerCertificates[0]
		if ssl, err = appendTLV(ssl, pp2SubtypeSigAlg, []byte(c.SignatureAlgorithm.String())); err != nil {
			return nil, err
		}
		if ssl, err = appendTLV(ssl, pp2SubtypeKeyAlg, []byte(c.PublicKeyAlgorithm.String())); err != nil {
			return nil, err
		}
	}
	out, err := appendTLV(nil, pp2TypeSSL, ssl)
	if err != nil {
		return nil, err
	}
	if mode == ppModeTLSFull && leaf != nil {
		if out, err = appendTLV(out, pp2TypeClientCert, leaf); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return tls.VersionName(v)
}

// proxyInfo is a parsed v2 header, for tests and fuzzing.
type proxyInfo struct {
	Family     byte
	Src, Dst   net.TCPAddr
	SSLClient  byte
	SSLVerify  uint32
	Version    string
	Cipher     string
	CN         string
	SigAlg     string
	KeyAlg     string
	ClientCert []byte
	Len        int // total header length
}

// parseProxyHeader parses a v2 header at the start of b.
func parseProxyHeader(b []byte) (*proxyInfo, error) {
	if len(b) < 16 || !bytes.Equal(b[:12], proxySig) {
		return nil, errors.New("no PROXY v2 signature")
	}
	if b[12] != 0x21 {
		return nil, fmt.Errorf("unsupported version/command %#x", b[12])
	}
	p := &proxyInfo{Family: b[13]}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < 16+n {
		return nil, errors.New("truncated PROXY header")
	}
	p.Len = 16 + n
	rest := b[16 : 16+n]
	switch p.Family {
	case 0x11:
		if len(rest) < 12 {
			return nil, errors.New("short IPv4 addresses")
		}
		p.Src = net.TCPAddr{IP: net.IP(append([]byte{}, rest[0:4]...)), Port: int(binary.BigEndian.Uint16(rest[8:10]))}
		p.Dst = net.TCPAddr{IP: net.IP(append([]byte{}, rest[4:8]...)), Port: int(binary.BigEndian.Uint16(rest[10:12]))}
		rest = rest[12:]
	case 0x21:
		if len(rest) < 36 {
			return nil, errors.New("short IPv6 addresses")
		}
		p.Src = net.TCPAddr{IP: net.IP(append([]byte{}, rest[0:16]...)), Port: int(binary.BigEndian.Uint16(rest[32:34]))}
		p.Dst = net.TCPAddr{IP: net.IP(append([]byte{}, rest[16:32]...)), Port: int(binary.BigEndian.Uint16(rest[34:36]))}
		rest = rest[36:]
	case 0x00:
	default:
		return nil, fmt.Errorf("unsupported family %#x", p.Family)
	}
	return p, parseTLVs(p, rest, false)
}

func parseTLVs(p *proxyInfo, b []byte, inSSL bool) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return errors.New("truncated TLV")
		}
		typ, l := b[0], int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+l {
			return errors.New("truncated TLV value")
		}
		v := b[3 : 3+l]
		b = b[3+l:]
		switch {
		case !inSSL && typ == pp2TypeSSL:
			if len(v) < 5 {
				return errors.New("short SSL TLV")
			}
			p.SSLClient = v[0]
			p.SSLVerify = binary.BigEndian.Uint32(v[1:5])
			if err := parseTLVs(p, v[5:], true); err != nil {
				return err
			}
		case !inSSL && typ == pp2TypeClientCert:
			p.ClientCert = append([]byte{}, v...)
		case inSSL && typ == pp2SubtypeVersion:
			p.Version = string(v)
		case inSSL && typ == pp2SubtypeCipher:
			p.Cipher = string(v)
		case inSSL && typ == pp2SubtypeCN:
			p.CN = string(v)
		case inSSL && typ == pp2SubtypeSigAlg:
			p.SigAlg = string(v)
		case inSSL && typ == pp2SubtypeKeyAlg:
			p.KeyAlg = string(v)
		}
	}
	return nil
}
