package supervisor

import (
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's notify protocol when NOTIFY_SOCKET is set:
// READY=1 once listening, RELOADING=1 then READY=1 around a reload,
// STOPPING=1 at shutdown, WATCHDOG=1 every WATCHDOG_USEC/2.
type notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

func newNotifier() *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	n := &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		pid := os.Getenv("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond / 2
		}
	}
	return n
}

// send writes one state message; errors are ignored, as sd_notify does.
func (n *notifier) send(state string) {
	if n == nil {
		return
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// ticks returns the watchdog ticker channel, or nil without a watchdog.
func (n *notifier) ticker() (*time.Ticker, <-chan time.Time) {
	if n == nil || n.watchdog <= 0 {
		return nil, nil
	}
	t := time.NewTicker(n.watchdog)
	return t, t.C
}
