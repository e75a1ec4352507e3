package configs

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// pin256 is a well-formed SHA-256 pin (of nothing in particular).
const pin256 = "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

func TestURIPattern(t *testing.T) {
	for _, c := range []struct {
		pattern  string
		match    []string
		mismatch []string
	}{
		{
			"spiffe://example.org/*",
			[]string{"spiffe://example.org/a", "spiffe://example.org/a/"},
			[]string{"spiffe://example.org/a/b", "spiffe://example.org", "spiffe://example.org/", "spiffe://example.org//", "spiffe://other.org/a", "http://example.org/a"},
		},
		{
			"spiffe://example.org/**",
			[]string{"spiffe://example.org/a", "spiffe://example.org/a/b", "spiffe://example.org/a/b/c/"},
			[]string{"spiffe://example.org", "spiffe://example.org/", "spiffe://example.org//a", "spiffe://example.org/a//b", "spiffe://example.com/a"},
		},
		{
			"spiffe://example.org/ns/*/sa/web",
			[]string{"spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/dev/sa/web/"},
			[]string{"spiffe://example.org/ns/prod/sa/api", "spiffe://example.org/ns/a/b/sa/web", "spiffe://example.org/ns//sa/web"},
		},
		{
			"spiffe://*/web",
			[]string{"spiffe://a.org/web", "spiffe://b.org/web"},
			[]string{"spiffe://a.org/api", "spiffe:///web"},
		},
		{
			"spiffe://example.org/web",
			[]string{"spiffe://example.org/web", "spiffe://example.org/web/"},
			[]string{"spiffe://example.org/web/x", "spiffe://example.org/webx", "spiffe://example.org", "SPIFFE://example.org/web"},
		},
		{
			// Regular expression characters are literal.
			"spiffe://example.org/a.b/.+",
			[]string{"spiffe://example.org/a.b/.+"},
			[]string{"spiffe://example.org/aXb/.+", "spiffe://example.org/a.b/xx"},
		},
		{
			// Without a scheme, the whole pattern is a path.
			"urn:example/*",
			[]string{"urn:example/a"},
			[]string{"urn:example/a/b", "urn:other/a"},
		},
	} {
		p, err := CompileURIPattern(c.pattern)
		if err != nil {
			t.Errorf("CompileURIPattern(%q): %v", c.pattern, err)
			continue
		}
		if p.String() != c.pattern {
			t.Errorf("String() = %q, want %q", p.String(), c.pattern)
		}
		for _, u := range c.match {
			if !p.Match(u) {
				t.Errorf("%q does not match %q, want it to", c.pattern, u)
			}
		}
		for _, u := range c.mismatch {
			if p.Match(u) {
				t.Errorf("%q matches %q, want it not to", c.pattern, u)
			}
		}
	}
}

func TestURIPatternErrors(t *testing.T) {
	for _, c := range []struct{ pattern, err string }{
		{"", "empty"},
		{"spiffe://example.org/web*", "whole path segment"},
		{"spiffe://example.org/*web", "whole path segment"},
		{"spiffe://example.org/***", "whole path segment"},
		{"spiffe://example.org/**/web", "only allowed as the last segment"},
		{"spiff*://example.org/web", "scheme"},
		{"urn:example:*", "whole path segment"},
	} {
		if _, err := CompileURIPattern(c.pattern); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("CompileURIPattern(%q) = %v, want an error containing %q", c.pattern, err, c.err)
		}
	}
	var zero URIPattern
	if zero.Match("") || zero.Match("spiffe://a/b") {
		t.Error("the zero URIPattern matches")
	}
}

func TestSPKIPin(t *testing.T) {
	ca := testpki.NewCA(t.TempDir(), "ca")
	leaf := ca.Issue("leaf", testpki.Localhost())
	other := ca.Issue("other", testpki.Localhost())
	sum := sha256.Sum256(leaf.Cert.RawSubjectPublicKeyInfo)
	text := "sha256:" + base64.StdEncoding.EncodeToString(sum[:])

	p, err := ParseSPKIPin(text)
	if err != nil {
		t.Fatalf("ParseSPKIPin(%q): %v", text, err)
	}
	if p.Hash != crypto.SHA256 || p.String() != text {
		t.Errorf("ParseSPKIPin(%q) = %v %s", text, p.Hash, p)
	}
	if !p.Matches(leaf.Cert) {
		t.Error("pin does not match its certificate")
	}
	if p.Matches(other.Cert) || p.Matches(nil) {
		t.Error("pin matches another certificate or nil")
	}
	for _, h := range []crypto.Hash{crypto.SHA384, crypto.SHA512} {
		pin := NewSPKIPin(h, leaf.Cert)
		back, err := ParseSPKIPin(pin.String())
		if err != nil {
			t.Fatalf("ParseSPKIPin(%q): %v", pin, err)
		}
		if !back.Matches(leaf.Cert) || back.Matches(other.Cert) {
			t.Errorf("%v pin matches wrongly", h)
		}
	}
	if (SPKIPin{}).Matches(leaf.Cert) {
		t.Error("the zero pin matches")
	}
}

func TestParseSPKIPinErrors(t *testing.T) {
	b32 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct{ pin, err string }{
		{b32, "want sha256:BASE64"},
		{"md5:" + b32, `unknown hash "md5"`},
		{"SHA256:" + b32, "unknown hash"},
		{"sha256:" + b32[:len(b32)-1], "bad base64"},
		{"sha256:" + strings.TrimRight(b32, "="), "bad base64"},
		{"sha256:@@@@", "bad base64"},
		{"sha384:" + b32, "is 48 bytes, not 32"},
		{"sha256:", "is 32 bytes, not 0"},
	} {
		if _, err := ParseSPKIPin(c.pin); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseSPKIPin(%q) = %v, want an error containing %q", c.pin, err, c.err)
		}
	}
}
