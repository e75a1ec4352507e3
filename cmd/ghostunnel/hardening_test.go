package main

// Hardening: fault, load and hostile-input tests against the built
// (race-enabled) binary on 127.0.0.1. Every loop is bounded in count and
// time. The default ("short") sizes run in `make test`; GHOSTUNNEL_SOAK=1
// (`make soak`) runs the long variants. Figures are reported with t.Log and
// collected in docs/HARDENING.md. Timing is logged, never asserted tightly:
// these tests must pass on a loaded 2-core CI machine.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// ---------------------------------------------------------------------------
// Helpers

func soakMode() bool { return os.Getenv("GHOSTUNNEL_SOAK") == "1" }

// scale picks the short or the soak size.
func scale[T any](short, soak T) T {
	if soakMode() {
		return soak
	}
	return short
}

// raiseNofile lifts this process's RLIMIT_NOFILE to the hard limit (child
// processes inherit it) and returns the new soft limit.
func raiseNofile(t testing.TB) uint64 {
	t.Helper()
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if r.Cur < r.Max {
		old := r.Cur
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			t.Logf("raising RLIMIT_NOFILE: %v", err)
			return old
		}
	}
	return r.Cur
}

// needFDs skips the test when the descriptor limit cannot hold n sockets on
// each side (ours and the tunnel's) plus slack.
func needFDs(t testing.TB, n int) {
	t.Helper()
	if lim := raiseNofile(t); lim < uint64(n+256) {
		t.Skipf("RLIMIT_NOFILE %d too low for %d connections", lim, n)
	}
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) mustBeAlive(t testing.TB) {
	t.Helper()
	if !p.alive() {
		t.Fatalf("ghostunnel exited (code %d):\n%s", p.code, p.out.String())
	}
}

// count is how many times substr appears in the output so far.
func (p *proc) count(substr string) int { return strings.Count(p.out.String(), substr) }

// waitCount waits until substr has appeared at least n times.
func (p *proc) waitCount(substr string, n int, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for p.count(substr) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("%q logged %d times after %v, want %d:\n%s", substr, p.count(substr), d, n, tail(p.out.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

var statusHTTP = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches base+path (base is http://HOST:PORT).
func get(t testing.TB, base, path string) (int, string) {
	t.Helper()
	resp, err := statusHTTP.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls base+path until it answers code.
func waitStatus(t testing.TB, base, path string, code int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, body := get(t, base, path)
		if got == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d after %v, want %d: %s", path, got, d, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var goroutineRE = regexp.MustCompile(`^goroutine profile: total (\d+)`)

// goroutines reads the process's goroutine count from pprof.
func goroutines(t testing.TB, base string) int {
	t.Helper()
	code, body := get(t, base, "/debug/pprof/goroutine?debug=1")
	m := goroutineRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("goroutine profile: %d %.200s", code, body)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var heapAllocRE = regexp.MustCompile(`(?m)^# HeapAlloc = (\d+)`)

// heapAlloc is the live heap after a forced GC, from pprof.
func heapAlloc(t testing.TB, base string) int64 {
	t.Helper()
	code, body := get(t, base, "/debug/pprof/heap?debug=1&gc=1")
	m := heapAllocRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("heap profile: %d %.200s", code, tail(body, 200))
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// rssKB is VmRSS of pid in KiB.
func rssKB(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// fdCount is the number of open descriptors of pid.
func fdCount(t testing.TB, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// metric reads one sample from /_metrics/prometheus: the line for name
// whose labels include every one of labels (`tunnel="x"`). Missing: -1.
func metric(t testing.TB, base, name string, labels ...string) float64 {
	t.Helper()
	code, body := get(t, base, "/_metrics/prometheus")
	if code != 200 {
		t.Fatalf("/_metrics/prometheus: %d", code)
	}
	return metricIn(body, name, labels...)
}

func metricIn(body, name string, labels ...string) float64 {
	for _, l := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for _, lb := range labels {
			if !strings.Contains(rest, lb) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v
		}
	}
	return -1
}

// clientTLS is a TLS config for a good client of the e2e PKI.
func (p *e2ePKI) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{p.client.TLS()}}
}

// withCert makes cfg present l whatever CAs the server asks for.
func withCert(cfg *tls.Config, l *testpki.Leaf) *tls.Config {
	cert := l.TLS()
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

func dialTLS(addr string, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, cfg)
}

// tlsEcho dials a server tunnel, round-trips msg and returns how long it
// all took.
func tlsEcho(addr string, cfg *tls.Config, msg string) (time.Duration, error) {
	start := time.Now()
	c, err := dialTLS(addr, cfg, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return time.Since(start), roundTripErr(c, msg)
}

// plainEcho is tlsEcho for a client tunnel's plaintext listener.
func plainEcho(addr, msg string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return time.Since(start), roundTripErr(c, msg)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	slices.Sort(s)
	return s[len(s)/2]
}

// latencies runs n sequential echoes and returns their median and how many
// attempts had to be retried. Each echo gets three attempts (a loaded CI
// machine can stall the race-enabled process past a 1s connect timeout);
// the test fails if all three fail.
func latencies(t testing.TB, n int, echo func() (time.Duration, error)) (time.Duration, int) {
	t.Helper()
	var ds []time.Duration
	retries := 0
	for i := 0; i < n; i++ {
		var d time.Duration
		var err error
		for try := 0; try < 3; try++ {
			if d, err = echo(); err == nil {
				break
			}
			retries++
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("good client failed three times: %v", err)
		}
		ds = append(ds, d)
	}
	return median(ds), retries
}

// settle polls f until it is at most limit, for up to d, and returns the
// last value.
func settle(d time.Duration, limit int, f func() int) int {
	deadline := time.Now().Add(d)
	for {
		v := f()
		if v <= limit || time.Now().After(deadline) {
			return v
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// flappyBackend is an echo server that can be taken down (listener and
// every connection closed) and brought back on the same address.
type flappyBackend struct {
	t        testing.TB
	addr     string
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	accepted atomic.Int64
	open     atomic.Int64
	maxOpen  atomic.Int64
	wg       sync.WaitGroup
}

func newFlappyBackend(t testing.TB) *flappyBackend {
	t.Helper()
	b := &flappyBackend{t: t, conns: map[net.Conn]struct{}{}}
	b.addr = "127.0.0.1:0"
	b.up()
	b.addr = b.ln.Addr().String()
	t.Cleanup(func() { b.down(); b.wg.Wait() })
	return b
}

func (b *flappyBackend) up() {
	b.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("backend up: %v", err)
	}
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			n := b.open.Add(1)
			for {
				m := b.maxOpen.Load()
				if n <= m || b.maxOpen.CompareAndSwap(m, n) {
					break
				}
			}
			b.mu.Lock()
			if b.ln != ln { // taken down meanwhile
				b.mu.Unlock()
				b.open.Add(-1)
				c.Close()
				continue
			}
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				io.Copy(c, c)
				// Counted closed once the peer's EOF arrives: before the
				// tunnel can see ours and free its slot.
				b.open.Add(-1)
				c.(*net.TCPConn).CloseWrite()
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
		}
	}()
}

func (b *flappyBackend) down() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
	for c := range b.conns {
		c.Close()
	}
}

// stream pushes a deterministic pseudo-random byte stream through an echo
// path and checks every byte that comes back against the same stream, so
// corruption is caught at the first wrong byte; it also keeps SHA-256 sums
// of both directions.
type stream struct {
	c          net.Conn
	seed       uint64
	sent, recv atomic.Int64
	sumS, sumR hash.Hash
	done       chan struct{}
	werr, rerr error
	corrupt    bool
}

// startStream writes chunks of chunk bytes every pace until stop closes or
// limit bytes are sent (0: no limit), then half-closes and reads the echo
// to EOF.
func startStream(c net.Conn, seed uint64, chunk int, pace time.Duration, limit int64, stop <-chan struct{}) *stream {
	s := &stream{c: c, seed: seed, sumS: sha256.New(), sumR: sha256.New(), done: make(chan struct{})}
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		gen := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		buf := make([]byte, chunk)
		for limit == 0 || s.sent.Load() < limit {
			select {
			case <-stop:
				goto out
			default:
			}
			n := chunk
			if limit > 0 {
				n = int(min(int64(chunk), limit-s.sent.Load()))
			}
			for i := 0; i < n; i++ {
				buf[i] = byte(gen.Uint32())
			}
			if _, err := c.Write(buf[:n]); err != nil {
				s.werr = err
				return
			}
			s.sumS.Write(buf[:n])
			s.sent.Add(int64(n))
			if pace > 0 {
				time.Sleep(pace)
			}
		}
	out:
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				s.werr = err
			}
		}
	}()
	go func() {
		defer close(s.done)
		gen := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] != byte(gen.Uint32()) {
					s.corrupt = true
				}
			}
			s.sumR.Write(buf[:n])
			s.recv.Add(int64(n))
			if err != nil {
				if err != io.EOF {
					s.rerr = err
				}
				break
			}
		}
		<-wdone
	}()
	return s
}

// wait waits for the stream to end and reports whether it completed
// intact: no error, no wrong byte, as many bytes back as sent, same sums.
func (s *stream) wait(d time.Duration) error {
	select {
	case <-s.done:
	case <-time.After(d):
		s.c.Close()
		<-s.done
		return fmt.Errorf("stream %d still running after %v (%d sent, %d back)", s.seed, d, s.sent.Load(), s.recv.Load())
	}
	switch {
	case s.corrupt:
		return fmt.Errorf("stream %d: corrupted data", s.seed)
	case s.werr != nil || s.rerr != nil:
		return fmt.Errorf("stream %d: write %v, read %v (%d sent, %d back)", s.seed, s.werr, s.rerr, s.sent.Load(), s.recv.Load())
	case s.sent.Load() != s.recv.Load():
		return fmt.Errorf("stream %d: %d sent, %d back", s.seed, s.sent.Load(), s.recv.Load())
	case !bytes.Equal(s.sumS.Sum(nil), s.sumR.Sum(nil)):
		return fmt.Errorf("stream %d: checksum mismatch", s.seed)
	}
	return nil
}

// fleetYAML renders a fleet file: top-level settings then tunnels, each a
// list of "key: value" lines.
func fleetYAML(top []string, tunnels ...[]string) string {
	var b strings.Builder
	for _, l := range top {
		b.WriteString(l + "\n")
	}
	b.WriteString("tunnels:\n")
	for _, tl := range tunnels {
		for i, l := range tl {
			if i == 0 {
				b.WriteString("  - " + l + "\n")
			} else {
				b.WriteString("    " + l + "\n")
			}
		}
	}
	return b.String()
}

// serverTunnelYAML is a server tunnel admitting CN client.
func (p *e2ePKI) serverTunnelYAML(name, listen, target string, extra ...string) []string {
	return append([]string{"name: " + name, "mode: server", "listen: " + listen, "target: " + target,
		"keystore: " + p.server.Combined, "cacert: " + p.ca.CAFile, "allow-cn: [client]"}, extra...)
}

// floodConn is one connection of a handshake flood.
type floodConn struct {
	c      net.Conn
	start  time.Time
	closed time.Duration // how long until the server dropped it
	kept   bool          // still open at our deadline: not dropped
}

// flood opens n connections to addr that never complete a handshake: a
// third send nothing, a third send half a ClientHello and stall, a third
// dribble a ClientHello one byte every 200ms (slowloris). It returns once
// all are open; wait collects them.
type floodResult struct {
	conns  []*floodConn
	wg     sync.WaitGroup
	failed int // dials that failed
}

func startFlood(t testing.TB, addr string, n int, hold time.Duration) *floodResult {
	t.Helper()
	hello := clientHelloBytes(t)
	r := &floodResult{}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			r.failed++
			continue
		}
		fc := &floodConn{c: c, start: time.Now()}
		r.conns = append(r.conns, fc)
		c.SetDeadline(fc.start.Add(hold))
		stop := make(chan struct{})
		switch i % 3 {
		case 1:
			c.Write(hello[:len(hello)/2])
		case 2:
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				for j := 0; j < len(hello); j++ {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					if _, err := c.Write(hello[j : j+1]); err != nil {
						return
					}
				}
			}()
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(stop)
			_, err := io.Copy(io.Discard, c)
			fc.closed = time.Since(fc.start)
			var ne net.Error
			fc.kept = errors.As(err, &ne) && ne.Timeout()
		}()
	}
	return r
}

// wait returns the number of connections the server did not drop, and the
// longest time it took to drop one.
func (r *floodResult) wait() (kept int, slowest time.Duration) {
	r.wg.Wait()
	for _, fc := range r.conns {
		fc.c.Close()
		if fc.kept {
			kept++
		} else if fc.closed > slowest {
			slowest = fc.closed
		}
	}
	return kept, slowest
}

func (r *floodResult) close() {
	for _, fc := range r.conns {
		fc.c.Close()
	}
}

var helloOnce struct {
	sync.Once
	b []byte
}

// clientHelloBytes is a real ClientHello, captured from crypto/tls.
func clientHelloBytes(t testing.TB) []byte {
	helloOnce.Do(func() {
		a, b := net.Pipe()
		go func() {
			tls.Client(a, &tls.Config{ServerName: "localhost"}).Handshake()
		}()
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(b, hdr); err == nil {
			body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
			io.ReadFull(b, body)
			helloOnce.b = append(hdr, body...)
		}
		a.Close()
		b.Close()
	})
	if len(helloOnce.b) < 50 {
		t.Fatal("could not capture a ClientHello")
	}
	return helloOnce.b
}

// ---------------------------------------------------------------------------
// Fault and load

// TestHardeningHandshakeFlood floods one of two server tunnels with
// connections that never start or never finish the TLS handshake. They must
// be dropped after the connect timeout, good clients of both tunnels must
// get through meanwhile, and goroutines and memory must come back down.
func TestHardeningHandshakeFlood(t *testing.T) {
	n := scale(300, 4000)
	needFDs(t, n)
	p := newE2EPKI(t)
	backA, backB := echoServer(t), echoServer(t)
	a, b, st := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := writeFile(t, filepath.Join(p.dir, "fleet.yaml"), fleetYAML(
		[]string{"status: http://" + st, "enable-pprof: true", "shutdown-timeout: 5s"},
		p.serverTunnelYAML("flooded", a, backA, "connect-timeout: 1s"),
		p.serverTunnelYAML("calm", b, backB, "connect-timeout: 1s"),
	), 0o600)
	pr := startProc(t, nil, "-config", cfg)
	waitListening(t, a)
	waitListening(t, b)
	base := "http://" + st
	waitStatus(t, base, "/_status", 200, 15*time.Second)

	good := p.clientTLS()
	echoA := func() (time.Duration, error) { return tlsEcho(a, good, "ping") }
	echoB := func() (time.Duration, error) { return tlsEcho(b, good, "ping") }
	latencies(t, 20, echoA) // warm up
	latencies(t, 20, echoB)
	beforeA, _ := latencies(t, 9, echoA)
	beforeB, _ := latencies(t, 9, echoB)
	time.Sleep(500 * time.Millisecond)
	g0, h0, r0 := goroutines(t, base), heapAlloc(t, base), rssKB(t, pr.pid())
	timeouts0 := metric(t, base, "ghostunnel_accept_timeout_total", `tunnel="flooded"`)

	start := time.Now()
	fl := startFlood(t, a, n, 30*time.Second)
	defer fl.close()
	opened := time.Since(start)
	gPeak, rPeak := goroutines(t, base), rssKB(t, pr.pid())
	duringA, retriesA := latencies(t, 9, echoA)
	duringB, retriesB := latencies(t, 9, echoB)
	kept, slowest := fl.wait()
	pr.mustBeAlive(t)
	t.Logf("flood: %d connections opened in %v (%d dials failed); goroutines %d -> %d at peak; RSS %d -> %d KiB at peak",
		len(fl.conns), opened.Round(time.Millisecond), fl.failed, g0, gPeak, r0, rPeak)
	t.Logf("dropped by the server: %d of %d, slowest after %v (connect-timeout 1s)", len(fl.conns)-kept, len(fl.conns), slowest.Round(time.Millisecond))
	t.Logf("good-client latency (handshake + echo, median of 9): flooded tunnel %v -> %v during the flood (%d retries); other tunnel %v -> %v (%d retries)",
		beforeA.Round(time.Microsecond), duringA.Round(time.Microsecond), retriesA, beforeB.Round(time.Microsecond), duringB.Round(time.Microsecond), retriesB)
	if kept > 0 {
		t.Fatalf("%d flood connections still open 30s after they started (connect-timeout 1s)", kept)
	}
	if fl.failed > n/10 {
		t.Fatalf("%d of %d flood dials failed: the flood did not happen", fl.failed, n)
	}

	g1 := settle(20*time.Second, g0+10, func() int { return goroutines(t, base) })
	h1, r1 := heapAlloc(t, base), rssKB(t, pr.pid())
	timeouts := metric(t, base, "ghostunnel_accept_timeout_total", `tunnel="flooded"`) - timeouts0
	t.Logf("afterwards: goroutines %d (baseline %d); live heap %d -> %d KiB; RSS %d -> %d KiB; accept_timeout_total{flooded} +%v",
		g1, g0, h0>>10, h1>>10, r0, r1, timeouts)
	if g1 > g0+10 {
		t.Errorf("goroutines did not return to baseline: %d, baseline %d", g1, g0)
	}
	if h1 > h0+max(h0, 16<<20) {
		t.Errorf("live heap did not return to baseline: %d KiB, baseline %d KiB", h1>>10, h0>>10)
	}
	if r1 > r0+512<<10 {
		t.Errorf("RSS grew from %d to %d KiB", r0, r1)
	}
	if timeouts < float64(len(fl.conns))*0.9 {
		t.Errorf("accept_timeout_total{flooded} rose by %v for %d stalled handshakes", timeouts, len(fl.conns))
	}
	latencies(t, 1, echoA)
	waitStatus(t, base, "/_status/calm", 200, 20*time.Second)
}

// TestHardeningFDExhaustion starts the binary with RLIMIT_NOFILE 64, opens
// connections until accept fails with EMFILE, and checks the tunnel logs it
// with the OS text, keeps running and serves again once connections close.
func TestHardeningFDExhaustion(t *testing.T) {
	const limit = 64
	cycles := scale(1, 5)
	p := newE2EPKI(t)
	backend := echoServer(t)
	addr := freeAddr(t)
	wrapper := []string{"bash", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, limit)}
	if pl, err := exec.LookPath("prlimit"); err == nil {
		wrapper = []string{pl, fmt.Sprintf("--nofile=%d:%d", limit, limit)}
	}
	pr := startProcWith(t, nil, wrapper, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
		"--connect-timeout", "60s")
	waitListening(t, addr)
	if _, err := tlsEcho(addr, p.clientTLS(), "ping"); err != nil {
		t.Fatal(err)
	}
	t.Logf("limit %d descriptors (via %s); %d open at idle", limit, filepath.Base(wrapper[0]), fdCount(t, pr.pid()))

	for cycle := 1; cycle <= cycles; cycle++ {
		before := pr.count("too many open files")
		var held []net.Conn
		for i := 0; i < 2*limit; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				break
			}
			held = append(held, c)
		}
		pr.waitCount("too many open files", before+1, 15*time.Second)
		line := lastLine(pr.out.String(), "too many open files")
		if !strings.Contains(line, "error accepting connection") {
			t.Fatalf("EMFILE logged without the accept context: %s", line)
		}
		fds := fdCount(t, pr.pid())
		// A good client now waits in the backlog, and must be served once
		// descriptors are free again.
		queued := make(chan error, 1)
		go func() { _, err := tlsEcho(addr, p.clientTLS(), "queued"); queued <- err }()
		time.Sleep(300 * time.Millisecond)
		pr.mustBeAlive(t)
		for _, c := range held {
			c.Close()
		}
		select {
		case err := <-queued:
			if err != nil {
				t.Fatalf("cycle %d: client queued during exhaustion: %v", cycle, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("cycle %d: client queued during exhaustion never served", cycle)
		}
		var err error
		deadline := time.Now().Add(15 * time.Second)
		for {
			if _, err = tlsEcho(addr, p.clientTLS(), "after"); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("cycle %d: not serving after descriptors were freed: %v", cycle, err)
		}
		t.Logf("cycle %d: %d connections held, %d descriptors in use at exhaustion, %d EMFILE lines logged so far; served again afterwards",
			cycle, len(held), fds, pr.count("too many open files"))
		t.Logf("logged: %s", line)
	}
	pr.mustBeAlive(t)
}

func lastLine(out, substr string) string {
	i := strings.LastIndex(out, substr)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(out[:i], "\n") + 1
	end := strings.Index(out[i:], "\n")
	if end < 0 {
		return out[start:]
	}
	return out[start : i+end]
}

// TestHardeningBackendFlapping takes the target down and up repeatedly
// while clients keep connecting: they get clean closes (never a hang or
// wrong data), /_status and ghostunnel_backend_up follow, the process stays.
func TestHardeningBackendFlapping(t *testing.T) {
	cycles := scale(3, 40)
	p := newE2EPKI(t)
	be := newFlappyBackend(t)
	addr, st := freeAddr(t), freeAddr(t)
	pr := startProc(t, nil, "server", "--listen", addr, "--target", be.addr,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
		"--connect-timeout", "2s", "--status", "http://"+st)
	waitListening(t, addr)
	base := "http://" + st
	waitStatus(t, base, "/_status", 200, 15*time.Second)

	var ok, closed, hung, corrupt atomic.Int64
	var kindsMu sync.Mutex
	kinds := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := p.clientTLS()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("ping %d %d", w, i)
				_, err := tlsEcho(addr, cfg, msg)
				var ne net.Error
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &ne) && ne.Timeout():
					hung.Add(1)
				case strings.Contains(err.Error(), "mismatch"):
					corrupt.Add(1)
				default:
					closed.Add(1)
					k := err.Error()
					if i := strings.LastIndex(k, ": "); i >= 0 {
						k = k[i+2:]
					}
					kindsMu.Lock()
					kinds[k]++
					kindsMu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	start := time.Now()
	for cycle := 0; cycle < cycles; cycle++ {
		be.down()
		waitStatus(t, base, "/_status", 503, 20*time.Second)
		if v := metric(t, base, "ghostunnel_backend_up"); v != 0 {
			t.Fatalf("cycle %d: backend down, ghostunnel_backend_up = %v", cycle, v)
		}
		time.Sleep(200 * time.Millisecond)
		be.up()
		waitStatus(t, base, "/_status", 200, 20*time.Second)
		if v := metric(t, base, "ghostunnel_backend_up"); v != 1 {
			t.Fatalf("cycle %d: backend up, ghostunnel_backend_up = %v", cycle, v)
		}
		time.Sleep(200 * time.Millisecond)
		pr.mustBeAlive(t)
	}
	close(stop)
	wg.Wait()
	dialErrs := pr.count("error on dial")
	t.Logf("%d down/up cycles in %v: %d echoes ok, %d cleanly closed, %d hung, %d corrupted; %d 'error on dial' lines; close kinds %v",
		cycles, time.Since(start).Round(time.Millisecond), ok.Load(), closed.Load(), hung.Load(), corrupt.Load(), dialErrs, kinds)
	if hung.Load() > 0 || corrupt.Load() > 0 {
		t.Fatalf("%d clients hung and %d got wrong data while the backend flapped", hung.Load(), corrupt.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no client got through while the backend was up")
	}
	if _, err := tlsEcho(addr, p.clientTLS(), "final"); err != nil {
		t.Fatal(err)
	}
	pr.mustBeAlive(t)
}

// TestHardeningReloadUnderLoad sends SIGHUP every 100ms, rewriting the
// server certificate every fifth time, while clients stream checksummed data
// through a client->server tunnel pair: no stream may drop or corrupt, and
// new handshakes must see each new certificate.
func TestHardeningReloadUnderLoad(t *testing.T) {
	clients, dur := scale(10, 50), scale(3*time.Second, 30*time.Second)
	p := newE2EPKI(t)
	backend := echoServer(t)
	srv, cli := freeAddr(t), freeAddr(t)
	live := filepath.Join(p.dir, "live.pem")
	o := testpki.Localhost()
	o.Server = true
	var leaves []*testpki.Leaf
	for i := 0; i < 4; i++ {
		leaves = append(leaves, p.ca.Issue(fmt.Sprintf("rot%d", i), o))
	}
	copyTo(t, leaves[0].Combined, live)
	cfg := writeFile(t, filepath.Join(p.dir, "pair.yaml"), fleetYAML(
		[]string{"shutdown-timeout: 10s"},
		[]string{"name: srv", "mode: server", "listen: " + srv, "target: " + backend,
			"keystore: " + live, "cacert: " + p.ca.CAFile, "allow-cn: [client]"},
		[]string{"name: cli", "mode: client", "listen: " + cli, "target: localhost:" + strings.Split(srv, ":")[1],
			"keystore: " + p.client.Combined, "cacert: " + p.ca.CAFile},
	), 0o600)
	pr := startProc(t, nil, "-config", cfg)
	waitListening(t, srv)
	waitListening(t, cli)
	if _, err := plainEcho(cli, "warm"); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var streams []*stream
	for i := 0; i < clients; i++ {
		c, err := net.DialTimeout("tcp", cli, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(dur + 60*time.Second))
		streams = append(streams, startStream(c, uint64(i+1), 4<<10, 10*time.Millisecond, 0, stop))
	}

	presented := func() (*tls.Conn, error) {
		return dialTLS(srv, p.clientTLS(), 10*time.Second)
	}
	signals, rotations, verified := 0, 0, 0
	want := leaves[0]
	seen := true
	start := time.Now()
	for tick := 0; time.Since(start) < dur; tick++ {
		if tick%5 == 0 && seen {
			rotations++
			want = leaves[rotations%len(leaves)]
			copyTo(t, want.Combined, live)
			seen = false
		}
		pr.signal(syscall.SIGHUP)
		signals++
		time.Sleep(100 * time.Millisecond)
		if !seen {
			c, err := presented()
			if err != nil {
				t.Fatalf("handshake during reloads: %v", err)
			}
			if c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(want.Cert.SerialNumber) == 0 {
				seen = true
				verified++
			}
			c.Close()
		}
		pr.mustBeAlive(t)
	}
	// The last rotation must be seen too, within a few reloads.
	for i := 0; !seen && i < 100; i++ {
		pr.signal(syscall.SIGHUP)
		signals++
		time.Sleep(100 * time.Millisecond)
		c, err := presented()
		if err != nil {
			t.Fatal(err)
		}
		seen = c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(want.Cert.SerialNumber) == 0
		c.Close()
		if seen {
			verified++
		}
	}
	close(stop)
	var total int64
	for _, s := range streams {
		if err := s.wait(30 * time.Second); err != nil {
			t.Error(err)
		}
		total += s.sent.Load()
	}
	reloads := pr.count("reloaded credentials")
	t.Logf("%d SIGHUPs in %v (%d 'reloaded credentials' lines), %d certificate rotations, %d seen by new handshakes; %d streams carried %d KiB each way, all checksums matched: %v",
		signals, time.Since(start).Round(time.Millisecond), reloads, rotations, verified, clients, total>>10, !t.Failed())
	if verified != rotations {
		t.Fatalf("%d rotations, only %d seen by new handshakes", rotations, verified)
	}
	pr.mustBeAlive(t)
}

// TestHardeningShutdownUnderLoad: SIGTERM with streams open drains them to
// completion (checksums intact, exit 0); when they outlast the shutdown
// timeout the process exits 1 with upstream's line.
func TestHardeningShutdownUnderLoad(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	run := func(t *testing.T, timeout string, streams int, size int64, pace time.Duration) (*proc, []*stream, time.Time) {
		addr := freeAddr(t)
		pr := startProc(t, nil, "server", "--listen", addr, "--target", backend,
			"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
			"--shutdown-timeout", timeout)
		waitListening(t, addr)
		var ss []*stream
		for i := 0; i < streams; i++ {
			c, err := dialTLS(addr, p.clientTLS(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			ss = append(ss, startStream(c, uint64(100+i), 16<<10, pace, size, nil))
		}
		time.Sleep(300 * time.Millisecond)
		pr.signal(syscall.SIGTERM)
		at := time.Now()
		pr.waitLog("draining", 10*time.Second)
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Error("still accepting connections during the drain")
		}
		return pr, ss, at
	}

	t.Run("drain", func(t *testing.T) {
		n, size := scale(5, 50), scale(int64(1<<20), int64(8<<20))
		pr, ss, at := run(t, "60s", n, size, 20*time.Millisecond)
		var total int64
		for _, s := range ss {
			if err := s.wait(90 * time.Second); err != nil {
				t.Error(err)
			}
			total += s.recv.Load()
		}
		code := pr.wait(60 * time.Second)
		t.Logf("%d streams of %d KiB drained after SIGTERM; all checksums matched: %v; process exited %d after %v",
			n, size>>10, !t.Failed(), code, time.Since(at).Round(time.Millisecond))
		if code != 0 {
			t.Fatalf("exit code %d after a clean drain, want 0", code)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		pr, ss, at := run(t, "1s", 3, 0, 20*time.Millisecond)
		code := pr.wait(30 * time.Second)
		el := time.Since(at)
		var corrupt int
		for _, s := range ss {
			s.wait(30 * time.Second)
			if s.corrupt {
				corrupt++
			}
		}
		t.Logf("streams outlasting a 1s shutdown timeout: exit %d after %v, %d corrupted", code, el.Round(time.Millisecond), corrupt)
		if code != 1 {
			t.Fatalf("exit code %d when the shutdown timeout fired, want 1", code)
		}
		if !strings.Contains(pr.out.String(), "graceful shutdown timeout: forcing exit") {
			t.Fatal("no 'graceful shutdown timeout: forcing exit' line")
		}
		if corrupt > 0 {
			t.Fatalf("%d streams received wrong bytes before the cut", corrupt)
		}
	})
}

// TestHardeningConnectionChurn pushes many short connections through a
// client->server tunnel pair and checks that goroutines and descriptors
// come back to their baseline.
func TestHardeningConnectionChurn(t *testing.T) {
	n, workers := scale(2000, 20000), 8
	raiseNofile(t)
	p := newE2EPKI(t)
	// Not echoServer: it keeps every finished connection open until the
	// test ends, which at soak sizes exhausts this process's descriptors.
	backend := newFlappyBackend(t)
	srv, cli, st := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := writeFile(t, filepath.Join(p.dir, "churn.yaml"), fleetYAML(
		[]string{"status: http://" + st, "enable-pprof: true", "quiet: [conns]"},
		p.serverTunnelYAML("srv", srv, backend.addr),
		[]string{"name: cli", "mode: client", "listen: " + cli, "target: localhost:" + strings.Split(srv, ":")[1],
			"keystore: " + p.client.Combined, "cacert: " + p.ca.CAFile},
	), 0o600)
	pr := startProc(t, nil, "-config", cfg)
	waitListening(t, srv)
	waitListening(t, cli)
	base := "http://" + st
	waitStatus(t, base, "/_status", 200, 15*time.Second)
	for i := 0; i < 50; i++ {
		if _, err := plainEcho(cli, "warm"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	g0, f0 := goroutines(t, base), fdCount(t, pr.pid())

	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := plainEcho(cli, fmt.Sprintf("churn %d", i)); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	gPeak, fPeak := goroutines(t, base), fdCount(t, pr.pid())
	g1 := settle(20*time.Second, g0+10, func() int { return goroutines(t, base) })
	f1 := settle(20*time.Second, f0+10, func() int { return fdCount(t, pr.pid()) })
	succ := metric(t, base, "ghostunnel_accept_success_total", `tunnel="srv"`)
	t.Logf("%d connections (%d workers) in %v (%.0f/s), %d failed; goroutines %d -> %d just after -> %d settled; fds %d -> %d -> %d; accept_success_total{srv} %v",
		n, workers, el.Round(time.Millisecond), float64(n)/el.Seconds(), failed.Load(), g0, gPeak, g1, f0, fPeak, f1, succ)
	if failed.Load() > 0 {
		t.Errorf("%d of %d connections failed, first: %v", failed.Load(), n, firstErr.Load())
	}
	if g1 > g0+10 {
		t.Errorf("goroutine leak: %d after churn, baseline %d", g1, g0)
	}
	if f1 > f0+10 {
		t.Errorf("descriptor leak: %d after churn, baseline %d", f1, f0)
	}
	pr.mustBeAlive(t)
}

// TestHardeningLimits: max-concurrent-conns holds under a burst of ten
// times the limit; max-conn-lifetime closes idle and busy connections.
func TestHardeningLimits(t *testing.T) {
	p := newE2EPKI(t)
	t.Run("max-concurrent-conns", func(t *testing.T) {
		const limit = 5
		rounds := scale(1, 10)
		be := newFlappyBackend(t)
		addr := freeAddr(t)
		pr := startProc(t, nil, "server", "--listen", addr, "--target", be.addr,
			"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
			"--max-concurrent-conns", strconv.Itoa(limit), "--quiet", "conns")
		waitListening(t, addr)
		start := time.Now()
		var failed atomic.Int64
		for r := 0; r < rounds; r++ {
			var wg sync.WaitGroup
			for i := 0; i < 10*limit; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := dialTLS(addr, p.clientTLS(), 60*time.Second)
					if err != nil {
						failed.Add(1)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(60 * time.Second))
					if err := roundTripErr(c, "burst"); err != nil {
						failed.Add(1)
						return
					}
					time.Sleep(100 * time.Millisecond)
					c.CloseWrite()
					io.Copy(io.Discard, c)
				}()
			}
			wg.Wait()
		}
		t.Logf("%d bursts of %d connections against max-concurrent-conns %d: at most %d open at the backend at once, %d accepted there, %d failed, in %v",
			rounds, 10*limit, limit, be.maxOpen.Load(), be.accepted.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
		if m := be.maxOpen.Load(); m > limit {
			t.Fatalf("%d connections open at the backend at once, limit %d", m, limit)
		}
		if failed.Load() > 0 {
			t.Fatalf("%d connections of the burst failed (they should queue)", failed.Load())
		}
		pr.mustBeAlive(t)
	})

	t.Run("max-conn-lifetime", func(t *testing.T) {
		// An echo that, once the client half-closes, keeps its own side
		// open: only the lifetime can end that connection early (the close
		// timeout is 60s).
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		quit := make(chan struct{})
		var bwg sync.WaitGroup
		t.Cleanup(func() { ln.Close(); close(quit); bwg.Wait() })
		bwg.Add(1)
		go func() {
			defer bwg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				bwg.Add(1)
				go func() {
					defer bwg.Done()
					defer c.Close()
					io.Copy(c, c)
					select {
					case <-quit:
					case <-time.After(30 * time.Second):
					}
				}()
			}
		}()
		backend := ln.Addr().String()
		addr, st := freeAddr(t), freeAddr(t)
		pr := startProc(t, nil, "server", "--listen", addr, "--target", backend,
			"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
			"--max-conn-lifetime", "1s", "--status", "http://"+st)
		waitListening(t, addr)
		type res struct {
			kind string
			life time.Duration
			err  error
		}
		out := make(chan res, 3)
		for _, kind := range []string{"idle", "busy", "half-closed"} {
			go func() {
				c, err := dialTLS(addr, p.clientTLS(), 10*time.Second)
				if err != nil {
					out <- res{kind, 0, err}
					return
				}
				defer c.Close()
				opened := time.Now()
				c.SetDeadline(opened.Add(20 * time.Second))
				if err := roundTripErr(c, "x"); err != nil {
					out <- res{kind, 0, err}
					return
				}
				c.SetDeadline(opened.Add(20 * time.Second))
				switch kind {
				case "busy":
					go func() {
						for {
							if _, err := c.Write(make([]byte, 1024)); err != nil {
								return
							}
							time.Sleep(10 * time.Millisecond)
						}
					}()
				case "half-closed":
					c.CloseWrite() // the backend keeps its side open
				}
				_, err = io.Copy(io.Discard, c)
				out <- res{kind, time.Since(opened), err}
			}()
		}
		for i := 0; i < 3; i++ {
			r := <-out
			t.Logf("%s connection closed after %v (%v)", r.kind, r.life.Round(time.Millisecond), r.err)
			var ne net.Error
			if errors.As(r.err, &ne) && ne.Timeout() {
				t.Errorf("%s connection still open 20s after it started (max-conn-lifetime 1s)", r.kind)
			} else if r.life < 800*time.Millisecond && r.life > 0 {
				t.Errorf("%s connection closed after %v, before its 1s lifetime", r.kind, r.life)
			}
		}
		if v := metric(t, "http://"+st, "ghostunnel_conn_timeout_total"); v < 1 {
			t.Errorf("ghostunnel_conn_timeout_total = %v after lifetime closes", v)
		}
		pr.mustBeAlive(t)
	})
}

// TestHardeningCrossTunnelIsolation: a flood on one tunnel, a dead backend
// on another and a broken certificate reload on a third leave a fourth
// tunnel's throughput and every other tunnel's health unchanged.
func TestHardeningCrossTunnelIsolation(t *testing.T) {
	n, phase := scale(300, 2000), scale(1500*time.Millisecond, 10*time.Second)
	needFDs(t, n)
	p := newE2EPKI(t)
	vBack, fBack, bBack := echoServer(t), echoServer(t), echoServer(t)
	dBack := newFlappyBackend(t)
	victim, flooded, downed, broken, st := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	brokenKS := filepath.Join(p.dir, "broken.pem")
	copyTo(t, p.server.Combined, brokenKS)
	cfg := writeFile(t, filepath.Join(p.dir, "iso.yaml"), fleetYAML(
		[]string{"status: http://" + st, "enable-pprof: true", "quiet: [conns]"},
		p.serverTunnelYAML("victim", victim, vBack),
		p.serverTunnelYAML("flooded", flooded, fBack, "connect-timeout: 1s"),
		p.serverTunnelYAML("downed", downed, dBack.addr, "connect-timeout: 2s"),
		[]string{"name: broken", "mode: server", "listen: " + broken, "target: " + bBack,
			"keystore: " + brokenKS, "cacert: " + p.ca.CAFile, "allow-cn: [client]"},
	), 0o600)
	pr := startProc(t, nil, "-config", cfg)
	for _, a := range []string{victim, flooded, downed, broken} {
		waitListening(t, a)
	}
	base := "http://" + st
	waitStatus(t, base, "/_status", 200, 15*time.Second)
	clientHelloBytes(t) // captured here: the flood runs off the test goroutine

	throughput := func(seed uint64) float64 {
		c, err := dialTLS(victim, p.clientTLS(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(phase + 60*time.Second))
		stop := make(chan struct{})
		start := time.Now()
		s := startStream(c, seed, 32<<10, 0, 0, stop)
		time.Sleep(phase)
		close(stop)
		if err := s.wait(60 * time.Second); err != nil {
			t.Fatalf("victim stream: %v", err)
		}
		return float64(s.recv.Load()) / time.Since(start).Seconds() / (1 << 20)
	}
	before := throughput(1)

	// Trouble on three tunnels at once.
	dBack.down()
	os.WriteFile(brokenKS, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"), 0o600)
	reloadsBefore := pr.count("reload failed")
	pr.signal(syscall.SIGHUP)
	pr.waitCount("reload failed", reloadsBefore+1, 10*time.Second)
	stopFlood := make(chan struct{})
	var floodWG sync.WaitGroup
	floodWG.Add(1)
	var waves atomic.Int64
	go func() {
		defer floodWG.Done()
		for {
			fl := startFlood(t, flooded, n, 20*time.Second)
			waves.Add(1)
			select {
			case <-stopFlood:
				fl.close()
				fl.wait()
				return
			case <-time.After(1200 * time.Millisecond):
			}
			fl.close()
			fl.wait()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	during := throughput(2)
	// Health. A first 503 for a healthy tunnel is retried: the check's
	// timeout is the fleet's smallest connect timeout (1s), which a loaded
	// machine can exceed for reasons unrelated to isolation.
	var codes []string
	for _, name := range []string{"victim", "flooded", "broken", "downed"} {
		want := 200
		if name == "downed" {
			want = 503
		}
		waitStatus(t, base, "/_status/"+name, want, 20*time.Second)
		codes = append(codes, fmt.Sprintf("%s=%d", name, want))
	}
	if _, err := tlsEcho(victim, p.clientTLS(), "new handshake"); err != nil {
		t.Errorf("victim refused a new client during the trouble: %v", err)
	}
	if _, err := tlsEcho(broken, p.clientTLS(), "old certificate"); err != nil {
		t.Errorf("broken tunnel stopped serving on its old certificate: %v", err)
	}
	close(stopFlood)
	floodWG.Wait()
	_, body := get(t, base, "/_status")
	t.Logf("victim throughput %.1f MiB/s before, %.1f MiB/s during (%.0f%%) a %d-connection flood (%d waves) on 'flooded', a dead backend on 'downed' and a broken reload on 'broken'; health %v",
		before, during, 100*during/before, n, waves.Load(), codes)
	if !strings.Contains(body, "last_reload_error") {
		t.Errorf("/_status does not report the broken reload: %s", body)
	}
	pr.mustBeAlive(t)
}

// ---------------------------------------------------------------------------
// Hostile input

// TestHardeningHostileInput: garbage, plaintext HTTP, truncated records and
// bad client certificates are each refused with a log line and counted in
// accept_error_total; none reaches the backend.
func TestHardeningHostileInput(t *testing.T) {
	p := newE2EPKI(t)
	other := testpki.NewCA(t.TempDir(), "other")
	now := time.Now()
	expired := p.ca.Issue("expired", testpki.Options{CN: "client", Client: true, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	future := p.ca.Issue("future", testpki.Options{CN: "client", Client: true, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	stranger := other.Issue("stranger", testpki.Options{CN: "stranger", Client: true})
	impostor := other.Issue("impostor", testpki.Options{CN: "client", Client: true})
	be := newFlappyBackend(t)
	addr, st := freeAddr(t), freeAddr(t)
	pr := startProc(t, nil, "server", "--listen", addr, "--target", be.addr,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
		"--status", "http://"+st)
	waitListening(t, addr)
	base := "http://" + st
	if strings.Contains(pr.out.String(), "readable by group or others") {
		t.Error("key permission warning for a 0600 keystore")
	}
	hello := clientHelloBytes(t)
	raw := func(b []byte) func() {
		return func() {
			if err := testnet.Send(addr, b, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	attempt := func(l *testpki.Leaf) func() {
		return func() {
			c, err := dialTLS(addr, withCert(p.clientTLS(), l), 10*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			if err := roundTripErr(c, "must not pass"); err == nil {
				t.Fatal("refused client got data through")
			}
		}
	}
	cases := []struct {
		name, want string
		do         func()
	}{
		{"garbage", "first record does not look like a TLS handshake", raw([]byte("\x00\x01\x02\x03 definitely not TLS \xff\xfe\xfd"))},
		{"plaintext HTTP", "first record does not look like a TLS handshake", raw([]byte("GET /_status HTTP/1.1\r\nHost: localhost\r\n\r\n"))},
		{"truncated record", "EOF", raw(hello[:len(hello)/2])},
		{"oversized record", "oversized record", raw([]byte{22, 3, 1, 0xff, 0xff, 1})},
		{"expired certificate", "expired or is not yet valid", attempt(expired)},
		{"not yet valid certificate", "expired or is not yet valid", attempt(future)},
		{"certificate from another CA", "unknown authority", attempt(stranger)},
		{"allowed CN from an untrusted issuer", "unknown authority", attempt(impostor)},
	}
	errs0 := metric(t, base, "ghostunnel_accept_error_total")
	for _, tc := range cases {
		n := pr.count("error on TLS handshake")
		tc.do()
		pr.waitCount("error on TLS handshake", n+1, 10*time.Second)
		line := lastLine(pr.out.String(), "error on TLS handshake")
		if !strings.Contains(line, tc.want) {
			t.Errorf("%s: log line lacks %q: %s", tc.name, tc.want, line)
		}
		t.Logf("%s: %s", tc.name, line[strings.Index(line, "msg="):])
	}
	errs := metric(t, base, "ghostunnel_accept_error_total") - errs0
	t.Logf("%d hostile inputs: accept_error_total +%v, backend accepted %d", len(cases), errs, be.accepted.Load())
	if errs < float64(len(cases)) {
		t.Errorf("accept_error_total rose by %v for %d refused clients", errs, len(cases))
	}
	if n := be.accepted.Load(); n != 0 {
		t.Fatalf("%d hostile connections reached the backend", n)
	}
	if _, err := tlsEcho(addr, p.clientTLS(), "good"); err != nil {
		t.Fatal(err)
	}
	pr.mustBeAlive(t)
}

// TestHardeningResumedSessionCARotation resumes a TLS session after the CA
// bundle was replaced (and SIGHUP reloaded it) by one that no longer trusts
// the client's issuer: the resumption must be refused.
func TestHardeningResumedSessionCARotation(t *testing.T) {
	p := newE2EPKI(t)
	other := testpki.NewCA(t.TempDir(), "other")
	backend := echoServer(t)
	addr := freeAddr(t)
	caPath := filepath.Join(p.dir, "live-ca.pem")
	copyTo(t, p.ca.CAFile, caPath)
	pr := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", caPath, "--allow-cn", "client")
	waitListening(t, addr)
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(ver), func(t *testing.T) {
			reload := func() {
				n := pr.count("reloaded credentials")
				pr.signal(syscall.SIGHUP)
				pr.waitCount("reloaded credentials", n+1, 10*time.Second)
			}
			copyTo(t, p.ca.CAFile, caPath)
			reload()
			cc := withCert(p.clientTLS(), p.client)
			cc.MaxVersion = ver
			cc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			if _, err := tlsEcho(addr, cc, "first"); err != nil {
				t.Fatal(err)
			}
			c, err := dialTLS(addr, cc, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := roundTripErr(c, "resumed"); err != nil {
				t.Fatal(err)
			}
			if !c.ConnectionState().DidResume {
				t.Fatal("session not resumed: the test proves nothing")
			}
			c.Close()
			writeFile(t, caPath, string(other.CertPEM), 0o644)
			reload()
			n := pr.count("error on TLS handshake")
			if _, err := tlsEcho(addr, cc, "after rotation"); err == nil {
				t.Fatal("resumed session admitted after its issuer left the CA bundle")
			}
			pr.waitCount("error on TLS handshake", n+1, 10*time.Second)
			t.Logf("refused: %s", lastLine(pr.out.String(), "error on TLS handshake"))
		})
	}
}

// TestHardeningStatusPort: oversized headers refused, slow headers timed
// out, pprof and /_shutdown 404 unless enabled.
func TestHardeningStatusPort(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	addr, st := freeAddr(t), freeAddr(t)
	base := "http://" + st
	pr := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client", "--status", base)
	waitListening(t, st)

	// Slowloris: headers one line a second. ReadHeaderTimeout is 10s; the
	// wait runs alongside the other checks. Soak only unless asked for.
	slow := make(chan string, 1)
	if soakMode() || os.Getenv("GHOSTUNNEL_SLOW_STATUS") == "1" {
		go func() {
			c, err := net.DialTimeout("tcp", st, 5*time.Second)
			if err != nil {
				slow <- err.Error()
				return
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, "GET /_status HTTP/1.1\r\nHost: x\r\n")
			go func() {
				for i := 0; i < 30; i++ {
					time.Sleep(time.Second)
					if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", i); err != nil {
						return
					}
				}
			}()
			c.SetReadDeadline(start.Add(25 * time.Second))
			b, err := io.ReadAll(c)
			slow <- fmt.Sprintf("closed after %v (%v), answer %.40q", time.Since(start).Round(time.Millisecond), err, b)
		}()
	} else {
		slow <- ""
	}

	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/_shutdown"} {
		if code, _ := get(t, base, path); code != 404 {
			t.Errorf("GET %s without --enable-pprof/--enable-shutdown: %d, want 404", path, code)
		}
	}
	if resp, err := statusHTTP.Post(base+"/_shutdown", "text/plain", nil); err != nil || resp.StatusCode != 404 {
		t.Errorf("POST /_shutdown without --enable-shutdown: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	header := func(size int) (int, error) {
		req, _ := http.NewRequest("GET", base+"/_metrics", nil)
		req.Header.Set("X-Big", strings.Repeat("a", size))
		resp, err := statusHTTP.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := header(60 << 10); code != 200 {
		t.Errorf("60 KiB of headers: %d %v, want 200", code, err)
	}
	for _, size := range []int{100 << 10, 1 << 20} {
		code, err := header(size)
		t.Logf("%d KiB header: %d %v", size>>10, code, err)
		if code != http.StatusRequestHeaderFieldsTooLarge && err == nil {
			t.Errorf("%d KiB header: %d, want 431", size>>10, code)
		}
	}
	if r := <-slow; r != "" {
		t.Logf("slow headers: %s", r)
		if !strings.HasPrefix(r, "closed after") || strings.Contains(r, "timeout") {
			t.Errorf("slow headers not cut off: %s", r)
		}
	}
	pr.mustBeAlive(t)
	pr.signal(syscall.SIGTERM)
	pr.wait(15 * time.Second)

	// Enabled: pprof answers, /_shutdown wants POST and drains.
	st2 := freeAddr(t)
	base2 := "http://" + st2
	addr2 := freeAddr(t)
	pr2 := startProc(t, nil, "server", "--listen", addr2, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-cn", "client",
		"--status", base2, "--enable-pprof", "--enable-shutdown")
	waitListening(t, st2)
	goroutines(t, base2)
	if code, _ := get(t, base2, "/_shutdown"); code != 405 {
		t.Errorf("GET /_shutdown: %d, want 405", code)
	}
	resp, err := statusHTTP.Post(base2+"/_shutdown", "text/plain", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /_shutdown: %v %v", resp, err)
	}
	resp.Body.Close()
	if code := pr2.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after POST /_shutdown", code)
	}
}

// TestHardeningSecurityDefaults: TLS 1.0/1.1 and weak suites refused,
// world-readable keys warned about, unsafe targets and listeners refused in
// the fleet file as on the command line.
func TestHardeningSecurityDefaults(t *testing.T) {
	p := newE2EPKI(t)
	o := testpki.Localhost()
	o.Server, o.KeyType = true, testpki.RSA
	rsa := p.ca.Issue("server-rsa", o)
	keyPath := filepath.Join(p.dir, "loose.key")
	writeFile(t, keyPath, string(rsa.KeyPEM), 0o644)
	os.Chmod(keyPath, 0o644)
	backend := echoServer(t)
	addr := freeAddr(t)
	pr := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--cert", rsa.CertFile, "--key", keyPath, "--cacert", p.ca.CAFile, "--allow-cn", "client")
	waitListening(t, addr)
	pr.waitLog("readable by group or others", 5*time.Second)
	t.Logf("warning: %s", lastLine(pr.out.String(), "readable by group or others"))

	try := func(minV, maxV uint16, suites ...uint16) error {
		cfg := p.clientTLS()
		cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = minV, maxV, suites
		_, err := tlsEcho(addr, cfg, "x")
		return err
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if err := try(v, v); err == nil {
			t.Errorf("%s accepted", tls.VersionName(v))
		}
	}
	weak := []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_RC4_128_SHA}
	for _, s := range weak {
		if err := try(tls.VersionTLS12, tls.VersionTLS12, s); err == nil {
			t.Errorf("weak suite %s accepted", tls.CipherSuiteName(s))
		}
	}
	for _, s := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256} {
		if err := try(tls.VersionTLS12, tls.VersionTLS12, s); err != nil {
			t.Errorf("TLS 1.2 with %s refused: %v", tls.CipherSuiteName(s), err)
		}
	}
	if err := try(tls.VersionTLS13, tls.VersionTLS13); err != nil {
		t.Errorf("TLS 1.3 refused: %v", err)
	}
	t.Logf("refused TLS 1.0, TLS 1.1 and %d weak TLS 1.2 suites; last refusal: %s", len(weak), lastLine(pr.out.String(), "error on TLS handshake"))
	if strings.Count(pr.out.String(), "no cipher suite supported") < len(weak) {
		t.Errorf("weak suites refused without a clear log line")
	}

	// The locality rules hold in the fleet file as on the command line.
	for _, tc := range []struct {
		name, want string
		tunnel     []string
	}{
		{"remote target", "unsafe-target", p.serverTunnelYAML("t", freeAddr(t), "192.0.2.1:80")},
		{"public listen", "unsafe-listen", []string{"name: c", "mode: client", "listen: 0.0.0.0:" + strings.Split(freeAddr(t), ":")[1],
			"target: localhost:1", "keystore: " + p.client.Combined, "cacert: " + p.ca.CAFile}},
	} {
		cfg := writeFile(t, filepath.Join(p.dir, "unsafe.yaml"), fleetYAML(nil, tc.tunnel), 0o600)
		for _, args := range [][]string{{"-config", cfg}, {"validate", "-config", cfg}} {
			r := startProc(t, nil, args...)
			if code := r.wait(15 * time.Second); code == 0 {
				t.Errorf("%s: %v exited 0", tc.name, args)
			}
			if !strings.Contains(r.out.String(), tc.want) {
				t.Errorf("%s: %v does not mention %s:\n%s", tc.name, args, tc.want, r.out.String())
			}
		}
	}
}

// TestHardeningSecretsNeverPrinted: a PKCS#12 password never appears in
// logs, /_status, /_metrics, pprof's command line, error messages or
// `validate` output, right or wrong, on the command line, in the
// environment or in the fleet file.
func TestHardeningSecretsNeverPrinted(t *testing.T) {
	p := newE2EPKI(t)
	secret := fmt.Sprintf("SECRET-xyz-%08x", rand.Uint32())
	wrong := fmt.Sprintf("SECRET-wrong-%08x", rand.Uint32())
	p12 := p.server.WritePKCS12(filepath.Join(p.dir, "server.p12"), secret)
	backend := echoServer(t)
	var checked []string
	noSecret := func(where, text string) {
		t.Helper()
		checked = append(checked, where)
		for _, s := range []string{secret, wrong} {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the password:\n%s", where, text)
			}
		}
	}

	// Right password, on the command line and in the environment: serve,
	// then look everywhere.
	for _, how := range []string{"flag", "env"} {
		addr, st := freeAddr(t), freeAddr(t)
		base := "http://" + st
		args := []string{"server", "--listen", addr, "--target", backend, "--keystore", p12,
			"--cacert", p.ca.CAFile, "--allow-cn", "client", "--status", base, "--enable-pprof"}
		var env []string
		if how == "flag" {
			args = append(args, "--storepass", secret)
		} else {
			env = []string{"KEYSTORE_PASS=" + secret}
		}
		pr := startProc(t, env, args...)
		waitListening(t, addr)
		if _, err := tlsEcho(addr, p.clientTLS(), "x"); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/_status", "/_status/server", "/_metrics", "/_metrics/prometheus", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=2"} {
			_, body := get(t, base, path)
			noSecret(how+" "+path, body)
		}
		pr.signal(syscall.SIGHUP)
		pr.waitLog("reloaded credentials", 10*time.Second)
		pr.signal(syscall.SIGTERM)
		pr.wait(15 * time.Second)
		noSecret(how+" logs", pr.out.String())
	}

	// Wrong password: a startup error that does not echo it.
	for _, how := range []string{"flag", "env"} {
		args := []string{"server", "--listen", freeAddr(t), "--target", backend, "--keystore", p12,
			"--cacert", p.ca.CAFile, "--allow-cn", "client"}
		var env []string
		if how == "flag" {
			args = append(args, "--storepass", wrong)
		} else {
			env = []string{"KEYSTORE_PASS=" + wrong}
		}
		pr := startProc(t, env, args...)
		if code := pr.wait(15 * time.Second); code == 0 {
			t.Fatalf("wrong password (%s) accepted", how)
		}
		noSecret("wrong password ("+how+") error", pr.out.String())
		t.Logf("wrong password (%s): %s", how, strings.TrimSpace(lastLine(pr.out.String(), "error")))
	}
	// A flag error next to the password does not echo it either.
	pr := startProc(t, nil, "server", "--listen", freeAddr(t), "--target", backend, "--keystore", p12,
		"--storepass", secret, "--connect-timeout", "soon", "--allow-all")
	pr.wait(15 * time.Second)
	noSecret("flag error", pr.out.String())
	pr = startProc(t, nil, "config", "from-flags", "server", "--listen", freeAddr(t), "--target", backend,
		"--keystore", p12, "--storepass", secret, "--cacert", p.ca.CAFile, "--allow-all")
	pr.wait(15 * time.Second)
	noSecret("config from-flags", pr.out.String())

	// The fleet file, literal and through ${VAR}: validate and run, right
	// and wrong.
	for _, tc := range []struct {
		name, pass string
		env        []string
		ok         bool
	}{
		{"literal", secret, nil, true},
		{"literal wrong", wrong, nil, false},
		{"from env", "${P12_PASS}", []string{"P12_PASS=" + secret}, true},
		{"from env wrong", "${P12_PASS}", []string{"P12_PASS=" + wrong}, false},
	} {
		addr := freeAddr(t)
		cfg := writeFile(t, filepath.Join(p.dir, "secret.yaml"), fleetYAML(nil,
			[]string{"name: p12", "mode: server", "listen: " + addr, "target: " + backend,
				"keystore: " + p12, "storepass: " + strconv.Quote(tc.pass), "cacert: " + p.ca.CAFile, "allow-cn: [client]"}), 0o600)
		v := startProc(t, tc.env, "validate", "-config", cfg)
		code := v.wait(15 * time.Second)
		if (code == 0) != tc.ok {
			t.Errorf("validate %s: exit %d\n%s", tc.name, code, v.out.String())
		}
		noSecret("validate "+tc.name, v.out.String())
		r := startProc(t, tc.env, "-config", cfg)
		if tc.ok {
			waitListening(t, addr)
			r.signal(syscall.SIGTERM)
		}
		r.wait(15 * time.Second)
		noSecret("run "+tc.name, r.out.String())
	}
	t.Logf("password absent from %d outputs: %s", len(checked), strings.Join(checked, ", "))
}

// ---------------------------------------------------------------------------

// TestHardeningEnvironment logs the limits the flood and churn figures
// depend on.
func TestHardeningEnvironment(t *testing.T) {
	var r syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	tw, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_tw_reuse")
	t.Logf("soak=%v RLIMIT_NOFILE soft %d hard %d; local ports %s; tcp_tw_reuse %s", soakMode(), r.Cur, r.Max,
		strings.TrimSpace(string(b)), strings.TrimSpace(string(tw)))
}

// TestHardeningFingerprintNoPasswordOracle: GET /_config/fingerprint, which
// the status port serves without authentication, must not carry a plain
// digest of the keystore password: an unsalted hash of a password is an
// offline guessing oracle for anyone who can reach the port.
func TestHardeningFingerprintNoPasswordOracle(t *testing.T) {
	p := newE2EPKI(t)
	secret := fmt.Sprintf("SECRET-xyz-%08x", rand.Uint32())
	p12 := p.server.WritePKCS12(filepath.Join(p.dir, "server.p12"), secret)
	addr, st := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, filepath.Join(p.dir, "fp.yaml"), fleetYAML([]string{"status: http://" + st},
		[]string{"name: p12", "mode: server", "listen: " + addr, "target: " + echoServer(t),
			"keystore: " + p12, "storepass: ${P12_PASS}", "cacert: " + p.ca.CAFile, "allow-cn: [client]"}), 0o600)
	startProc(t, []string{"P12_PASS=" + secret}, "-config", cfg)
	waitListening(t, st)
	code, body := get(t, "http://"+st, "/_config/fingerprint")
	if code == 404 {
		t.Skip("no /_config/fingerprint endpoint")
	}
	var guesses []string
	for _, form := range []string{"%#v", "%v", "%q", "%s"} {
		sum := sha256.Sum256(fmt.Appendf(nil, form, secret))
		guesses = append(guesses, hex.EncodeToString(sum[:8]))
	}
	if strings.Contains(body, secret) {
		t.Fatalf("/_config/fingerprint shows the password: %s", body)
	}
	for _, g := range guesses {
		if strings.Contains(body, g) {
			t.Fatalf("/_config/fingerprint publishes %s, an unsalted SHA-256 of the keystore password: anyone reaching the status port could test password guesses offline", g)
		}
	}
	t.Logf("fingerprint carries no password digest (%d bytes checked)", len(body))
}
