package configs

import (
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	_ "crypto/sha256" // SHA-256 for SPKI pins
	_ "crypto/sha512" // SHA-384 and SHA-512 for SPKI pins
)

// URIPattern is a compiled allow-uri or verify-uri pattern, with upstream
// Ghostunnel's wildcard rules. A pattern is a scheme ("spiffe://"), matched
// literally, and a path of segments separated by "/". A segment "*" matches
// exactly one non-empty segment, a final segment "**" matches one or more
// segments, and any other segment matches itself. A trailing "/" is optional
// on both sides, so "spiffe://a/b" and "spiffe://a/b/" are the same.
//
//	spiffe://example.org/*   matches spiffe://example.org/a, not spiffe://example.org/a/b
//	spiffe://example.org/**  matches both
type URIPattern struct {
	pattern  string
	scheme   string   // up to and including "://"; "" if none
	segments []string // path segments, "*" and "**" being wildcards
}

// Wildcard segments of a URI pattern.
const (
	wildOne  = "*"
	wildMany = "**"
)

// CompileURIPattern compiles an allow-uri or verify-uri pattern. A "*"
// that is not a whole segment, and a "**" that is not the last segment, are
// errors.
func CompileURIPattern(p string) (URIPattern, error) {
	if p == "" {
		return URIPattern{}, errors.New("empty URI pattern")
	}
	scheme, path := splitScheme(p)
	if strings.Contains(scheme, "*") {
		return URIPattern{}, fmt.Errorf("URI pattern %q: no wildcard allowed in the scheme", p)
	}
	segs := strings.Split(trimSlash(path), "/")
	for i, s := range segs {
		switch {
		case s == wildMany && i != len(segs)-1:
			return URIPattern{}, fmt.Errorf("URI pattern %q: %q is only allowed as the last segment", p, wildMany)
		case s != wildOne && s != wildMany && strings.Contains(s, "*"):
			return URIPattern{}, fmt.Errorf("URI pattern %q: %q must be a whole path segment", p, "*")
		}
	}
	return URIPattern{pattern: p, scheme: scheme, segments: segs}, nil
}

// splitScheme splits "scheme://rest" after "://"; without "://" the scheme
// is empty.
func splitScheme(s string) (scheme, rest string) {
	if i := strings.Index(s, "://"); i >= 0 {
		return s[:i+3], s[i+3:]
	}
	return "", s
}

// trimSlash drops one trailing "/", which is optional.
func trimSlash(s string) string {
	return strings.TrimSuffix(s, "/")
}

// String returns the pattern as written.
func (p URIPattern) String() string { return p.pattern }

// Match reports whether uri matches the pattern.
func (p URIPattern) Match(uri string) bool {
	if p.segments == nil {
		return false
	}
	scheme, path := splitScheme(uri)
	if scheme != p.scheme {
		return false
	}
	segs := strings.Split(trimSlash(path), "/")
	for i, want := range p.segments {
		if want == wildMany {
			rest := segs[i:]
			return len(rest) > 0 && !containsEmpty(rest)
		}
		switch {
		case i >= len(segs):
			return false
		case want == wildOne:
			if segs[i] == "" {
				return false
			}
		case segs[i] != want:
			return false
		}
	}
	return len(segs) == len(p.segments)
}

func containsEmpty(ss []string) bool {
	for _, s := range ss {
		if s == "" {
			return true
		}
	}
	return false
}

// SPKIPin is a pin of a certificate's public key: the hash of its DER
// SubjectPublicKeyInfo.
type SPKIPin struct {
	Hash crypto.Hash
	Sum  []byte
}

// Pin hash algorithms by name.
var pinHashes = map[string]crypto.Hash{
	"sha256": crypto.SHA256,
	"sha384": crypto.SHA384,
	"sha512": crypto.SHA512,
}

// ParseSPKIPin parses ALGORITHM:BASE64, where ALGORITHM is sha256, sha384
// or sha512 and BASE64 is the standard, padded base64 of the digest.
func ParseSPKIPin(s string) (SPKIPin, error) {
	alg, b64, ok := strings.Cut(s, ":")
	if !ok {
		return SPKIPin{}, fmt.Errorf("invalid SPKI pin %q: want sha256:BASE64", s)
	}
	h, ok := pinHashes[alg]
	if !ok {
		return SPKIPin{}, fmt.Errorf("invalid SPKI pin %q: unknown hash %q (want sha256, sha384 or sha512)", s, alg)
	}
	// The decoder skips \r and \n even in strict mode; a pin has none.
	sum, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || strings.ContainsAny(b64, "\r\n") {
		return SPKIPin{}, fmt.Errorf("invalid SPKI pin %q: bad base64", s)
	}
	if len(sum) != h.Size() {
		return SPKIPin{}, fmt.Errorf("invalid SPKI pin %q: a %s digest is %d bytes, not %d", s, alg, h.Size(), len(sum))
	}
	return SPKIPin{Hash: h, Sum: sum}, nil
}

// NewSPKIPin returns the pin of cert's public key with hash h.
func NewSPKIPin(h crypto.Hash, cert *x509.Certificate) SPKIPin {
	d := h.New()
	d.Write(cert.RawSubjectPublicKeyInfo)
	return SPKIPin{Hash: h, Sum: d.Sum(nil)}
}

// String formats the pin as ParseSPKIPin reads it.
func (p SPKIPin) String() string {
	for name, h := range pinHashes {
		if h == p.Hash {
			return name + ":" + base64.StdEncoding.EncodeToString(p.Sum)
		}
	}
	return fmt.Sprintf("%v:%s", p.Hash, base64.StdEncoding.EncodeToString(p.Sum))
}

// Matches reports whether cert's public key has this pin.
func (p SPKIPin) Matches(cert *x509.Certificate) bool {
	if cert == nil || !p.Hash.Available() || len(p.Sum) != p.Hash.Size() {
		return false
	}
	got := NewSPKIPin(p.Hash, cert)
	return subtle.ConstantTimeCompare(got.Sum, p.Sum) == 1
}
