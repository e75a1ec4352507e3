package supervisor

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/ghostunnel-fleet/ghostunnel/tunnel"
)

// listenClash checks the addresses the tunnels actually bound. Listeners
// set SO_REUSEPORT (so that a new process can bind before the old one has
// drained), so the kernel lets two tunnels of one process bind the same
// port too, and then splits new connections between them: their targets and
// access rules may differ, and a refused client could just retry. The
// fleet file's validation catches what it can see in the text; this catches
// names that resolve to the same address ("localhost" and "127.0.0.1").
func listenClash(ts []*tunnel.Tunnel) error {
	type bound struct {
		name, listen string
		addr         netip.AddrPort
	}
	var seen []bound
	for _, t := range ts {
		a, ok := t.Addr().(*net.TCPAddr)
		if !ok {
			continue // unix sockets: a second bind fails by itself
		}
		b := bound{t.Name(), t.Config().Listen, a.AddrPort()}
		b.addr = netip.AddrPortFrom(b.addr.Addr().Unmap(), b.addr.Port())
		for _, o := range seen {
			if overlaps(o.addr, b.addr) {
				return fmt.Errorf("tunnel %q: listen address %q (bound to %s) takes the connections of tunnel %q's %q (bound to %s)",
					b.name, b.listen, b.addr, o.name, o.listen, o.addr)
			}
		}
		seen = append(seen, b)
	}
	return nil
}

// overlaps reports whether listeners bound to a and b would share
// connections: same port, and the same address or a wildcard covering the
// other (:: covers everything, dual stack; 0.0.0.0 covers IPv4).
func overlaps(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	covers := func(w, x netip.Addr) bool {
		return w.IsUnspecified() && (w.Is6() || x.Is4())
	}
	return a.Addr() == b.Addr() || covers(a.Addr(), b.Addr()) || covers(b.Addr(), a.Addr())
}
