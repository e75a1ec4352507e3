package configs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Networks that ParseAddress returns.
const (
	NetworkTCP     = "tcp"
	NetworkUnix    = "unix"
	NetworkSystemd = "systemd" // a socket passed by systemd, by name
	NetworkLaunchd = "launchd" // a socket passed by launchd, by name
)

// Address prefixes.
const (
	prefixUnix    = "unix:"
	prefixSystemd = "systemd:"
	prefixLaunchd = "launchd:"
)

// ParseAddress parses a listen or target address: HOST:PORT (port numeric,
// 0 to 65535), unix:PATH, systemd:NAME or launchd:NAME. It returns the
// network ("tcp", "unix", "systemd" or "launchd") and the address on it:
// "host:port" with the port in canonical form, the socket path, or the
// socket name. Which networks a setting accepts is up to the caller.
func ParseAddress(s string) (network, address string, err error) {
	for _, n := range []struct{ prefix, network, what string }{
		{prefixUnix, NetworkUnix, "socket path"},
		{prefixSystemd, NetworkSystemd, "socket name"},
		{prefixLaunchd, NetworkLaunchd, "socket name"},
	} {
		if rest, ok := strings.CutPrefix(s, n.prefix); ok {
			if rest == "" {
				return "", "", fmt.Errorf("missing %s after %q", n.what, n.prefix)
			}
			return n.network, rest, nil
		}
	}
	if strings.Contains(s, "://") {
		return "", "", errors.New("want HOST:PORT or unix:PATH, not a URL")
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", "", err
	}
	return NetworkTCP, net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// splitHostPort splits and checks HOST:PORT.
func splitHostPort(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, errors.New("empty address")
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, fmt.Errorf("%s (want HOST:PORT or unix:PATH)", ae.Err)
		}
		return "", 0, err
	}
	port, err = parsePort(portStr)
	if err != nil {
		return "", 0, err
	}
	if err := checkHost(host, strings.HasPrefix(s, "[")); err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// parsePort parses a numeric port, 0 to 65535.
func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing port")
	}
	if len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	p, _ := strconv.Atoi(s)
	if p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	return p, nil
}

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$`)
	dottedRE   = regexp.MustCompile(`^[0-9.]+$`)
)

// checkHost accepts an empty host (all interfaces), an IP address (with a
// zone for IPv6), or a host name.
func checkHost(host string, bracketed bool) error {
	if host == "" {
		return nil
	}
	if bracketed || strings.Contains(host, ":") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return fmt.Errorf("invalid IPv6 address %q", host)
		}
		return nil
	}
	if dottedRE.MatchString(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("invalid IPv4 address %q", host)
		}
		return nil
	}
	if len(host) > 253 || !hostnameRE.MatchString(host) {
		return fmt.Errorf("invalid host name %q", host)
	}
	return nil
}

// IsLocalAddress reports whether s is an address that only this machine can
// reach, as upstream Ghostunnel judges it: unix:, systemd: or launchd:
// sockets, or 127.0.0.1, [::1] or localhost ports. A server's target and a
// client's listener must be local unless unsafe-target or unsafe-listen is
// set.
func IsLocalAddress(s string) bool {
	for _, prefix := range []string{prefixUnix, prefixSystemd, prefixLaunchd, "127.0.0.1:", "[::1]:", "localhost:"} {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// Status address schemes that ParseStatusAddress returns.
const (
	StatusHTTP  = "http"
	StatusHTTPS = "https"
)

// ParseStatusAddress parses the status address: HOST:PORT, http://HOST:PORT,
// https://HOST:PORT, unix:PATH or systemd:NAME (a socket passed by systemd,
// served as HTTPS like HOST:PORT). The scheme is "http", "https" or "" when
// none was written; network and address are as ParseAddress returns them.
func ParseStatusAddress(s string) (scheme, network, address string, err error) {
	rest := s
	for _, sc := range []string{StatusHTTP, StatusHTTPS} {
		if r, ok := strings.CutPrefix(s, sc+"://"); ok {
			scheme, rest = sc, strings.TrimSuffix(r, "/")
			break
		}
	}
	if scheme == "" && strings.Contains(s, "://") {
		return "", "", "", errors.New("want HOST:PORT, http://HOST:PORT, https://HOST:PORT, unix:PATH or systemd:NAME")
	}
	if scheme != "" && strings.ContainsAny(rest, "/?#") {
		return "", "", "", errors.New("want no path after HOST:PORT")
	}
	network, address, err = ParseAddress(rest)
	if err != nil {
		return "", "", "", err
	}
	if network != NetworkTCP && network != NetworkUnix && network != NetworkSystemd {
		return "", "", "", errors.New("want HOST:PORT, http://HOST:PORT, https://HOST:PORT, unix:PATH or systemd:NAME")
	}
	if scheme != "" && network != NetworkTCP {
		return "", "", "", errors.New("want no scheme before unix:PATH or systemd:NAME")
	}
	return scheme, network, address, nil
}

// ParseTLSVersion parses max-tls-version: "" (no maximum, returned as 0),
// TLS1.2 or TLS1.3 (also written 1.2 and 1.3).
func ParseTLSVersion(s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case "TLS1.2", "1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3", "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unknown TLS version %q (want TLS1.2 or TLS1.3)", s)
}

// endpoint is an address in a form that can be compared for collisions.
type endpoint struct {
	network string
	host    string // tcp: lower-case host name or canonical IP
	port    int    // tcp
	name    string // unix: cleaned path; systemd, launchd: socket name
}

// parseEndpoint parses an address for collision checks.
func parseEndpoint(s string) (endpoint, bool) {
	network, address, err := ParseAddress(s)
	if err != nil {
		return endpoint{}, false
	}
	e := endpoint{network: network}
	switch network {
	case NetworkTCP:
		host, port, _ := net.SplitHostPort(address)
		e.port, _ = strconv.Atoi(port)
		e.host = strings.ToLower(host)
		if a, err := netip.ParseAddr(host); err == nil {
			e.host = a.Unmap().String()
		}
	case NetworkUnix:
		e.name = filepath.Clean(address)
	default:
		e.name = address
	}
	return e, true
}

// collides reports whether listening on a and on b at once must fail.
// Port 0 never collides; a wildcard host collides with the hosts it covers.
func (a endpoint) collides(b endpoint) bool {
	if a.network != b.network {
		return false
	}
	if a.network != NetworkTCP {
		return a.name == b.name
	}
	if a.port != b.port || a.port == 0 {
		return false
	}
	return a.host == b.host || a.covers(b.host) || b.covers(a.host)
}

// covers reports whether a wildcard listener on a's host also takes host.
func (a endpoint) covers(host string) bool {
	switch a.host {
	case "", "::":
		return true
	case "0.0.0.0":
		return !strings.Contains(host, ":")
	}
	return false
}
