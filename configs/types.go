// Package configs is the model of a ghostunnel fleet: the process-wide
// settings and one Tunnel per tunnel. The command line and the YAML file both
// produce these values; everything downstream (supervisor, tunnel) consumes
// them and nothing else.
//
// The YAML key of every setting is the name of the command-line flag that
// sets it, without the leading dashes. The `yaml` struct tags are that single
// source of truth; the JSON Schema in schema/ is checked against them.
package configs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Modes of a tunnel.
const (
	ModeServer = "server" // TLS listener -> plaintext target
	ModeClient = "client" // plaintext listener -> TLS target
)

// Defaults, as upstream Ghostunnel's flags have them.
const (
	DefaultConnectTimeout = 10 * time.Second
	// DefaultWorkloadAPITimeout is how long a tunnel waits for its first
	// SVID from the SPIFFE Workload API; 0 set explicitly waits
	// indefinitely (upstream's flag).
	DefaultWorkloadAPITimeout = 10 * time.Minute
	DefaultCloseTimeout       = 60 * time.Second
	DefaultShutdownTimeout    = 5 * time.Minute
	DefaultMetricsPrefix      = "ghostunnel"
	DefaultMetricsInterval    = 30 * time.Second
)

// Quiet families accepted by --quiet / quiet:.
var QuietFamilies = []string{"all", "conns", "conn-errs", "handshake-errs"}

// Duration is a time.Duration written as a Go duration string ("10s", "5m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d the way time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads a Go duration string. A bare 0 is accepted too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration such as 10s or 5m")
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as 10s, 1m30s or 5m", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// Secret is a string that never prints: not in logs, /_status, errors or
// `validate` output. Use Reveal to get the value.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return s.String() }

// MarshalYAML hides the value when a config is printed back.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Tunnel is every per-tunnel setting. Field order follows the README table.
type Tunnel struct {
	Name   string `yaml:"name"`
	Mode   string `yaml:"mode"`   // ModeServer or ModeClient
	Listen string `yaml:"listen"` // HOST:PORT or unix:PATH
	Target string `yaml:"target"` // HOST:PORT or unix:PATH (server), HOST:PORT (client)
	// TargetStatus is an http(s) URL checked for the backend health in /_status.
	TargetStatus string `yaml:"target-status,omitempty"`

	// Credentials.
	Keystore      string   `yaml:"keystore,omitempty"`  // PEM bundle (chain + key) or PKCS#12
	Storepass     Secret   `yaml:"storepass,omitempty"` // PKCS#12 password
	Cert          string   `yaml:"cert,omitempty"`      // PEM certificate chain
	Key           string   `yaml:"key,omitempty"`       // PEM private key
	CACert        string   `yaml:"cacert,omitempty"`    // PEM CA bundle; system pool when empty
	TimedReload   Duration `yaml:"timed-reload,omitempty"`
	MaxTLSVersion string   `yaml:"max-tls-version,omitempty"` // "", TLS1.2, TLS1.3

	// PKCS#11 (cgo builds): with PKCS11Module, Cert is the certificate chain
	// and the private key stays in the token named by PKCS11TokenLabel; the
	// key is the one whose public key the certificate holds.
	PKCS11Module     string `yaml:"pkcs11-module,omitempty"`      // path of the module (.so)
	PKCS11TokenLabel string `yaml:"pkcs11-token-label,omitempty"` // label of the token
	PKCS11Pin        Secret `yaml:"pkcs11-pin,omitempty"`         // user PIN of the token

	// SPIFFE Workload API: the certificate (X.509 SVID) and the trust
	// bundles come from the agent at UseWorkloadAPIAddr (unix:///PATH or
	// tcp://IP:PORT; $SPIFFE_ENDPOINT_SOCKET when empty) and rotate without
	// a reload. UseWorkloadAPITimeout bounds the wait for the first SVID
	// (default 10m; 0 waits indefinitely).
	UseWorkloadAPI        bool     `yaml:"use-workload-api,omitempty"`
	UseWorkloadAPIAddr    string   `yaml:"use-workload-api-addr,omitempty"`
	UseWorkloadAPITimeout Duration `yaml:"use-workload-api-timeout,omitempty"`

	// Server access control. The allow-* name lists OR together.
	AllowAll     bool     `yaml:"allow-all,omitempty"`
	AllowCN      []string `yaml:"allow-cn,omitempty"`
	AllowOU      []string `yaml:"allow-ou,omitempty"`
	AllowDNS     []string `yaml:"allow-dns,omitempty"`
	AllowURI     []string `yaml:"allow-uri,omitempty"` // * one segment, ** many
	AllowIP      []string `yaml:"allow-ip,omitempty"`
	AllowSPKIPin []string `yaml:"allow-spki-pin,omitempty"` // sha256:BASE64 (also sha384, sha512)
	// AllowPolicy is an OPA bundle (directory or .tar.gz; a lone .rego file
	// is read as Rego v0, as upstream does) and AllowQuery the Rego query
	// that must be true for the client; set together, alone.
	AllowPolicy  string `yaml:"allow-policy,omitempty"`
	AllowQuery   string `yaml:"allow-query,omitempty"`
	UnsafeTarget bool   `yaml:"unsafe-target,omitempty"`
	// ProxyProtocol sends a PROXY v2 header to the target; so does
	// ProxyProtocolMode, which says which (the two are exclusive).
	ProxyProtocol     bool   `yaml:"proxy-protocol,omitempty"`
	ProxyProtocolMode string `yaml:"proxy-protocol-mode,omitempty"` // conn (default), tls, tls-full

	// Client settings. The verify-* name lists OR together.
	UnsafeListen       bool   `yaml:"unsafe-listen,omitempty"`
	OverrideServerName string `yaml:"override-server-name,omitempty"`
	// Proxy reaches the target through an HTTP CONNECT (http://) or SOCKS5
	// (socks5://, socks5h:// to resolve at the proxy) proxy; credentials
	// may be in the URL.
	Proxy         Secret   `yaml:"proxy,omitempty"`
	VerifyCN      []string `yaml:"verify-cn,omitempty"`
	VerifyOU      []string `yaml:"verify-ou,omitempty"`
	VerifyDNS     []string `yaml:"verify-dns,omitempty"`
	VerifyURI     []string `yaml:"verify-uri,omitempty"`
	VerifyIP      []string `yaml:"verify-ip,omitempty"`
	VerifySPKIPin []string `yaml:"verify-spki-pin,omitempty"`
	// VerifyPolicy and VerifyQuery: an OPA bundle and query evaluated
	// against the server certificate, OR'd with the verify-* name lists.
	VerifyPolicy string `yaml:"verify-policy,omitempty"`
	VerifyQuery  string `yaml:"verify-query,omitempty"`

	// DisableAuthentication: a server asks no client certificate; a client
	// sends none.
	DisableAuthentication bool `yaml:"disable-authentication,omitempty"`

	// Connections.
	ConnectTimeout     Duration `yaml:"connect-timeout,omitempty"`
	CloseTimeout       Duration `yaml:"close-timeout,omitempty"`
	MaxConnLifetime    Duration `yaml:"max-conn-lifetime,omitempty"`
	MaxConcurrentConns int      `yaml:"max-concurrent-conns,omitempty"`
	SkipResolve        bool     `yaml:"skip-resolve,omitempty"`

	// Reauthorize: when a fleet reload changes this tunnel's access rules,
	// open connections whose peer the new rules refuse are closed.
	Reauthorize bool `yaml:"reauthorize,omitempty"`

	// ACME (server tunnels): the certificate for AutoACMECert is obtained
	// and renewed with TLS-ALPN-01 on the tunnel's own listener; it replaces
	// keystore, cert and key. AutoACMETestCA, when set, overrides AutoACMECA
	// (default: Let's Encrypt production). AutoACMECache is the directory
	// holding the account key and certificates (default: a per-tunnel
	// directory under the user cache directory).
	AutoACMECert       string `yaml:"auto-acme-cert,omitempty"`
	AutoACMEEmail      string `yaml:"auto-acme-email,omitempty"`
	AutoACMEAgreeToTOS bool   `yaml:"auto-acme-agree-to-tos,omitempty"`
	AutoACMECA         string `yaml:"auto-acme-ca,omitempty"`
	AutoACMETestCA     string `yaml:"auto-acme-testca,omitempty"`
	AutoACMECache      string `yaml:"auto-acme-cache,omitempty"`
}

// Config is a whole process: process-wide settings and its tunnels.
type Config struct {
	// Path is the file the config was loaded from ("" for the command line).
	// Relative paths inside it have already been resolved against its directory.
	Path string `yaml:"-"`

	Status         string `yaml:"status,omitempty"` // HOST:PORT, https://..., http://..., unix:PATH
	EnablePprof    bool   `yaml:"enable-pprof,omitempty"`
	EnableShutdown bool   `yaml:"enable-shutdown,omitempty"`
	// EnableReload serves POST /_reload on the status port (fleet files).
	EnableReload  bool   `yaml:"enable-reload,omitempty"`
	MetricsPrefix string `yaml:"metrics-prefix,omitempty"`
	// Metrics push, every MetricsInterval: Graphite plaintext lines over a
	// new TCP connection to MetricsGraphite (HOST:PORT), and a POST of the
	// JSON metrics list (the body of GET /_metrics) to MetricsURL.
	MetricsGraphite string   `yaml:"metrics-graphite,omitempty"`
	MetricsURL      string   `yaml:"metrics-url,omitempty"`
	MetricsInterval Duration `yaml:"metrics-interval,omitempty"`
	ShutdownTimeout Duration `yaml:"shutdown-timeout,omitempty"`
	DefaultTunnel   string   `yaml:"default-tunnel,omitempty"`
	Quiet           []string `yaml:"quiet,omitempty"`
	Syslog          bool     `yaml:"syslog,omitempty"`
	// DisableLandlock turns off the best-effort Landlock sandbox (Linux).
	DisableLandlock bool `yaml:"disable-landlock,omitempty"`

	Tunnels []Tunnel `yaml:"tunnels"`
}

// DefaultTunnelSettings returns a Tunnel holding the built-in defaults that
// every tunnel starts from before `defaults:` and its own keys apply.
func DefaultTunnelSettings() Tunnel {
	return Tunnel{
		ConnectTimeout:        Duration(DefaultConnectTimeout),
		CloseTimeout:          Duration(DefaultCloseTimeout),
		UseWorkloadAPITimeout: Duration(DefaultWorkloadAPITimeout),
	}
}

// DefaultConfig returns the process-wide defaults.
func DefaultConfig() Config {
	return Config{
		MetricsPrefix:   DefaultMetricsPrefix,
		MetricsInterval: Duration(DefaultMetricsInterval),
		ShutdownTimeout: Duration(DefaultShutdownTimeout),
	}
}

// IsQuiet reports whether the quiet family f (or "all") was asked for.
func (c *Config) IsQuiet(f string) bool {
	for _, q := range c.Quiet {
		if q == f || q == "all" {
			return true
		}
	}
	return false
}

// ParseDuration is time.ParseDuration plus the units d (24h) and w (7d),
// as upstream's flag parser (kingpin's str2duration) takes them: 1d, 2w,
// 1d12h.
func ParseDuration(s string) (time.Duration, error) {
	if !strings.ContainsAny(s, "dw") {
		return time.ParseDuration(s)
	}
	bad := fmt.Errorf("time: invalid duration %q", s)
	rest, sign := s, time.Duration(1)
	switch {
	case strings.HasPrefix(rest, "-"):
		rest, sign = rest[1:], -1
	case strings.HasPrefix(rest, "+"):
		rest = rest[1:]
	}
	if rest == "" {
		return 0, bad
	}
	isNum := func(c byte) bool { return c >= '0' && c <= '9' || c == '.' }
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && isNum(rest[i]) {
			i++
		}
		j := i
		for j < len(rest) && !isNum(rest[j]) {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		if num == "" || unit == "" {
			return 0, bad
		}
		var d time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			hours := 24.0
			if unit == "w" {
				hours = 7 * 24
			}
			if err != nil || f*hours >= float64(math.MaxInt64/int64(time.Hour)) {
				return 0, bad
			}
			d = time.Duration(f * hours * float64(time.Hour))
		default:
			v, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, bad
			}
			d = v
		}
		if total > math.MaxInt64-d {
			return 0, bad
		}
		total += d
		rest = rest[j:]
	}
	return sign * total, nil
}
