package main

// End-to-end tests: the built binary, run as a newcomer would, against
// backends and clients on 127.0.0.1.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the ghostunnel binary once per test run, with the race
// detector so races in the real process fail the tests too.
func binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests build the binary; skipped with -short")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ghostunnel-e2e")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ghostunnel")
		out, err := exec.Command("go", "build", "-race", "-tags", shipTags, "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running ghostunnel process.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  *testnet.Buffer
	done chan struct{}
	code int
}

func startProc(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	return startProcWith(t, env, nil, args...)
}

// startProcWith is startProc with a wrapper command (prlimit, bash) in
// front of the binary; the wrapper must exec the binary, keeping the pid.
func startProcWith(t testing.TB, env []string, wrapper []string, args ...string) *proc {
	t.Helper()
	argv := append(append(append([]string{}, wrapper...), binary(t)), args...)
	return startArgv(t, env, argv...)
}

// startArgv runs argv (a binary and its arguments) as a proc.
func startArgv(t testing.TB, env []string, argv ...string) *proc {
	t.Helper()
	return startArgvFiles(t, env, nil, argv...)
}

// startActivated runs the binary with args as systemd socket activation
// would: files passed from descriptor 3 on, named by LISTEN_FDNAMES in env,
// and LISTEN_PID the process's own (sh's $$ is the pid the binary keeps
// after exec). The files can be closed once it returns.
func startActivated(t testing.TB, env []string, files []*os.File, args ...string) *proc {
	t.Helper()
	argv := append([]string{"sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, binary(t)}, args...)
	return startArgvFiles(t, append([]string{fmt.Sprintf("LISTEN_FDS=%d", len(files))}, env...), files, argv...)
}

// startArgvFiles is startArgv with files passed from descriptor 3 on.
func startArgvFiles(t testing.TB, env []string, files []*os.File, argv ...string) *proc {
	t.Helper()
	args := argv[1:]
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = files
	p := &proc{t: t, cmd: cmd, out: &testnet.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.out.String())
		}
	})
	return p
}

func (p *proc) signal(s os.Signal) { p.cmd.Process.Signal(s) }

// wait returns the exit code, failing the test if the process does not
// exit within d.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("process still running after %v\n%s", d, p.out.String())
		return -1
	}
}

// waitLog waits for substr in the process output.
func (p *proc) waitLog(substr string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), substr) {
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited (%d) before logging %q:\n%s", p.code, substr, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("no %q in output after %v:\n%s", substr, d, p.out.String())
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never started listening", addr)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// e2ePKI is a CA plus server and client leaves in a temp dir.
type e2ePKI struct {
	dir            string
	ca             *testpki.CA
	server, client *testpki.Leaf
}

func newE2EPKI(t testing.TB) *e2ePKI {
	dir := t.TempDir()
	ca := testpki.NewCA(dir, "ca")
	o := testpki.Localhost()
	o.Server = true
	return &e2ePKI{dir: dir, ca: ca, server: ca.Issue("server", o),
		client: ca.Issue("client", testpki.Options{CN: "client", Client: true})}
}

// echoServer echoes every connection until the test ends.
func echoServer(t testing.TB) string {
	t.Helper()
	return serveConns(t, func(c net.Conn) {
		io.Copy(c, c)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	})
}

// serveConns accepts on 127.0.0.1 until the test ends, running handle for
// each connection and closing it when handle returns; at the end every
// connection still open is closed and every handler waited for.
func serveConns(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func echoThrough(t testing.TB, addr, msg string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTripErr(c, msg); err != nil {
		t.Fatalf("echo through %s: %v", addr, err)
	}
}

func (p *e2ePKI) httpsClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool()}, DisableKeepAlives: true}}
}

// TestSingleTunnelPair runs `ghostunnel server` and `ghostunnel client`
// chained, pushes data, reads /_status, reloads on SIGHUP and drains on
// SIGTERM, all with upstream's command line.
func TestSingleTunnelPair(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	srvAddr, cliAddr, status := freeAddr(t), freeAddr(t), freeAddr(t)
	certPath := filepath.Join(p.dir, "live.crt")
	keyPath := filepath.Join(p.dir, "live.key")
	copyTo(t, p.server.CertFile, certPath)
	copyTo(t, p.server.KeyFile, keyPath)

	srv := startProc(t, nil, "server", "--listen", srvAddr, "--target", backend,
		"--cert", certPath, "--key", keyPath, "--cacert", p.ca.CAFile, "--allow-cn", "client",
		"--status", status)
	cli := startProc(t, []string{"KEYSTORE_PATH=" + p.client.Combined, "CACERT_PATH=" + p.ca.CAFile},
		"client", "--listen", cliAddr, "--target", "localhost:"+strings.Split(srvAddr, ":")[1])
	waitListening(t, srvAddr)
	waitListening(t, cliAddr)
	echoThrough(t, cliAddr, "hello through the pair")
	srv.waitLog("opening pipe", 5*time.Second)
	srv.waitLog("closed pipe", 5*time.Second)

	// /_status, upstream's shape, over HTTPS with the tunnel's certificate.
	resp, err := p.httpsClient().Get("https://localhost:" + strings.Split(status, ":")[1] + "/_status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/_status: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var st map[string]any
	json.Unmarshal(body, &st)
	if st["ok"] != true || st["message"] != "listening" || st["listen_address"] != srvAddr || st["forward_address"] != backend {
		t.Fatalf("/_status body: %s", body)
	}

	// SIGHUP: an open connection carries on, new handshakes get the new
	// certificate.
	open, err := net.Dial("tcp", cliAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	roundTripE2E(t, open, "before")
	o := testpki.Localhost()
	o.Server = true
	next := p.ca.Issue("server2", o)
	copyTo(t, next.CertFile, certPath)
	copyTo(t, next.KeyFile, keyPath)
	srv.signal(syscall.SIGHUP)
	srv.waitLog("reloaded credentials", 5*time.Second)
	roundTripE2E(t, open, "after reload")
	c, err := tls.Dial("tcp", srvAddr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("after SIGHUP the server presents serial %v, want %v", got, next.Cert.SerialNumber)
	}
	c.Close()

	// SIGTERM drains: the open connection still works, the process exits
	// 0 once it closes.
	srv.signal(syscall.SIGTERM)
	srv.waitLog("draining", 5*time.Second)
	roundTripE2E(t, open, "during drain")
	if _, err := net.DialTimeout("tcp", srvAddr, time.Second); err == nil {
		// SO_REUSEPORT may leave nothing listening; a successful dial here
		// means the listener was not closed.
		t.Fatal("server still accepting during drain")
	}
	open.Close()
	if code := srv.wait(15 * time.Second); code != 0 {
		t.Fatalf("drained server exited %d, want 0", code)
	}
	cli.signal(syscall.SIGINT)
	if code := cli.wait(15 * time.Second); code != 0 {
		t.Fatalf("client exited %d, want 0", code)
	}
}

func roundTripE2E(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if err := roundTripErr(c, msg); err != nil {
		t.Fatalf("round trip: %v", err)
	}
}

// roundTripErr writes msg on c and reads it back within 10 s.
func roundTripErr(c net.Conn, msg string) error { return testnet.Echo(c, msg, 10*time.Second) }

func copyTo(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownTimeoutExitCode: a connection still open when the shutdown
// timeout fires makes the process exit 1 with upstream's log line.
func TestShutdownTimeoutExitCode(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	addr := freeAddr(t)
	srv := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-all", "--shutdown-timeout", "500ms")
	waitListening(t, addr)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTripE2E(t, c, "x")
	srv.signal(syscall.SIGTERM)
	if code := srv.wait(10 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(srv.out.String(), "graceful shutdown timeout: forcing exit") {
		t.Fatalf("missing upstream log line:\n%s", srv.out.String())
	}
}

// TestFlagErrors: bad command lines exit non-zero, quickly, naming the flag.
func TestFlagErrors(t *testing.T) {
	p := newE2EPKI(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"server", "--target", "127.0.0.1:1", "--keystore", p.server.Combined, "--allow-all"}, "--listen"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "10.0.0.1:80", "--keystore", p.server.Combined, "--allow-all"}, "--unsafe-target"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", p.server.Combined}, "--allow-all"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", p.server.Combined, "--allow-all", "--allow-cn", "x"}, "--allow-all"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--allow-all"}, "--keystore"},
		{[]string{"client", "--listen", "0.0.0.0:8000", "--target", "x:1", "--keystore", p.client.Combined}, "--unsafe-listen"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", "/nonexistent.pem", "--allow-all"}, "/nonexistent.pem"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", p.server.Combined, "--allow-all", "--connect-timeout", "ten"}, "--connect-timeout"},
		{[]string{"server", "--bogus"}, "--bogus"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", p.server.Combined, "--allow-all",
			"--cipher-suites", "AES,BOGUS"}, "invalid cipher suite option: BOGUS"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", p.server.Combined, "--allow-all",
			"--metrics-graphite", "bad!host:2003"}, "--metrics-graphite: 'bad!host:2003' is not a valid TCP address"},
		// As upstream: the mode alone turns the PROXY header on; both flags are refused.
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--keystore", p.server.Combined, "--allow-all",
			"--proxy-protocol", "--proxy-protocol-mode", "tls"}, "--proxy-protocol and --proxy-protocol-mode are mutually exclusive"},
		{[]string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--use-workload-api-addr", "unix:///nonexistent.sock",
			"--allow-spki-pin", "sha256:" + strings.Repeat("A", 43) + "="}, "--allow-spki-pin is mutually exclusive with --use-workload-api"},
		{[]string{"client", "--listen", "127.0.0.1:0", "--target", "localhost:1", "--use-workload-api-addr", "unix:///nonexistent.sock",
			"--verify-spki-pin", "sha256:" + strings.Repeat("A", 43) + "="}, "--verify-spki-pin is mutually exclusive with --use-workload-api"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			pr := startProc(t, nil, tc.args...)
			if code := pr.wait(10 * time.Second); code == 0 {
				t.Fatal("exit code 0")
			}
			if !strings.Contains(pr.out.String(), tc.want) {
				t.Fatalf("error does not mention %q:\n%s", tc.want, pr.out.String())
			}
		})
	}
}

// TestQuietAll: --quiet=all writes nothing at all, startup included.
func TestQuietAll(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	addr := freeAddr(t)
	srv := startProc(t, nil, "server", "--quiet=all", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-all")
	waitListening(t, addr)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{p.client.TLS()}})
	if err != nil {
		t.Fatal(err)
	}
	roundTripE2E(t, c, "x")
	c.Close()
	srv.signal(syscall.SIGTERM)
	srv.wait(10 * time.Second)
	if out := srv.out.String(); out != "" {
		t.Fatalf("--quiet=all printed:\n%s", out)
	}
}

// TestShutdownEndpoint: POST /_shutdown drains and exits 0; other methods
// get 405.
func TestShutdownEndpoint(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	addr, status := freeAddr(t), freeAddr(t)
	srv := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-all",
		"--status", "http://"+status, "--enable-shutdown")
	waitListening(t, status)
	resp, err := http.Get("http://" + status + "/_shutdown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /_shutdown: %d, want 405", resp.StatusCode)
	}
	resp, err = http.Post("http://"+status+"/_shutdown", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /_shutdown: %d", resp.StatusCode)
	}
	if code := srv.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after /_shutdown, want 0", code)
	}
}
