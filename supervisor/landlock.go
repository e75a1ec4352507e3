package supervisor

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// landlockMaxABI is the highest Landlock ABI whose rules are asked for
// (best effort: lower kernels get what they support). landlockNetABI is
// the first with TCP bind and connect rules.
const (
	landlockMaxABI = 5
	landlockNetABI = 4
)

// Files the process may need whatever the config says: system roots,
// name resolution, time zones, randomness and its own /proc entries.
var (
	systemRODirs  = []string{"/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates", "/usr/share/zoneinfo", "/proc/self"}
	systemROFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/localtime", "/dev/urandom", "/dev/random", "/proc/stat"}
	systemRWFiles = []string{"/dev/null"}
)

// tunnelFileKeys are the tunnel settings naming a file (or an OPA bundle
// directory) that is read at startup and again on reloads. Read through the
// yaml tags so settings this build does not have are simply skipped.
var tunnelFileKeys = []string{"keystore", "cert", "key", "cacert", "allow-policy", "verify-policy"}

// sandboxPaths is the filesystem access the sandbox grants.
type sandboxPaths struct {
	roDirs, roFiles, rwDirs, rwFiles []string
}

// sandboxPorts is the TCP access the sandbox grants, sorted.
type sandboxPorts struct {
	bind, connect []uint16
}

// sandboxRules is what Sandbox applied; net tells whether the kernel
// enforces the ports (ABI 4 and later).
type sandboxRules struct {
	paths sandboxPaths
	ports sandboxPorts
	net   bool
}

// Sandbox restricts the process with Landlock (Linux), best effort: from
// then on it can read only the files its config names (and their
// directories, since certificates are replaced by rename and re-read on
// reloads), the fleet file's directory and the system files TLS and name
// resolution need, and write only in the directories of its unix sockets
// and ACME caches. With Landlock ABI 4 or later it can also bind only the
// TCP ports of its listeners and status server, and connect only to the
// TCP ports it needs (targets, proxy, Workload API, ACME CA, metrics push,
// target-status, DNS over TCP): see landlockPorts. Call it once New has
// bound every listener and before Run. It is irreversible and covers every
// thread of the process.
//
// A later fleet reload that needs a port or a file the rules do not allow
// is refused before anything changes (sandboxCheck): only a restart can
// widen the sandbox.
//
// It does nothing with disable-landlock, when a tunnel uses a PKCS#11
// module (modules load libraries at runtime), or when the kernel has no
// Landlock.
func (s *Supervisor) Sandbox() error {
	s.mu.Lock()
	cfg := s.cfg
	var bound []net.Addr
	for _, t := range s.tunnels {
		bound = append(bound, t.Addr())
	}
	s.mu.Unlock()
	if s.status != nil {
		bound = append(bound, s.status.Addr())
	}
	if cfg.DisableLandlock {
		s.log.Log("msg", "landlock disabled by disable-landlock")
		return nil
	}
	for _, t := range cfg.Tunnels {
		if t.PKCS11Module != "" {
			s.log.Log("msg", "landlock disabled: PKCS#11 modules load libraries at runtime", "tunnel", t.Name)
			return nil
		}
	}
	abi := landlockABI()
	if abi == 0 {
		s.log.Log("msg", "landlock not supported by this kernel")
		return nil
	}
	p := landlockPaths(cfg)
	n := landlockPorts(cfg, bound)
	withNet := abi >= landlockNetABI
	if !withNet {
		n = sandboxPorts{}
	}
	if err := restrict(p, n); err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	scope := "filesystem"
	if withNet {
		scope = "filesystem,network"
	}
	s.mu.Lock()
	s.sandbox = &sandboxRules{paths: p, ports: n, net: withNet}
	s.mu.Unlock()
	s.log.Log("msg", "landlock rules applied", "abi", abi, "enforced_abi", min(abi, landlockMaxABI),
		"scope", scope, "read_dirs", len(p.roDirs), "write_dirs", len(p.rwDirs),
		"bind_ports", len(n.bind), "connect_ports", len(n.connect))
	return nil
}

// landlockPaths lists what cfg needs. Paths are made absolute; symbolic
// links are followed so their targets are allowed too.
func landlockPaths(cfg *configs.Config) sandboxPaths {
	var p sandboxPaths
	ro, rw := map[string]bool{}, map[string]bool{}
	addRO := func(dir string) {
		for _, d := range withTargets(dir) {
			ro[d] = true
		}
	}
	addRW := func(dir string) {
		for _, d := range withTargets(dir) {
			rw[d] = true
		}
	}
	// A named file: its directory, so a renamed-in replacement is
	// readable. A directory (OPA bundle) is covered by its parent too.
	// When a directory on the way is a symbolic link, the real directory
	// holding that link too: Kubernetes mounts a secret's nested items as
	// MOUNT/certs -> ..data/certs and rotates by re-pointing ..data, so the
	// directories reached today are gone after the next rotation.
	addFile := func(path string) {
		if path == "" {
			return
		}
		for _, f := range withTargets(path) {
			addRO(filepath.Dir(f))
		}
		if abs, err := filepath.Abs(path); err == nil {
			for dir := filepath.Dir(abs); dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
				if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
					addRO(filepath.Dir(dir))
				}
			}
		}
	}
	// A unix socket: its directory, read-write (bind creates the socket
	// file, a restart or reload may remove a stale one).
	addSocket := func(addr string) {
		if path, ok := unixSocketPath(addr); ok {
			addRW(filepath.Dir(path))
		}
	}
	if cfg.Path != "" {
		addFile(cfg.Path)
	}
	addSocket(cfg.Status)
	for i := range cfg.Tunnels {
		t := &cfg.Tunnels[i]
		for _, f := range tunnelFiles(t) {
			addFile(f)
		}
		// Only a listening socket needs its directory writable: a unix
		// target or a Workload API socket is only connected to, which
		// Landlock leaves alone, so they get no rule (and their
		// directories stay unwritable).
		addSocket(t.Listen)
		if t.AutoACMECert != "" {
			dir := t.AutoACMECache
			if dir == "" {
				if base, err := os.UserCacheDir(); err == nil {
					dir = filepath.Join(base, "ghostunnel", "acme")
				}
			}
			// Created now, so that the rule can name it (tunnel/acme.go
			// would create it on first use).
			if dir != "" && os.MkdirAll(dir, 0o700) == nil {
				addRW(dir)
			}
		}
	}
	for _, env := range []string{"SSL_CERT_FILE", "SSL_CERT_DIR"} {
		for _, v := range filepath.SplitList(os.Getenv(env)) {
			if v == "" {
				continue
			}
			if env == "SSL_CERT_FILE" {
				p.roFiles = append(p.roFiles, withTargets(v)...)
			} else {
				addRO(v)
			}
		}
	}
	for _, d := range systemRODirs {
		addRO(d)
	}
	for _, f := range systemROFiles {
		p.roFiles = append(p.roFiles, withTargets(f)...)
		// A file rule holds the inode present now. /etc/resolv.conf is
		// usually a link into a directory its manager rewrites by rename
		// (systemd-resolved's /run/systemd/resolve, resolvconf's
		// /run/resolvconf): that directory, so name resolution survives
		// the next rewrite.
		if real, err := filepath.EvalSymlinks(f); err == nil && real != f {
			addRO(filepath.Dir(real))
		}
	}
	p.rwFiles = append(p.rwFiles, systemRWFiles...)
	for d := range ro {
		if !rw[d] {
			p.roDirs = append(p.roDirs, d)
		}
	}
	for d := range rw {
		p.rwDirs = append(p.rwDirs, d)
	}
	sort.Strings(p.roDirs)
	sort.Strings(p.rwDirs)
	p.roFiles = dedupe(p.roFiles)
	return p
}

// tunnelFiles are the paths t names under tunnelFileKeys.
func tunnelFiles(t *configs.Tunnel) []string {
	want := make(map[string]bool, len(tunnelFileKeys))
	for _, k := range tunnelFileKeys {
		want[k] = true
	}
	var out []string
	v := reflect.ValueOf(t).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if want[key] && f.Type.Kind() == reflect.String && v.Field(i).String() != "" {
			out = append(out, v.Field(i).String())
		}
	}
	return out
}

// unixSocketPath is the filesystem path of a unix:PATH or unix://PATH
// address ("" for abstract sockets, TCP addresses and systemd: names).
func unixSocketPath(addr string) (string, bool) {
	var path string
	switch {
	case strings.HasPrefix(addr, "unix://"):
		path = strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "unix:"):
		path = strings.TrimPrefix(addr, "unix:")
	default:
		return "", false
	}
	if path == "" || strings.HasPrefix(path, "@") {
		return "", false
	}
	return path, true
}

// withTargets is path made absolute, then also its resolved target when
// symbolic links lead elsewhere (Landlock checks the file reached).
func withTargets(path string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return []string{path}
	}
	out := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		out = append(out, real)
	}
	return out
}

func dedupe(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}
