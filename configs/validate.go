package configs

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Limits and syntax of tunnel names.
const (
	MaxNameLength = 63
	namePattern   = `^[a-z0-9][a-z0-9._-]*$`
)

var (
	nameRE          = regexp.MustCompile(namePattern)
	metricsPrefixRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

// ProxyProtocolModes are the values of proxy-protocol-mode ("" means conn).
var ProxyProtocolModes = []string{"conn", "tls", "tls-full"}

// Access control settings of a server tunnel, in the order messages name
// them. The allow-* name lists OR together; the others stand alone.
var (
	accessKeys    = []string{"allow-all", "allow-cn", "allow-ou", "allow-dns", "allow-uri", "allow-ip", "allow-spki-pin", "disable-authentication"}
	exclusiveKeys = []string{"allow-all", "allow-spki-pin", "disable-authentication"}
	verifyKeys    = []string{"verify-cn", "verify-ou", "verify-dns", "verify-uri", "verify-ip"}
	// credentialKeys give a tunnel its certificate.
	credentialKeys = []string{"keystore", "cert", "key", "use-workload-api"}
)

// Validate checks c as upstream Ghostunnel checks its flags, and the fleet
// rules on top (unique names, no two listeners on one address). It does no
// I/O and reports every problem it finds: process-wide ones first, then
// each tunnel's, then clashes between tunnels. Messages name keys as the
// file spells them; Problem.FlagError renders them as flags.
func Validate(c *Config) Problems {
	v := &validator{c: c}
	v.processWide()
	for i := range c.Tunnels {
		v.tunnel(i)
	}
	v.uniqueNames()
	v.listenCollisions()
	return v.ps
}

// validator collects the problems of one config.
type validator struct {
	c  *Config
	ps Problems
}

// global records a problem with a process-wide setting.
func (v *validator) global(key, format string, args ...any) {
	v.ps = append(v.ps, newProblem(key, format, args...))
}

// at records a problem with tunnel i's setting key ("" for the tunnel as a
// whole).
func (v *validator) at(i int, key, format string, args ...any) {
	v.atElem(i, key, -1, format, args...)
}

// atElem records a problem with entry elem (0-based; -1 for none) of tunnel
// i's list setting key.
func (v *validator) atElem(i int, key string, elem int, format string, args ...any) {
	p := newProblem(key, format, args...)
	p.Tunnel = tunnelLabel(v.c, i)
	p.tunnel = i + 1
	if elem >= 0 {
		p.elem = elem + 1
	}
	v.ps = append(v.ps, p)
}

// missing records a problem with tunnel i that none of keys is set.
func (v *validator) missing(i int, keys []string, format string, args ...any) {
	v.at(i, "", format, args...)
	v.ps[len(v.ps)-1].about = strings.Join(keys, ",")
}

// tunnelLabel names tunnel i in messages: its name, or #N without one.
func tunnelLabel(c *Config, i int) string {
	if c.Tunnels[i].Name != "" {
		return c.Tunnels[i].Name
	}
	return fmt.Sprintf("#%d", i+1)
}

func (v *validator) processWide() {
	c := v.c
	if len(c.Tunnels) == 0 {
		v.global(keyTunnels, "no tunnels defined (at least one is required)")
	}
	for _, q := range c.Quiet {
		if !slices.Contains(QuietFamilies, q) {
			v.global("quiet", "unknown value %q (want one of %s)", q, strings.Join(QuietFamilies, ", "))
		}
	}
	if c.Status != "" {
		if _, _, _, err := ParseStatusAddress(c.Status); err != nil {
			v.global("status", "invalid address %q: %v", c.Status, err)
		}
	}
	if c.EnablePprof && c.Status == "" {
		v.global("enable-pprof", "{enable-pprof} requires {status}")
	}
	if c.EnableShutdown && c.Status == "" {
		v.global("enable-shutdown", "{enable-shutdown} requires {status}")
	}
	if c.EnableReload && c.Status == "" {
		v.global("enable-reload", "{enable-reload} requires {status}")
	}
	if c.MetricsPrefix != "" && !metricsPrefixRE.MatchString(c.MetricsPrefix) {
		v.global("metrics-prefix", "invalid prefix %q: use letters, digits, '_' and ':', not starting with a digit", c.MetricsPrefix)
	}
	v.metricsPush()
	if c.DefaultTunnel != "" && !slices.ContainsFunc(c.Tunnels, func(t Tunnel) bool { return t.Name == c.DefaultTunnel }) {
		v.global("default-tunnel", "no tunnel is named %q", c.DefaultTunnel)
	}
}

// metricsPush checks the settings of the metrics push: metrics-url as
// upstream does (plus a host), metrics-graphite as HOST:PORT, and a
// positive metrics-interval when either is set.
func (v *validator) metricsPush() {
	c := v.c
	if c.MetricsURL != "" {
		if !strings.HasPrefix(c.MetricsURL, "http://") && !strings.HasPrefix(c.MetricsURL, "https://") {
			v.global("metrics-url", "{metrics-url} should start with http:// or https://")
		} else if u, err := url.Parse(c.MetricsURL); err != nil || u.Host == "" {
			v.global("metrics-url", "{metrics-url} must be an http:// or https:// URL with a host")
		}
	}
	if c.MetricsGraphite != "" {
		if strings.Contains(c.MetricsGraphite, "://") {
			v.global("metrics-graphite", "{metrics-graphite} must be HOST:PORT, not a URL")
		} else if _, port, err := splitHostPort(c.MetricsGraphite); err != nil || port == 0 {
			v.global("metrics-graphite", "{metrics-graphite} must be HOST:PORT with a port from 1 to 65535, not %q", c.MetricsGraphite)
		}
	}
	if c.MetricsInterval <= 0 && (c.MetricsGraphite != "" || c.MetricsURL != "") {
		v.global("metrics-interval", "{metrics-interval} must be greater than zero")
	}
}

func (v *validator) tunnel(i int) {
	t := &v.c.Tunnels[i]
	v.name(i, t)
	v.mode(i, t)
	v.listen(i, t)
	v.target(i, t)
	v.credentials(i, t)
	switch t.Mode {
	case ModeServer:
		v.onlyFor(i, t, clientOnlyKeys, "client")
		v.serverAccess(i, t)
	case ModeClient:
		v.onlyFor(i, t, serverOnlyKeys, "server")
		v.clientVerify(i, t)
	}
	v.lists(i, t)
	v.options(i, t)
	v.proxy(i, t)
}

// proxy checks the client's proxy URL without ever repeating it: it may
// carry a password.
func (v *validator) proxy(i int, t *Tunnel) {
	if t.Proxy == "" {
		return
	}
	u, err := url.Parse(t.Proxy.Reveal())
	switch {
	case err != nil || u.Host == "":
		v.at(i, "proxy", "{proxy} must be a URL such as http://HOST:PORT or socks5://HOST:PORT")
	case u.Scheme != "http" && u.Scheme != "socks5" && u.Scheme != "socks5h":
		v.at(i, "proxy", "{proxy} scheme %q: want http, socks5 or socks5h", u.Scheme)
	}
}

func (v *validator) name(i int, t *Tunnel) {
	switch {
	case t.Name == "":
		v.at(i, "name", "{name} is required")
	case len(t.Name) > MaxNameLength:
		v.at(i, "name", "{name} must be at most %d characters", MaxNameLength)
	case !nameRE.MatchString(t.Name):
		v.at(i, "name", "invalid name %q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", t.Name)
	}
}

func (v *validator) mode(i int, t *Tunnel) {
	switch t.Mode {
	case ModeServer, ModeClient:
	case "":
		v.at(i, "mode", "{mode} is required (server or client)")
	default:
		v.at(i, "mode", "invalid mode %q (want server or client)", t.Mode)
	}
}

func (v *validator) listen(i int, t *Tunnel) {
	if t.Listen == "" {
		v.at(i, "listen", "{listen} is required")
		return
	}
	if _, _, err := ParseAddress(t.Listen); err != nil {
		v.at(i, "listen", "invalid address %q: %v", t.Listen, err)
		return
	}
	if t.Mode == ModeClient && !t.UnsafeListen && !IsLocalAddress(t.Listen) {
		v.at(i, "listen", "{listen} must be unix:PATH, localhost:PORT, systemd:NAME or launchd:NAME (unless {unsafe-listen} is set)")
	}
}

func (v *validator) target(i int, t *Tunnel) {
	if t.Target == "" {
		v.at(i, "target", "{target} is required")
		return
	}
	network, address, err := ParseAddress(t.Target)
	if err != nil {
		v.at(i, "target", "invalid address %q: %v", t.Target, err)
		return
	}
	switch {
	case t.Mode == ModeClient && network != NetworkTCP:
		v.at(i, "target", "{target} must be HOST:PORT for a client tunnel")
	case network != NetworkTCP && network != NetworkUnix:
		v.at(i, "target", "{target} must be HOST:PORT or unix:PATH")
	case network == NetworkTCP && strings.HasSuffix(address, ":0"):
		v.at(i, "target", "invalid address %q: port must be from 1 to 65535", t.Target)
	case t.Mode == ModeServer && !t.UnsafeTarget && !IsLocalAddress(t.Target):
		v.at(i, "target", "{target} must be unix:PATH or localhost:PORT (unless {unsafe-target} is set)")
	}
}

func (v *validator) credentials(i int, t *Tunnel) {
	hasKeystore, hasCert, hasKey := t.Keystore != "", t.Cert != "", t.Key != ""
	hasModule := t.PKCS11Module != ""
	switch {
	case hasCert && !hasKey && !hasModule:
		v.at(i, "cert", "{cert} and {key} must be set together, unless {pkcs11-module} holds the private key")
	case hasKey && !hasCert:
		v.at(i, "key", "{cert} and {key} must be set together")
	}
	if hasKeystore && (hasCert || hasKey) {
		v.at(i, "keystore", "{keystore} is mutually exclusive with {cert} and {key}")
	}
	if t.Storepass != "" && !hasKeystore {
		v.at(i, "storepass", "{storepass} requires {keystore}")
	}
	v.pkcs11(i, t)
	hasWorkload := v.workloadAPI(i, t)
	hasCreds := hasKeystore || hasCert || hasKey || hasModule || hasWorkload
	switch t.Mode {
	case ModeServer:
		if t.AutoACMECert != "" {
			v.acme(i, t, hasCreds)
			break
		}
		// Upstream ignores them; say so rather than refuse the command line.
		for _, key := range acmeKeys {
			if isSet(t, key) {
				v.at(i, key, "{%s} has no effect without {auto-acme-cert}", key)
				v.ps[len(v.ps)-1].Warning = true
			}
		}
		if !hasCreds {
			v.missing(i, credentialKeys, "a certificate is required: set {keystore}, or {cert} and {key}, or {use-workload-api} (or {auto-acme-cert})")
		}
	case ModeClient:
		switch {
		case t.DisableAuthentication && hasWorkload:
			v.at(i, "disable-authentication", "{disable-authentication} is mutually exclusive with {use-workload-api}")
		case t.DisableAuthentication && hasKeystore:
			v.at(i, "disable-authentication", "{disable-authentication} is mutually exclusive with {keystore}")
		case t.DisableAuthentication && (hasCert || hasKey):
			v.at(i, "disable-authentication", "{disable-authentication} is mutually exclusive with {cert} and {key}")
		case t.DisableAuthentication && hasModule:
			v.at(i, "disable-authentication", "{disable-authentication} is mutually exclusive with {pkcs11-module}")
		case !t.DisableAuthentication && !hasCreds:
			v.missing(i, append(slices.Clone(credentialKeys), "disable-authentication"),
				"a client certificate is required: set {keystore}, or {cert} and {key}, or {use-workload-api} (or set {disable-authentication})")
		}
	}
}

// workloadAPI checks the SPIFFE Workload API settings and reports whether
// the tunnel takes its credentials from the Workload API. They replace the
// other certificate sources; cacert stays optional (the bundle comes from
// the API).
func (v *validator) workloadAPI(i int, t *Tunnel) bool {
	if !t.UseWorkloadAPI {
		for _, key := range []string{"use-workload-api-addr", "use-workload-api-timeout"} {
			if isSet(t, key) {
				v.at(i, key, "{%s} requires {use-workload-api}", key)
			}
		}
		return false
	}
	if !hasSPIFFE {
		v.at(i, "use-workload-api", "this build has no SPIFFE Workload API support (built with -tags nospiffe)")
	}
	for _, key := range []string{"keystore", "cert", "key", "pkcs11-module"} {
		if isSet(t, key) {
			v.at(i, "use-workload-api", "{use-workload-api} is mutually exclusive with {%s}", key)
		}
	}
	// As upstream: the Workload API verifies peers as SVIDs, which pin-only
	// authentication would bypass.
	for _, key := range []string{"allow-spki-pin", "verify-spki-pin"} {
		if isSet(t, key) {
			v.at(i, key, "{%s} is mutually exclusive with {use-workload-api}", key)
		}
	}
	if t.UseWorkloadAPIAddr != "" {
		if err := validateWorkloadAddr(t.UseWorkloadAPIAddr); err != nil {
			v.at(i, "use-workload-api-addr", "invalid address %q: %v (want unix:///PATH or tcp://IP:PORT)", t.UseWorkloadAPIAddr, err)
		}
	}
	return true
}

// acmeKeys are the ACME settings besides auto-acme-cert.
var acmeKeys = []string{"auto-acme-email", "auto-acme-agree-to-tos", "auto-acme-ca", "auto-acme-testca", "auto-acme-cache"}

// acme checks a server tunnel that gets its certificate from an ACME CA, as
// upstream does, plus the shape of the name and of the CA URLs.
func (v *validator) acme(i int, t *Tunnel, hasCreds bool) {
	if hasCreds {
		v.at(i, "auto-acme-cert", "{auto-acme-cert} is mutually exclusive with {keystore}, {cert}, {key} and {pkcs11-module}")
	}
	if t.AutoACMEEmail == "" {
		v.at(i, "auto-acme-cert", "{auto-acme-cert} was specified but no email address was provided with {auto-acme-email}")
	}
	if !t.AutoACMEAgreeToTOS {
		v.at(i, "auto-acme-agree-to-tos", "{auto-acme-agree-to-tos} was not specified and is required if {auto-acme-cert} is specified")
	}
	if err := checkFQDN(t.AutoACMECert); err != nil {
		v.at(i, "auto-acme-cert", "%v", err)
	}
	for _, key := range []string{"auto-acme-ca", "auto-acme-testca"} {
		s := tunnelValue(t, key).String()
		if s == "" {
			continue
		}
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.at(i, key, "{%s} must be the http(s) URL of an ACME directory, not %q", key, s)
		}
	}
}

// checkFQDN accepts a DNS name an ACME CA can issue for: no wildcard, no
// IP address, no port.
func checkFQDN(s string) error {
	name := strings.TrimSuffix(s, ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("invalid name %q: want a DNS name, not an IP address", s)
	}
	if name == "" || len(name) > 253 || strings.Contains(name, "..") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid name %q: want a fully qualified domain name", s)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("invalid name %q: want a fully qualified domain name (letters, digits, '-' and '.')", s)
		}
	}
	return nil
}

// pkcs11 checks the settings of a private key held in a PKCS#11 token: the
// certificate chain comes from cert, never from a keystore, and the token is
// named by its label.
func (v *validator) pkcs11(i int, t *Tunnel) {
	if t.PKCS11Module == "" {
		for _, key := range []string{"pkcs11-token-label", "pkcs11-pin"} {
			if isSet(t, key) {
				v.at(i, key, "{%s} requires {pkcs11-module}", key)
			}
		}
		return
	}
	switch {
	case t.Keystore != "":
		v.at(i, "pkcs11-module", "{pkcs11-module} is mutually exclusive with {keystore}: give the certificate chain with {cert}")
	case t.Cert == "":
		v.at(i, "pkcs11-module", "{pkcs11-module} requires {cert} (the certificate chain of the key in the token)")
	}
	if t.Key != "" {
		v.at(i, "pkcs11-module", "{pkcs11-module} is mutually exclusive with {key}: the private key is in the token")
	}
	if t.PKCS11TokenLabel == "" {
		v.at(i, "pkcs11-module", "{pkcs11-module} requires {pkcs11-token-label}")
	}
}

// onlyFor reports every setting among keys that tunnel i sets although
// only mode tunnels take it.
func (v *validator) onlyFor(i int, t *Tunnel, keys []string, mode string) {
	for _, key := range keys {
		if isSet(t, key) {
			v.at(i, key, "{%s} is only for %s tunnels", key, mode)
		}
	}
}

// serverAccess checks that a server tunnel has a consistent access control.
func (v *validator) serverAccess(i int, t *Tunnel) {
	var set []string
	for _, key := range accessKeys {
		if isSet(t, key) {
			set = append(set, key)
		}
	}
	hasPolicy := v.policy(i, t.AllowPolicy, t.AllowQuery, "allow-policy", "allow-query")
	if len(set) == 0 && !hasPolicy {
		v.missing(i, append(slices.Clone(accessKeys), "allow-policy"), "at least one access control setting ({allow-all}, {allow-cn}, {allow-ou}, {allow-dns}, {allow-uri}, {allow-ip}, {allow-spki-pin}, {allow-policy} or {disable-authentication}) is required")
	}
	// As upstream: a server's policy replaces every other access rule.
	for _, key := range set {
		if hasPolicy {
			v.at(i, "allow-policy", "{allow-policy} and {allow-query} are mutually exclusive with other access control settings ({%s})", key)
		}
	}
	v.exclusive(i, set, exclusiveKeys)
}

// policy checks an OPA policy setting pair, which upstream requires set
// together, and reports whether either is set.
func (v *validator) policy(i int, bundle, query, bundleKey, queryKey string) bool {
	if (bundle == "") != (query == "") {
		key := queryKey
		if bundle != "" {
			key = bundleKey
		}
		v.at(i, key, "{%s} and {%s} have to be used together", bundleKey, queryKey)
	}
	if bundle != "" && !hasOPA {
		v.at(i, bundleKey, "this build has no OPA policy support (built with -tags noopa)")
	}
	return bundle != "" || query != ""
}

// clientVerify checks that a client tunnel's checks of the server agree.
func (v *validator) clientVerify(i int, t *Tunnel) {
	var set []string
	for _, key := range append(slices.Clone(verifyKeys), "verify-spki-pin") {
		if isSet(t, key) {
			set = append(set, key)
		}
	}
	// A client's policy ORs with the verify-* lists, as upstream's does.
	if v.policy(i, t.VerifyPolicy, t.VerifyQuery, "verify-policy", "verify-query") {
		set = append(set, "verify-policy")
	}
	v.exclusive(i, set, []string{"verify-spki-pin"})
}

// exclusive reports every pair among the settings set where one of the two
// is among exclusive, naming the exclusive one first.
func (v *validator) exclusive(i int, set, exclusive []string) {
	for a, ka := range set {
		for _, kb := range set[a+1:] {
			switch {
			case slices.Contains(exclusive, ka):
				v.at(i, ka, "{%s} is mutually exclusive with {%s}", ka, kb)
			case slices.Contains(exclusive, kb):
				v.at(i, kb, "{%s} is mutually exclusive with {%s}", kb, ka)
			}
		}
	}
}

// lists checks each entry of the list settings that apply to the tunnel.
func (v *validator) lists(i int, t *Tunnel) {
	server, client := t.Mode != ModeClient, t.Mode != ModeServer
	for _, l := range []struct {
		key    string
		values []string
		check  func(string) error
		apply  bool
	}{
		{"allow-cn", t.AllowCN, nil, server},
		{"allow-ou", t.AllowOU, nil, server},
		{"allow-dns", t.AllowDNS, nil, server},
		{"allow-uri", t.AllowURI, checkURIPattern, server},
		{"allow-ip", t.AllowIP, checkIP, server},
		{"allow-spki-pin", t.AllowSPKIPin, checkSPKIPin, server},
		{"verify-cn", t.VerifyCN, nil, client},
		{"verify-ou", t.VerifyOU, nil, client},
		{"verify-dns", t.VerifyDNS, nil, client},
		{"verify-uri", t.VerifyURI, checkURIPattern, client},
		{"verify-ip", t.VerifyIP, checkIP, client},
		{"verify-spki-pin", t.VerifySPKIPin, checkSPKIPin, client},
	} {
		if !l.apply {
			continue
		}
		for n, s := range l.values {
			switch {
			case s == "":
				v.atElem(i, l.key, n, "empty value")
			case l.check != nil:
				if err := l.check(s); err != nil {
					v.atElem(i, l.key, n, "%v", err)
				}
			}
		}
	}
}

func checkURIPattern(s string) error { _, err := CompileURIPattern(s); return err }
func checkSPKIPin(s string) error    { _, err := ParseSPKIPin(s); return err }

func checkIP(s string) error {
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Errorf("invalid IP address %q", s)
	}
	return nil
}

// options checks the remaining single-valued settings.
func (v *validator) options(i int, t *Tunnel) {
	if t.ProxyProtocolMode != "" && !slices.Contains(ProxyProtocolModes, t.ProxyProtocolMode) {
		v.at(i, "proxy-protocol-mode", "invalid mode %q (want conn, tls or tls-full)", t.ProxyProtocolMode)
	}
	// As upstream: the mode alone turns the header on (conn is what
	// proxy-protocol alone sends), and naming both is refused.
	if t.ProxyProtocolMode != "" && t.ProxyProtocol {
		v.at(i, "proxy-protocol-mode", "{proxy-protocol} and {proxy-protocol-mode} are mutually exclusive")
	}
	if _, err := ParseTLSVersion(t.MaxTLSVersion); err != nil {
		v.at(i, "max-tls-version", "%v", err)
	}
	if t.TargetStatus != "" {
		if u, err := url.Parse(t.TargetStatus); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.at(i, "target-status", "{target-status} must be an http:// or https:// URL, not %q", t.TargetStatus)
		}
	}
	if t.ConnectTimeout == 0 {
		v.at(i, "connect-timeout", "{connect-timeout} must not be zero")
	}
	for _, key := range []string{"timed-reload", "connect-timeout", "close-timeout", "max-conn-lifetime", "use-workload-api-timeout"} {
		if tunnelValue(t, key).Int() < 0 {
			v.at(i, key, "{%s} must not be negative", key)
		}
	}
	if t.MaxConcurrentConns < 0 {
		v.at(i, "max-concurrent-conns", "{max-concurrent-conns} must not be negative")
	}
}

// uniqueNames reports every tunnel whose name an earlier tunnel has.
func (v *validator) uniqueNames() {
	first := make(map[string]int)
	for i, t := range v.c.Tunnels {
		if t.Name == "" {
			continue
		}
		if j, ok := first[t.Name]; ok {
			v.at(i, "name", "duplicate tunnel name %q (tunnel #%d has it too)", t.Name, j+1)
			continue
		}
		first[t.Name] = i
	}
}

// listenCollisions reports every tunnel that listens where an earlier
// tunnel or the status server listens.
func (v *validator) listenCollisions() {
	status, hasStatus := statusEndpoint(v.c.Status)
	// Endpoints can only collide on the same port (or socket name), so
	// each is compared with those that share it: linear in the fleet.
	type seenAt struct {
		e     endpoint
		owner int
	}
	seen := make(map[string][]seenAt)
	bucket := func(e endpoint) string { return fmt.Sprintf("%s/%d/%s", e.network, e.port, e.name) }
	for i, t := range v.c.Tunnels {
		e, ok := parseEndpoint(t.Listen)
		if !ok {
			continue
		}
		if hasStatus && e.collides(status) {
			v.at(i, "listen", "{listen} address %q is also the {status} address %q", t.Listen, v.c.Status)
		}
		if e.network == NetworkTCP && e.port == 0 {
			continue // an ephemeral port collides with nothing
		}
		b := bucket(e)
		if j := slices.IndexFunc(seen[b], func(s seenAt) bool { return e.collides(s.e) }); j >= 0 {
			other := seen[b][j].owner
			format := "{listen} address %q is already used by tunnel %q"
			args := []any{t.Listen, tunnelLabel(v.c, other)}
			if o := v.c.Tunnels[other].Listen; o != t.Listen {
				format += " (%q)"
				args = append(args, o)
			}
			v.at(i, "listen", format, args...)
		}
		seen[b] = append(seen[b], seenAt{e, i})
	}
}

// statusEndpoint parses a valid status address for collision checks.
func statusEndpoint(s string) (endpoint, bool) {
	if _, _, _, err := ParseStatusAddress(s); s == "" || err != nil {
		return endpoint{}, false
	}
	for _, scheme := range []string{StatusHTTP, StatusHTTPS} {
		if rest, ok := strings.CutPrefix(s, scheme+"://"); ok {
			s = strings.TrimSuffix(rest, "/")
		}
	}
	return parseEndpoint(s)
}
