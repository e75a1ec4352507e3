package supervisor

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/statusd"
)

// dnsPort is allowed to connect whatever the config says: Go's resolver
// retries a truncated UDP answer over TCP. (Landlock ABI 4 and 5 leave UDP
// alone.)
const dnsPort = 53

// letsEncryptPort is the port of the ACME CA a tunnel asks when it names
// none (tunnel/acme.go: Let's Encrypt production, https).
const letsEncryptPort = 443

// urlDefaultPorts are the ports of URLs that name none: metrics-url,
// target-status, the ACME CA and $HTTP(S)_PROXY, as net/http dials them.
var urlDefaultPorts = map[string]uint16{"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

// proxyDefaultPorts are those of a client tunnel's proxy URL, as
// tunnel/proxydial.go fills them in (not net/http's: http is 8080 there).
var proxyDefaultPorts = map[string]uint16{"http": 8080, "socks5": 1080, "socks5h": 1080}

// proxyEnv are the variables http.ProxyFromEnvironment reads; the ACME
// client and the metrics-url client go through them.
var proxyEnv = []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"}

// portUse is one TCP port a setting needs: bound (bind) or dialled.
type portUse struct {
	port uint16
	bind bool
	key  string // the setting that needs it, for errors
}

// landlockPorts lists the TCP ports cfg needs. bound are the addresses New
// actually bound (tunnels and status): a listen port 0 allows both port 0
// (a tunnel a reload rebuilds binds an ephemeral port again) and the port
// the kernel chose. systemd: and unix: addresses need no port.
func landlockPorts(cfg *configs.Config, bound []net.Addr) sandboxPorts {
	bind, connect := map[uint16]bool{}, map[uint16]bool{dnsPort: true}
	add := func(uses []portUse) {
		for _, u := range uses {
			if u.bind {
				bind[u.port] = true
			} else {
				connect[u.port] = true
			}
		}
	}
	add(processPorts(cfg))
	for i := range cfg.Tunnels {
		add(tunnelPorts(&cfg.Tunnels[i]))
	}
	for _, a := range bound {
		if ta, ok := a.(*net.TCPAddr); ok && ta.Port > 0 && ta.Port <= 65535 {
			bind[uint16(ta.Port)] = true
		}
	}
	return sandboxPorts{bind: sortedPorts(bind), connect: sortedPorts(connect)}
}

// processPorts are the ports of the process-wide settings: the status
// listener and the metrics push.
func processPorts(cfg *configs.Config) []portUse {
	var out []portUse
	if network, addr, _, err := statusd.ParseAddr(cfg.Status); err == nil && network == "tcp" {
		if p, ok := hostPortPort(addr); ok {
			out = append(out, portUse{port: p, bind: true, key: "status"})
		}
	}
	if p, ok := tcpPort(cfg.MetricsGraphite); ok {
		out = append(out, portUse{port: p, key: "metrics-graphite"})
	}
	if cfg.MetricsURL != "" {
		if p, ok := urlPort(cfg.MetricsURL, urlDefaultPorts); ok {
			out = append(out, portUse{port: p, key: "metrics-url"})
		}
		out = append(out, envProxyPorts()...)
	}
	return out
}

// tunnelPorts are the ports one tunnel needs: its listen port (bind), and
// the ports it dials: target, proxy, target-status, a tcp:// Workload API
// and the ACME CA (with any $HTTPS_PROXY). The status server's backend
// checks dial the same target or target-status.
func tunnelPorts(t *configs.Tunnel) []portUse {
	var out []portUse
	if p, ok := tcpPort(t.Listen); ok {
		out = append(out, portUse{port: p, bind: true, key: "listen"})
	}
	if p, ok := tcpPort(t.Target); ok {
		out = append(out, portUse{port: p, key: "target"})
	}
	if t.Proxy != "" {
		if p, ok := urlPort(t.Proxy.Reveal(), proxyDefaultPorts); ok {
			out = append(out, portUse{port: p, key: "proxy"})
		}
	}
	if t.TargetStatus != "" {
		if p, ok := urlPort(t.TargetStatus, urlDefaultPorts); ok {
			out = append(out, portUse{port: p, key: "target-status"})
		}
	}
	if t.UseWorkloadAPI || t.UseWorkloadAPIAddr != "" {
		addr := t.UseWorkloadAPIAddr
		if addr == "" {
			addr = os.Getenv("SPIFFE_ENDPOINT_SOCKET")
		}
		if rest, ok := strings.CutPrefix(addr, "tcp://"); ok {
			if p, ok := hostPortPort(rest); ok {
				out = append(out, portUse{port: p, key: "use-workload-api-addr"})
			}
		}
	}
	if t.AutoACMECert != "" {
		p, ok := uint16(letsEncryptPort), true
		switch {
		case t.AutoACMETestCA != "":
			p, ok = urlPort(t.AutoACMETestCA, urlDefaultPorts)
		case t.AutoACMECA != "":
			p, ok = urlPort(t.AutoACMECA, urlDefaultPorts)
		}
		if ok {
			out = append(out, portUse{port: p, key: "auto-acme-ca"})
		}
		out = append(out, envProxyPorts()...)
	}
	return out
}

// envProxyPorts are the ports of $HTTPS_PROXY and $HTTP_PROXY, which
// net/http reads as http://VALUE when VALUE has no scheme.
func envProxyPorts() []portUse {
	var out []portUse
	for _, name := range proxyEnv {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v
		}
		if p, ok := urlPort(v, urlDefaultPorts); ok {
			out = append(out, portUse{port: p, key: "$" + name})
		}
	}
	return out
}

// tcpPort is the port of a HOST:PORT address; false for unix:, systemd:,
// launchd: and anything unparsable.
func tcpPort(addr string) (uint16, bool) {
	if addr == "" {
		return 0, false
	}
	network, hostport, err := configs.ParseAddress(addr)
	if err != nil || network != configs.NetworkTCP {
		return 0, false
	}
	return hostPortPort(hostport)
}

func hostPortPort(hostport string) (uint16, bool) {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, false
	}
	return uint16(n), true
}

// urlPort is the port of a URL, or its scheme's default port.
func urlPort(raw string, defaults map[string]uint16) (uint16, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return 0, false
	}
	if port := u.Port(); port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		return uint16(n), err == nil
	}
	p, ok := defaults[strings.ToLower(u.Scheme)]
	return p, ok
}

func sortedPorts(m map[uint16]bool) []uint16 {
	out := make([]uint16, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// sandboxCheck lists why the sandbox Sandbox applied would stop the fleet
// file cfg's added, changed or replaced tunnels from working: a TCP port
// outside the rules (when the kernel enforces them), a file outside the
// readable directories, a unix socket or ACME cache outside the writable
// ones. Nil without a sandbox. Only tunnels are checked: process-wide
// settings need a restart anyway.
func (s *Supervisor) sandboxCheck(path string, cfg *configs.Config, changes []Change) []error {
	s.mu.Lock()
	r := s.sandbox
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	var errs []error
	for _, c := range changes {
		if c.Kind != "added" && c.Kind != "changed" && c.Kind != "replaced" {
			continue
		}
		for i := range cfg.Tunnels {
			if cfg.Tunnels[i].Name != c.Name {
				continue
			}
			for _, err := range r.refuse(&cfg.Tunnels[i]) {
				errs = append(errs, fmt.Errorf("%s: tunnel %q: %w", path, c.Name, err))
			}
		}
	}
	return errs
}

// sandboxRestart is the advice every refusal ends with.
const sandboxRestart = "restart ghostunnel to apply this change (or set disable-landlock: true)"

// refuse lists what t needs that r does not allow.
func (r *sandboxRules) refuse(t *configs.Tunnel) []error {
	var errs []error
	// A fleet with a PKCS#11 tunnel at startup runs without the sandbox
	// (Sandbox): the module and the libraries it loads are out of reach.
	if t.PKCS11Module != "" {
		errs = append(errs, fmt.Errorf("pkcs11-module: PKCS#11 modules load libraries the landlock sandbox does not allow; %s", sandboxRestart))
	}
	if r.net {
		for _, u := range tunnelPorts(t) {
			allowed, what := r.ports.connect, "connect to"
			if u.bind {
				allowed, what = r.ports.bind, "bind"
			}
			if !slices.Contains(allowed, u.port) {
				errs = append(errs, fmt.Errorf("%s: the landlock sandbox does not allow it to %s TCP port %d; %s",
					u.key, what, u.port, sandboxRestart))
			}
		}
	}
	readable := append(append([]string(nil), r.paths.roDirs...), r.paths.rwDirs...)
	for _, f := range tunnelFiles(t) {
		if p := resolved(f); !under(p, readable) && !slices.Contains(r.paths.roFiles, p) {
			errs = append(errs, fmt.Errorf("%s: the landlock sandbox does not allow reading files in %s; %s",
				f, filepath.Dir(p), sandboxRestart))
		}
	}
	if sock, ok := unixSocketPath(t.Listen); ok {
		if dir := resolved(filepath.Dir(sock)); !under(dir, r.paths.rwDirs) {
			errs = append(errs, fmt.Errorf("listen: the landlock sandbox does not allow creating sockets in %s; %s",
				dir, sandboxRestart))
		}
	}
	if t.AutoACMECert != "" {
		dir := t.AutoACMECache
		if dir == "" {
			if base, err := os.UserCacheDir(); err == nil {
				dir = filepath.Join(base, "ghostunnel", "acme")
			}
		}
		if dir = resolved(dir); dir != "" && !under(dir, r.paths.rwDirs) {
			errs = append(errs, fmt.Errorf("auto-acme-cache: the landlock sandbox does not allow writing in %s; %s",
				dir, sandboxRestart))
		}
	}
	return errs
}

// resolved is path absolute, with symbolic links followed (those of its
// directory when it does not exist yet): Landlock checks where the file
// really is. "" stays "".
func resolved(path string) string {
	if path == "" {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// under reports whether path is one of dirs or beneath one.
func under(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
