package configs

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const oneServer = `tunnels:
  - name: a
    mode: server
    listen: localhost:8443
    target: localhost:8080
    keystore: /k.pem
    allow-all: true
`

// TestSecretNotInTypeErrors: a secret given a non-string YAML tag is
// refused without quoting its value.
func TestSecretNotInTypeErrors(t *testing.T) {
	for _, tag := range []string{"!!int", "!!float", "!!bool", "!!timestamp"} {
		src := strings.Replace(oneServer, "    allow-all: true\n", "    allow-all: true\n    storepass: "+tag+" hunter2\n", 1)
		_, err := Parse([]byte(src), "f.yaml", nil)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "storepass") {
			t.Errorf("storepass %s: %v", tag, err)
		}
	}
}

// TestAbstractSocketNotResolved: unix:@name (a Linux abstract socket) is
// not a path, so it is not made relative to the file.
func TestAbstractSocketNotResolved(t *testing.T) {
	src := strings.Replace(oneServer, "target: localhost:8080", "target: unix:@backend", 1)
	c, err := Parse([]byte(src), "/etc/gt/fleet.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Tunnels[0].Target; got != "unix:@backend" {
		t.Errorf("target = %q, want unix:@backend", got)
	}
}

// TestDisableAuthenticationDefaultNotForServers: disable-authentication in
// defaults: (for the client tunnels) does not open the server tunnels.
func TestDisableAuthenticationDefaultNotForServers(t *testing.T) {
	src := `defaults:
  disable-authentication: true
tunnels:
  - {name: out, mode: client, listen: localhost:9000, target: api.example.com:443}
  - {name: in, mode: server, listen: 0.0.0.0:8443, target: localhost:80, keystore: /k.pem}
`
	_, err := Parse([]byte(src), "f.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), `tunnel "in"`) || strings.Contains(err.Error(), `tunnel "out"`) {
		t.Fatalf("want the server refused for lack of access control, the client accepted: %v", err)
	}
}

// BenchmarkParseAliasedFleet: a fleet of n tunnels made of aliases of one
// (a small file); parse and validate stay linear in n (they were
// quadratic in the listen-collision check: 5 s for 20,000).
func BenchmarkParseAliasedFleet(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		var src strings.Builder
		src.WriteString("x-t: &t {name: a, mode: server, listen: 'localhost:0', target: localhost:8080, keystore: /k, allow-all: true}\ntunnels: [")
		for range n {
			src.WriteString("*t,")
		}
		src.WriteString("]\n")
		b.Run(fmt.Sprintf("tunnels=%d", n), func(b *testing.B) {
			for range b.N {
				Parse([]byte(src.String()), "f.yaml", nil)
			}
		})
	}
}

func TestParseDurationUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10s": 10 * time.Second, "1d": 24 * time.Hour, "1.5d": 36 * time.Hour, "2w": 336 * time.Hour,
		"1d12h": 36 * time.Hour, "1w1d1h1m": 193*time.Hour + time.Minute, "+1d": 24 * time.Hour, "-1d": -24 * time.Hour,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"d", "1", "1x", "1dd", "-", "99999999999w", "1d 1h"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}
