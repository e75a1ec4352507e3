package supervisor

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/statusd"
)

// pushInterval is short so that tests see several pushes quickly.
const pushInterval = 50 * time.Millisecond

// pushConfig is a config of server tunnels named names, each on a free
// port in front of backend b, pushing metrics every pushInterval.
func pushConfig(f *fixture, b *backend, names ...string) configs.Config {
	cfg := configs.DefaultConfig()
	cfg.MetricsInterval = configs.Duration(pushInterval)
	for _, name := range names {
		tn := configs.DefaultTunnelSettings()
		tn.Name, tn.Mode = name, configs.ModeServer
		tn.Listen, tn.Target = freePort(f.t), b.addr()
		tn.Cert, tn.Key, tn.CACert = f.server.CertFile, f.server.KeyFile, f.ca.CAFile
		tn.AllowAll = true
		cfg.Tunnels = append(cfg.Tunnels, tn)
	}
	if ps := configs.Validate(&cfg); ps.HasErrors() {
		f.t.Fatalf("invalid test config: %v", ps)
	}
	return cfg
}

// runConfig starts a supervisor for cfg, logging to logs. stop cancels it
// and reports how long Run took to return; it also runs at cleanup.
func runConfig(t *testing.T, cfg configs.Config, logs io.Writer) (s *Supervisor, stop func() time.Duration) {
	t.Helper()
	opts := Options{Logger: log.NewLogfmtLogger(logs)}
	s, err := New(&cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, opts) }()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("supervisor did not stop")
			}
			took = time.Since(start)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return s, stop
}

// graphiteConn is what one connection to the fake Graphite server carried.
type graphiteConn struct {
	remote string
	lines  []string
}

// fakeGraphite accepts connections on 127.0.0.1 and sends what each one
// carried, once its client closed it.
func fakeGraphite(t *testing.T) (addr string, conns <-chan graphiteConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan graphiteConn, 1000)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				gc := graphiteConn{remote: c.RemoteAddr().String()}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					gc.lines = append(gc.lines, sc.Text())
				}
				if sc.Err() != nil {
					return // not closed by the pusher
				}
				select {
				case ch <- gc:
				default:
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), ch
}

// graphiteValues checks that every line is "name value timestamp" with an
// integral value and a current timestamp, and returns the values by name.
func graphiteValues(t *testing.T, lines []string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64, len(lines))
	now := time.Now().Unix()
	for _, l := range lines {
		fields := strings.Split(l, " ")
		if len(fields) != 3 {
			t.Fatalf("line %q: want name value timestamp", l)
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			t.Fatalf("line %q: value is not an integer", l)
		}
		ts, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil || ts < now-60 || ts > now+5 {
			t.Fatalf("line %q: timestamp is not the current Unix time in seconds", l)
		}
		if _, dup := out[fields[0]]; dup {
			t.Fatalf("name %q sent twice in one push", fields[0])
		}
		out[fields[0]] = v
	}
	return out
}

// nextPush waits for a Graphite connection whose values satisfy ok.
func nextPush(t *testing.T, conns <-chan graphiteConn, ok func(map[string]int64) bool) (graphiteConn, map[string]int64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case gc := <-conns:
			if vals := graphiteValues(t, gc.lines); ok(vals) {
				return gc, vals
			}
		case <-deadline:
			t.Fatal("timed out waiting for a Graphite push")
		}
	}
}

func TestMetricsPushGraphiteFleet(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	addr, conns := fakeGraphite(t)
	cfg := pushConfig(f, b, "api", "web.v2")
	cfg.MetricsPrefix = "edge"
	cfg.MetricsGraphite = addr
	logs := &testnet.Buffer{}
	runConfig(t, cfg, logs)

	if err := echoTLS(cfg.Tunnels[0].Listen, f.clientTLS(nil)); err != nil {
		t.Fatal(err)
	}
	first, vals := nextPush(t, conns, func(v map[string]int64) bool { return v["edge.api.accept.total"] == 1 })
	if v, ok := vals["edge.web_v2.accept.total"]; !ok || v != 0 {
		t.Errorf("edge.web_v2.accept.total = %d (sent: %v), want 0", v, ok)
	}
	for _, tunnel := range []string{"api", "web_v2"} {
		for _, m := range []string{"accept.total", "accept.success", "accept.error", "accept.timeout", "conn.open", "conn.timeout",
			"conn.lifetime.count", "conn.lifetime.99-percentile", "conn.handshake.count", "conn.handshake.mean"} {
			if _, ok := vals["edge."+tunnel+"."+m]; !ok {
				t.Errorf("no edge.%s.%s in push:\n%s", tunnel, m, strings.Join(first.lines, "\n"))
			}
		}
	}
	for name := range vals {
		if !strings.HasPrefix(name, "edge.api.") && !strings.HasPrefix(name, "edge.web_v2.") {
			t.Errorf("name %q lacks the tunnel segment", name)
		}
	}
	if vals["edge.api.conn.handshake.count"] != 1 {
		t.Errorf("edge.api.conn.handshake.count = %d, want 1", vals["edge.api.conn.handshake.count"])
	}

	// Every push is a new connection.
	second, _ := nextPush(t, conns, func(map[string]int64) bool { return true })
	if second.remote == first.remote {
		t.Errorf("two pushes came over the same connection (%s)", first.remote)
	}
	if want := "metrics enabled; reporting metrics via TCP to " + addr; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, logs)
	}
}

func TestMetricsPushGraphiteSingleTunnel(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	addr, conns := fakeGraphite(t)
	// As the command line builds it: no file, one tunnel named after its mode.
	cfg := pushConfig(f, b, "server")
	cfg.MetricsGraphite = addr
	runConfig(t, cfg, io.Discard)

	if err := echoTLS(cfg.Tunnels[0].Listen, f.clientTLS(nil)); err != nil {
		t.Fatal(err)
	}
	gc, vals := nextPush(t, conns, func(v map[string]int64) bool { return v["ghostunnel.accept.total"] == 1 })
	want := []string{"ghostunnel.accept.total", "ghostunnel.accept.success", "ghostunnel.accept.error", "ghostunnel.accept.timeout",
		"ghostunnel.conn.open", "ghostunnel.conn.timeout"}
	for _, h := range []string{"conn.lifetime", "conn.handshake"} {
		for _, s := range []string{"count", "min", "max", "mean", "50-percentile", "75-percentile", "95-percentile", "99-percentile"} {
			want = append(want, "ghostunnel."+h+"."+s)
		}
	}
	for _, name := range want {
		if _, ok := vals[name]; !ok {
			t.Errorf("no %s in push:\n%s", name, strings.Join(gc.lines, "\n"))
		}
	}
	for name := range vals {
		if !strings.HasPrefix(name, "ghostunnel.") || strings.HasPrefix(name, "ghostunnel.server.") {
			t.Errorf("name %q: want upstream's ghostunnel.NAME, without the tunnel", name)
		}
	}
	if vals["ghostunnel.accept.success"] != 1 {
		t.Errorf("ghostunnel.accept.success = %d, want 1", vals["ghostunnel.accept.success"])
	}
}

// jsonMetric is an entry of the JSON metrics list.
type jsonMetric struct {
	Hostname  string          `json:"hostname"`
	Metric    string          `json:"metric"`
	Timestamp int64           `json:"timestamp"`
	Value     json.RawMessage `json:"value"`
	Tunnel    string          `json:"tunnel"`
}

// post is one request the fake metrics endpoint received.
type post struct {
	method, contentType string
	body                []byte
}

// fakeEndpoint records the requests of a metrics-url endpoint and answers
// with code.
func fakeEndpoint(code int) (http.Handler, <-chan post) {
	ch := make(chan post, 1000)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case ch <- post{r.Method, r.Header.Get("Content-Type"), body}:
		default:
		}
		w.WriteHeader(code)
	}), ch
}

func nextPost(t *testing.T, posts <-chan post) post {
	t.Helper()
	select {
	case p := <-posts:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a POST")
	}
	return post{}
}

// decodeList decodes a JSON metrics list, checking each entry's fields.
func decodeList(t *testing.T, body []byte) []jsonMetric {
	t.Helper()
	var list []jsonMetric
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("not a JSON list: %v\n%s", err, body)
	}
	var raw []map[string]json.RawMessage
	json.Unmarshal(body, &raw)
	for i, m := range list {
		if len(raw[i]) != 5 {
			t.Fatalf("entry %s: want hostname, metric, timestamp, value, tunnel", body)
		}
		if _, err := strconv.ParseInt(string(m.Value), 10, 64); err != nil {
			t.Fatalf("entry %+v: value %s is not an integer", m, m.Value)
		}
	}
	return list
}

// names lists tunnel/metric of each entry.
func names(list []jsonMetric) []string {
	var out []string
	for _, m := range list {
		out = append(out, m.Tunnel+"/"+m.Metric)
	}
	return out
}

func TestMetricsPushURL(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	h, posts := fakeEndpoint(http.StatusOK)
	srv := httptest.NewServer(h)
	defer srv.Close()
	cfg := pushConfig(f, b, "api", "db")
	cfg.MetricsURL = srv.URL + "/push"
	cfg.Status = "http://" + freePort(t)
	logs := &testnet.Buffer{}
	s, _ := runConfig(t, cfg, logs)

	if err := echoTLS(cfg.Tunnels[0].Listen, f.clientTLS(nil)); err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	var list []jsonMetric
	for n := 0; ; n++ {
		p := nextPost(t, posts)
		if p.method != http.MethodPost || p.contentType != "application/json" {
			t.Fatalf("got %s with Content-Type %q, want POST with application/json", p.method, p.contentType)
		}
		list = decodeList(t, p.body)
		if slices.ContainsFunc(list, func(m jsonMetric) bool {
			return m.Tunnel == "api" && m.Metric == "ghostunnel.accept.total" && string(m.Value) == "1"
		}) {
			break
		}
		if n > 100 {
			t.Fatalf("no push shows the connection:\n%s", p.body)
		}
	}
	for _, m := range list {
		if m.Hostname != hostname {
			t.Fatalf("hostname %q, want %q", m.Hostname, hostname)
		}
		if now := time.Now().Unix(); m.Timestamp < now-60 || m.Timestamp > now+5 {
			t.Fatalf("timestamp %d is not the current Unix time", m.Timestamp)
		}
	}

	// The body is the list GET /_metrics serves.
	resp, err := http.Get("http://" + s.StatusAddr() + "/_metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := names(list), names(decodeList(t, body)); !slices.Equal(got, want) {
		t.Errorf("pushed metrics differ from GET /_metrics:\n got %q\nwant %q", got, want)
	}
	for _, tunnel := range []string{"api", "db"} {
		if !slices.Contains(names(list), tunnel+"/ghostunnel.conn.handshake.99-percentile") {
			t.Errorf("no %s/ghostunnel.conn.handshake.99-percentile in %q", tunnel, names(list))
		}
	}
	nextPost(t, posts) // and again, every interval
	if want := "metrics enabled; reporting metrics via POST to " + cfg.MetricsURL; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, logs)
	}
	if strings.Contains(logs.String(), "error sending metrics") {
		t.Errorf("a push failed:\n%s", logs)
	}
}

// TestMetricsPushURLTLS: an https endpoint whose certificate the first
// tunnel's cacert verifies, at TLS 1.2 or later.
func TestMetricsPushURLTLS(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	h, posts := fakeEndpoint(http.StatusNoContent)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.server.TLS()}}
	srv.StartTLS()
	defer srv.Close()
	cfg := pushConfig(f, b, "api")
	cfg.Path = "/nonexistent/fleet.yaml" // a fleet file of one tunnel
	cfg.MetricsURL = "https://user:s3cret@localhost:" + strings.Split(srv.Listener.Addr().String(), ":")[1] + "/push"
	logs := &testnet.Buffer{}
	runConfig(t, cfg, logs)

	p := nextPost(t, posts)
	if list := decodeList(t, p.body); !slices.Contains(names(list), "api/ghostunnel.accept.total") {
		t.Errorf("no api/ghostunnel.accept.total in %q", names(list))
	}
	nextPost(t, posts)
	if strings.Contains(logs.String(), "error sending metrics") {
		t.Errorf("a push failed:\n%s", logs)
	}
	if strings.Contains(logs.String(), "s3cret") || !strings.Contains(logs.String(), "via POST to https://user:xxxxx@localhost:") {
		t.Errorf("logs show the password, or not the URL:\n%s", logs)
	}
}

// TestMetricsPushFailuresAreNotFatal: a dead Graphite endpoint and an
// endpoint that hangs or refuses are logged at every interval; the tunnels
// keep serving, the other endpoint keeps receiving, and Run stops
// promptly even with pushes in flight.
func TestMetricsPushFailuresAreNotFatal(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hanging.Close()
	defer close(release)

	// Graphite is dead; the URL hangs past the push timeout.
	cfg := pushConfig(f, b, "api", "db")
	cfg.MetricsGraphite = freePort(t)
	cfg.MetricsURL = hanging.URL
	logs := &testnet.Buffer{}
	_, stop := runConfig(t, cfg, logs)

	waitFor(t, "failed pushes to be logged", func() bool {
		return strings.Count(logs.String(), "error sending metrics") >= 6
	})
	out := logs.String()
	for _, want := range []string{
		`level=warn msg="error sending metrics" to=` + cfg.MetricsGraphite + ` err="dial tcp ` + cfg.MetricsGraphite,
		"connection refused",
		`level=warn msg="error sending metrics" to=` + hanging.URL,
		"context deadline exceeded",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if err := echoTLS(cfg.Tunnels[1].Listen, f.clientTLS(nil)); err != nil {
		t.Fatalf("tunnel stopped serving: %v", err)
	}

	// With an endpoint refusing with 500, the failure is logged too.
	h, posts := fakeEndpoint(http.StatusInternalServerError)
	refusing := httptest.NewServer(h)
	defer refusing.Close()
	cfg2 := pushConfig(f, b, "api")
	cfg2.MetricsURL = refusing.URL
	logs2 := &testnet.Buffer{}
	runConfig(t, cfg2, logs2)
	nextPost(t, posts)
	nextPost(t, posts)
	waitFor(t, "the 500 to be logged", func() bool {
		return strings.Contains(logs2.String(), `err="unexpected response: 500 Internal Server Error"`)
	})

	if took := stop(); took > 2*time.Second {
		t.Errorf("Run took %v to stop", took)
	}
}

// TestMetricsPushOff: without a push endpoint nothing is pushed or logged.
func TestMetricsPushOff(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	cfg := pushConfig(f, b, "api")
	s, err := New(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.closeAll()
	if p := s.newPusher(); p != nil {
		t.Fatalf("a pusher without endpoints: %+v", p)
	}
}

// TestMetricsPushInterruptInFlight: interrupting the actor cuts a push in
// flight short, however long its timeout.
func TestMetricsPushInterruptInFlight(t *testing.T) {
	arrived := make(chan struct{}, 100)
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server sees the client go
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	defer hanging.Close()
	p := &pusher{
		log: log.NewNopLogger(), gatherer: prometheus.NewRegistry(), prefix: configs.DefaultMetricsPrefix,
		url: hanging.URL, shownURL: hanging.URL, interval: 10 * time.Millisecond, timeout: time.Hour,
		client: &http.Client{},
	}
	run, interrupt := p.actor()
	done := make(chan struct{})
	go func() {
		run()
		close(done)
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no push")
	}
	start := time.Now()
	interrupt(nil)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pusher did not stop")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the pusher took %v to stop", took)
	}
}

func TestGraphiteLines(t *testing.T) {
	points, err := statusd.GatherPoints(prometheus.NewRegistry(), "", "h")
	if err != nil || len(points) != 0 {
		t.Fatalf("empty registry: %v, %v", points, err)
	}
	reg := prometheus.NewRegistry()
	for _, tunnel := range []string{"a.b", "c"} {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gu_accept_total", ConstLabels: prometheus.Labels{"tunnel": tunnel, "mode": "server"}})
		c.Add(3)
		reg.MustRegister(c)
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "gu_odd", ConstLabels: prometheus.Labels{"tunnel": tunnel, "mode": "server", "x": "y z"}})
		g.Set(1.5)
		reg.MustRegister(g)
	}
	points, err = statusd.GatherPoints(reg, "gu", "h")
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(points[0].Timestamp, 10)
	want := "gu.a_b.accept.total 3 " + ts + "\ngu.a_b.odd.y_z 1.5 " + ts + "\ngu.c.accept.total 3 " + ts + "\ngu.c.odd.y_z 1.5 " + ts + "\n"
	if got := string(graphiteLines(points, "gu", false)); got != want {
		t.Errorf("fleet:\n got %q\nwant %q", got, want)
	}
	want = "gu.accept.total 3 " + ts + "\ngu.odd.y_z 1.5 " + ts + "\n"
	if got := string(graphiteLines(points[2:], "gu", true)); got != want {
		t.Errorf("single tunnel:\n got %q\nwant %q", got, want)
	}
}
