package main

// --syslog end to end. Go's log/syslog dials the fixed paths /dev/log,
// /var/run/syslog and /var/run/log, so each test runs the binary in a
// private mount namespace (unshare -m) where /var/run is a directory of the
// test's own: with a unixgram socket named "syslog" in it for the tests that
// read the log, empty for the ones that need syslog to be unreachable. The
// mounts die with the namespace; the host's /dev and /run are never touched.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// nsScript runs in the namespace with $SYSLOG_RUN set: it covers /var/run
// (through the /run symlink where there is one) with that directory, then
// a /dev/log still reachable with $SYSLOG_DEVLOG, and execs the binary,
// which keeps the pid unshare was started with.
const nsScript = `set -e
mount --bind "$SYSLOG_RUN" /var/run
if [ -e /dev/log ]; then mount --bind "$SYSLOG_DEVLOG" /dev/log; fi
exec "$0" "$@"`

// requireMountNS skips the test unless unshare and mount can make a
// private mount namespace with a bind mount in it here.
func requireMountNS(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("syslog e2e tests need %s(1) to redirect the syslog socket: %v", tool, err)
		}
	}
	a, b := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", "mount", "--bind", a, b).CombinedOutput()
	if err != nil {
		t.Skipf("syslog e2e tests need a private mount namespace (unshare -m, mount --bind; root or CAP_SYS_ADMIN): %v: %s", err, out)
	}
}

// syslogSink is the test's syslog daemon: a unixgram socket named syslog
// in a directory the binary sees as /var/run.
type syslogSink struct {
	run     string // bound over /var/run in the namespace
	conn    *net.UnixConn
	stopped chan struct{} // closed when conn's reader returns

	mu    sync.Mutex
	grams []string
}

func newSyslogSink(t *testing.T) *syslogSink {
	t.Helper()
	s := &syslogSink{run: filepath.Join(t.TempDir(), "run")}
	if err := os.Mkdir(s.run, 0o755); err != nil {
		t.Fatal(err)
	}
	s.listen(t)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("syslog datagrams:\n%s", strings.Join(s.all(), ""))
		}
	})
	return s
}

// listen binds run/syslog and collects what arrives on it until stop.
func (s *syslogSink) listen(t *testing.T) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(s.run, "syslog"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	s.conn, s.stopped = c, stopped
	go func() {
		defer close(stopped)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.grams = append(s.grams, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
}

// stop closes the socket, waits for the reader and unlinks the socket
// file (a unixgram conn leaves it behind).
func (s *syslogSink) stop() {
	if s.conn != nil {
		s.conn.Close()
		<-s.stopped
		s.conn = nil
		os.Remove(filepath.Join(s.run, "syslog"))
	}
}

// restart is a syslog daemon restart: a new socket at the same path.
func (s *syslogSink) restart(t *testing.T) {
	t.Helper()
	s.stop()
	s.listen(t)
}

func (s *syslogSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.grams...)
}

// wait returns the first datagram holding every one of subs, failing the
// test after d.
func (s *syslogSink) wait(t *testing.T, d time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, g := range s.all() {
			if containsAll(g, subs) {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no syslog datagram with %q after %v", subs, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// startInNS runs the binary with args in a mount namespace where /var/run
// is run and /dev/log (if the host has one) is devlog.
func startInNS(t *testing.T, run, devlog string, args ...string) *proc {
	t.Helper()
	return startProcWith(t, []string{"SYSLOG_RUN=" + run, "SYSLOG_DEVLOG=" + devlog},
		[]string{"unshare", "-m", "--propagation", "private", "sh", "-c", nsScript}, args...)
}

// localDatagram is the local form Go's log/syslog writes:
// <PRI>Mmm dd hh:mm:ss TAG[PID]: MSG\n.
var localDatagram = regexp.MustCompile(`^<(\d+)>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d ([^ \[]+)\[(\d+)\]: ([^\n]*)\n$`)

// checkDatagrams checks that every datagram is one well-formed line at
// daemon.info from tag ghostunnel and process pid, as upstream (which
// logs every line, errors included, at LOG_INFO|LOG_DAEMON) sends them.
func checkDatagrams(t *testing.T, grams []string, pid int) {
	t.Helper()
	if len(grams) == 0 {
		t.Fatal("no syslog datagrams")
	}
	for _, g := range grams {
		m := localDatagram.FindStringSubmatch(g)
		if m == nil {
			t.Errorf("not a local syslog line: %q", g)
			continue
		}
		if m[1] != "30" {
			t.Errorf("priority <%s>, want <30> (daemon.info): %q", m[1], g)
		}
		if m[2] != "ghostunnel" {
			t.Errorf("tag %q, want ghostunnel (basename of argv[0]): %q", m[2], g)
		}
		if m[3] != strconv.Itoa(pid) {
			t.Errorf("pid [%s], want [%d]: %q", m[3], pid, g)
		}
		if !strings.Contains(m[4], fmt.Sprintf("pid=%d ", pid)) || !strings.Contains(m[4], "msg=") {
			t.Errorf("message is not our logfmt line with pid=%d: %q", pid, g)
		}
	}
}

// noLogOnStdout fails if the process printed any log line.
func noLogOnStdout(t *testing.T, p *proc) {
	t.Helper()
	if out := p.out.String(); strings.Contains(out, "msg=") {
		t.Errorf("--syslog still logged to stdout/stderr:\n%s", out)
	}
}

// TestSyslogServer: `ghostunnel server --syslog` sends its startup, pipe,
// handshake-error and shutdown lines to the syslog socket, one datagram
// each, and nothing to stdout.
func TestSyslogServer(t *testing.T) {
	requireMountNS(t)
	p := newE2EPKI(t)
	sink := newSyslogSink(t)
	backend := echoServer(t)
	addr := freeAddr(t)
	srv := startInNS(t, sink.run, filepath.Join(sink.run, "syslog"),
		"server", "--syslog", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client")
	waitListening(t, addr)
	sink.wait(t, 10*time.Second, "starting ghostunnel in server mode")
	sink.wait(t, 10*time.Second, "listening for connections", "listen="+addr)

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}})
	if err != nil {
		t.Fatal(err)
	}
	roundTripE2E(t, c, "through syslog")
	c.Close()
	sink.wait(t, 10*time.Second, "opening pipe", "peer=client")
	sink.wait(t, 10*time.Second, "closed pipe")

	// The syslog daemon restarts: the next line reaches the new socket
	// (log/syslog redials once when a write fails), none is lost.
	sink.restart(t)
	before := len(sink.all())
	c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}})
	if err != nil {
		t.Fatal(err)
	}
	roundTripE2E(t, c, "after a syslog restart")
	c.Close()
	sink.wait(t, 10*time.Second, "closed pipe", "bytes_in=22")
	if got := sink.all()[before:]; len(got) < 2 || !strings.Contains(got[0], "opening pipe") {
		t.Fatalf("after the restart, want opening then closed pipe, got %q", got)
	}

	// An error-level line: upstream sends it at the same daemon.info.
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("not a TLS client hello\r\n\r\n"))
	raw.Close()
	sink.wait(t, 10*time.Second, "level=error", "error on TLS handshake")

	srv.signal(syscall.SIGTERM)
	if code := srv.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	sink.wait(t, 5*time.Second, "shutdown complete")
	checkDatagrams(t, sink.all(), srv.cmd.Process.Pid)
	noLogOnStdout(t, srv)
}

// TestSyslogFleetFile: `syslog: true` in a fleet file does what --syslog
// does, with the tunnel's name on its lines.
func TestSyslogFleetFile(t *testing.T) {
	requireMountNS(t)
	p := newE2EPKI(t)
	sink := newSyslogSink(t)
	backend := echoServer(t)
	addr := freeAddr(t)
	path := filepath.Join(p.dir, "fleet.yaml")
	body := fmt.Sprintf(`syslog: true
tunnels:
  - name: logged
    mode: server
    listen: %s
    target: %s
    keystore: %s
    cacert: %s
    allow-all: true
`, addr, backend, p.server.Combined, p.ca.CAFile)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pr := startInNS(t, sink.run, filepath.Join(sink.run, "syslog"), "-config", path)
	waitListening(t, addr)
	sink.wait(t, 10*time.Second, "starting ghostunnel in fleet mode")
	sink.wait(t, 10*time.Second, "tunnel=logged", "listening for connections")
	pr.signal(syscall.SIGTERM)
	if code := pr.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	checkDatagrams(t, sink.all(), pr.cmd.Process.Pid)
	noLogOnStdout(t, pr)
}

// TestSyslogUnreachable: with --syslog and no syslog socket the process
// fails at startup like upstream: a clear error, exit 1, nothing bound, no
// panic, no hang. --quiet=all never dials syslog, so it still runs.
func TestSyslogUnreachable(t *testing.T) {
	requireMountNS(t)
	p := newE2EPKI(t)
	empty := t.TempDir()
	notSocket := filepath.Join(empty, "not-a-socket")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	backend := echoServer(t)

	t.Run("fails", func(t *testing.T) {
		addr := freeAddr(t)
		pr := startInNS(t, empty, notSocket, "server", "--syslog", "--listen", addr, "--target", backend,
			"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-all")
		if code := pr.wait(10 * time.Second); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		out := pr.out.String()
		if !strings.Contains(out, "ghostunnel: error: unable to set up syslog") {
			t.Fatalf("no clear syslog error:\n%s", out)
		}
		if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") || strings.Contains(out, "msg=") {
			t.Fatalf("unexpected output:\n%s", out)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s accepted a connection from a process that failed to start", addr)
		}
	})

	t.Run("quiet=all", func(t *testing.T) {
		addr := freeAddr(t)
		pr := startInNS(t, empty, notSocket, "server", "--syslog", "--quiet=all", "--listen", addr,
			"--target", backend, "--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-all")
		waitListening(t, addr)
		pr.signal(syscall.SIGTERM)
		if code := pr.wait(15 * time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0", code)
		}
		if out := pr.out.String(); out != "" {
			t.Fatalf("--quiet=all --syslog printed:\n%s", out)
		}
	})
}

// TestSyslogNewLoggerQuietAll: --quiet=all wins over --syslog before any
// dial, as upstream's initLogger does, so it works with no syslog at all.
func TestSyslogNewLoggerQuietAll(t *testing.T) {
	l, err := newLogger(&configs.Config{Syslog: true, Quiet: []string{"all"}}, nil)
	if err != nil {
		t.Fatalf("newLogger: %v", err)
	}
	if err := l.Log("msg", "dropped"); err != nil {
		t.Fatalf("Log: %v", err)
	}
}
