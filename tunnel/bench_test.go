package tunnel

// Benchmarks of the hot path over real loopback sockets. Every workload runs
// side by side on three systems, so one run prints comparable figures:
//
//	direct  load generator -> backend (the loopback limit)
//	gotls   load generator -> minimal crypto/tls client proxy -(mTLS)->
//	        minimal server proxy -> backend: io.Copy and nothing else, the
//	        stand-in for upstream Ghostunnel that tunnelbench's gotls is
//	tunnel  load generator -> client Tunnel -(mTLS)-> server Tunnel ->
//	        backend, with a logfmt logger writing to a file and labelled
//	        metrics on a registry, as the binary runs them
//
// All certificates are ECDSA P-256 from internal/testpki. The backend reads
// one mode byte first: 'E' echoes, 'S' sinks and counts. Run them with
//
//	go test -run '^$' -bench . -benchtime 1x ./tunnel/   # a quick look
//	go test -run '^$' -bench . ./tunnel/                 # real figures
//
// TestBenchSmoke runs every workload once, tiny, as a correctness test.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

const (
	modeEcho = 'E'
	modeSink = 'S'

	bulkChunk   = 1 << 20 // bytes one bulk iteration writes
	pingSize    = 64
	connectSize = 32
	idleConns   = 500 // connections one idle-memory iteration holds open
	// benchWait bounds every wait for bytes to arrive, so a broken path
	// fails the benchmark instead of hanging it.
	benchWait = 30 * time.Second
)

// --- servers ---

// connServer runs handle on every connection ln accepts until the test
// ends, then closes ln and every connection it still tracks, and waits for
// its goroutines.
type connServer struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func serveConns(tb testing.TB, ln net.Listener, handle func(s *connServer, c net.Conn)) *connServer {
	s := &connServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil { // EMFILE and the like: back off, the listener lives on
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !s.track(c) {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.forget(c)
				handle(s, c)
			}()
		}
	}()
	tb.Cleanup(s.close)
	return s
}

// track registers c to be closed at cleanup; false (and c closed) once the
// server is closing.
func (s *connServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connServer) forget(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *connServer) close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *connServer) addr() string { return s.ln.Addr().String() }

// benchBackend echoes or sinks, by the first byte of each connection.
type benchBackend struct {
	*connServer
	sunk atomic.Int64 // bytes sink connections received, mode bytes excluded
}

func newBenchBackend(tb testing.TB) *benchBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	bk := &benchBackend{}
	bk.connServer = serveConns(tb, ln, func(_ *connServer, c net.Conn) {
		defer c.Close()
		var mode [1]byte
		if _, err := io.ReadFull(c, mode[:]); err != nil {
			return
		}
		switch mode[0] {
		case modeEcho:
			// The same small buffer tunnelbench's backend uses; the idle
			// benchmark subtracts what direct connections cost.
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		case modeSink:
			buf := make([]byte, 256<<10)
			for {
				n, err := c.Read(buf)
				bk.sunk.Add(int64(n))
				if err != nil {
					return
				}
			}
		}
	})
	return bk
}

// --- the minimal crypto/tls pair (gotls) ---

// startGoTLS starts tunnelbench's "gotls" proxies in process: a TLS server
// proxy to backend and a plaintext client proxy to it, each connection
// copied with io.Copy both ways. resume gives the client proxy a session
// cache. It returns the client proxy's address.
func startGoTLS(tb testing.TB, p *pki, backend string, resume bool) string {
	tb.Helper()
	srvCfg := &tls.Config{Certificates: []tls.Certificate{p.server.TLS()}, ClientCAs: p.ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := serveConns(tb, sln, func(s *connServer, c net.Conn) {
		tc := tls.Server(c, srvCfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		tc.SetDeadline(time.Time{})
		bc, err := net.DialTimeout("tcp", backend, 10*time.Second)
		if err != nil {
			c.Close()
			return
		}
		if !s.track(bc) {
			c.Close()
			return
		}
		defer s.forget(bc)
		goTLSPipe(tc, bc)
	})

	cliCfg := &tls.Config{Certificates: []tls.Certificate{p.client.TLS()}, RootCAs: p.ca.Pool(),
		ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if resume {
		cliCfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cli := serveConns(tb, cln, func(s *connServer, c net.Conn) {
		d := &net.Dialer{Timeout: 10 * time.Second}
		bc, err := tls.DialWithDialer(d, "tcp", srv.addr(), cliCfg)
		if err != nil {
			c.Close()
			return
		}
		if !s.track(bc) {
			c.Close()
			return
		}
		defer s.forget(bc)
		goTLSPipe(c, bc)
	})
	return cli.addr()
}

// goTLSPipe is tunnelbench's pipe: io.Copy both ways, half-closes passed
// on, both closed when both directions are done.
func goTLSPipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		closeWrite(dst)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.SetDeadline(time.Now().Add(10 * time.Second))
	b.SetDeadline(time.Now().Add(10 * time.Second))
	<-done
	a.Close()
	b.Close()
}

// --- the tunnel pair ---

// benchDeps are what the supervisor gives a tunnel in the binary: a logfmt
// logger with a timestamp writing to a real file (one write per line, as to
// a log file or pipe), and a registry with the tunnel and mode labels.
func benchDeps(tb testing.TB, name, mode string, quiet bool) Deps {
	f, err := os.Create(filepath.Join(tb.TempDir(), name+".log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	root := log.With(log.NewLogfmtLogger(log.NewSyncWriter(f)), "ts", log.DefaultTimestampUTC, "pid", os.Getpid())
	fam, err := NewMetricFamilies(prometheus.NewRegistry(), "")
	if err != nil {
		tb.Fatal(err)
	}
	return Deps{
		Logger:  log.With(root, "tunnel", name),
		Metrics: fam.For(name, mode),
		Quiet:   Quiet{Conns: quiet},
	}
}

// pairOpts vary the tunnel pair.
type pairOpts struct {
	noResume bool // the client tunnel does a full handshake every time
	quiet    bool // no opening/closed pipe lines
	tls12    bool // the client tunnel's max-tls-version is TLS1.2
	// hybridResume makes resumption attempts with the full handshake's
	// hybrid key exchange, as before resume.go.
	hybridResume bool
}

// startTunnelPair starts a server tunnel to backend and a client tunnel to
// it, and returns the client tunnel's address.
func startTunnelPair(tb testing.TB, p *pki, backend string, o pairOpts) string {
	tb.Helper()
	srv := startWith(tb, p.serverTunnel(backend), benchDeps(tb, "server", configs.ModeServer, o.quiet))
	ccfg := p.clientTunnel(srv.Addr().String())
	if o.tls12 {
		ccfg.MaxTLSVersion = "TLS1.2"
	}
	cli := startWith(tb, ccfg, benchDeps(tb, "client", configs.ModeClient, o.quiet))
	if o.noResume {
		// A copy of the settings without the session cache: every dial of
		// the client tunnel is then a full handshake, as with gotls.
		g := *cli.gen.Load()
		full := g.client.full.Clone()
		full.ClientSessionCache = nil
		g.client = newClientConfigs(full)
		cli.gen.Store(&g)
	}
	if o.hybridResume {
		// Resumption attempts keep the full config's hybrid key exchange.
		g := *cli.gen.Load()
		g.client = &clientConfigs{full: g.client.full}
		cli.gen.Store(&g)
	}
	return cli.Addr().String()
}

// --- fixture ---

type benchSys struct{ name, addr string }

type benchEnv struct {
	backend *benchBackend
	systems []benchSys
}

// newBenchEnv starts the backend and the systems: direct, gotls, tunnel,
// plus with extra the variants the connection benchmark compares.
func newBenchEnv(tb testing.TB, extra bool) *benchEnv {
	tb.Helper()
	p := newPKI(tb)
	bk := newBenchBackend(tb)
	env := &benchEnv{backend: bk}
	add := func(name, addr string) { env.systems = append(env.systems, benchSys{name, addr}) }
	add("direct", bk.addr())
	add("gotls", startGoTLS(tb, p, bk.addr(), false))
	if extra {
		add("gotls-resumed", startGoTLS(tb, p, bk.addr(), true))
		add("tunnel-full", startTunnelPair(tb, p, bk.addr(), pairOpts{noResume: true}))
		add("tunnel-full-quiet", startTunnelPair(tb, p, bk.addr(), pairOpts{noResume: true, quiet: true}))
		add("tunnel-tls12", startTunnelPair(tb, p, bk.addr(), pairOpts{tls12: true}))
		add("tunnel-resume-hybrid", startTunnelPair(tb, p, bk.addr(), pairOpts{hybridResume: true}))
	}
	add("tunnel", startTunnelPair(tb, p, bk.addr(), pairOpts{}))
	return env
}

// --- workloads, shared by the benchmarks and TestBenchSmoke ---

func dialMode(addr string, mode byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func dialAll(addr string, n int, mode byte) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := dialMode(addr, mode)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// bulkSend writes chunks writes of chunk spread over the sink connections
// conns, and returns once the backend has received every byte.
func bulkSend(bk *benchBackend, conns []net.Conn, chunks int, chunk []byte) error {
	start, total := bk.sunk.Load(), int64(chunks)*int64(len(chunk))
	deadline := time.Now().Add(benchWait)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetWriteDeadline(deadline)
			for next.Add(1) <= int64(chunks) {
				if _, err := c.Write(chunk); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// The writes are done; wait for the tail still in the proxies.
	for bk.sunk.Load()-start < total {
		if time.Now().After(deadline) {
			return fmt.Errorf("sink got %d of %d bytes", bk.sunk.Load()-start, total)
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

// echoRoundTrip writes msg on c and reads it back into reply.
func echoRoundTrip(c net.Conn, msg, reply []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, reply); err != nil {
		return err
	}
	if !bytes.Equal(msg, reply) {
		return errors.New("echo mismatch")
	}
	return nil
}

// connectOnce is one new connection: dial, a 32-byte echo, close.
func connectOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var msg, reply [1 + connectSize]byte
	msg[0] = modeEcho
	for i := 1; i < len(msg); i++ {
		msg[i] = byte('a' + i%26)
	}
	if _, err := c.Write(msg[:]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, reply[1:]); err != nil {
		return err
	}
	if !bytes.Equal(msg[1:], reply[1:]) {
		return errors.New("echo mismatch")
	}
	return nil
}

// openIdle opens n echo connections through addr, each checked end to end
// with an 8-byte echo, with 16 dialers.
func openIdle(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, reply := []byte("idlechk!"), make([]byte, 8)
			for i := int(next.Add(1)) - 1; i < n && firstErr.Load() == nil; i = int(next.Add(1)) - 1 {
				c, err := dialMode(addr, modeEcho)
				if err == nil {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					err = echoRoundTrip(c, msg, reply)
					c.SetDeadline(time.Time{})
					conns[i] = c
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		closeAll(conns)
		return nil, *e
	}
	return conns, nil
}

// --- measurements ---

// memInUse is heap and stack in use after a full collection; two cycles
// also empty the sync.Pools, so pooled buffers of idle pipes do not count.
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// vmRSS is the process's resident set in bytes (0 when unknown).
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// cpuTime is the CPU time (user+system) the whole process has used: load
// generator, backend and proxies alike, so compare it with direct's.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)*p/100, len(sorted)-1)]
}

// --- benchmarks ---

// BenchmarkBulk streams into the sink over 1 and 8 connections. MB/s counts
// bytes as the backend received them; proc-cpu-s/GiB is the CPU of the
// whole test process (generator and sink included, see direct for those).
func BenchmarkBulk(b *testing.B) {
	env := newBenchEnv(b, false)
	chunk := make([]byte, bulkChunk)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for _, nconns := range []int{1, 8} {
		b.Run(fmt.Sprintf("%dconn", nconns), func(b *testing.B) {
			for _, sys := range env.systems {
				b.Run(sys.name, func(b *testing.B) {
					conns, err := dialAll(sys.addr, nconns, modeSink)
					if err != nil {
						b.Fatal(err)
					}
					defer closeAll(conns)
					b.SetBytes(bulkChunk)
					cpu0 := cpuTime()
					b.ResetTimer()
					if err := bulkSend(env.backend, conns, b.N, chunk); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					gib := float64(b.N) * bulkChunk / (1 << 30)
					b.ReportMetric((cpuTime()-cpu0).Seconds()/gib, "proc-cpu-s/GiB")
				})
			}
		})
	}
}

// BenchmarkPingPong does 64-byte echo round trips on one connection.
func BenchmarkPingPong(b *testing.B) {
	env := newBenchEnv(b, false)
	for _, sys := range env.systems {
		b.Run(sys.name, func(b *testing.B) {
			c, err := dialMode(sys.addr, modeEcho)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			msg, reply := make([]byte, pingSize), make([]byte, pingSize)
			for i := range msg {
				msg[i] = byte('0' + i%10)
			}
			for range 100 { // warm up the path and the buffers
				if err := echoRoundTrip(c, msg, reply); err != nil {
					b.Fatal(err)
				}
			}
			// Keep at most a million samples; the percentiles need no more.
			lat := make([]time.Duration, 0, min(b.N, 1<<20))
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := echoRoundTrip(c, msg, reply); err != nil {
					b.Fatal(err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(percentile(lat, 50))/1e3, "p50-µs")
			b.ReportMetric(float64(percentile(lat, 99))/1e3, "p99-µs")
		})
	}
}

// BenchmarkConnect opens new connections (dial, 32-byte echo, close) with
// 16 concurrent workers, as tunnelbench does. gotls and tunnel-full make a
// full handshake between the proxies every time; tunnel (and gotls-resumed)
// resume TLS sessions; tunnel-full-quiet leaves out the two log lines per
// connection, to show what they cost; tunnel-tls12 resumes TLS 1.2
// sessions (max-tls-version: TLS1.2), which need no key exchange, where a
// TLS 1.3 resumption still makes a full (EC)DHE and ML-KEM one.
func BenchmarkConnect(b *testing.B) {
	env := newBenchEnv(b, true)
	for _, sys := range env.systems {
		b.Run(sys.name, func(b *testing.B) {
			if err := connectOnce(sys.addr); err != nil { // fill session caches
				b.Fatal(err)
			}
			var failed atomic.Int64
			var firstErr atomic.Pointer[error]
			cpu0 := cpuTime()
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := connectOnce(sys.addr); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
				}
			})
			b.StopTimer()
			if e := firstErr.Load(); e != nil {
				b.Fatalf("%d of %d connections failed, first: %v", failed.Load(), b.N, *e)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "proc-cpu-µs/conn")
		})
	}
}

// BenchmarkIdle holds idleConns established, idle connections open through
// each system and reports the memory they cost: heap+stack in use (after a
// collection) and RSS, per connection. The test process holds both ends
// (generator and backend) as well as both proxies, so proxy-B/conn subtracts
// direct's figure from the others': the two proxies' share.
func BenchmarkIdle(b *testing.B) {
	env := newBenchEnv(b, false)
	var directHeap float64 = -1
	for _, sys := range env.systems {
		b.Run(sys.name, func(b *testing.B) {
			var heapSum, rssSum float64
			for range b.N {
				debug.FreeOSMemory()
				heap0, rss0 := memInUse(), vmRSS()
				conns, err := openIdle(sys.addr, idleConns)
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond) // let the proxies park
				heap1, rss1 := memInUse(), vmRSS()
				heapSum += (float64(heap1) - float64(heap0)) / idleConns
				rssSum += float64(rss1-rss0) / idleConns
				b.StopTimer()
				closeAll(conns)
				waitQuiet(env, 10*time.Second)
				b.StartTimer()
			}
			heap := heapSum / float64(b.N)
			b.ReportMetric(heap, "heap+stack-B/conn")
			b.ReportMetric(rssSum/float64(b.N), "rss-B/conn")
			if sys.name == "direct" {
				directHeap = heap
			} else if directHeap >= 0 {
				b.ReportMetric(heap-directHeap, "proxy-B/conn")
			}
		})
	}
}

// waitQuiet waits until the backend holds no connection, so one idle run's
// teardown does not count in the next one's memory.
func waitQuiet(env *benchEnv, d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		env.backend.mu.Lock()
		n := len(env.backend.conns)
		env.backend.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

// TestBenchSmoke runs every benchmark workload once, tiny, on every system,
// and checks only that bytes arrive and echoes match: never timing.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several tunnel pairs")
	}
	env := newBenchEnv(t, true)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for _, sys := range env.systems {
		t.Run(sys.name, func(t *testing.T) {
			for _, n := range []int{1, 8} {
				conns, err := dialAll(sys.addr, n, modeSink)
				if err != nil {
					t.Fatal(err)
				}
				err = bulkSend(env.backend, conns, 4*n, chunk)
				closeAll(conns)
				if err != nil {
					t.Fatalf("bulk over %d conns: %v", n, err)
				}
			}

			c, err := dialMode(sys.addr, modeEcho)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			reply := make([]byte, pingSize)
			for i := range 10 {
				msg := bytes.Repeat([]byte{byte('a' + i)}, pingSize)
				if err := echoRoundTrip(c, msg, reply); err != nil {
					t.Fatalf("ping-pong %d: %v", i, err)
				}
			}
			c.Close()

			for i := range 3 {
				if err := connectOnce(sys.addr); err != nil {
					t.Fatalf("connect %d: %v", i, err)
				}
			}

			conns, err := openIdle(sys.addr, 10)
			if err != nil {
				t.Fatalf("idle: %v", err)
			}
			closeAll(conns)
		})
	}
}

// TestRecordFraming checks the record tracker the TLS read-ahead relies on
// (sock.Read must stop at record ends, whatever the reads' boundaries), on
// its own and through a server tunnel fed by a client that writes its
// records in small, irregular pieces.
func TestRecordFraming(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t.Run("tracker", func(t *testing.T) {
		// A stream of records with their end offsets.
		var stream []byte
		var ends []int
		for range 200 {
			n := rng.IntN(300)
			if rng.IntN(10) == 0 {
				n = 0 // empty records end right after their header
			}
			stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
			stream = append(stream, make([]byte, n)...)
			ends = append(ends, len(stream))
		}
		var r records
		pos, next := 0, 0
		for pos < len(stream) {
			chunk := stream[pos:min(len(stream), pos+1+rng.IntN(700))]
			n := r.span(chunk)
			if n == 0 {
				t.Fatalf("span consumed nothing at %d", pos)
			}
			pos += n
			for next < len(ends) && ends[next] < pos {
				next++
			}
			if n < len(chunk) && ends[next] != pos {
				t.Fatalf("span stopped at %d, not at a record end", pos)
			}
			if next < len(ends) && ends[next] < pos {
				t.Fatalf("span ran past the record end %d to %d", ends[next], pos)
			}
		}
	})
	t.Run("choppy client", func(t *testing.T) {
		p := newPKI(t)
		backend := newEcho(t, "tcp", "127.0.0.1:0")
		srv := start(t, p.serverTunnel(backend.addr()))
		raw, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(&choppy{Conn: raw, rng: rand.New(rand.NewPCG(3, 4))}, p.clientTLS())
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		for i := range 30 {
			msg := make([]byte, 1+rng.IntN(40<<10))
			for j := range msg {
				msg[j] = byte(i + j)
			}
			if err := echoRoundTrip(c, msg, make([]byte, len(msg))); err != nil {
				t.Fatalf("message %d (%d bytes): %v", i, len(msg), err)
			}
		}
	})
}

// choppy writes in pieces of 1 to 600 bytes, pausing now and then, so the
// peer's reads end in the middle of record headers and bodies.
type choppy struct {
	net.Conn
	rng *rand.Rand
}

func (c *choppy) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k := min(len(b)-n, 1+c.rng.IntN(600))
		w, err := c.Conn.Write(b[n : n+k])
		n += w
		if err != nil {
			return n, err
		}
		if c.rng.IntN(8) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	return n, nil
}
