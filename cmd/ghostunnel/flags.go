package main

// Command-line parsing for the single-tunnel `ghostunnel server|client`
// grammar of upstream Ghostunnel (kingpin), plus the fleet commands
// (`-config FILE`, `validate`, `config from-flags`). Parsing and usage text
// both come from one read-only table, flagTable; nothing here keeps state
// between calls.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// Commands an invocation can carry.
const (
	cmdServer    = configs.ModeServer // single tunnel, server mode
	cmdClient    = configs.ModeClient // single tunnel, client mode
	cmdRun       = "run"              // -config FILE
	cmdValidate  = "validate"         // validate -config FILE, -config FILE --check
	cmdFromFlags = "from-flags"       // config from-flags server|client [flags]
	cmdVersion   = "version"
	cmdHelp      = "help"
)

// invocation is what one command line asks for.
type invocation struct {
	// Command is one of "server", "client", "run", "validate", "from-flags",
	// "version", "help".
	Command string
	// ConfigPath is the fleet file for "run" and "validate".
	ConfigPath string
	// Config, for server, client and from-flags: configs.DefaultConfig() plus
	// the process-wide flags, and exactly one Tunnel (Name and Mode "server"
	// or "client") built from configs.DefaultTunnelSettings() plus the flags.
	Config configs.Config
	// Help is the usage text to print for "help".
	Help string
	// Set holds the canonical name (no dashes, aliases resolved) of every
	// flag that was given, on the command line or through its environment
	// variable. Used by from-flags to print only what was asked for.
	Set map[string]bool
	// FromEnv maps a flag name to the environment variable it was taken from
	// (only for flags that were not on the command line).
	FromEnv map[string]string
	// Unsupported holds flags that upstream has and this program accepts but
	// does not implement yet, name -> value (secrets redacted; bool flags
	// only when true). main should refuse to start when it is not empty.
	Unsupported map[string]string

	// Process-wide settings configs.Config does not model.
	UseLandlock bool // --use-landlock (deprecated upstream, accepted, ignored)
}

// tunnel returns the invocation's single tunnel, or nil when there is none.
func (inv *invocation) tunnel() *configs.Tunnel {
	if len(inv.Config.Tunnels) != 1 {
		return nil
	}
	return &inv.Config.Tunnels[0]
}

// flagKind is how a flag's value is read.
type flagKind int

const (
	kindString   flagKind = iota // --name VALUE
	kindBool                     // --name, --name=true|false, --no-name
	kindStrings                  // repeatable --name VALUE, accumulates
	kindDuration                 // Go duration, not negative
	kindInt                      // non-negative 32-bit integer
)

func (k flagKind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindBool:
		return "bool"
	case kindStrings:
		return "strings"
	case kindDuration:
		return "duration"
	case kindInt:
		return "int"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// flagScope is where a flag may appear.
type flagScope int

const (
	// scopeProcess flags are process-wide and may appear before or after the
	// subcommand.
	scopeProcess flagScope = iota
	// scopeTunnel flags (credentials, timeouts) may appear before or after
	// the subcommand and apply to the single tunnel.
	scopeTunnel
	// scopeServer flags are valid only after `server`.
	scopeServer
	// scopeClient flags are valid only after `client`.
	scopeClient
)

func (s flagScope) global() bool { return s == scopeProcess || s == scopeTunnel }

// allowedIn reports whether a flag of scope s may be used in mode ("" before
// the subcommand, "server", "client").
func (s flagScope) allowedIn(mode string) bool {
	switch s {
	case scopeServer:
		return mode == cmdServer
	case scopeClient:
		return mode == cmdClient
	}
	return true
}

// dest is where a parsed value goes.
type dest struct {
	inv *invocation
	cfg *configs.Config
	tun *configs.Tunnel
}

// flagSpec describes one flag. The table below is the single source of the
// parser and of the usage text.
type flagSpec struct {
	name        string   // without dashes; equals the YAML key when modelled
	aliases     []string // hidden upstream aliases
	env         string   // environment fallback, used only when the flag is absent
	kind        flagKind
	scope       flagScope
	placeholder string // value name in usage
	help        string // one line
	def         string // default shown in usage ("" for none)
	required    bool
	deprecated  bool     // hidden upstream; accepted for old scripts
	unsupported bool     // accepted, recorded in invocation.Unsupported
	secret      bool     // never copied in clear outside the Config
	enum        []string // allowed values ("" allowed only if listed)
	commaList   bool     // kindStrings: a value may also be comma-separated
	check       func(string) error
	// ptr returns the destination: *string, *bool, *[]string, *int,
	// *configs.Secret, *configs.Duration or *time.Duration. nil for
	// unsupported flags.
	ptr func(*dest) any
}

// flagTable lists every flag. Order is usage order. Read-only.
var flagTable = []flagSpec{
	// Process-wide.
	{name: "status", kind: kindString, scope: scopeProcess, placeholder: "ADDR",
		help: "Serve /_status and /_metrics on [http(s)://]HOST:PORT, unix:PATH or systemd:NAME.",
		ptr:  func(d *dest) any { return &d.cfg.Status }},
	{name: "enable-pprof", kind: kindBool, scope: scopeProcess,
		help: "Serve /debug/pprof next to /_status (needs --status).",
		ptr:  func(d *dest) any { return &d.cfg.EnablePprof }},
	{name: "enable-shutdown", kind: kindBool, scope: scopeProcess,
		help: "Serve POST /_shutdown next to /_status to start a drain (needs --status).",
		ptr:  func(d *dest) any { return &d.cfg.EnableShutdown }},
	{name: "shutdown-timeout", kind: kindDuration, scope: scopeProcess, placeholder: "DURATION",
		help: "Exit after this long even if connections are still open.", def: "5m",
		ptr: func(d *dest) any { return &d.cfg.ShutdownTimeout }},
	{name: "quiet", kind: kindStrings, scope: scopeProcess, placeholder: "WHAT",
		help: "Silence logs: all, conns, conn-errs, handshake-errs (repeat or comma-separate).",
		enum: append([]string{""}, configs.QuietFamilies...), commaList: true,
		ptr: func(d *dest) any { return &d.cfg.Quiet }},
	{name: "syslog", kind: kindBool, scope: scopeProcess,
		help: "Log to the local syslog (facility daemon) instead of stdout.",
		ptr:  func(d *dest) any { return &d.cfg.Syslog }},
	{name: "metrics-prefix", kind: kindString, scope: scopeProcess, placeholder: "PREFIX",
		help: "Prefix of every reported metric name.", def: configs.DefaultMetricsPrefix,
		ptr: func(d *dest) any { return &d.cfg.MetricsPrefix }},
	{name: "metrics-interval", kind: kindDuration, scope: scopeProcess, placeholder: "DURATION",
		help: "Interval of --metrics-graphite and --metrics-url reports.", def: "30s",
		ptr: func(d *dest) any { return &d.cfg.MetricsInterval }},
	{name: "metrics-graphite", kind: kindString, scope: scopeProcess, placeholder: "ADDR",
		help:  "Send metrics to this Graphite HOST:PORT (raw TCP) every interval.",
		check: checkHostPort,
		ptr:   func(d *dest) any { return &d.cfg.MetricsGraphite }},
	{name: "metrics-url", kind: kindString, scope: scopeProcess, placeholder: "URL",
		help:  "POST metrics as JSON to this http(s) URL every interval.",
		check: checkHTTPURL,
		ptr:   func(d *dest) any { return &d.cfg.MetricsURL }},
	{name: "disable-landlock", kind: kindBool, scope: scopeProcess,
		help: "Disable the best-effort landlock sandbox (Linux).",
		ptr:  func(d *dest) any { return &d.cfg.DisableLandlock }},
	{name: "use-landlock", kind: kindBool, scope: scopeProcess, deprecated: true,
		help: "Use landlock (deprecated and ignored: landlock is on by default).",
		ptr:  func(d *dest) any { return &d.inv.UseLandlock }},
	{name: "cipher-suites", kind: kindString, scope: scopeProcess, unsupported: true, deprecated: true,
		placeholder: "LIST", def: "AES,CHACHA",
		help: "Cipher suites to enable, comma-separated (deprecated upstream)."},
	{name: "allow-unsafe-cipher-suites", kind: kindBool, scope: scopeProcess, unsupported: true, deprecated: true,
		help: "Allow unsafe suites in --cipher-suites (deprecated upstream)."},

	// Credentials and connection settings of the tunnel; any position.
	{name: "keystore", kind: kindString, scope: scopeTunnel, env: "KEYSTORE_PATH", placeholder: "PATH",
		help: "Keystore: combined PEM (chain and key) or PKCS#12.",
		ptr:  func(d *dest) any { return &d.tun.Keystore }},
	{name: "cert", kind: kindString, scope: scopeTunnel, env: "CERT_PATH", placeholder: "PATH",
		help: "PEM certificate chain (with --key or --pkcs11-module).",
		ptr:  func(d *dest) any { return &d.tun.Cert }},
	{name: "key", kind: kindString, scope: scopeTunnel, env: "KEY_PATH", placeholder: "PATH",
		help: "PEM private key (with --cert).",
		ptr:  func(d *dest) any { return &d.tun.Key }},
	{name: "storepass", kind: kindString, scope: scopeTunnel, env: "KEYSTORE_PASS", placeholder: "PASS",
		secret: true, help: "Password of a PKCS#12 keystore.",
		ptr: func(d *dest) any { return &d.tun.Storepass }},
	{name: "pkcs11-module", kind: kindString, scope: scopeTunnel, env: "PKCS11_MODULE", placeholder: "PATH",
		help: "PKCS#11 module (.so) holding the private key of --cert (cgo builds).",
		ptr:  func(d *dest) any { return &d.tun.PKCS11Module }},
	{name: "pkcs11-token-label", kind: kindString, scope: scopeTunnel, env: "PKCS11_TOKEN_LABEL", placeholder: "LABEL",
		help: "Label of the PKCS#11 token holding the key (with --pkcs11-module).",
		ptr:  func(d *dest) any { return &d.tun.PKCS11TokenLabel }},
	{name: "pkcs11-pin", kind: kindString, scope: scopeTunnel, env: "PKCS11_PIN", placeholder: "PIN",
		secret: true, help: "User PIN of the PKCS#11 token.",
		ptr: func(d *dest) any { return &d.tun.PKCS11Pin }},
	{name: "cacert", kind: kindString, scope: scopeTunnel, env: "CACERT_PATH", placeholder: "PATH",
		help: "PEM CA bundle to verify peers (default: system trust store).",
		ptr:  func(d *dest) any { return &d.tun.CACert }},
	{name: "use-workload-api", kind: kindBool, scope: scopeTunnel,
		help: "Get the certificate and trust bundle from the SPIFFE Workload API (rotated live).",
		ptr:  func(d *dest) any { return &d.tun.UseWorkloadAPI }},
	{name: "use-workload-api-addr", kind: kindString, scope: scopeTunnel,
		env: "SPIFFE_ENDPOINT_SOCKET", placeholder: "ADDR",
		help: "SPIFFE Workload API address, unix:///PATH or tcp://IP:PORT (implies --use-workload-api).",
		ptr:  func(d *dest) any { return &d.tun.UseWorkloadAPIAddr }},
	{name: "use-workload-api-timeout", kind: kindDuration, scope: scopeTunnel, placeholder: "DURATION",
		help: "How long to wait for the first SVID from the SPIFFE Workload API (default: 10m; 0 waits indefinitely).",
		ptr:  func(d *dest) any { return &d.tun.UseWorkloadAPITimeout }},
	{name: "timed-reload", kind: kindDuration, scope: scopeTunnel, placeholder: "DURATION",
		help: "Reload credentials every interval (e.g. 300s); also on SIGHUP.",
		ptr:  func(d *dest) any { return &d.tun.TimedReload }},
	{name: "max-tls-version", kind: kindString, scope: scopeTunnel, placeholder: "VERSION",
		enum: []string{"", "TLS1.2", "TLS1.3"},
		help: "Highest TLS version to use: TLS1.2 or TLS1.3 (default: Go's).",
		ptr:  func(d *dest) any { return &d.tun.MaxTLSVersion }},
	{name: "connect-timeout", kind: kindDuration, scope: scopeTunnel, placeholder: "DURATION",
		help: "Timeout to dial and complete handshakes.", def: "10s",
		ptr: func(d *dest) any { return &d.tun.ConnectTimeout }},
	{name: "close-timeout", kind: kindDuration, scope: scopeTunnel, placeholder: "DURATION",
		help: "Time to finish after one side closes (0: close at once).", def: "60s",
		ptr: func(d *dest) any { return &d.tun.CloseTimeout }},
	{name: "max-conn-lifetime", kind: kindDuration, scope: scopeTunnel, placeholder: "DURATION",
		help: "Close connections this long after the handshake (0: never).", def: "0s",
		ptr: func(d *dest) any { return &d.tun.MaxConnLifetime }},
	{name: "max-concurrent-conns", kind: kindInt, scope: scopeTunnel, placeholder: "N",
		help: "Most connections handled at once (0: no limit).", def: "0",
		ptr: func(d *dest) any { return &d.tun.MaxConcurrentConns }},
	{name: "skip-resolve", kind: kindBool, scope: scopeTunnel,
		help: "Do not resolve the target at startup (start before the network is up).",
		ptr:  func(d *dest) any { return &d.tun.SkipResolve }},

	// Server mode.
	{name: "listen", kind: kindString, scope: scopeServer, placeholder: "ADDR", required: true,
		help: "TLS listen address: HOST:PORT, unix:PATH or systemd:NAME.",
		ptr:  func(d *dest) any { return &d.tun.Listen }},
	{name: "target", kind: kindString, scope: scopeServer, placeholder: "ADDR", required: true,
		help: "Plaintext backend: HOST:PORT or unix:PATH.",
		ptr:  func(d *dest) any { return &d.tun.Target }},
	{name: "target-status", kind: kindString, scope: scopeServer, placeholder: "URL",
		help: "http(s) URL checked for backend health in /_status (default: TCP dial).",
		ptr:  func(d *dest) any { return &d.tun.TargetStatus }},
	{name: "proxy-protocol", kind: kindBool, scope: scopeServer,
		help: "Send a PROXY protocol v2 header to the target (= --proxy-protocol-mode=conn).",
		ptr:  func(d *dest) any { return &d.tun.ProxyProtocol }},
	{name: "proxy-protocol-mode", kind: kindString, scope: scopeServer, placeholder: "MODE",
		enum: []string{"conn", "tls", "tls-full"},
		help: "Send a PROXY v2 header: conn, tls (adds TLS info) or tls-full (adds client cert); not with --proxy-protocol.",
		ptr:  func(d *dest) any { return &d.tun.ProxyProtocolMode }},
	{name: "unsafe-target", kind: kindBool, scope: scopeServer,
		help: "Allow a target other than localhost, loopback or a UNIX socket.",
		ptr:  func(d *dest) any { return &d.tun.UnsafeTarget }},
	{name: "allow-all", kind: kindBool, scope: scopeServer,
		help: "Allow every client with a certificate the CA bundle verifies.",
		ptr:  func(d *dest) any { return &d.tun.AllowAll }},
	{name: "allow-cn", kind: kindStrings, scope: scopeServer, placeholder: "CN",
		help: "Allow clients with this common name (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.AllowCN }},
	{name: "allow-ou", kind: kindStrings, scope: scopeServer, placeholder: "OU",
		help: "Allow clients with this organizational unit (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.AllowOU }},
	{name: "allow-dns", aliases: []string{"allow-dns-san"}, kind: kindStrings, scope: scopeServer, placeholder: "DNS",
		help: "Allow clients with this DNS SAN (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.AllowDNS }},
	{name: "allow-uri", aliases: []string{"allow-uri-san"}, kind: kindStrings, scope: scopeServer, placeholder: "URI",
		help: "Allow clients with this URI SAN; * one segment, ** many (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.AllowURI }},
	{name: "allow-ip", aliases: []string{"allow-ip-san"}, kind: kindStrings, scope: scopeServer, placeholder: "IP",
		help: "Allow clients with this IP SAN (repeatable).", check: checkIP,
		ptr: func(d *dest) any { return &d.tun.AllowIP }},
	{name: "allow-spki-pin", kind: kindStrings, scope: scopeServer, placeholder: "PIN",
		help: "Allow clients whose key matches ALGO:BASE64 (e.g. sha256:...), pin alone (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.AllowSPKIPin }},
	{name: "allow-policy", kind: kindString, scope: scopeServer, placeholder: "BUNDLE",
		help: "OPA bundle (directory or .tar.gz) to authorize clients with; needs --allow-query, alone.",
		ptr:  func(d *dest) any { return &d.tun.AllowPolicy }},
	{name: "allow-query", kind: kindString, scope: scopeServer, placeholder: "QUERY",
		help: "Rego query that must be true for the client certificate (input.certificate).",
		ptr:  func(d *dest) any { return &d.tun.AllowQuery }},
	{name: "disable-authentication", kind: kindBool, scope: scopeServer,
		help: "Do not ask clients for a certificate.",
		ptr:  func(d *dest) any { return &d.tun.DisableAuthentication }},
	{name: "auto-acme-cert", kind: kindString, scope: scopeServer, placeholder: "FQDN",
		help: "Get and renew a certificate for FQDN via ACME (TLS-ALPN-01 on --listen).",
		ptr:  func(d *dest) any { return &d.tun.AutoACMECert }},
	{name: "auto-acme-email", kind: kindString, scope: scopeServer, placeholder: "EMAIL",
		help: "Contact email for ACME requests (needed with --auto-acme-cert).",
		ptr:  func(d *dest) any { return &d.tun.AutoACMEEmail }},
	{name: "auto-acme-agree-to-tos", kind: kindBool, scope: scopeServer,
		help: "Agree to the ACME CA's terms of service (needed with --auto-acme-cert).",
		ptr:  func(d *dest) any { return &d.tun.AutoACMEAgreeToTOS }},
	{name: "auto-acme-ca", kind: kindString, scope: scopeServer, placeholder: "URL",
		help: "ACME CA directory URL (default: Let's Encrypt production).",
		ptr:  func(d *dest) any { return &d.tun.AutoACMECA }},
	{name: "auto-acme-testca", kind: kindString, scope: scopeServer, placeholder: "URL",
		help: "ACME test CA directory URL; overrides --auto-acme-ca.",
		ptr:  func(d *dest) any { return &d.tun.AutoACMETestCA }},
	{name: "auto-acme-cache", kind: kindString, scope: scopeServer, placeholder: "DIR",
		help: "Directory of the ACME account key and certificates (default: user cache dir/ghostunnel/acme/NAME).",
		ptr:  func(d *dest) any { return &d.tun.AutoACMECache }},

	// Client mode.
	{name: "listen", kind: kindString, scope: scopeClient, placeholder: "ADDR", required: true,
		help: "Plaintext listen address: HOST:PORT, unix:PATH or systemd:NAME.",
		ptr:  func(d *dest) any { return &d.tun.Listen }},
	{name: "target", kind: kindString, scope: scopeClient, placeholder: "ADDR", required: true,
		help: "TLS server to connect to: HOST:PORT.",
		ptr:  func(d *dest) any { return &d.tun.Target }},
	{name: "unsafe-listen", kind: kindBool, scope: scopeClient,
		help: "Allow a listen address other than localhost, loopback or a UNIX socket.",
		ptr:  func(d *dest) any { return &d.tun.UnsafeListen }},
	{name: "override-server-name", kind: kindString, scope: scopeClient, placeholder: "NAME",
		help: "Server name to send (SNI) and verify instead of the target host.",
		ptr:  func(d *dest) any { return &d.tun.OverrideServerName }},
	{name: "proxy", aliases: []string{"connect-proxy"}, kind: kindString, scope: scopeClient,
		placeholder: "URL", secret: true, check: checkProxyGiven,
		help: "Reach the target through an HTTP CONNECT (http://) or SOCKS5 (socks5://, socks5h://) proxy URL.",
		ptr:  func(d *dest) any { return (*string)(&d.tun.Proxy) }},
	{name: "verify-cn", kind: kindStrings, scope: scopeClient, placeholder: "CN",
		help: "Accept servers with this common name (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.VerifyCN }},
	{name: "verify-ou", kind: kindStrings, scope: scopeClient, placeholder: "OU",
		help: "Accept servers with this organizational unit (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.VerifyOU }},
	{name: "verify-dns", aliases: []string{"verify-dns-san"}, kind: kindStrings, scope: scopeClient, placeholder: "DNS",
		help: "Accept servers with this DNS SAN (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.VerifyDNS }},
	{name: "verify-uri", aliases: []string{"verify-uri-san"}, kind: kindStrings, scope: scopeClient, placeholder: "URI",
		help: "Accept servers with this URI SAN; * one segment, ** many (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.VerifyURI }},
	{name: "verify-ip", aliases: []string{"verify-ip-san"}, kind: kindStrings, scope: scopeClient, placeholder: "IP",
		help: "Accept servers with this IP SAN (repeatable).", check: checkIP,
		ptr: func(d *dest) any { return &d.tun.VerifyIP }},
	{name: "verify-spki-pin", kind: kindStrings, scope: scopeClient, placeholder: "PIN",
		help: "Accept servers whose key matches ALGO:BASE64, pin alone (repeatable).",
		ptr:  func(d *dest) any { return &d.tun.VerifySPKIPin }},
	{name: "verify-policy", kind: kindString, scope: scopeClient, placeholder: "BUNDLE",
		help: "OPA bundle (directory or .tar.gz) to authorize servers with; needs --verify-query.",
		ptr:  func(d *dest) any { return &d.tun.VerifyPolicy }},
	{name: "verify-query", kind: kindString, scope: scopeClient, placeholder: "QUERY",
		help: "Rego query that must be true for the server certificate (input.certificate).",
		ptr:  func(d *dest) any { return &d.tun.VerifyQuery }},
	{name: "disable-authentication", kind: kindBool, scope: scopeClient,
		help: "Send no client certificate to the server.",
		ptr:  func(d *dest) any { return &d.tun.DisableAuthentication }},
}

// lookupFlag finds the spec for a long flag name (or alias) usable in mode.
func lookupFlag(name, mode string) *flagSpec {
	for i := range flagTable {
		s := &flagTable[i]
		if !s.scope.allowedIn(mode) {
			continue
		}
		if s.name == name || slices.Contains(s.aliases, name) {
			return s
		}
	}
	return nil
}

func checkIP(v string) error {
	if _, err := netip.ParseAddr(v); err != nil {
		return errors.New("not an IP address")
	}
	return nil
}

func checkHostPort(v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return errors.New("want HOST:PORT")
	}
	return nil
}

// checkProxyGiven refuses an empty --proxy: upstream fails on it (no
// scheme), where ignoring it would connect directly, past the proxy the
// command line asked for (a script's unset variable, say).
func checkProxyGiven(v string) error {
	if v == "" {
		return errors.New("empty proxy URL")
	}
	return nil
}

func checkHTTPURL(v string) error {
	if v == "" { // as upstream: an empty value means none
		return nil
	}
	if !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
		return errors.New("should start with http:// or https://")
	}
	return nil
}

// parser is the state of one parseArgs call.
type parser struct {
	lookupEnv func(string) (string, bool)
	inv       *invocation
	cfg       configs.Config
	tun       configs.Tunnel

	cmd        string // "", server, client, validate, config, from-flags
	mode       string // server or client once known
	configPath string
	configSet  bool
	check      bool
	cmdline    map[string]bool // canonical names given on the command line
}

// parseArgs parses a command line (without the program name). lookupEnv is
// typically os.LookupEnv; nil means no environment.
func parseArgs(args []string, lookupEnv func(string) (string, bool)) (*invocation, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	p := &parser{
		lookupEnv: lookupEnv,
		inv: &invocation{
			Set:         map[string]bool{},
			FromEnv:     map[string]string{},
			Unsupported: map[string]string{},
		},
		cfg:     configs.DefaultConfig(),
		tun:     configs.DefaultTunnelSettings(),
		cmdline: map[string]bool{},
	}
	if len(args) == 0 {
		return p.help(), nil
	}
	// With -config everything lives in the file: the only other words
	// allowed are `validate`, --check, --help and --version.
	withConfig := false
	for _, a := range args {
		if a == "--" {
			break
		}
		withConfig = withConfig || isConfigFlag(a)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			for _, rest := range args[i+1:] {
				if err := p.word(rest); err != nil {
					return nil, err
				}
				if p.cmd == cmdHelp || p.cmd == cmdVersion {
					break
				}
			}
			i = len(args)
		case a == "-h" || a == "--help" || a == "--help-long": // upstream's help is the long one
			return p.help(), nil
		case a == "--version":
			p.inv.Command = cmdVersion
			return p.inv, nil
		case a == "--check":
			p.check = true
		case isConfigFlag(a):
			_, val, hasVal := strings.Cut(a, "=")
			if !hasVal {
				if i+1 >= len(args) || looksLikeFlag(args[i+1]) {
					return nil, fmt.Errorf("expected argument for flag '%s'", a)
				}
				i++
				val = args[i]
			}
			if p.configSet {
				return nil, errors.New("flag 'config' cannot be repeated")
			}
			if val == "" {
				return nil, errors.New("-config needs a file path")
			}
			p.configSet, p.configPath = true, val
		case withConfig && looksLikeFlag(a):
			return nil, fmt.Errorf("-config takes no other flags; put settings in the file (got %s)", a)
		case withConfig && !(p.cmd == "" && a == cmdValidate):
			return nil, fmt.Errorf("-config cannot be combined with %q; put settings in the file", a)
		case strings.HasPrefix(a, "--"):
			next, err := p.flag(a, args, i)
			if err != nil {
				return nil, err
			}
			i = next
		case len(a) > 1 && a[0] == '-':
			return nil, fmt.Errorf("unknown short flag '%s'", shortFlag(a))
		default:
			if err := p.word(a); err != nil {
				return nil, err
			}
		}
		if p.cmd == cmdHelp || p.cmd == cmdVersion {
			break
		}
	}
	return p.finish()
}

func isConfigFlag(a string) bool {
	name, _, _ := strings.Cut(a, "=")
	return name == "-config" || name == "--config"
}

func looksLikeFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// shortFlag returns the first short flag of a cluster such as -abc.
func shortFlag(a string) string {
	r := []rune(a)
	if len(r) > 2 {
		return string(r[:2])
	}
	return a
}

func (p *parser) help() *invocation {
	p.inv.Command = cmdHelp
	p.inv.Help = usage(p.mode)
	return p.inv
}

// word handles a positional argument: a command, or an error.
func (p *parser) word(w string) error {
	switch p.cmd {
	case "":
		switch w {
		case cmdServer, cmdClient:
			p.cmd, p.mode = w, w
		case cmdValidate:
			p.cmd = cmdValidate
		case "config":
			p.cmd = "config"
		case cmdVersion:
			p.cmd = cmdVersion
			p.inv.Command = cmdVersion
		case cmdHelp:
			// `help [server|client]` like kingpin.
			p.cmd = cmdHelp
			p.help()
		default:
			return fmt.Errorf("expected command but got %q", w)
		}
		return nil
	case "config":
		if w != cmdFromFlags {
			return fmt.Errorf("expected command \"from-flags\" after \"config\" but got %q", w)
		}
		p.cmd = cmdFromFlags
		return nil
	case cmdFromFlags:
		if p.mode == "" && (w == cmdServer || w == cmdClient) {
			p.mode = w
			return nil
		}
		if p.mode == "" {
			return fmt.Errorf("config from-flags: expected server or client but got %q", w)
		}
	}
	return fmt.Errorf("unexpected argument '%s'", w)
}

// flag handles a "--name[=value]" at args[i] and returns the index of the
// last argument it consumed.
func (p *parser) flag(a string, args []string, i int) (int, error) {
	name, val, hasVal := strings.Cut(a[2:], "=")
	spec := lookupFlag(name, p.mode)
	negated := false
	if spec == nil {
		if base, ok := strings.CutPrefix(name, "no-"); ok {
			if s := lookupFlag(base, p.mode); s != nil && s.kind == kindBool {
				spec, negated = s, true
			}
		}
	}
	if spec == nil {
		return i, fmt.Errorf("unknown long flag '--%s'", name)
	}
	if spec.kind == kindBool {
		switch {
		case negated && hasVal:
			return i, fmt.Errorf("flag '--%s' takes no value", name)
		case negated:
			val = "false"
		case !hasVal:
			val = "true"
		}
	} else if !hasVal {
		if i+1 >= len(args) || looksLikeFlag(args[i+1]) {
			return i, fmt.Errorf("expected argument for flag '--%s'", name)
		}
		i++
		val = args[i]
	}
	if p.cmdline[spec.name] && spec.kind != kindStrings {
		return i, fmt.Errorf("flag '%s' cannot be repeated", spec.name)
	}
	p.cmdline[spec.name] = true
	return i, p.apply(spec, val, "")
}

// apply stores val for spec. env names the variable it came from, if any.
func (p *parser) apply(spec *flagSpec, val, env string) error {
	bad := func(why string) error {
		shown := strconv.Quote(val)
		if spec.secret {
			shown = "(hidden)"
		}
		from := ""
		if env != "" {
			from = " (from $" + env + ")"
		}
		return fmt.Errorf("invalid value %s for flag --%s%s: %s", shown, spec.name, from, why)
	}
	var (
		b    bool
		list []string
		dur  time.Duration
		num  int
	)
	switch spec.kind {
	case kindBool:
		v, err := strconv.ParseBool(val)
		if err != nil {
			return bad("want true or false")
		}
		b = v
	case kindString:
		if spec.enum != nil && !slices.Contains(spec.enum, val) {
			return bad("must be one of " + strings.Join(nonEmpty(spec.enum), ", "))
		}
		if spec.check != nil {
			if err := spec.check(val); err != nil {
				return bad(err.Error())
			}
		}
	case kindStrings:
		items := []string{val}
		if spec.commaList {
			items = strings.Split(val, ",")
		}
		for _, it := range items {
			if spec.commaList {
				it = strings.TrimSpace(it)
			}
			if spec.enum != nil && !slices.Contains(spec.enum, it) {
				return bad("must be one of " + strings.Join(nonEmpty(spec.enum), ", "))
			}
			if spec.check != nil {
				if err := spec.check(it); err != nil {
					return bad(err.Error())
				}
			}
			if it != "" || !spec.commaList {
				list = append(list, it)
			}
		}
	case kindDuration:
		v, err := configs.ParseDuration(val)
		if err != nil {
			return bad("want a Go duration such as 10s, 1m30s or 5m")
		}
		if v < 0 {
			return bad("must not be negative")
		}
		dur = v
	case kindInt:
		if strings.HasPrefix(strings.TrimSpace(val), "-") {
			return bad("must not be negative")
		}
		v, err := strconv.ParseUint(val, 0, 32) // base 0, as kingpin: 0x10, 010 (octal), 1_000
		if err != nil {
			return bad("want a whole number from 0 to 4294967295")
		}
		num = int(v)
	}

	p.inv.Set[spec.name] = true
	if env != "" {
		p.inv.FromEnv[spec.name] = env
	}
	if spec.unsupported {
		shown := val
		switch {
		case spec.kind == kindBool && !b:
			delete(p.inv.Unsupported, spec.name)
			return nil
		case spec.kind == kindBool:
			shown = "true"
		case spec.secret:
			shown = configs.Secret(val).String()
		}
		p.inv.Unsupported[spec.name] = shown
		return nil
	}

	d := &dest{inv: p.inv, cfg: &p.cfg, tun: &p.tun}
	switch ptr := spec.ptr(d).(type) {
	case *bool:
		*ptr = b
	case *string:
		*ptr = val
	case *configs.Secret:
		*ptr = configs.Secret(val)
	case *[]string:
		*ptr = append(*ptr, list...)
	case *configs.Duration:
		*ptr = configs.Duration(dur)
	case *time.Duration:
		*ptr = dur
	case *int:
		*ptr = num
	default:
		return fmt.Errorf("internal error: flag --%s has destination %T", spec.name, ptr)
	}
	return nil
}

func nonEmpty(list []string) []string {
	var out []string
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// finish checks the command line as a whole and builds the invocation.
func (p *parser) finish() (*invocation, error) {
	inv := p.inv
	switch p.cmd {
	case cmdHelp, cmdVersion:
		return inv, nil
	}

	if p.configSet || p.check {
		switch {
		case !p.configSet:
			return nil, errors.New("--check needs -config FILE")
		case p.cmd != "" && p.cmd != cmdValidate:
			return nil, fmt.Errorf("-config cannot be combined with %q; put settings in the file", p.cmd)
		}
		inv.Command, inv.ConfigPath = cmdRun, p.configPath
		if p.check || p.cmd == cmdValidate {
			inv.Command = cmdValidate
		}
		return inv, nil
	}

	switch p.cmd {
	case "":
		// As kingpin: flags but no command print the usage (exit 0).
		return p.help(), nil
	case cmdValidate:
		return nil, errors.New("validate needs -config FILE")
	case "config":
		return nil, errors.New("expected command \"from-flags\" after \"config\"")
	case cmdFromFlags:
		if p.mode == "" {
			return nil, errors.New("config from-flags: expected server or client")
		}
	}

	// server, client, from-flags: environment fallbacks, then required flags.
	for i := range flagTable {
		s := &flagTable[i]
		if s.env == "" || !s.scope.allowedIn(p.mode) || p.cmdline[s.name] {
			continue
		}
		if v, ok := p.lookupEnv(s.env); ok && v != "" {
			if err := p.apply(s, v, s.env); err != nil {
				return nil, err
			}
		}
	}
	// As upstream: a Workload API address (flag or $SPIFFE_ENDPOINT_SOCKET)
	// implies --use-workload-api.
	if p.tun.UseWorkloadAPIAddr != "" && !p.tun.UseWorkloadAPI {
		p.tun.UseWorkloadAPI = true
		p.inv.Set["use-workload-api"] = true
	}
	for i := range flagTable {
		s := &flagTable[i]
		if s.required && s.scope.allowedIn(p.mode) && !p.inv.Set[s.name] {
			return nil, fmt.Errorf("required flag --%s not provided", s.name)
		}
	}

	inv.Command = p.cmd
	p.tun.Name, p.tun.Mode = p.mode, p.mode
	p.cfg.Tunnels = []configs.Tunnel{p.tun}
	inv.Config = p.cfg
	return inv, nil
}

// fromFlagsYAML prints the fleet-file equivalent of a server/client/
// from-flags invocation: the process-wide keys that were set and differ from
// the defaults, then the tunnel as the one item of `tunnels:` with the keys
// that were set. Lists are flow sequences. The keystore password is never
// printed: `storepass: ${KEYSTORE_PASS}` stands for it, and
// `pkcs11-pin: ${PKCS11_PIN}` for the PKCS#11 PIN. Flags with no fleet
// key are listed in comments at the top.
func fromFlagsYAML(inv *invocation) string {
	// Relative paths were relative to the working directory; a fleet file
	// reads them against its own directory, wherever it is saved.
	if wd, err := os.Getwd(); err == nil {
		configs.ResolvePaths(&inv.Config, wd)
	}
	var head []string
	head = append(head, "# ghostunnel fleet file equivalent of the command line.")
	for i := range flagTable {
		s := &flagTable[i]
		if !inv.Set[s.name] || !s.scope.allowedIn(modeOf(inv)) {
			continue
		}
		switch {
		case s.unsupported:
			if v, ok := inv.Unsupported[s.name]; ok {
				head = append(head, fmt.Sprintf("# not supported by ghostunnel fleet: --%s=%s", s.name, v))
			}
		case s.name == "use-landlock":
			head = append(head, "# ignored (landlock is on by default): --use-landlock="+strconv.FormatBool(inv.UseLandlock))
		}
	}

	root := &yaml.Node{Kind: yaml.MappingNode}
	defaults := configs.DefaultConfig()
	cv, dv := reflect.ValueOf(inv.Config), reflect.ValueOf(defaults)
	ct := cv.Type()
	for i := 0; i < ct.NumField(); i++ {
		key := yamlKey(ct.Field(i))
		if key == "" || key == "tunnels" || !inv.Set[key] {
			continue
		}
		if reflect.DeepEqual(cv.Field(i).Interface(), dv.Field(i).Interface()) {
			continue
		}
		root.Content = append(root.Content, scalarKey(key), escapeDollars(valueNode(cv.Field(i).Interface())))
	}

	item := &yaml.Node{Kind: yaml.MappingNode}
	if t := inv.tunnel(); t != nil {
		tv := reflect.ValueOf(*t)
		tt := tv.Type()
		for i := 0; i < tt.NumField(); i++ {
			key := yamlKey(tt.Field(i))
			if key == "" {
				continue
			}
			if key != "name" && key != "mode" && !inv.Set[key] {
				continue
			}
			var v *yaml.Node
			if env := secretEnv(key); env != "" {
				v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "${" + env + "}"}
			} else if ph, ok := configs.SecretPlaceholders[key]; ok {
				v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ph}
			} else {
				v = escapeDollars(valueNode(tv.Field(i).Interface()))
			}
			if env := inv.FromEnv[key]; env != "" {
				v.LineComment = "from $" + env
			}
			item.Content = append(item.Content, scalarKey(key), v)
		}
	}
	root.Content = append(root.Content, scalarKey("tunnels"),
		&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{item}})

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return strings.Join(head, "\n") + "\n# error: " + err.Error() + "\n"
	}
	_ = enc.Close()
	return strings.Join(head, "\n") + "\n" + buf.String()
}

// escapeDollars writes each $ in n's strings as $$, so that the fleet file
// reads them back as they were (a file expands ${VAR}; a flag value does
// not).
func escapeDollars(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Value = strings.ReplaceAll(n.Value, "$", "$$")
	}
	for _, c := range n.Content {
		escapeDollars(c)
	}
	return n
}

// secretEnv returns the environment variable of the secret flag key
// (storepass, pkcs11-pin), "" for any other flag. from-flags prints ${VAR}
// in place of such a secret.
func secretEnv(key string) string {
	for i := range flagTable {
		if s := &flagTable[i]; s.name == key && s.secret && s.env != "" {
			return s.env
		}
	}
	return ""
}

// modeOf returns the tunnel mode of inv ("" when it has no single tunnel).
func modeOf(inv *invocation) string {
	if t := inv.tunnel(); t != nil {
		return t.Mode
	}
	return ""
}

// yamlKey returns the YAML key of a struct field, "" when it has none.
func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if k == "-" {
		return ""
	}
	return k
}

func scalarKey(k string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}
}

// valueNode encodes v, with sequences in flow style.
func valueNode(v any) *yaml.Node {
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
	}
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	return n
}
