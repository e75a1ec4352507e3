package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// Listen binds addr (HOST:PORT or unix:PATH) the way upstream does: with
// SO_REUSEPORT on TCP, so a new process can bind the same port before the
// old one has drained. A unix socket file left by a dead process is
// replaced; one a live process still answers on is not.
func Listen(addr string) (net.Listener, error) {
	if name, ok := strings.CutPrefix(addr, "systemd:"); ok {
		return activated(name)
	}
	network, address, err := configs.ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{}
	if network == "unix" {
		removeStaleSocket(address)
	} else {
		lc.Control = reusePort
		lc.SetMultipathTCP(false) // Landlock's TCP bind rules do not cover MPTCP sockets
	}
	ln, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return ln, nil
}

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting SO_REUSEPORT: %w", serr)
	}
	return nil
}

func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	c, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err == nil {
		c.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(path)
	}
}
