package configs

import (
	"strings"
	"testing"
	"time"
)

// server and client return valid tunnels for the tests to break.
func server() Tunnel {
	t := DefaultTunnelSettings()
	t.Name, t.Mode = "srv", ModeServer
	t.Listen, t.Target = "0.0.0.0:8443", "127.0.0.1:8080"
	t.Keystore = "srv.pem"
	t.AllowCN = []string{"web"}
	return t
}

func client() Tunnel {
	t := DefaultTunnelSettings()
	t.Name, t.Mode = "cli", ModeClient
	t.Listen, t.Target = "127.0.0.1:7000", "api.example.com:443"
	t.Cert, t.Key = "cli.crt", "cli.key"
	return t
}

// withPKCS11 gives t a private key in a PKCS#11 token and cert as its chain.
func withPKCS11(t Tunnel, cert string) Tunnel {
	t.Cert = cert
	t.PKCS11Module, t.PKCS11TokenLabel, t.PKCS11Pin = "/usr/lib/softhsm/libsofthsm2.so", "tok", "1234"
	return t
}

func config(ts ...Tunnel) *Config {
	c := DefaultConfig()
	c.Tunnels = ts
	return &c
}

// want describes the one problem a case expects, or none when msg is "".
type want struct {
	key, msg string
}

func checkProblems(t *testing.T, ps Problems, w want) {
	t.Helper()
	if w.msg == "" {
		if len(ps) != 0 {
			t.Errorf("want no problems, got:\n%v", ps)
		}
		return
	}
	for _, p := range ps {
		if p.Key == w.key && strings.Contains(p.Msg, w.msg) {
			return
		}
	}
	t.Errorf("want a problem with key %q and message containing %q, got:\n%v", w.key, w.msg, ps)
}

func TestValidateTunnel(t *testing.T) {
	for _, c := range []struct {
		name   string
		tunnel func() Tunnel
		want   want
	}{
		{"valid server", server, want{}},
		{"valid client", client, want{}},

		// Names.
		{"name missing", func() Tunnel { t := server(); t.Name = ""; return t }, want{"name", "name is required"}},
		{"name upper case", func() Tunnel { t := server(); t.Name = "Web"; return t }, want{"name", `invalid name "Web"`}},
		{"name leading dash", func() Tunnel { t := server(); t.Name = "-web"; return t }, want{"name", "invalid name"}},
		{"name with dots", func() Tunnel { t := server(); t.Name = "web.v2_a-b"; return t }, want{}},
		{"name 63", func() Tunnel { t := server(); t.Name = strings.Repeat("a", 63); return t }, want{}},
		{"name 64", func() Tunnel { t := server(); t.Name = strings.Repeat("a", 64); return t }, want{"name", "at most 63"}},

		// Modes.
		{"mode missing", func() Tunnel { t := server(); t.Mode = ""; return t }, want{"mode", "mode is required"}},
		{"mode unknown", func() Tunnel { t := server(); t.Mode = "proxy"; return t }, want{"mode", `invalid mode "proxy"`}},

		// Addresses.
		{"listen missing", func() Tunnel { t := server(); t.Listen = ""; return t }, want{"listen", "listen is required"}},
		{"target missing", func() Tunnel { t := server(); t.Target = ""; return t }, want{"target", "target is required"}},
		{"listen no port", func() Tunnel { t := server(); t.Listen = "localhost"; return t }, want{"listen", "missing port"}},
		{"listen port 0", func() Tunnel { t := server(); t.Listen = "127.0.0.1:0"; return t }, want{}},
		{"listen port too big", func() Tunnel { t := server(); t.Listen = "127.0.0.1:65536"; return t }, want{"listen", "not a number from 0 to 65535"}},
		{"listen named port", func() Tunnel { t := server(); t.Listen = "127.0.0.1:https"; return t }, want{"listen", "not a number"}},
		{"listen unix", func() Tunnel { t := server(); t.Listen = "unix:/run/s.sock"; return t }, want{}},
		{"listen systemd", func() Tunnel { t := server(); t.Listen = "systemd:web"; return t }, want{}},
		{"listen launchd", func() Tunnel { t := server(); t.Listen = "launchd:web"; return t }, want{}},
		{"listen unix empty", func() Tunnel { t := server(); t.Listen = "unix:"; return t }, want{"listen", "missing socket path"}},
		{"listen URL", func() Tunnel { t := server(); t.Listen = "tcp://0.0.0.0:1"; return t }, want{"listen", "not a URL"}},
		{"target port 0", func() Tunnel { t := server(); t.Target = "127.0.0.1:0"; return t }, want{"target", "port must be from 1 to 65535"}},
		{"server target unix", func() Tunnel { t := server(); t.Target = "unix:/run/app.sock"; return t }, want{}},
		{"server target systemd", func() Tunnel { t := server(); t.Target = "systemd:x"; return t }, want{"target", "target must be HOST:PORT or unix:PATH"}},
		{"server target localhost", func() Tunnel { t := server(); t.Target = "localhost:80"; return t }, want{}},
		{"server target ::1", func() Tunnel { t := server(); t.Target = "[::1]:80"; return t }, want{}},
		{"server target remote", func() Tunnel { t := server(); t.Target = "10.0.0.1:80"; return t },
			want{"target", "target must be unix:PATH or localhost:PORT (unless unsafe-target is set)"}},
		{"server target remote unsafe", func() Tunnel { t := server(); t.Target = "10.0.0.1:80"; t.UnsafeTarget = true; return t }, want{}},
		{"client target unix", func() Tunnel { t := client(); t.Target = "unix:/x"; return t }, want{"target", "must be HOST:PORT for a client tunnel"}},
		{"client listen remote", func() Tunnel { t := client(); t.Listen = "0.0.0.0:7000"; return t },
			want{"listen", "(unless unsafe-listen is set)"}},
		{"client listen remote unsafe", func() Tunnel { t := client(); t.Listen = "0.0.0.0:7000"; t.UnsafeListen = true; return t }, want{}},
		{"client listen unix", func() Tunnel { t := client(); t.Listen = "unix:/run/c.sock"; return t }, want{}},
		{"client listen systemd", func() Tunnel { t := client(); t.Listen = "systemd:c"; return t }, want{}},
		{"bad IPv6 host", func() Tunnel { t := server(); t.Listen = "[zz::1]:80"; return t }, want{"listen", "invalid IPv6 address"}},
		{"bad IPv4 host", func() Tunnel { t := server(); t.Listen = "1.2.3.999:80"; return t }, want{"listen", "invalid IPv4 address"}},
		{"bad host name", func() Tunnel { t := client(); t.Target = "a b:80"; return t }, want{"target", "invalid host name"}},

		// Credentials.
		{"server no credentials", func() Tunnel { t := server(); t.Keystore = ""; return t }, want{"", "a certificate is required"}},
		{"server cert and key", func() Tunnel { t := server(); t.Keystore, t.Cert, t.Key = "", "a.crt", "a.key"; return t }, want{}},
		{"cert without key", func() Tunnel { t := server(); t.Keystore, t.Cert = "", "a.crt"; return t }, want{"cert", "cert and key must be set together"}},
		{"key without cert", func() Tunnel { t := server(); t.Keystore, t.Key = "", "a.key"; return t }, want{"key", "cert and key must be set together"}},
		{"keystore and cert", func() Tunnel { t := server(); t.Cert, t.Key = "a.crt", "a.key"; return t }, want{"keystore", "keystore is mutually exclusive with cert and key"}},
		{"storepass with keystore", func() Tunnel { t := server(); t.Storepass = "pw"; return t }, want{}},
		{"storepass without keystore", func() Tunnel { t := client(); t.Storepass = "pw"; return t }, want{"storepass", "storepass requires keystore"}},
		{"client no credentials", func() Tunnel { t := client(); t.Cert, t.Key = "", ""; return t }, want{"", "a client certificate is required"}},
		{"client disable-authentication", func() Tunnel { t := client(); t.Cert, t.Key = "", ""; t.DisableAuthentication = true; return t }, want{}},
		{"client disable-authentication with cert", func() Tunnel { t := client(); t.DisableAuthentication = true; return t },
			want{"disable-authentication", "disable-authentication is mutually exclusive with cert and key"}},
		{"client disable-authentication with keystore", func() Tunnel {
			t := client()
			t.Cert, t.Key, t.Keystore = "", "", "k.p12"
			t.DisableAuthentication = true
			return t
		},
			want{"disable-authentication", "disable-authentication is mutually exclusive with keystore"}},

		// SPIFFE Workload API.
		{"server workload api", func() Tunnel { t := server(); t.Keystore, t.UseWorkloadAPI = "", true; return t }, want{}},
		{"client workload api", func() Tunnel {
			t := client()
			t.Cert, t.Key, t.UseWorkloadAPI, t.UseWorkloadAPIAddr = "", "", true, "unix:///run/spire/agent.sock"
			t.UseWorkloadAPITimeout = Duration(time.Minute)
			return t
		}, want{}},
		{"workload api and keystore", func() Tunnel { t := server(); t.UseWorkloadAPI = true; return t },
			want{"use-workload-api", "use-workload-api is mutually exclusive with keystore"}},
		{"workload api and cert", func() Tunnel { t := client(); t.UseWorkloadAPI = true; return t },
			want{"use-workload-api", "use-workload-api is mutually exclusive with cert"}},
		{"workload api addr without use", func() Tunnel { t := server(); t.UseWorkloadAPIAddr = "unix:///s"; return t },
			want{"use-workload-api-addr", "use-workload-api-addr requires use-workload-api"}},
		{"workload api bad addr", func() Tunnel {
			t := server()
			t.Keystore, t.UseWorkloadAPI, t.UseWorkloadAPIAddr = "", true, "/run/agent.sock"
			return t
		}, want{"use-workload-api-addr", "invalid address"}},
		{"workload api with disable-authentication", func() Tunnel {
			t := client()
			t.Cert, t.Key, t.UseWorkloadAPI, t.DisableAuthentication = "", "", true, true
			return t
		}, want{"disable-authentication", "disable-authentication is mutually exclusive with use-workload-api"}},

		// PKCS#11: the chain from cert, the key in the token.
		{"server cert and pkcs11", func() Tunnel { t := server(); t.Keystore = ""; return withPKCS11(t, "a.crt") }, want{}},
		{"client cert and pkcs11", func() Tunnel { t := client(); t.Key = ""; return withPKCS11(t, "a.crt") }, want{}},
		{"pkcs11 without pin", func() Tunnel {
			t := withPKCS11(client(), "a.crt")
			t.Key, t.PKCS11Pin = "", ""
			return t
		}, want{}},
		{"cert without key names pkcs11", func() Tunnel { t := server(); t.Keystore, t.Cert = "", "a.crt"; return t },
			want{"cert", "cert and key must be set together, unless pkcs11-module holds the private key"}},
		{"pkcs11 and key", func() Tunnel { return withPKCS11(client(), "a.crt") },
			want{"pkcs11-module", "pkcs11-module is mutually exclusive with key: the private key is in the token"}},
		{"pkcs11 without cert", func() Tunnel { t := client(); t.Cert, t.Key = "", ""; return withPKCS11(t, "") },
			want{"pkcs11-module", "pkcs11-module requires cert"}},
		{"pkcs11 and keystore", func() Tunnel { return withPKCS11(server(), "") },
			want{"pkcs11-module", "pkcs11-module is mutually exclusive with keystore"}},
		{"pkcs11 without token label", func() Tunnel {
			t := withPKCS11(server(), "a.crt")
			t.Keystore, t.PKCS11TokenLabel = "", ""
			return t
		}, want{"pkcs11-module", "pkcs11-module requires pkcs11-token-label"}},
		{"pkcs11 token label alone", func() Tunnel { t := client(); t.PKCS11TokenLabel = "tok"; return t },
			want{"pkcs11-token-label", "pkcs11-token-label requires pkcs11-module"}},
		{"pkcs11 pin alone", func() Tunnel { t := client(); t.PKCS11Pin = "1234"; return t },
			want{"pkcs11-pin", "pkcs11-pin requires pkcs11-module"}},
		{"pkcs11 and disable-authentication", func() Tunnel {
			t := withPKCS11(client(), "")
			t.Cert, t.Key, t.DisableAuthentication = "", "", true
			return t
		}, want{"disable-authentication", "disable-authentication is mutually exclusive with pkcs11-module"}},

		// Server access control.
		{"no access control", func() Tunnel { t := server(); t.AllowCN = nil; return t }, want{"", "at least one access control setting (allow-all, allow-cn, allow-ou, allow-dns, allow-uri, allow-ip, allow-spki-pin, allow-policy or disable-authentication) is required"}},
		{"empty list is no access control", func() Tunnel { t := server(); t.AllowCN = []string{}; return t }, want{"", "at least one access control setting"}},
		{"allow-all", func() Tunnel { t := server(); t.AllowCN, t.AllowAll = nil, true; return t }, want{}},
		{"allow-all and allow-cn", func() Tunnel { t := server(); t.AllowAll = true; return t }, want{"allow-all", "allow-all is mutually exclusive with allow-cn"}},
		{"allow names OR together", func() Tunnel {
			t := server()
			t.AllowOU, t.AllowDNS, t.AllowURI, t.AllowIP = []string{"ou"}, []string{"a.example"}, []string{"spiffe://a/b"}, []string{"10.0.0.1"}
			return t
		}, want{}},
		{"allow-spki-pin", func() Tunnel { t := server(); t.AllowCN, t.AllowSPKIPin = nil, []string{pin256}; return t }, want{}},
		{"allow-policy", func() Tunnel {
			t := server()
			t.AllowCN, t.AllowPolicy, t.AllowQuery = nil, "b", "data.x.allow"
			return t
		}, want{}},
		{"allow-policy without allow-query", func() Tunnel { t := server(); t.AllowCN, t.AllowPolicy = nil, "b"; return t },
			want{"allow-policy", "allow-policy and allow-query have to be used together"}},
		{"allow-query without allow-policy", func() Tunnel { t := server(); t.AllowCN, t.AllowQuery = nil, "data.x"; return t },
			want{"allow-query", "allow-policy and allow-query have to be used together"}},
		{"allow-policy and allow-cn", func() Tunnel { t := server(); t.AllowPolicy, t.AllowQuery = "b", "data.x.allow"; return t },
			want{"allow-policy", "allow-policy and allow-query are mutually exclusive with other access control settings (allow-cn)"}},
		{"allow-policy in a client", func() Tunnel { t := client(); t.AllowPolicy, t.AllowQuery = "b", "q"; return t },
			want{"allow-policy", "allow-policy is only for server tunnels"}},
		{"verify-policy ORs with verify-cn", func() Tunnel {
			t := client()
			t.VerifyCN, t.VerifyPolicy, t.VerifyQuery = []string{"s"}, "b", "q"
			return t
		}, want{}},
		{"verify-policy without verify-query", func() Tunnel { t := client(); t.VerifyPolicy = "b"; return t },
			want{"verify-policy", "verify-policy and verify-query have to be used together"}},
		{"verify-policy and verify-spki-pin", func() Tunnel {
			t := client()
			t.VerifyPolicy, t.VerifyQuery, t.VerifySPKIPin = "b", "q", []string{pin256}
			return t
		}, want{"verify-spki-pin", "verify-spki-pin is mutually exclusive with verify-policy"}},
		{"allow-spki-pin and allow-dns", func() Tunnel {
			t := server()
			t.AllowCN, t.AllowDNS, t.AllowSPKIPin = nil, []string{"a"}, []string{pin256}
			return t
		},
			want{"allow-spki-pin", "allow-spki-pin is mutually exclusive with allow-dns"}},
		{"server disable-authentication", func() Tunnel { t := server(); t.AllowCN, t.DisableAuthentication = nil, true; return t }, want{}},
		{"disable-authentication and allow-all", func() Tunnel {
			t := server()
			t.AllowCN, t.AllowAll, t.DisableAuthentication = nil, true, true
			return t
		},
			want{"allow-all", "allow-all is mutually exclusive with disable-authentication"}},
		{"disable-authentication and allow-cn", func() Tunnel { t := server(); t.DisableAuthentication = true; return t },
			want{"disable-authentication", "disable-authentication is mutually exclusive with allow-cn"}},

		// Keys for the other mode.
		{"verify-dns on server", func() Tunnel { t := server(); t.VerifyDNS = []string{"a"}; return t }, want{"verify-dns", "verify-dns is only for client tunnels"}},
		{"override-server-name on server", func() Tunnel { t := server(); t.OverrideServerName = "a"; return t }, want{"override-server-name", "only for client tunnels"}},
		{"unsafe-listen on server", func() Tunnel { t := server(); t.UnsafeListen = true; return t }, want{"unsafe-listen", "only for client tunnels"}},
		{"allow-cn on client", func() Tunnel { t := client(); t.AllowCN = []string{"a"}; return t }, want{"allow-cn", "allow-cn is only for server tunnels"}},
		{"allow-all on client", func() Tunnel { t := client(); t.AllowAll = true; return t }, want{"allow-all", "only for server tunnels"}},
		{"unsafe-target on client", func() Tunnel { t := client(); t.UnsafeTarget = true; return t }, want{"unsafe-target", "only for server tunnels"}},
		{"proxy-protocol on client", func() Tunnel { t := client(); t.ProxyProtocol = true; return t }, want{"proxy-protocol", "only for server tunnels"}},

		// Client verification.
		{"client verify names", func() Tunnel {
			t := client()
			t.VerifyCN, t.VerifyOU, t.VerifyDNS, t.VerifyURI, t.VerifyIP = []string{"a"}, []string{"b"}, []string{"c"}, []string{"spiffe://x/*"}, []string{"::1"}
			return t
		}, want{}},
		{"client verify-spki-pin", func() Tunnel { t := client(); t.VerifySPKIPin = []string{pin256}; return t }, want{}},
		{"verify-spki-pin and verify-cn", func() Tunnel { t := client(); t.VerifySPKIPin, t.VerifyCN = []string{pin256}, []string{"a"}; return t },
			want{"verify-spki-pin", "verify-spki-pin is mutually exclusive with verify-cn"}},

		// List entries.
		{"allow-ip bad", func() Tunnel { t := server(); t.AllowIP = []string{"10.0.0.1", "10.0.0"}; return t }, want{"allow-ip", `invalid IP address "10.0.0"`}},
		{"verify-ip bad", func() Tunnel { t := client(); t.VerifyIP = []string{"host"}; return t }, want{"verify-ip", "invalid IP address"}},
		{"allow-uri bad", func() Tunnel { t := server(); t.AllowURI = []string{"spiffe://a/b*"}; return t }, want{"allow-uri", "must be a whole path segment"}},
		{"verify-uri bad", func() Tunnel { t := client(); t.VerifyURI = []string{"spiffe://a/**/b"}; return t }, want{"verify-uri", "only allowed as the last segment"}},
		{"allow-spki-pin bad", func() Tunnel { t := server(); t.AllowCN, t.AllowSPKIPin = nil, []string{"sha256:abc"}; return t }, want{"allow-spki-pin", "invalid SPKI pin"}},
		{"verify-spki-pin bad", func() Tunnel { t := client(); t.VerifySPKIPin = []string{"sha1:" + pin256[7:]}; return t }, want{"verify-spki-pin", `unknown hash "sha1"`}},
		{"empty entry", func() Tunnel { t := server(); t.AllowCN = []string{""}; return t }, want{"allow-cn", "empty value"}},

		// Options.
		{"proxy-protocol-mode", func() Tunnel { t := server(); t.ProxyProtocolMode = "tls-full"; return t }, want{}},
		{"proxy-protocol-mode unknown", func() Tunnel { t := server(); t.ProxyProtocolMode = "full"; return t }, want{"proxy-protocol-mode", `invalid mode "full"`}},
		{"allow-spki-pin with the workload API", func() Tunnel {
			t := server()
			t.Keystore, t.AllowAll, t.UseWorkloadAPI, t.AllowSPKIPin = "", false, true, []string{"sha256:" + strings.Repeat("A", 43) + "="}
			return t
		}, want{"allow-spki-pin", "allow-spki-pin is mutually exclusive with use-workload-api"}},
		{"proxy-protocol and its mode", func() Tunnel { t := server(); t.ProxyProtocol, t.ProxyProtocolMode = true, "conn"; return t }, want{"proxy-protocol-mode", "proxy-protocol and proxy-protocol-mode are mutually exclusive"}},
		{"max-tls-version 1.2", func() Tunnel { t := server(); t.MaxTLSVersion = "TLS1.2"; return t }, want{}},
		{"max-tls-version 1.3", func() Tunnel { t := server(); t.MaxTLSVersion = "1.3"; return t }, want{}},
		{"max-tls-version 1.1", func() Tunnel { t := server(); t.MaxTLSVersion = "TLS1.1"; return t }, want{"max-tls-version", `unknown TLS version "TLS1.1"`}},
		{"target-status http", func() Tunnel { t := server(); t.TargetStatus = "http://127.0.0.1:8080/health"; return t }, want{}},
		{"target-status no scheme", func() Tunnel { t := server(); t.TargetStatus = "127.0.0.1:8080"; return t }, want{"target-status", "must be an http:// or https:// URL"}},
		{"target-status ftp", func() Tunnel { t := server(); t.TargetStatus = "ftp://a/b"; return t }, want{"target-status", "must be an http:// or https:// URL"}},
		{"connect-timeout zero", func() Tunnel { t := server(); t.ConnectTimeout = 0; return t }, want{"connect-timeout", "connect-timeout must not be zero"}},
		{"close-timeout zero", func() Tunnel { t := server(); t.CloseTimeout = 0; return t }, want{}},
		{"negative duration", func() Tunnel { t := server(); t.MaxConnLifetime = Duration(-time.Second); return t }, want{"max-conn-lifetime", "must not be negative"}},
		{"max-concurrent-conns", func() Tunnel { t := server(); t.MaxConcurrentConns = 10; return t }, want{}},
		{"max-concurrent-conns negative", func() Tunnel { t := server(); t.MaxConcurrentConns = -1; return t }, want{"max-concurrent-conns", "must not be negative"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkProblems(t, Validate(config(c.tunnel())), c.want)
		})
	}
}

func TestValidateProcessWide(t *testing.T) {
	named := func(name, listen string) Tunnel { t := server(); t.Name, t.Listen = name, listen; return t }
	for _, c := range []struct {
		name   string
		config func() *Config
		want   want
	}{
		{"no tunnels", func() *Config { return config() }, want{"tunnels", "no tunnels"}},
		{"quiet", func() *Config { c := config(server()); c.Quiet = []string{"conns", "all"}; return c }, want{}},
		{"quiet unknown", func() *Config { c := config(server()); c.Quiet = []string{"loud"}; return c }, want{"quiet", `unknown value "loud"`}},
		{"pprof with status", func() *Config { c := config(server()); c.Status, c.EnablePprof = "127.0.0.1:6060", true; return c }, want{}},
		{"pprof without status", func() *Config { c := config(server()); c.EnablePprof = true; return c }, want{"enable-pprof", "enable-pprof requires status"}},
		{"shutdown without status", func() *Config { c := config(server()); c.EnableShutdown = true; return c }, want{"enable-shutdown", "enable-shutdown requires status"}},
		{"reload without status", func() *Config { c := config(server()); c.EnableReload = true; return c }, want{"enable-reload", "enable-reload requires status"}},
		{"status https", func() *Config { c := config(server()); c.Status = "https://localhost:6060"; return c }, want{}},
		{"status http slash", func() *Config { c := config(server()); c.Status = "http://localhost:6060/"; return c }, want{}},
		{"status unix", func() *Config { c := config(server()); c.Status = "unix:/run/status.sock"; return c }, want{}},
		{"status path", func() *Config { c := config(server()); c.Status = "http://localhost:6060/x"; return c }, want{"status", "want no path"}},
		{"status ftp", func() *Config { c := config(server()); c.Status = "ftp://localhost:6060"; return c }, want{"status", "invalid address"}},
		{"status systemd", func() *Config { c := config(server()); c.Status = "systemd:status"; return c }, want{}},
		{"status launchd", func() *Config { c := config(server()); c.Status = "launchd:status"; return c }, want{"status", "invalid address"}},
		{"status no port", func() *Config { c := config(server()); c.Status = "localhost"; return c }, want{"status", "missing port"}},
		{"metrics-prefix", func() *Config { c := config(server()); c.MetricsPrefix = "edge:ghostunnel_1"; return c }, want{}},
		{"metrics-prefix bad", func() *Config { c := config(server()); c.MetricsPrefix = "1-x"; return c }, want{"metrics-prefix", "invalid prefix"}},
		{"metrics push", func() *Config {
			c := config(server())
			c.MetricsGraphite, c.MetricsURL, c.MetricsInterval = "graphite.example.com:2003", "https://m.example.com/push", Duration(time.Second)
			return c
		}, want{}},
		{"metrics-graphite IPv6", func() *Config { c := config(server()); c.MetricsGraphite = "[::1]:2003"; return c }, want{}},
		{"metrics-graphite no port", func() *Config { c := config(server()); c.MetricsGraphite = "graphite"; return c },
			want{"metrics-graphite", `metrics-graphite must be HOST:PORT with a port from 1 to 65535, not "graphite"`}},
		{"metrics-graphite port 0", func() *Config { c := config(server()); c.MetricsGraphite = "graphite:0"; return c }, want{"metrics-graphite", "must be HOST:PORT"}},
		{"metrics-graphite named port", func() *Config { c := config(server()); c.MetricsGraphite = "graphite:carbon"; return c }, want{"metrics-graphite", "must be HOST:PORT"}},
		{"metrics-graphite URL", func() *Config { c := config(server()); c.MetricsGraphite = "tcp://graphite:2003"; return c },
			want{"metrics-graphite", "metrics-graphite must be HOST:PORT, not a URL"}},
		{"metrics-url http", func() *Config { c := config(server()); c.MetricsURL = "http://127.0.0.1:8080/metrics"; return c }, want{}},
		{"metrics-url ftp", func() *Config { c := config(server()); c.MetricsURL = "ftp://m.example.com/"; return c },
			want{"metrics-url", "metrics-url should start with http:// or https://"}},
		{"metrics-url bare host", func() *Config { c := config(server()); c.MetricsURL = "m.example.com:8080"; return c }, want{"metrics-url", "should start with http://"}},
		{"metrics-url no host", func() *Config { c := config(server()); c.MetricsURL = "https:///push"; return c }, want{"metrics-url", "URL with a host"}},
		{"metrics-interval zero with graphite", func() *Config {
			c := config(server())
			c.MetricsGraphite, c.MetricsInterval = "127.0.0.1:2003", 0
			return c
		}, want{"metrics-interval", "metrics-interval must be greater than zero"}},
		{"metrics-interval zero with url", func() *Config {
			c := config(server())
			c.MetricsURL, c.MetricsInterval = "http://127.0.0.1:1/", 0
			return c
		}, want{"metrics-interval", "must be greater than zero"}},
		{"metrics-interval zero without push", func() *Config { c := config(server()); c.MetricsInterval = 0; return c }, want{}},
		{"default-tunnel", func() *Config { c := config(server()); c.DefaultTunnel = "srv"; return c }, want{}},
		{"default-tunnel unknown", func() *Config { c := config(server()); c.DefaultTunnel = "nope"; return c }, want{"default-tunnel", `no tunnel is named "nope"`}},
		{"duplicate names", func() *Config { return config(named("a", ":1"), named("a", ":2")) }, want{"name", `duplicate tunnel name "a" (tunnel #1 has it too)`}},
		{"same listen", func() *Config { return config(named("a", "127.0.0.1:8443"), named("b", "127.0.0.1:8443")) },
			want{"listen", `listen address "127.0.0.1:8443" is already used by tunnel "a"`}},
		{"same listen normalised", func() *Config { return config(named("a", "127.0.0.1:08443"), named("b", "127.0.0.1:8443")) },
			want{"listen", `is already used by tunnel "a" ("127.0.0.1:08443")`}},
		{"same listen IPv6 forms", func() *Config { return config(named("a", "[::0:1]:80"), named("b", "[::1]:80")) }, want{"listen", "already used"}},
		{"same listen host case", func() *Config { return config(named("a", "LocalHost:80"), named("b", "localhost:80")) }, want{"listen", "already used"}},
		{"wildcard covers", func() *Config { return config(named("a", "0.0.0.0:80"), named("b", "10.0.0.1:80")) }, want{"listen", "already used"}},
		{"empty host covers", func() *Config { return config(named("a", "[::1]:80"), named("b", ":80")) }, want{"listen", "already used"}},
		{"IPv4 wildcard and IPv6", func() *Config { return config(named("a", "0.0.0.0:80"), named("b", "[::1]:80")) }, want{}},
		{"different ports", func() *Config { return config(named("a", "127.0.0.1:80"), named("b", "127.0.0.1:81")) }, want{}},
		{"port 0 twice", func() *Config { return config(named("a", "127.0.0.1:0"), named("b", "127.0.0.1:0")) }, want{}},
		{"same unix socket", func() *Config { return config(named("a", "unix:/run/a.sock"), named("b", "unix:/run/../run/a.sock")) }, want{"listen", "already used"}},
		{"same systemd name", func() *Config { return config(named("a", "systemd:x"), named("b", "systemd:x")) }, want{"listen", "already used"}},
		{"listen on status", func() *Config { c := config(client()); c.Status = "http://127.0.0.1:7000"; return c },
			want{"listen", `listen address "127.0.0.1:7000" is also the status address "http://127.0.0.1:7000"`}},
		{"listen on status systemd socket", func() *Config {
			t := server()
			t.Listen = "systemd:x"
			c := config(t)
			c.Status = "systemd:x"
			return c
		}, want{"listen", "is also the status address"}},
		{"listen on status https", func() *Config { c := config(client()); c.Status = "https://127.0.0.1:7000/"; return c },
			want{"listen", "is also the status address"}},
		{"listen on status socket", func() *Config {
			t := client()
			t.Listen = "unix:/run/x.sock"
			c := config(t)
			c.Status = "unix:/run/x.sock"
			return c
		}, want{"listen", "is also the status address"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkProblems(t, Validate(c.config()), c.want)
		})
	}
}

func TestValidateCollectsAll(t *testing.T) {
	bad := server()
	bad.Name, bad.Mode, bad.Target, bad.ConnectTimeout = "", "x", "", 0
	c := config(bad, client())
	c.EnablePprof = true
	ps := Validate(c)
	keys := map[string]bool{}
	for _, p := range ps {
		keys[p.Key] = true
	}
	for _, k := range []string{"enable-pprof", "name", "mode", "target", "connect-timeout"} {
		if !keys[k] {
			t.Errorf("no problem with %s in:\n%v", k, ps)
		}
	}
	for _, p := range ps {
		if p.Key != "enable-pprof" && p.Tunnel != "#1" {
			t.Errorf("problem %v: want tunnel #1", p)
		}
	}
}

func TestFlagError(t *testing.T) {
	c := config(func() Tunnel { t := server(); t.AllowAll = true; t.Target = "10.0.0.1:80"; return t }())
	c.EnablePprof = true
	got := Validate(c).FlagErrors()
	for _, want := range []string{
		"--enable-pprof requires --status",
		"--allow-all is mutually exclusive with --allow-cn",
		"--target must be unix:PATH or localhost:PORT (unless --unsafe-target is set)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("FlagErrors() = %q, want it to contain %q", got, want)
		}
	}
	// User values are never taken for keys.
	c = config(func() Tunnel { t := server(); t.Name = "{allow-all}"; return t }())
	for _, p := range Validate(c) {
		if strings.Contains(p.FlagError(), "--allow-all") {
			t.Errorf("FlagError() = %q: value rendered as a flag", p.FlagError())
		}
	}
}

// TestValidateMetricsPushFlagErrors: the metrics push settings read as
// upstream's flag errors on the command line, and a URL (which may hold a
// password) is never echoed.
func TestValidateMetricsPushFlagErrors(t *testing.T) {
	c := config(server())
	c.MetricsURL, c.MetricsGraphite, c.MetricsInterval = "ftp://m", "graphite", 0
	got := Validate(c).FlagErrors()
	for _, want := range []string{
		"--metrics-url should start with http:// or https://",
		`--metrics-graphite must be HOST:PORT with a port from 1 to 65535, not "graphite"`,
		"--metrics-interval must be greater than zero",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("FlagErrors() = %q, want it to contain %q", got, want)
		}
	}

	c = config(server())
	c.MetricsURL = "https://user:s3cret@/push"
	ps := Validate(c)
	if len(ps) != 1 || ps[0].Key != "metrics-url" {
		t.Fatalf("want one metrics-url problem, got:\n%v", ps)
	}
	if strings.Contains(ps.Error(), "s3cret") || strings.Contains(ps.FlagErrors(), "s3cret") {
		t.Errorf("the password is echoed: %v", ps)
	}
}

// TestValidatePKCS11FlagErrors: the PKCS#11 rules read as upstream's flag
// errors on the command line, and the PIN is never echoed.
func TestValidatePKCS11FlagErrors(t *testing.T) {
	c := config(func() Tunnel { t := server(); t.Keystore, t.Cert = "", "a.crt"; return t }())
	if got, want := Validate(c).FlagErrors(), "--cert and --key must be set together, unless --pkcs11-module holds the private key"; !strings.Contains(got, want) {
		t.Errorf("FlagErrors() = %q, want it to contain %q", got, want)
	}
	c = config(func() Tunnel {
		t := withPKCS11(client(), "")
		t.PKCS11TokenLabel, t.PKCS11Pin = "", "s3cret-pin"
		return t
	}())
	ps := Validate(c)
	got := ps.FlagErrors()
	for _, want := range []string{
		"--pkcs11-module is mutually exclusive with --key: the private key is in the token",
		"--pkcs11-module requires --pkcs11-token-label",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("FlagErrors() = %q, want it to contain %q", got, want)
		}
	}
	if strings.Contains(ps.Error(), "s3cret-pin") || strings.Contains(got, "s3cret-pin") {
		t.Errorf("the PIN is echoed: %v", ps)
	}
}

// acmeServer is a valid server tunnel that gets its certificate via ACME.
func acmeServer() Tunnel {
	t := server()
	t.Keystore = ""
	t.AutoACMECert, t.AutoACMEEmail, t.AutoACMEAgreeToTOS = "tunnel.example.com", "ops@example.com", true
	return t
}

func TestValidateACME(t *testing.T) {
	for _, c := range []struct {
		name   string
		tunnel func() Tunnel
		want   want
	}{
		{"valid", acmeServer, want{}},
		{"valid with CAs and cache", func() Tunnel {
			t := acmeServer()
			t.AutoACMECA, t.AutoACMETestCA, t.AutoACMECache = "https://acme.example/dir", "https://127.0.0.1:14000/dir", "/var/cache/acme"
			return t
		}, want{}},
		{"trailing dot", func() Tunnel { t := acmeServer(); t.AutoACMECert = "tunnel.example.com."; return t }, want{}},
		{"no email", func() Tunnel { t := acmeServer(); t.AutoACMEEmail = ""; return t },
			want{"auto-acme-cert", "auto-acme-cert was specified but no email address was provided with auto-acme-email"}},
		{"no tos", func() Tunnel { t := acmeServer(); t.AutoACMEAgreeToTOS = false; return t },
			want{"auto-acme-agree-to-tos", "auto-acme-agree-to-tos was not specified and is required if auto-acme-cert is specified"}},
		{"with keystore", func() Tunnel { t := acmeServer(); t.Keystore = "a.pem"; return t },
			want{"auto-acme-cert", "auto-acme-cert is mutually exclusive with keystore, cert, key and pkcs11-module"}},
		{"with cert and key", func() Tunnel { t := acmeServer(); t.Cert, t.Key = "a.crt", "a.key"; return t },
			want{"auto-acme-cert", "mutually exclusive"}},
		{"IP name", func() Tunnel { t := acmeServer(); t.AutoACMECert = "10.0.0.1"; return t }, want{"auto-acme-cert", "not an IP address"}},
		{"wildcard", func() Tunnel { t := acmeServer(); t.AutoACMECert = "*.example.com"; return t }, want{"auto-acme-cert", "invalid name"}},
		{"URL name", func() Tunnel { t := acmeServer(); t.AutoACMECert = "https://a.example"; return t }, want{"auto-acme-cert", "invalid name"}},
		{"bad CA", func() Tunnel { t := acmeServer(); t.AutoACMECA = "acme.example/dir"; return t }, want{"auto-acme-ca", "must be the http(s) URL of an ACME directory"}},
		{"bad test CA", func() Tunnel { t := acmeServer(); t.AutoACMETestCA = "ftp://x/"; return t }, want{"auto-acme-testca", "must be the http(s) URL"}},
		{"on client", func() Tunnel { t := client(); t.AutoACMECert = "a.example"; return t }, want{"auto-acme-cert", "auto-acme-cert is only for server tunnels"}},
		{"email on client", func() Tunnel { t := client(); t.AutoACMEEmail = "a@b"; return t }, want{"auto-acme-email", "only for server tunnels"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkProblems(t, Validate(config(c.tunnel())), c.want)
		})
	}
}

// TestValidateACMEFlagMessages checks the upstream wording on the command line.
func TestValidateACMEFlagMessages(t *testing.T) {
	tn := acmeServer()
	tn.AutoACMEEmail, tn.AutoACMEAgreeToTOS = "", false
	got := Validate(config(tn)).Errors().FlagErrors()
	for _, want := range []string{
		"--auto-acme-cert was specified but no email address was provided with --auto-acme-email",
		"--auto-acme-agree-to-tos was not specified and is required if --auto-acme-cert is specified",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("flag errors lack %q:\n%s", want, got)
		}
	}
}

// TestValidateACMEStray checks that ACME settings without auto-acme-cert,
// which upstream ignores, are only a warning.
func TestValidateACMEStray(t *testing.T) {
	tn := server()
	tn.AutoACMEEmail, tn.AutoACMEAgreeToTOS = "ops@example.com", true
	ps := Validate(config(tn))
	if ps.HasErrors() {
		t.Fatalf("want warnings only, got %v", ps)
	}
	if w := ps.Warnings(); len(w) != 2 || !strings.Contains(w[0].Msg, "auto-acme-email has no effect without auto-acme-cert") {
		t.Errorf("want two warnings, got %v", w)
	}
	// Without any credentials the message names ACME as a way out.
	tn = server()
	tn.Keystore = ""
	checkProblems(t, Validate(config(tn)), want{"", "(or auto-acme-cert)"})
}

// TestWorkloadAPITimeoutDefault: unset, use-workload-api-timeout is 10m and
// needs nothing; set to 0 (upstream's "wait indefinitely") it stays 0 and,
// like any value other than the default, needs use-workload-api.
func TestWorkloadAPITimeoutDefault(t *testing.T) {
	d := DefaultTunnelSettings()
	if d.UseWorkloadAPITimeout.D() != DefaultWorkloadAPITimeout {
		t.Fatalf("default %v, want %v", d.UseWorkloadAPITimeout.D(), DefaultWorkloadAPITimeout)
	}
	if isSet(&d, "use-workload-api-timeout") {
		t.Fatal("the default counts as set")
	}
	d.UseWorkloadAPITimeout = 0
	if !isSet(&d, "use-workload-api-timeout") {
		t.Fatal("an explicit 0 does not count as set")
	}
}
