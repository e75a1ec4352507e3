// Package testhello builds raw TLS ClientHello records for tests that send
// odd or hostile hellos (fuzzers of the tunnels and the status port).
package testhello

import "encoding/binary"

// ClientHello is a TLS 1.2 ClientHello offering the tunnel's suites, with
// server_name set to sni byte for byte (no validation at all) when withSNI.
// It is split into records of at most 16 KiB, so long names span records.
func ClientHello(sni []byte, withSNI bool) []byte {
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	ext := func(b []byte, typ int, data []byte) []byte {
		b = u16(b, typ)
		b = u16(b, len(data))
		return append(b, data...)
	}
	if len(sni) > 60000 {
		sni = sni[:60000]
	}
	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	suites := []uint16{0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8}
	body = u16(body, 2*len(suites))
	for _, s := range suites {
		body = u16(body, int(s))
	}
	body = append(body, 1, 0) // compression: null
	var exts []byte
	if withSNI {
		name := u16([]byte{0}, len(sni))
		name = append(name, sni...)
		exts = ext(exts, 0, append(u16(nil, len(name)), name...))
	}
	exts = ext(exts, 10, []byte{0, 4, 0, 29, 0, 23})     // supported_groups: x25519, P-256
	exts = ext(exts, 11, []byte{1, 0})                   // ec_point_formats: uncompressed
	exts = ext(exts, 13, []byte{0, 6, 4, 3, 8, 4, 4, 1}) // signature_algorithms
	exts = ext(exts, 0xff01, []byte{0})                  // renegotiation_info
	body = append(u16(body, len(exts)), exts...)
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	var out []byte
	for len(hs) > 0 {
		n := min(len(hs), 16384)
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}
