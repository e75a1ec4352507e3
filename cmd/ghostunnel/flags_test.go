package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// envOf returns a lookupEnv backed by m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// extras are the invocation fields outside Config.
type extras struct {
	Unsupported map[string]string
	UseLandlock bool
}

func extrasOf(inv *invocation) extras {
	return extras{inv.Unsupported, inv.UseLandlock}
}

const lt = " --listen l:1 --target t:2"

func TestParseArgsSingleTunnel(t *testing.T) {
	type tunEdit func(c *configs.Config, tn *configs.Tunnel)
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		mode  string // tunnel mode
		cmd   string // default: mode
		edit  tunEdit
		extra func(*extras)
	}{
		{name: "server minimal", args: strings.Fields("server" + lt), mode: "server"},
		{name: "client minimal", args: strings.Fields("client" + lt), mode: "client"},
		{name: "equals form", args: strings.Fields("server --listen=l:1 --target=t:2"), mode: "server"},
		{name: "flags before listen", args: strings.Fields("server --target t:2 --allow-all --listen l:1"), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.AllowAll = true }},
		{name: "empty string value", args: []string{"server", "--listen", "l:1", "--target", "t:2", "--target-status="}, mode: "server"},

		// Booleans.
		{name: "bool bare", args: strings.Fields("server --allow-all --unsafe-target" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.AllowAll, tn.UnsafeTarget = true, true }},
		{name: "bool =true", args: strings.Fields("server --allow-all=true" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.AllowAll = true }},
		{name: "bool =false", args: strings.Fields("server --allow-all=false" + lt), mode: "server"},
		{name: "bool --no-", args: strings.Fields("server --no-allow-all --no-syslog" + lt), mode: "server"},
		{name: "bool does not eat next word", args: strings.Fields("server --proxy-protocol --listen l:1 --target t:2"), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.ProxyProtocol = true }},

		// Repeatables and aliases.
		{name: "repeatable allow-cn", args: []string{"server", "--allow-cn", "a", "--allow-cn=b", "--allow-cn", "c, d", "--listen", "l:1", "--target", "t:2"}, mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.AllowCN = []string{"a", "b", "c, d"} }},
		{name: "server allow lists and aliases",
			args: strings.Fields("server --allow-ou o1 --allow-ou o2 --allow-dns d1 --allow-dns-san d2 --allow-uri spiffe://a/* --allow-uri-san spiffe://b/** " +
				"--allow-ip 10.0.0.1 --allow-ip-san ::1 --allow-spki-pin sha256:AAA --allow-spki-pin sha256:BBB" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.AllowOU = []string{"o1", "o2"}
				tn.AllowDNS = []string{"d1", "d2"}
				tn.AllowURI = []string{"spiffe://a/*", "spiffe://b/**"}
				tn.AllowIP = []string{"10.0.0.1", "::1"}
				tn.AllowSPKIPin = []string{"sha256:AAA", "sha256:BBB"}
			}},
		{name: "client verify lists and aliases",
			args: strings.Fields("client --verify-cn c1 --verify-cn c2 --verify-ou o --verify-dns d1 --verify-dns-san d2 --verify-uri u1 --verify-uri-san u2 " +
				"--verify-ip 192.0.2.1 --verify-ip-san 2001:db8::1 --verify-spki-pin sha256:X" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.VerifyCN = []string{"c1", "c2"}
				tn.VerifyOU = []string{"o"}
				tn.VerifyDNS = []string{"d1", "d2"}
				tn.VerifyURI = []string{"u1", "u2"}
				tn.VerifyIP = []string{"192.0.2.1", "2001:db8::1"}
				tn.VerifySPKIPin = []string{"sha256:X"}
			}},
		{name: "quiet repeat and comma", args: strings.Fields("server --quiet conns --quiet=conn-errs,handshake-errs --quiet=" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				c.Quiet = []string{"conns", "conn-errs", "handshake-errs"}
			}},
		{name: "quiet all", args: strings.Fields("--quiet=all client" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) { c.Quiet = []string{"all"} }},

		// Server and client specific.
		{name: "server specific", args: strings.Fields("server --target-status http://127.0.0.1:9/health --proxy-protocol-mode tls-full --disable-authentication" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.TargetStatus = "http://127.0.0.1:9/health"
				tn.ProxyProtocolMode = "tls-full"
				tn.DisableAuthentication = true
			}},
		{name: "client specific", args: strings.Fields("client --unsafe-listen --override-server-name srv.example --disable-authentication" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.UnsafeListen = true
				tn.OverrideServerName = "srv.example"
				tn.DisableAuthentication = true
			}},

		// Global flags, before and after the subcommand.
		{name: "globals before", args: strings.Fields("--keystore k.p12 --storepass pw --cacert ca.pem --connect-timeout 5s --status 127.0.0.1:9 --enable-pprof server" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.Keystore, tn.Storepass, tn.CACert, tn.ConnectTimeout = "k.p12", "pw", "ca.pem", configs.Duration(5*time.Second)
				c.Status, c.EnablePprof = "127.0.0.1:9", true
			}},
		{name: "globals after", args: strings.Fields("server" + lt + " --keystore k.p12 --storepass pw --cacert ca.pem --connect-timeout 5s --status 127.0.0.1:9 --enable-pprof"), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.Keystore, tn.Storepass, tn.CACert, tn.ConnectTimeout = "k.p12", "pw", "ca.pem", configs.Duration(5*time.Second)
				c.Status, c.EnablePprof = "127.0.0.1:9", true
			}},
		{name: "globals both sides", args: strings.Fields("--cert c.pem client --key k.pem" + lt + " --timed-reload=5m --max-tls-version TLS1.2"), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.Cert, tn.Key, tn.TimedReload, tn.MaxTLSVersion = "c.pem", "k.pem", configs.Duration(5*time.Minute), "TLS1.2"
			}},
		{name: "process-wide", args: strings.Fields("server --enable-shutdown --status unix:/s --metrics-prefix fleet --shutdown-timeout 1m30s --syslog --skip-resolve" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				c.EnableShutdown, c.Status, c.MetricsPrefix, c.ShutdownTimeout, c.Syslog = true, "unix:/s", "fleet", configs.Duration(90*time.Second), true
				tn.SkipResolve = true
			}},
		{name: "connection settings", args: strings.Fields("server --close-timeout 0 --max-conn-lifetime 1h --max-concurrent-conns 100" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.CloseTimeout, tn.MaxConnLifetime, tn.MaxConcurrentConns = 0, configs.Duration(time.Hour), 100
			}},
		{name: "metrics push", args: strings.Fields("server --metrics-interval 10s --metrics-graphite graphite:2003 --metrics-url https://m/x" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				c.MetricsInterval, c.MetricsGraphite, c.MetricsURL = configs.Duration(10*time.Second), "graphite:2003", "https://m/x"
			}},
		{name: "landlock settings", args: strings.Fields("server --disable-landlock --use-landlock" + lt), mode: "server",
			edit:  func(c *configs.Config, tn *configs.Tunnel) { c.DisableLandlock = true },
			extra: func(e *extras) { e.UseLandlock = true }},

		// OPA policies.
		{name: "opa server",
			args: strings.Fields("server --allow-policy b.tar.gz --allow-query data.allow" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.AllowPolicy, tn.AllowQuery = "b.tar.gz", "data.allow"
			}},
		{name: "acme server",
			args: strings.Fields("server --auto-acme-cert a.example --auto-acme-email e@x --auto-acme-agree-to-tos --auto-acme-ca https://ca --auto-acme-testca https://test --auto-acme-cache /var/cache/acme" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.AutoACMECert, tn.AutoACMEEmail, tn.AutoACMEAgreeToTOS = "a.example", "e@x", true
				tn.AutoACMECA, tn.AutoACMETestCA, tn.AutoACMECache = "https://ca", "https://test", "/var/cache/acme"
			}},
		{name: "opa client", args: strings.Fields("client --connect-proxy socks5://p:1 --verify-policy b --verify-query q" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.Proxy, tn.VerifyPolicy, tn.VerifyQuery = "socks5://p:1", "b", "q"
			}},

		// Accepted but unsupported.
		{name: "unsupported global", args: strings.Fields("--cipher-suites AES --allow-unsafe-cipher-suites client --proxy http://p:3128" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.Proxy = "http://p:3128" },
			extra: func(e *extras) {
				e.Unsupported = map[string]string{"cipher-suites": "AES", "allow-unsafe-cipher-suites": "true"}
			}},

		// SPIFFE Workload API: tunnel flags, before or after the subcommand.
		{name: "workload api before subcommand", args: strings.Fields("--use-workload-api --use-workload-api-addr unix:///w --use-workload-api-timeout 1m client" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.UseWorkloadAPI, tn.UseWorkloadAPIAddr, tn.UseWorkloadAPITimeout = true, "unix:///w", configs.Duration(time.Minute)
			}},
		{name: "workload api after subcommand", args: strings.Fields("server --allow-uri spiffe://example.org/* --use-workload-api" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.UseWorkloadAPI, tn.AllowURI = true, []string{"spiffe://example.org/*"}
			}},
		{name: "workload api addr implies use", args: strings.Fields("client --use-workload-api-addr=tcp://127.0.0.1:8081" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.UseWorkloadAPI, tn.UseWorkloadAPIAddr = true, "tcp://127.0.0.1:8081"
			}},

		// PKCS#11: tunnel flags, before or after the subcommand.
		{name: "pkcs11 before subcommand", args: strings.Fields("--pkcs11-module m.so --pkcs11-token-label L --pkcs11-pin 1234 --cert c.pem client" + lt), mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.PKCS11Module, tn.PKCS11TokenLabel, tn.PKCS11Pin, tn.Cert = "m.so", "L", "1234", "c.pem"
			}},
		{name: "pkcs11 after subcommand", args: strings.Fields("server --cert c.pem --pkcs11-module=/m.so --pkcs11-token-label=L --pkcs11-pin=1234 --allow-all" + lt), mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.PKCS11Module, tn.PKCS11TokenLabel, tn.PKCS11Pin, tn.Cert, tn.AllowAll = "/m.so", "L", "1234", "c.pem", true
			}},
		{name: "unsupported bool false is a no-op", args: strings.Fields("server --use-workload-api=false --no-auto-acme-agree-to-tos" + lt), mode: "server"},

		// Environment.
		{name: "env fallback", args: strings.Fields("server" + lt),
			env:  map[string]string{"KEYSTORE_PATH": "/e/k.p12", "KEYSTORE_PASS": "envpw", "CERT_PATH": "/e/c", "KEY_PATH": "/e/k", "CACERT_PATH": "/e/ca"},
			mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.Keystore, tn.Storepass, tn.Cert, tn.Key, tn.CACert = "/e/k.p12", "envpw", "/e/c", "/e/k", "/e/ca"
			}},
		{name: "flag beats env", args: strings.Fields("--keystore /f/k.p12 server --cacert=/f/ca" + lt),
			env:  map[string]string{"KEYSTORE_PATH": "/e/k.p12", "CACERT_PATH": "/e/ca"},
			mode: "server",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.Keystore, tn.CACert = "/f/k.p12", "/f/ca" }},
		{name: "empty env ignored", args: strings.Fields("client" + lt), env: map[string]string{"KEYSTORE_PATH": ""}, mode: "client"},
		{name: "env for workload api address", args: strings.Fields("client" + lt),
			env:  map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///spire"},
			mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.UseWorkloadAPI, tn.UseWorkloadAPIAddr = true, "unix:///spire"
			}},
		{name: "env for pkcs11 flags", args: strings.Fields("client --pkcs11-token-label F" + lt),
			env:  map[string]string{"PKCS11_PIN": "9999", "PKCS11_MODULE": "/m.so", "PKCS11_TOKEN_LABEL": "T", "CERT_PATH": "/c"},
			mode: "client",
			edit: func(c *configs.Config, tn *configs.Tunnel) {
				tn.PKCS11Module, tn.PKCS11TokenLabel, tn.PKCS11Pin, tn.Cert = "/m.so", "F", "9999", "/c"
			}},

		// from-flags builds the same Config.
		{name: "from-flags server", args: strings.Fields("--keystore k config from-flags server --allow-cn a" + lt), mode: "server", cmd: "from-flags",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.Keystore, tn.AllowCN = "k", []string{"a"} }},
		{name: "from-flags client with env", args: strings.Fields("config from-flags client" + lt), env: map[string]string{"CERT_PATH": "/c"},
			mode: "client", cmd: "from-flags",
			edit: func(c *configs.Config, tn *configs.Tunnel) { tn.Cert = "/c" }},
		{name: "double dash then nothing", args: strings.Fields("server" + lt + " --"), mode: "server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := parseArgs(tc.args, envOf(tc.env))
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			wantCmd := tc.cmd
			if wantCmd == "" {
				wantCmd = tc.mode
			}
			if inv.Command != wantCmd {
				t.Errorf("Command = %q, want %q", inv.Command, wantCmd)
			}
			want := configs.DefaultConfig()
			tn := configs.DefaultTunnelSettings()
			tn.Name, tn.Mode, tn.Listen, tn.Target = tc.mode, tc.mode, "l:1", "t:2"
			if tc.edit != nil {
				tc.edit(&want, &tn)
			}
			want.Tunnels = []configs.Tunnel{tn}
			if !reflect.DeepEqual(inv.Config, want) {
				t.Errorf("Config mismatch\n got: %+v\nwant: %+v", inv.Config, want)
			}
			wantX := extras{Unsupported: map[string]string{}}
			if tc.extra != nil {
				tc.extra(&wantX)
			}
			if got := extrasOf(inv); !reflect.DeepEqual(got, wantX) {
				t.Errorf("extras mismatch\n got: %+v\nwant: %+v", got, wantX)
			}
		})
	}
}

func TestParseArgsSetAndFromEnv(t *testing.T) {
	inv, err := parseArgs(strings.Fields("--keystore k server --allow-dns-san d --no-allow-all --quiet=conns"+lt),
		envOf(map[string]string{"CACERT_PATH": "/ca", "KEYSTORE_PATH": "/ignored"}))
	if err != nil {
		t.Fatal(err)
	}
	wantSet := map[string]bool{"keystore": true, "allow-dns": true, "allow-all": true, "quiet": true, "listen": true, "target": true, "cacert": true}
	if !reflect.DeepEqual(inv.Set, wantSet) {
		t.Errorf("Set = %v, want %v", inv.Set, wantSet)
	}
	if want := map[string]string{"cacert": "CACERT_PATH"}; !reflect.DeepEqual(inv.FromEnv, want) {
		t.Errorf("FromEnv = %v, want %v", inv.FromEnv, want)
	}
}

func TestParseArgsErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", strings.Fields("server --bogus" + lt), nil, "unknown long flag '--bogus'"},
		{"unknown flag with value", strings.Fields("server --bogus=1" + lt), nil, "unknown long flag '--bogus'"},
		{"server-only flag on client", strings.Fields("client --allow-cn x" + lt), nil, "unknown long flag '--allow-cn'"},
		{"server-only alias on client", strings.Fields("client --allow-dns-san x" + lt), nil, "unknown long flag '--allow-dns-san'"},
		{"client-only flag on server", strings.Fields("server --verify-cn x" + lt), nil, "unknown long flag '--verify-cn'"},
		{"client-only proxy on server", strings.Fields("server --proxy http://p" + lt), nil, "unknown long flag '--proxy'"},
		{"mode flag before subcommand", strings.Fields("--listen l:1 server --target t:2"), nil, "unknown long flag '--listen'"},
		{"no- on non-bool", strings.Fields("server --no-listen" + lt), nil, "unknown long flag '--no-listen'"},
		{"no- with value", strings.Fields("server --no-allow-all=true" + lt), nil, "takes no value"},
		{"missing listen", strings.Fields("server --target t:2"), nil, "required flag --listen not provided"},
		{"missing target", strings.Fields("client --listen l:1"), nil, "required flag --target not provided"},
		{"missing both", []string{"server"}, nil, "required flag --listen not provided"},
		{"from-flags missing listen", strings.Fields("config from-flags client --target t:2"), nil, "required flag --listen not provided"},
		{"missing value at end", strings.Fields("server --target t:2 --listen"), nil, "expected argument for flag '--listen'"},
		{"value looks like flag", strings.Fields("server --listen --target t:2"), nil, "expected argument for flag '--listen'"},
		{"bad duration", strings.Fields("server --connect-timeout=abc" + lt), nil, `invalid value "abc" for flag --connect-timeout`},
		{"bad duration unit", strings.Fields("--shutdown-timeout 5 server" + lt), nil, `invalid value "5" for flag --shutdown-timeout`},
		{"negative duration", strings.Fields("server --close-timeout=-1s" + lt), nil, `invalid value "-1s" for flag --close-timeout: must not be negative`},
		{"negative duration separate", strings.Fields("server --timed-reload -1s" + lt), nil, "expected argument for flag '--timed-reload'"},
		{"negative int", strings.Fields("server --max-concurrent-conns=-1" + lt), nil, "must not be negative"},
		{"bad int", strings.Fields("server --max-concurrent-conns ten" + lt), nil, `invalid value "ten" for flag --max-concurrent-conns`},
		{"int overflow", strings.Fields("server --max-concurrent-conns 4294967296" + lt), nil, `for flag --max-concurrent-conns`},
		{"bad bool", strings.Fields("server --allow-all=yes" + lt), nil, `invalid value "yes" for flag --allow-all`},
		{"bad quiet", strings.Fields("server --quiet loud" + lt), nil, `invalid value "loud" for flag --quiet`},
		{"bad quiet in list", strings.Fields("server --quiet conns,loud" + lt), nil, `for flag --quiet`},
		{"bad proxy-protocol-mode", strings.Fields("server --proxy-protocol-mode v1" + lt), nil, "--proxy-protocol-mode: must be one of conn, tls, tls-full"},
		{"empty proxy", []string{"client", "--proxy=", "--listen", "l:1", "--target", "t:2"}, nil, "empty proxy URL"},
		{"bad max-tls-version", strings.Fields("server --max-tls-version TLS1.1" + lt), nil, "--max-tls-version"},
		{"bad allow-ip", strings.Fields("server --allow-ip host" + lt), nil, `invalid value "host" for flag --allow-ip: not an IP address`},
		{"bad verify-ip-san", strings.Fields("client --verify-ip-san 1.2.3" + lt), nil, `for flag --verify-ip`},
		{"bad metrics-url", strings.Fields("server --metrics-url ftp://x" + lt), nil, "--metrics-url: should start with http:// or https://"},
		{"bad metrics-graphite", strings.Fields("server --metrics-graphite nohost" + lt), nil, "--metrics-graphite"},
		{"repeated single flag", strings.Fields("server --listen a:1" + lt), nil, "flag 'listen' cannot be repeated"},
		{"repeated bool", strings.Fields("server --allow-all --no-allow-all" + lt), nil, "flag 'allow-all' cannot be repeated"},
		{"unknown short flag", strings.Fields("server -x" + lt), nil, "unknown short flag '-x'"},
		{"unknown command", []string{"serve"}, nil, `expected command but got "serve"`},
		{"positional after command", strings.Fields("server extra" + lt), nil, "unexpected argument 'extra'"},
		{"positional after double dash", strings.Fields("server" + lt + " -- x"), nil, "unexpected argument 'x'"},
		{"config alone", []string{"config"}, nil, `expected command "from-flags"`},
		{"config wrong sub", strings.Fields("config print"), nil, `expected command "from-flags"`},
		{"from-flags no mode", strings.Fields("config from-flags"), nil, "expected server or client"},
		{"from-flags bad mode", strings.Fields("config from-flags both"), nil, "expected server or client"},
		{"validate without config", []string{"validate"}, nil, "validate needs -config FILE"},
		{"check without config", []string{"--check"}, nil, "--check needs -config FILE"},
		{"check with server", strings.Fields("server --check" + lt), nil, "--check needs -config FILE"},
		{"config with flag", strings.Fields("-config f.yaml --status 127.0.0.1:9"), nil, "-config takes no other flags; put settings in the file"},
		{"config with flag before", strings.Fields("--keystore k --config=f.yaml"), nil, "-config takes no other flags; put settings in the file"},
		{"config with mode flag", strings.Fields("-config f.yaml --listen l:1"), nil, "-config takes no other flags"},
		{"config with server", strings.Fields("server -config f.yaml"), nil, `-config cannot be combined with "server"`},
		{"validate with flag", strings.Fields("validate -config f.yaml --quiet all"), nil, "-config takes no other flags"},
		{"config missing value", []string{"-config"}, nil, "expected argument for flag '-config'"},
		{"config empty value", []string{"--config="}, nil, "-config needs a file path"},
		{"config repeated", strings.Fields("-config a --config b"), nil, "flag 'config' cannot be repeated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := parseArgs(tc.args, envOf(tc.env))
			if err == nil {
				t.Fatalf("parseArgs(%q) = %+v, want error containing %q", tc.args, inv, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseArgs(%q) error = %q, want it to contain %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestParseArgsSecretsStayOutOfErrors(t *testing.T) {
	// A bad value next to a secret must not echo the secret.
	_, err := parseArgs(strings.Fields("--storepass hunter2 server --connect-timeout x"+lt), nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	_, err = parseArgs(strings.Fields("--pkcs11-pin 4321 server --connect-timeout x"+lt), nil)
	if err == nil || strings.Contains(err.Error(), "4321") {
		t.Fatalf("err = %v", err)
	}
	inv, err := parseArgs(strings.Fields("--pkcs11-pin 4321 server"+lt), nil)
	if err != nil {
		t.Fatal(err)
	}
	if inv.tunnel().PKCS11Pin.Reveal() != "4321" {
		t.Fatalf("PKCS11Pin = %q", inv.tunnel().PKCS11Pin.Reveal())
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v", inv.Unsupported, inv.Config, inv.Config), "4321") || strings.Contains(fromFlagsYAML(inv), "4321") {
		t.Fatalf("PKCS#11 PIN leaked: %+v", inv.Config)
	}
}

func TestParseArgsConfigForms(t *testing.T) {
	cases := []struct {
		args    []string
		wantCmd string
	}{
		{[]string{"-config", "f.yaml"}, "run"},
		{[]string{"--config", "f.yaml"}, "run"},
		{[]string{"--config=f.yaml"}, "run"},
		{[]string{"-config=f.yaml"}, "run"},
		{[]string{"validate", "-config", "f.yaml"}, "validate"},
		{[]string{"validate", "--config", "f.yaml"}, "validate"},
		{[]string{"validate", "--config=f.yaml"}, "validate"},
		{[]string{"validate", "-config=f.yaml"}, "validate"},
		{[]string{"-config", "f.yaml", "validate"}, "validate"},
		{[]string{"--check", "-config", "f.yaml"}, "validate"},
		{[]string{"-config", "f.yaml", "--check"}, "validate"},
		{[]string{"--config=f.yaml", "--check"}, "validate"},
		{[]string{"validate", "-config", "f.yaml", "--check"}, "validate"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// The environment must not leak into -config runs.
			inv, err := parseArgs(tc.args, envOf(map[string]string{"KEYSTORE_PATH": "/k"}))
			if err != nil {
				t.Fatal(err)
			}
			if inv.Command != tc.wantCmd || inv.ConfigPath != "f.yaml" {
				t.Fatalf("got Command %q ConfigPath %q, want %q f.yaml", inv.Command, inv.ConfigPath, tc.wantCmd)
			}
			if len(inv.Config.Tunnels) != 0 || len(inv.Set) != 0 {
				t.Fatalf("-config invocation carries flag settings: %+v", inv)
			}
		})
	}
}

func TestParseArgsHelpAndVersion(t *testing.T) {
	cases := []struct {
		args     []string
		wantCmd  string
		wantMode string // help: "" full, or server/client
	}{
		{nil, "help", ""},
		{[]string{}, "help", ""},
		{[]string{"--help"}, "help", ""},
		{[]string{"-h"}, "help", ""},
		{[]string{"help"}, "help", ""},
		{[]string{"help", "server"}, "help", ""},
		{[]string{"server", "--help"}, "help", "server"},
		{[]string{"client", "-h", "--bogus"}, "help", "client"},
		{[]string{"--keystore", "k", "help"}, "help", ""},
		{[]string{"--keystore", "k"}, "help", ""}, // flags, no command: usage, as kingpin
		{[]string{"--"}, "help", ""},
		{[]string{"--help-long"}, "help", ""},
		{[]string{"--version"}, "version", ""},
		{[]string{"version"}, "version", ""},
		{[]string{"server", "--listen", "l:1", "--version"}, "version", ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			inv, err := parseArgs(tc.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if inv.Command != tc.wantCmd {
				t.Fatalf("Command = %q, want %q", inv.Command, tc.wantCmd)
			}
			if tc.wantCmd == "help" && inv.Help != usage(tc.wantMode) {
				t.Fatalf("Help is not usage(%q):\n%s", tc.wantMode, inv.Help)
			}
		})
	}
}

// TestHelpAndVersionOnStderr: usage and the version go to stderr with exit
// 0, as upstream's kingpin writes them, so `ghostunnel --version 2>&1` and
// scripts that read stderr see them.
func TestHelpAndVersionOnStderr(t *testing.T) {
	for _, args := range [][]string{nil, {"--help"}, {"server", "--help"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		if stdout.Len() != 0 || stderr.Len() == 0 {
			t.Errorf("%v: %d bytes on stdout, %d on stderr; want all on stderr", args, stdout.Len(), stderr.Len())
		}
	}
	var stdout, stderr bytes.Buffer
	run([]string{"--version"}, &stdout, &stderr)
	if !regexp.MustCompile(`^rev \S+ built with go\S+ \(pkcs11: (true|false), keychain: false\)\n$`).MatchString(stderr.String()) {
		t.Errorf("--version: %q", stderr.String())
	}
}

func TestUsageListsEveryFlag(t *testing.T) {
	full := usage("")
	for _, s := range flagTable {
		if !strings.Contains(full, flagSynopsis(&s)) {
			t.Errorf("usage lacks --%s", s.name)
		}
		for _, a := range s.aliases {
			if !strings.Contains(full, "--"+a) {
				t.Errorf("usage lacks alias --%s", a)
			}
		}
		if s.env != "" && !strings.Contains(full, "$"+s.env) {
			t.Errorf("usage lacks $%s", s.env)
		}
	}
	for _, c := range usageCommands {
		if !strings.Contains(full, c[0]) {
			t.Errorf("usage lacks command %q", c[0])
		}
	}
	for _, word := range []string{"Global flags", "Server flags", "Client flags", "-config FILE", "validate", "from-flags", "default 5m", "default 10s", "default 60s", "default 30s", "default ghostunnel"} {
		if !strings.Contains(full, word) {
			t.Errorf("usage lacks %q", word)
		}
	}
	server := usage("server")
	if strings.Contains(server, "--verify-cn") || !strings.Contains(server, "--allow-cn") || !strings.Contains(server, "--keystore") {
		t.Errorf("usage(server) should list global and server flags only:\n%s", server)
	}
	client := usage("client")
	if strings.Contains(client, "--allow-cn") || !strings.Contains(client, "--verify-cn") {
		t.Errorf("usage(client) should list global and client flags only:\n%s", client)
	}
}

// TestFlagTable checks the table against itself and against configs: kinds
// match destinations, YAML keys equal flag names, defaults match.
func TestFlagTable(t *testing.T) {
	inv, err := parseArgs(strings.Fields("server"+lt), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &dest{inv: inv, cfg: &inv.Config, tun: inv.tunnel()}
	tunFields := fieldsByAddr(reflect.ValueOf(d.tun).Elem())
	cfgFields := fieldsByAddr(reflect.ValueOf(d.cfg).Elem())

	names := map[string]flagScope{}
	flagKeys := map[string]bool{}
	for _, s := range flagTable {
		for _, n := range append([]string{s.name}, s.aliases...) {
			if prev, ok := names[n]; ok && (prev.global() || s.scope.global() || prev == s.scope) {
				t.Errorf("--%s defined twice in overlapping scopes", n)
			}
			names[n] = s.scope
		}
		if s.help == "" || strings.Contains(s.help, "\n") {
			t.Errorf("--%s: help must be one line", s.name)
		}
		if s.unsupported != (s.ptr == nil) {
			t.Errorf("--%s: ptr must be nil exactly for unsupported flags", s.name)
			continue
		}
		if s.ptr == nil {
			continue
		}
		p := s.ptr(d)
		ok := false
		switch p.(type) {
		case *string, *configs.Secret:
			ok = s.kind == kindString
		case *bool:
			ok = s.kind == kindBool
		case *[]string:
			ok = s.kind == kindStrings
		case *configs.Duration, *time.Duration:
			ok = s.kind == kindDuration
		case *int:
			ok = s.kind == kindInt
		}
		if !ok {
			t.Errorf("--%s: kind %v does not fit destination %T", s.name, s.kind, p)
		}
		addr := reflect.ValueOf(p).Pointer()
		if key, in := tunFields[addr]; in {
			flagKeys[key] = true
			if key != s.name {
				t.Errorf("--%s sets configs.Tunnel key %q", s.name, key)
			}
		} else if key, in := cfgFields[addr]; in {
			flagKeys[key] = true
			if key != s.name {
				t.Errorf("--%s sets configs.Config key %q", s.name, key)
			}
		}
		// The default shown in usage is the default the parser produces.
		if s.def != "" {
			got := fmt.Sprint(reflect.ValueOf(p).Elem().Interface())
			want := s.def
			if s.kind == kindDuration {
				dd, err := time.ParseDuration(s.def)
				if err != nil {
					t.Errorf("--%s: default %q: %v", s.name, s.def, err)
				}
				want = dd.String()
			}
			if got != want {
				t.Errorf("--%s: usage default %q, parser default %q", s.name, want, got)
			}
		}
	}
	// Every YAML key has a flag, except the fleet-only ones.
	fleetOnly := map[string]bool{"name": true, "mode": true, "tunnels": true, "default-tunnel": true, "enable-reload": true, "reauthorize": true}
	for _, m := range []map[uintptr]string{tunFields, cfgFields} {
		for _, key := range m {
			if !fleetOnly[key] && !flagKeys[key] {
				t.Errorf("YAML key %q has no flag in flagTable", key)
			}
		}
	}
}

// fieldsByAddr maps the address of each field of struct v to its YAML key.
func fieldsByAddr(v reflect.Value) map[uintptr]string {
	out := map[uintptr]string{}
	for i := 0; i < v.NumField(); i++ {
		if key := yamlKey(v.Type().Field(i)); key != "" {
			out[v.Field(i).Addr().Pointer()] = key
		}
	}
	return out
}

func TestFromFlagsYAMLRoundTrip(t *testing.T) {
	// Relative paths come out absolute: the file may be saved anywhere.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // substrings of the output
		notWant []string
	}{
		{name: "minimal server", args: strings.Fields("config from-flags server" + lt),
			want:    []string{"tunnels:\n  - name: server\n    mode: server\n    listen: l:1\n    target: t:2\n"},
			notWant: []string{"connect-timeout", "status", "storepass", "metrics-prefix"}},
		{name: "server with everything",
			args: []string{"--keystore", "/k.p12", "--storepass", "s3cret", "--cacert", "/ca", "--timed-reload", "5m",
				"--max-tls-version", "TLS1.3", "--connect-timeout", "10s", "--close-timeout", "0", "--max-conn-lifetime", "1h",
				"--max-concurrent-conns", "7", "--skip-resolve", "--status", "127.0.0.1:9", "--enable-pprof", "--enable-shutdown",
				"--metrics-prefix", "ghostunnel", "--shutdown-timeout", "2m", "--quiet", "conns,handshake-errs", "--syslog", "--cipher-suites", "AES",
				"config", "from-flags", "server", "--listen", "0.0.0.0:8443", "--target", "unix:/run/app.sock",
				"--target-status", "http://localhost:8080/health", "--proxy-protocol", "--proxy-protocol-mode", "tls",
				"--unsafe-target", "--allow-all=false", "--allow-cn", "a", "--allow-cn", "b: c", "--allow-cn", "true",
				"--allow-ou", "#ou", "--allow-dns", "*.example.com", "--allow-uri", "spiffe://x/**", "--allow-ip", "10.0.0.1",
				"--allow-spki-pin", "sha256:AbC+/=", "--disable-authentication", "--metrics-interval", "1m", "--allow-policy", "p", "--allow-query", "data.q"},
			want: []string{"storepass: ${KEYSTORE_PASS}", "connect-timeout: 10s", "status: 127.0.0.1:9", "quiet: [conns, handshake-errs]",
				`allow-cn: [a, 'b: c', "true"]`, "metrics-interval: 1m0s\n", "allow-policy: " + filepath.Join(wd, "p") + "\n", "allow-query: data.q\n",
				"# not supported by ghostunnel fleet: --cipher-suites=AES"},
			notWant: []string{"s3cret", "metrics-prefix", "no fleet-file key yet: --metrics"}},
		{name: "metrics push", args: strings.Fields("config from-flags server --metrics-graphite graphite.example.com:2003 --metrics-url https://m.example.com/push --metrics-interval 30s" + lt),
			want:    []string{"metrics-graphite: graphite.example.com:2003\n", "metrics-url: https://m.example.com/push\n"},
			notWant: []string{"metrics-interval", "no fleet-file key yet"}},
		{name: "pkcs11", args: strings.Fields("--pkcs11-pin 4321 config from-flags client --cert /c.pem --pkcs11-token-label tok" + lt),
			env:     map[string]string{"PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so"},
			want:    []string{"cert: /c.pem\n", "pkcs11-module: /usr/lib/softhsm/libsofthsm2.so # from $PKCS11_MODULE\n", "pkcs11-token-label: tok\n", "pkcs11-pin: ${PKCS11_PIN}\n"},
			notWant: []string{"4321", "not supported", "redacted"}},
		{name: "client with env", args: strings.Fields("config from-flags client --unsafe-listen --override-server-name n --verify-cn c --verify-uri-san u --verify-ip ::1 --verify-spki-pin sha256:x --disable-authentication" + lt),
			env:     map[string]string{"KEYSTORE_PATH": "/env/k.pem", "KEYSTORE_PASS": "envpass"},
			want:    []string{"keystore: /env/k.pem # from $KEYSTORE_PATH", "storepass: ${KEYSTORE_PASS}", "verify-uri: [u]", "verify-ip: ['::1']"},
			notWant: []string{"envpass", "allow-"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := parseArgs(tc.args, envOf(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if inv.Command != "from-flags" {
				t.Fatalf("Command = %q", inv.Command)
			}
			// from-flags builds exactly what server/client would.
			direct := slicesWithout(tc.args, "config", "from-flags")
			dinv, err := parseArgs(direct, envOf(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dinv.Config, inv.Config) {
				t.Fatalf("from-flags Config differs from %v:\n%+v\n%+v", direct, inv.Config, dinv.Config)
			}

			out := fromFlagsYAML(inv)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}

			// Parse back, strictly, with the defaults applied.
			got := configs.DefaultConfig()
			dec := yaml.NewDecoder(bytes.NewReader([]byte(out)))
			dec.KnownFields(true)
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, out)
			}
			var raw struct {
				Tunnels []yaml.Node `yaml:"tunnels"`
			}
			if err := yaml.Unmarshal([]byte(out), &raw); err != nil || len(raw.Tunnels) != 1 {
				t.Fatalf("want one tunnel, got %d (%v)", len(raw.Tunnels), err)
			}
			tun := configs.DefaultTunnelSettings()
			if err := raw.Tunnels[0].Decode(&tun); err != nil {
				t.Fatal(err)
			}
			want := inv.Config
			want.Tunnels = []configs.Tunnel{*inv.tunnel()}
			if want.Tunnels[0].Storepass != "" {
				if tun.Storepass != "${KEYSTORE_PASS}" {
					t.Errorf("storepass = %q, want ${KEYSTORE_PASS}", tun.Storepass.Reveal())
				}
				want.Tunnels[0].Storepass = ""
			}
			tun.Storepass = ""
			if want.Tunnels[0].PKCS11Pin != "" {
				if tun.PKCS11Pin != "${PKCS11_PIN}" {
					t.Errorf("pkcs11-pin = %q, want ${PKCS11_PIN}", tun.PKCS11Pin.Reveal())
				}
				want.Tunnels[0].PKCS11Pin = ""
			}
			tun.PKCS11Pin = ""
			got.Tunnels = []configs.Tunnel{tun}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip mismatch\n got: %+v\nwant: %+v\nyaml:\n%s", got, want, out)
			}
		})
	}
}

func slicesWithout(args []string, drop ...string) []string {
	var out []string
	for _, a := range args {
		if len(drop) > 0 && a == drop[0] {
			drop = drop[1:]
			continue
		}
		out = append(out, a)
	}
	return out
}

// parseArgs keeps no state between calls and is safe to call concurrently.
func TestParseArgsConcurrent(t *testing.T) {
	t.Parallel()
	for i := 0; i < 8; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			for j := 0; j < 50; j++ {
				inv, err := parseArgs(strings.Fields(fmt.Sprintf("server --allow-cn c%d", j)+lt), nil)
				if err != nil || len(inv.tunnel().AllowCN) != 1 {
					t.Errorf("run %d: %v %+v", j, err, inv)
				}
			}
		})
	}
}

// TestFromFlagsParsesBack: what config from-flags prints loads back as a
// fleet file with the same values: a literal $ stays one, and the proxy URL
// (which may carry a password) becomes ${GHOSTUNNEL_PROXY}.
func TestFromFlagsParsesBack(t *testing.T) {
	inv, err := parseArgs(strings.Fields("config from-flags client --listen localhost:9000 --target api.example.com:443 --keystore /k.pem"+
		" --verify-cn team$${X} --verify-cn a$b --proxy http://u:pw@proxy.example.com:3128"), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := fromFlagsYAML(inv)
	if strings.Contains(out, "pw@") {
		t.Fatalf("the proxy password is printed:\n%s", out)
	}
	env := func(k string) (string, bool) {
		if k == "GHOSTUNNEL_PROXY" {
			return "http://u:pw@proxy.example.com:3128", true
		}
		return "", false
	}
	c, err := configs.Parse([]byte(out), "from-flags.yaml", env)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tn := c.Tunnels[0]
	if want := []string{"team$${X}", "a$b"}; !slices.Equal(tn.VerifyCN, want) {
		t.Errorf("verify-cn %q, want %q\n%s", tn.VerifyCN, want, out)
	}
	if tn.Proxy.Reveal() != "http://u:pw@proxy.example.com:3128" {
		t.Errorf("proxy did not come back through ${GHOSTUNNEL_PROXY}:\n%s", out)
	}
}

// TestKingpinValueForms: values upstream's flag parser (kingpin) takes and
// Go's own parsers do not: d and w duration units, integers in any base
// (010 is octal), and an empty --metrics-url meaning none.
func TestKingpinValueForms(t *testing.T) {
	inv, err := parseArgs([]string{"--timed-reload", "1d", "--shutdown-timeout", "1w12h", "--metrics-url=",
		"server", "--max-concurrent-conns", "010", "--listen", "l:1", "--target", "t:2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := inv.tunnel()
	if tn.TimedReload.D() != 24*time.Hour || inv.Config.ShutdownTimeout.D() != 180*time.Hour || tn.MaxConcurrentConns != 8 || inv.Config.MetricsURL != "" {
		t.Fatalf("timed-reload %v, shutdown-timeout %v, max-concurrent-conns %d, metrics-url %q",
			tn.TimedReload.D(), inv.Config.ShutdownTimeout.D(), tn.MaxConcurrentConns, inv.Config.MetricsURL)
	}
}

// TestFromFlagsRelativePaths: a relative path on the command line comes out
// absolute, so the printed file names the same file wherever it is saved.
func TestFromFlagsRelativePaths(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	inv, err := parseArgs(strings.Fields("config from-flags server --listen localhost:8443 --target unix:app.sock --keystore certs/server.pem --allow-all"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := configs.Parse([]byte(fromFlagsYAML(inv)), filepath.Join(t.TempDir(), "elsewhere", "fleet.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := c.Tunnels[0]
	if tn.Keystore != filepath.Join(wd, "certs", "server.pem") || tn.Target != "unix:"+filepath.Join(wd, "app.sock") {
		t.Fatalf("keystore %s, target %s: want them under %s", tn.Keystore, tn.Target, wd)
	}
}
