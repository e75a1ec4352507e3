package configs

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	for _, c := range []struct {
		in, network, address, err string
	}{
		{in: "127.0.0.1:8443", network: "tcp", address: "127.0.0.1:8443"},
		{in: "localhost:08443", network: "tcp", address: "localhost:8443"},
		{in: ":8443", network: "tcp", address: ":8443"},
		{in: "0.0.0.0:0", network: "tcp", address: "0.0.0.0:0"},
		{in: "[::1]:65535", network: "tcp", address: "[::1]:65535"},
		{in: "[fe80::1%eth0]:80", network: "tcp", address: "[fe80::1%eth0]:80"},
		{in: "db.internal.:5432", network: "tcp", address: "db.internal.:5432"},
		{in: "unix:/run/a.sock", network: "unix", address: "/run/a.sock"},
		{in: "unix:rel/a.sock", network: "unix", address: "rel/a.sock"},
		{in: "systemd:web", network: "systemd", address: "web"},
		{in: "launchd:web", network: "launchd", address: "web"},
		{in: "", err: "empty address"},
		{in: "localhost", err: "missing port"},
		{in: "localhost:", err: "missing port"},
		{in: "::1:80", err: "too many colons"},
		{in: "[::1]", err: "missing port"},
		{in: "host:65536", err: "not a number from 0 to 65535"},
		{in: "host:-1", err: "not a number"},
		{in: "host:+1", err: "not a number"},
		{in: "host:http", err: "not a number"},
		{in: "host:1000000", err: "not a number"},
		{in: "[host]:80", err: "invalid IPv6 address"},
		{in: "[1.2.3.4]:80", err: "invalid IPv6 address"},
		{in: "300.1.1.1:80", err: "invalid IPv4 address"},
		{in: "a b:80", err: "invalid host name"},
		{in: "a/b:80", err: "invalid host name"},
		{in: "unix:", err: "missing socket path"},
		{in: "systemd:", err: "missing socket name"},
		{in: "tcp://a:80", err: "not a URL"},
	} {
		network, address, err := ParseAddress(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseAddress(%q) = %q, %q, %v; want an error containing %q", c.in, network, address, err, c.err)
			}
			continue
		}
		if err != nil || network != c.network || address != c.address {
			t.Errorf("ParseAddress(%q) = %q, %q, %v; want %q, %q", c.in, network, address, err, c.network, c.address)
		}
	}
}

func TestParseStatusAddress(t *testing.T) {
	for _, c := range []struct {
		in, scheme, network, address string
		ok                           bool
	}{
		{"127.0.0.1:6060", "", "tcp", "127.0.0.1:6060", true},
		{"http://localhost:6060", "http", "tcp", "localhost:6060", true},
		{"https://[::1]:6060/", "https", "tcp", "[::1]:6060", true},
		{"unix:/run/status.sock", "", "unix", "/run/status.sock", true},
		{"http://localhost:6060/metrics", "", "", "", false},
		{"http://unix:/run/s.sock", "", "", "", false},
		{"ftp://localhost:6060", "", "", "", false},
		{"systemd:status", "", "systemd", "status", true},
		{"https://systemd:status", "", "", "", false},
		{"launchd:status", "", "", "", false},
		{"localhost", "", "", "", false},
	} {
		scheme, network, address, err := ParseStatusAddress(c.in)
		if (err == nil) != c.ok || scheme != c.scheme || network != c.network || address != c.address {
			t.Errorf("ParseStatusAddress(%q) = %q, %q, %q, %v", c.in, scheme, network, address, err)
		}
	}
}

func TestIsLocalAddress(t *testing.T) {
	for in, want := range map[string]bool{
		"unix:/x":        true,
		"systemd:x":      true,
		"launchd:x":      true,
		"127.0.0.1:80":   true,
		"[::1]:80":       true,
		"localhost:80":   true,
		"127.0.0.2:80":   false,
		"0.0.0.0:80":     false,
		":80":            false,
		"localhost.a:80": false,
		"db:80":          false,
	} {
		if got := IsLocalAddress(in); got != want {
			t.Errorf("IsLocalAddress(%q) = %v", in, got)
		}
	}
}

func TestParseTLSVersion(t *testing.T) {
	for in, want := range map[string]uint16{"": 0, "TLS1.2": tls.VersionTLS12, "1.2": tls.VersionTLS12, "TLS1.3": tls.VersionTLS13, "1.3": tls.VersionTLS13} {
		if got, err := ParseTLSVersion(in); err != nil || got != want {
			t.Errorf("ParseTLSVersion(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"TLS1.1", "tls1.3", "1.4"} {
		if _, err := ParseTLSVersion(in); err == nil {
			t.Errorf("ParseTLSVersion(%q) accepted", in)
		}
	}
}
