package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fuzzEnv sets the variables whose name starts with S and leaves the others
// unset.
func fuzzEnv(name string) (string, bool) {
	if strings.HasPrefix(name, "S") {
		return "v$" + name, true
	}
	return "", false
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	examples, _ := filepath.Glob("*.yaml")
	for _, file := range append(files, examples...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"~",
		"---\n---\n",
		"tunnels: [[]]",
		"tunnels: [{<<: {<<: {<<: {name: a}}}}]",
		"a: &a [*a]",
		"tunnels:\n  - &t {name: a}\n  - *t\n",
		"defaults: {allow-cn: ${S1}}\ntunnels: [{name: ${S2}, allow-cn: $$}]",
		"tunnels: [{name: a, listen: '${X', target: '${}'}]",
		"tunnels: [{name: a, connect-timeout: 1e400, max-concurrent-conns: 99999999999999999999}]",
		"tunnels: [{name: a, mode: server, listen: '[::1%]:1', target: 'unix:'}]",
		"status: !!binary aGk=\ntunnels: [{? [a] : b}]",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml", fuzzEnv)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v (%T) is not Problems", err, err)
			}
			for _, p := range ps {
				if p.File != "fuzz.yaml" || p.Msg == "" || p.Warning {
					t.Fatalf("odd problem %#v", p)
				}
			}
			return
		}
		if ps := Validate(c); len(ps) != 0 {
			t.Fatalf("Parse accepted a config that does not validate:\n%v", ps)
		}
		roundTrip(t, data)
	})
}

// roundTrip checks that a valid file, printed by MarshalConfig, reads back
// the same (storepass aside, which is printed as a placeholder).
func roundTrip(t *testing.T, data []byte) {
	c, err := Parse(data, "", fuzzEnv)
	if err != nil {
		t.Fatalf("valid with a path but not without: %v", err)
	}
	out, err := MarshalConfig(c)
	if err != nil {
		t.Fatalf("MarshalConfig: %v", err)
	}
	secrets := map[string]string{"KEYSTORE_PASS": "pass", "PKCS11_PIN": "pin", "GHOSTUNNEL_PROXY": "http://proxy.invalid:3128"}
	back, err := Parse(out, "", func(name string) (string, bool) { v, ok := secrets[name]; return v, ok })
	if err != nil {
		t.Fatalf("MarshalConfig output does not parse: %v\n%s", err, out)
	}
	for i := range c.Tunnels {
		if c.Tunnels[i].Storepass != "" {
			c.Tunnels[i].Storepass = "pass"
		}
		if c.Tunnels[i].PKCS11Pin != "" {
			c.Tunnels[i].PKCS11Pin = "pin"
		}
		if c.Tunnels[i].Proxy != "" {
			c.Tunnels[i].Proxy = "http://proxy.invalid:3128"
		}
	}
	if !reflect.DeepEqual(c, back) {
		t.Fatalf("round trip:\n%+v\nbecame\n%+v\nvia\n%s", c, back, out)
	}
}

func FuzzURIPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"spiffe://example.org/*", "spiffe://example.org/a"},
		{"spiffe://example.org/**", "spiffe://example.org/a/b"},
		{"spiffe://*/a/*", "spiffe://x/a/b/"},
		{"urn:a/b", "urn:a/b"},
		{"a://b://c/*", "a://b://c/d"},
		{"/", "/"},
		{"**", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, uri string) {
		p, err := CompileURIPattern(pattern)
		if err != nil {
			if p.Match(uri) {
				t.Fatal("failed pattern matches")
			}
			return
		}
		p.Match(uri)
		if !strings.Contains(pattern, "*") && !p.Match(pattern) {
			t.Fatalf("literal pattern %q does not match itself", pattern)
		}
		norm := func(s string) string { scheme, path := splitScheme(s); return scheme + trimSlash(path) }
		if !strings.Contains(pattern, "*") && p.Match(uri) && norm(uri) != norm(pattern) {
			t.Fatalf("literal pattern %q matches %q", pattern, uri)
		}
	})
}

func FuzzSPKIPin(f *testing.F) {
	for _, s := range []string{
		pin256,
		"sha384:OLBgp1GsljhM2TJ+sbHjaiH9txEUvgdDTAzHv2P24donTt6/529l+9Ua0vFImLlb",
		"sha512:AAAA",
		"sha256:",
		":",
		"md5:AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSPKIPin(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("ParseSPKIPin(%q).String() = %q", s, p.String())
		}
		if p.Matches(nil) {
			t.Fatal("matches nil")
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:8443", ":0", "[::1]:1", "[fe80::1%eth0]:80", "localhost:08443", "host.:1",
		"unix:/a", "systemd:x", "launchd:", "a:b:c", "[::1]", "http://a:1", "1.2.3.4.5:6",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		network, address, err := ParseAddress(s)
		if err != nil {
			return
		}
		if network != NetworkTCP {
			return
		}
		n2, a2, err := ParseAddress(address)
		if err != nil || n2 != network || a2 != address {
			t.Fatalf("ParseAddress(%q) = %q, but ParseAddress(%q) = %q, %q, %v", s, address, address, n2, a2, err)
		}
		if _, ok := parseEndpoint(s); !ok {
			t.Fatalf("parseEndpoint(%q) fails", s)
		}
		ParseStatusAddress(s)
	})
}
