package statusd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// fakeTunnel is a Tunnel whose status, certificate and backend health the
// test controls.
type fakeTunnel struct {
	name, mode string

	mu       sync.Mutex
	status   TunnelStatus
	checkErr error
	delay    time.Duration // CheckBackend sleeps this long (or until ctx)

	cert   atomic.Pointer[tls.Certificate]
	checks atomic.Int64 // CheckBackend calls
}

func newFakeTunnel(name, mode string, cert *tls.Certificate) *fakeTunnel {
	t := &fakeTunnel{name: name, mode: mode, status: TunnelStatus{
		State:  StateListening,
		Listen: "127.0.0.1:8443",
		Target: "127.0.0.1:8080",
	}}
	t.cert.Store(cert)
	return t
}

func (t *fakeTunnel) Name() string                  { return t.name }
func (t *fakeTunnel) Mode() string                  { return t.mode }
func (t *fakeTunnel) Certificate() *tls.Certificate { return t.cert.Load() }

func (t *fakeTunnel) Snapshot() TunnelStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

func (t *fakeTunnel) CheckBackend(ctx context.Context) error {
	t.checks.Add(1)
	t.mu.Lock()
	err, delay := t.checkErr, t.delay
	t.mu.Unlock()
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (t *fakeTunnel) setCheck(err error, delay time.Duration) {
	t.mu.Lock()
	t.checkErr, t.delay = err, delay
	t.mu.Unlock()
}

func (t *fakeTunnel) setState(state string) {
	t.mu.Lock()
	t.status.State = state
	t.mu.Unlock()
}

// fakeSource is a Source with a replaceable, copy-on-write tunnel set.
type fakeSource struct {
	mu      sync.Mutex
	tunnels []Tunnel
}

func newFakeSource(ts ...*fakeTunnel) *fakeSource {
	s := &fakeSource{}
	s.set(ts...)
	return s
}

func (s *fakeSource) Tunnels() []Tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tunnels
}

func (s *fakeSource) set(ts ...*fakeTunnel) {
	list := make([]Tunnel, len(ts))
	for i, t := range ts {
		list[i] = t
	}
	s.mu.Lock()
	s.tunnels = list
	s.mu.Unlock()
}

// fleet is a three-tunnel test fleet with certificates from a test CA.
type fleet struct {
	ca                 *testpki.CA
	alpha, beta, gamma *fakeTunnel
	leaves             map[string]*testpki.Leaf
	source             *fakeSource
	registry           *prometheus.Registry
	lifetime           map[string]prometheus.Histogram
}

// newFleet makes tunnels alpha (DNS alpha.example.com, localhost and
// 127.0.0.1), beta (DNS *.beta.example.com) and gamma (DNS
// gamma.example.org), and a registry with their metrics.
func newFleet(t testing.TB) *fleet {
	t.Helper()
	dir := t.TempDir()
	f := &fleet{ca: testpki.NewCA(dir, "ca"), leaves: map[string]*testpki.Leaf{}}
	alphaOpts := testpki.Localhost()
	alphaOpts.CN = "alpha"
	alphaOpts.DNS = append(alphaOpts.DNS, "alpha.example.com")
	alphaOpts.Server = true
	f.alpha = f.tunnel("alpha", "server", alphaOpts)
	f.beta = f.tunnel("beta", "server", testpki.Options{DNS: []string{"*.beta.example.com"}, Server: true})
	f.gamma = f.tunnel("gamma", "client", testpki.Options{DNS: []string{"gamma.example.org"}, Server: true})
	f.source = newFakeSource(f.alpha, f.beta, f.gamma)

	f.registry = prometheus.NewRegistry()
	f.registry.MustRegister(collectors.NewGoCollector())
	f.lifetime = map[string]prometheus.Histogram{}
	for _, ft := range []*fakeTunnel{f.alpha, f.beta, f.gamma} {
		f.registerMetrics(ft)
	}
	return f
}

func (f *fleet) tunnel(name, mode string, o testpki.Options) *fakeTunnel {
	leaf := f.ca.Issue(name, o)
	f.leaves[name] = leaf
	c := leaf.TLS()
	return newFakeTunnel(name, mode, &c)
}

// registerMetrics registers one tunnel's metrics the way tunnels do: same
// family names, distinguished by constant tunnel and mode labels.
func (f *fleet) registerMetrics(ft *fakeTunnel) {
	r := prometheus.WrapRegistererWith(prometheus.Labels{"tunnel": ft.name, "mode": ft.mode}, f.registry)
	counter := func(name string, v float64) {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
		c.Add(v)
		r.MustRegister(c)
	}
	counter("ghostunnel_accept_total", 10)
	counter("ghostunnel_accept_success_total", 7)
	counter("ghostunnel_accept_error_total", 2)
	counter("ghostunnel_accept_timeout_total", 1)
	counter("ghostunnel_conn_timeout_total", 3)
	open := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ghostunnel_conn_open", Help: "open"})
	open.Set(4)
	r.MustRegister(open)
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ghostunnel_bytes_total", Help: "bytes"}, []string{"direction"})
	bytes.WithLabelValues("in").Add(100)
	bytes.WithLabelValues("out").Add(200)
	r.MustRegister(bytes)
	buckets := []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.1, 1}
	lifetime := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ghostunnel_conn_lifetime_seconds", Help: "lifetime", Buckets: buckets})
	handshake := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ghostunnel_conn_handshake_seconds", Help: "handshake", Buckets: buckets})
	r.MustRegister(lifetime, handshake)
	f.lifetime[ft.name] = lifetime
}

// verifyChain checks a presented chain against the CA, without a host name.
func verifyChain(pool *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			inter.AddCert(c)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
		return err
	}
}

// presented dials addr with the given SNI and returns the leaf certificate
// the server presented.
func presented(t *testing.T, addr, sni string, pool *x509.CertPool) *x509.Certificate {
	t.Helper()
	d := &tls.Dialer{Config: &tls.Config{
		ServerName:            sni,
		InsecureSkipVerify:    true, // verified below without a host name
		VerifyPeerCertificate: verifyChain(pool),
		MinVersion:            tls.VersionTLS12,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("tls dial %s (sni %q): %v", addr, sni, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// testLogger logs to the test.
func testLogger(t testing.TB) log.Logger {
	return log.LoggerFunc(func(kv ...any) error {
		t.Helper()
		t.Log(kv...)
		return nil
	})
}

// serve starts a server for cfg and stops it when the test ends.
func serve(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// endpoint is a way to reach a server: a base URL and a client.
type endpoint struct {
	name   string
	base   string
	client *http.Client
}

func httpsEndpoint(t testing.TB, s *Server, pool *x509.CertPool) endpoint {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return endpoint{"https", "https://" + s.Addr().String(), &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func httpEndpoint(t testing.TB, s *Server) endpoint {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return endpoint{"http", "http://" + s.Addr().String(), &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func unixEndpoint(t testing.TB, path string) endpoint {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return endpoint{"unix", "http://status.sock", &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do fetches path with method and returns status, content type and body.
func (e endpoint) do(t testing.TB, method, path string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", e.name, method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s %s: reading body: %v", e.name, method, path, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func (e endpoint) get(t testing.TB, path string) (int, string, []byte) {
	t.Helper()
	return e.do(t, http.MethodGet, path)
}

// shortSocketPath returns a unix socket path in a temp dir, short enough
// for sun_path.
func shortSocketPath(t testing.TB) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.sock")
	if len(p) < 100 {
		return p
	}
	d, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "s.sock")
}
