package statusd

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstreamFields returns the /_status field order of COMPAT.md.
func upstreamFields() []string {
	return []string{"ok", "status", "listen_address", "forward_address", "backend_ok", "backend_status", "backend_error", "time", "last_reload", "hostname", "message", "revision", "compiler"}
}

// keyOrder returns the keys of a JSON object in the order they appear.
func keyOrder(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", raw)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// without returns fields without the named ones.
func without(fields []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(fields), func(f string) bool { return slices.Contains(drop, f) })
}

type statusBody struct {
	OK             bool    `json:"ok"`
	Status         string  `json:"status"`
	ListenAddress  *string `json:"listen_address"`
	ForwardAddress *string `json:"forward_address"`
	BackendOK      bool    `json:"backend_ok"`
	BackendStatus  string  `json:"backend_status"`
	BackendError   string  `json:"backend_error"`
	Time           string  `json:"time"`
	LastReload     string  `json:"last_reload"`
	Message        string  `json:"message"`
	Tunnels        []struct {
		Name            string          `json:"name"`
		Mode            string          `json:"mode"`
		State           string          `json:"state"`
		BackendOK       bool            `json:"backend_ok"`
		BackendStatus   string          `json:"backend_status"`
		BackendError    string          `json:"backend_error"`
		OpenConns       int64           `json:"open_conns"`
		LastReload      string          `json:"last_reload"`
		LastReloadError string          `json:"last_reload_error"`
		Certificate     json.RawMessage `json:"certificate"`
	} `json:"tunnels"`
}

func getStatus(t *testing.T, e endpoint, path string) (int, statusBody, []byte) {
	t.Helper()
	code, ct, raw := e.get(t, path)
	if ct != "application/json" {
		t.Fatalf("GET %s: content type %q", path, ct)
	}
	var st statusBody
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, raw)
	}
	return code, st, raw
}

// TestStatusFieldOrder checks the raw key order of /_status (one tunnel and
// several) and /_status/NAME against COMPAT.md.
func TestStatusFieldOrder(t *testing.T) {
	f := newFleet(t)
	f.beta.mu.Lock()
	f.beta.status.LastReloadError = "bad key"
	f.beta.mu.Unlock()
	f.gamma.setCheck(errors.New("connection refused"), 0)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: f.source, CheckCacheTTL: -1})
	e := httpsEndpoint(t, s, f.ca.Pool())

	// Several tunnels: no listen/forward address; backend_error set.
	code, _, raw := getStatus(t, e, "/_status")
	if code != http.StatusServiceUnavailable {
		t.Errorf("code %d, want 503", code)
	}
	want := append(without(upstreamFields(), "listen_address", "forward_address"), "tunnels")
	if got := keyOrder(t, raw); !slices.Equal(got, want) {
		t.Errorf("fleet /_status keys:\n got %v\nwant %v", got, want)
	}
	var tunnels struct {
		Tunnels []json.RawMessage `json:"tunnels"`
	}
	if err := json.Unmarshal(raw, &tunnels); err != nil || len(tunnels.Tunnels) != 3 {
		t.Fatalf("tunnels: %v", err)
	}
	tunnelFields := []string{"name", "mode", "state", "listen_address", "forward_address", "backend_ok", "backend_status", "backend_error", "open_conns", "last_reload", "last_reload_error", "certificate"}
	for i, drop := range [][]string{{"backend_error", "last_reload_error"}, {"backend_error"}, {"last_reload_error"}} {
		if got, want := keyOrder(t, tunnels.Tunnels[i]), without(tunnelFields, drop...); !slices.Equal(got, want) {
			t.Errorf("tunnel %d keys:\n got %v\nwant %v", i, got, want)
		}
	}
	var cert struct {
		Certificate json.RawMessage `json:"certificate"`
	}
	if err := json.Unmarshal(tunnels.Tunnels[0], &cert); err != nil {
		t.Fatal(err)
	}
	certFields := []string{"subject", "dns_names", "ip_addresses", "uris", "serial", "not_before", "not_after", "sha256"}
	if got := keyOrder(t, cert.Certificate); !slices.Equal(got, certFields) {
		t.Errorf("certificate keys: %v", got)
	}

	// /_status/NAME: upstream's fields, then name and certificate.
	_, _, raw = getStatus(t, e, "/_status/alpha")
	want = append(without(upstreamFields(), "backend_error"), "name", "certificate")
	if got := keyOrder(t, raw); !slices.Equal(got, want) {
		t.Errorf("/_status/alpha keys:\n got %v\nwant %v", got, want)
	}
	_, _, raw = getStatus(t, e, "/_status/gamma")
	want = append(upstreamFields(), "name", "certificate")
	if got := keyOrder(t, raw); !slices.Equal(got, want) {
		t.Errorf("/_status/gamma keys:\n got %v\nwant %v", got, want)
	}

	// One tunnel: exactly upstream's fields (plus tunnels).
	f.source.set(f.alpha)
	code, st, raw := getStatus(t, e, "/_status")
	if code != http.StatusOK {
		t.Errorf("one tunnel: code %d", code)
	}
	want = append(without(upstreamFields(), "backend_error"), "tunnels")
	if got := keyOrder(t, raw); !slices.Equal(got, want) {
		t.Errorf("one-tunnel /_status keys:\n got %v\nwant %v", got, want)
	}
	if st.ListenAddress == nil || *st.ListenAddress != "127.0.0.1:8443" || *st.ForwardAddress != "127.0.0.1:8080" {
		t.Errorf("one-tunnel addresses: %s", raw)
	}
	if st.LastReload != "0001-01-01T00:00:00Z" {
		t.Errorf("last_reload = %q", st.LastReload)
	}
	if _, err := time.Parse(time.RFC3339Nano, st.Time); err != nil {
		t.Errorf("time %q: %v", st.Time, err)
	}
}

// TestStatusTransitions follows /_status and /_status/NAME through backend
// failure and recovery, reloads and draining.
func TestStatusTransitions(t *testing.T) {
	f := newFleet(t)
	var stopping bool
	var mu sync.Mutex
	s := serve(t, Config{
		Addr:          "127.0.0.1:0",
		Source:        f.source,
		CheckCacheTTL: -1,
		Stopping: func() bool {
			mu.Lock()
			defer mu.Unlock()
			return stopping
		},
	})
	e := httpsEndpoint(t, s, f.ca.Pool())

	expect := func(path string, code int, message string, backendOK bool) statusBody {
		t.Helper()
		gotCode, st, raw := getStatus(t, e, path)
		wantStatus := map[bool]string{true: "ok", false: "critical"}
		if gotCode != code || st.Message != message || st.BackendOK != backendOK ||
			st.OK != (code == http.StatusOK) || st.Status != wantStatus[st.OK] || st.BackendStatus != wantStatus[backendOK] {
			t.Fatalf("GET %s: %d %s\nwant %d, message %q, backend_ok %v", path, gotCode, raw, code, message, backendOK)
		}
		return st
	}

	st := expect("/_status", http.StatusOK, "listening", true)
	for _, tj := range st.Tunnels {
		if tj.BackendStatus != "ok" || tj.State != "listening" || tj.Certificate == nil {
			t.Errorf("tunnel %+v", tj)
		}
	}

	// Beta's backend fails, then recovers.
	f.beta.setCheck(errors.New("dial tcp 127.0.0.1:8080: connection refused"), 0)
	st = expect("/_status", http.StatusServiceUnavailable, "listening", false)
	if !strings.Contains(st.BackendError, "beta: dial tcp") || st.Tunnels[1].BackendOK || st.Tunnels[1].BackendStatus != "critical" ||
		!strings.Contains(st.Tunnels[1].BackendError, "connection refused") || !st.Tunnels[0].BackendOK {
		t.Errorf("failing beta: %+v", st)
	}
	expect("/_status/beta", http.StatusServiceUnavailable, "listening", false)
	expect("/_status/alpha", http.StatusOK, "listening", true)
	f.beta.setCheck(nil, 0)
	expect("/_status", http.StatusOK, "listening", true)
	expect("/_status/beta", http.StatusOK, "listening", true)

	// States.
	f.gamma.setState(StateInitializing)
	expect("/_status", http.StatusServiceUnavailable, "initializing", true)
	expect("/_status/gamma", http.StatusServiceUnavailable, "initializing", true)
	f.alpha.setState(StateReloading)
	expect("/_status", http.StatusServiceUnavailable, "reloading", true)
	f.alpha.setState(StateListening)
	f.gamma.setState(StateListening)
	expect("/_status", http.StatusOK, "listening", true)

	mu.Lock()
	stopping = true
	mu.Unlock()
	expect("/_status", http.StatusServiceUnavailable, "stopping", true)
	expect("/_status/alpha", http.StatusServiceUnavailable, "stopping", true)
	mu.Lock()
	stopping = false
	mu.Unlock()

	// Unknown tunnel.
	code, ct, raw := e.get(t, "/_status/nope")
	if code != http.StatusNotFound || ct != "application/json" || !bytes.Contains(raw, []byte(`"error"`)) {
		t.Errorf("unknown tunnel: %d %q %s", code, ct, raw)
	}

	// No tunnels yet.
	f.source.set()
	expect("/_status", http.StatusServiceUnavailable, "initializing", true)
}

// TestStatusReloadFields checks last_reload and last_reload_error.
func TestStatusReloadFields(t *testing.T) {
	f := newFleet(t)
	reload := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	f.beta.mu.Lock()
	f.beta.status.LastReload = reload
	f.beta.status.LastReloadError = "open cert.pem: no such file"
	f.beta.status.OpenConns = 42
	f.beta.mu.Unlock()
	s := serve(t, Config{Addr: "http://127.0.0.1:0", Source: f.source})
	e := httpEndpoint(t, s)
	_, st, _ := getStatus(t, e, "/_status")
	if st.LastReload != "2025-03-04T05:06:07Z" {
		t.Errorf("fleet last_reload = %q", st.LastReload)
	}
	b := st.Tunnels[1]
	if b.LastReload != "2025-03-04T05:06:07Z" || b.LastReloadError != "open cert.pem: no such file" || b.OpenConns != 42 || b.Mode != "server" {
		t.Errorf("beta: %+v", b)
	}
	if st.Tunnels[0].LastReload != "0001-01-01T00:00:00Z" || st.Tunnels[2].Mode != "client" {
		t.Errorf("tunnels: %+v", st.Tunnels)
	}
	var cert certificateJSON
	if err := json.Unmarshal(b.Certificate, &cert); err != nil {
		t.Fatal(err)
	}
	leaf := f.leaves["beta"].Cert
	if cert.Serial != leaf.SerialNumber.Text(16) || cert.SHA256 != fingerprint(leaf.Raw) ||
		!slices.Equal(cert.DNSNames, []string{"*.beta.example.com"}) || !strings.Contains(cert.Subject, "CN=beta") {
		t.Errorf("beta certificate: %+v", cert)
	}
}

// TestCheckCoalescing checks that a burst of status requests shares one
// backend check per tunnel, and that results are reused for the cache TTL.
func TestCheckCoalescing(t *testing.T) {
	f := newFleet(t)
	for _, ft := range []*fakeTunnel{f.alpha, f.beta, f.gamma} {
		ft.setCheck(nil, 200*time.Millisecond)
	}
	s := serve(t, Config{Addr: "http://127.0.0.1:0", Source: f.source, CheckCacheTTL: time.Minute})
	e := httpEndpoint(t, s)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			path := "/_status"
			if i%2 == 1 {
				path = "/_status/beta"
			}
			if code, _, body := e.get(t, path); code != http.StatusOK {
				t.Errorf("GET %s: %d %s", path, code, body)
			}
		})
	}
	wg.Wait()
	for _, ft := range []*fakeTunnel{f.alpha, f.beta, f.gamma} {
		if n := ft.checks.Load(); n != 1 {
			t.Errorf("%s checked %d times, want 1", ft.name, n)
		}
	}
	e.get(t, "/_status")
	if n := f.alpha.checks.Load(); n != 1 {
		t.Errorf("cached result not reused: %d checks", n)
	}
}

// TestCheckTimeout checks that a slow backend makes /_status answer 503
// within the check timeout.
func TestCheckTimeout(t *testing.T) {
	f := newFleet(t)
	f.gamma.setCheck(nil, time.Minute)
	s := serve(t, Config{Addr: "http://127.0.0.1:0", Source: f.source, CheckTimeout: 300 * time.Millisecond})
	e := httpEndpoint(t, s)
	start := time.Now()
	code, st, raw := getStatus(t, e, "/_status")
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if code != http.StatusServiceUnavailable || st.Tunnels[2].BackendOK || st.Tunnels[2].BackendError == "" || !st.Tunnels[0].BackendOK {
		t.Errorf("slow gamma: %d %s", code, raw)
	}
}

// timedTunnel is a fakeTunnel with a check timeout of its own.
type timedTunnel struct {
	*fakeTunnel
	timeout time.Duration
}

func (t timedTunnel) CheckTimeout() time.Duration { return t.timeout }

// TestCheckTimeoutPerTunnel: a tunnel with a timeout of its own (a tunnel's
// connect timeout) is checked within it, not within another tunnel's or
// the server's default.
func TestCheckTimeoutPerTunnel(t *testing.T) {
	quick := timedTunnel{newFakeTunnel("quick", "server", nil), 100 * time.Millisecond}
	patient := timedTunnel{newFakeTunnel("patient", "server", nil), 3 * time.Second}
	quick.setCheck(nil, time.Minute)
	patient.setCheck(nil, 400*time.Millisecond)
	src := &fakeSource{tunnels: []Tunnel{quick, patient}}
	s := serve(t, Config{Addr: "http://127.0.0.1:0", Source: src, CheckTimeout: 200 * time.Millisecond})
	_, st, raw := getStatus(t, httpEndpoint(t, s), "/_status")
	if len(st.Tunnels) != 2 || st.Tunnels[0].BackendOK {
		t.Errorf("quick (a 1-minute check, 100ms timeout) reported healthy: %s", raw)
	}
	if !st.Tunnels[1].BackendOK {
		t.Errorf("patient (400ms check, 3s timeout) cut short: %s", raw)
	}
}

// TestRetiringTunnelLeftOutOfFleetHealth: a tunnel a reload removed, still
// draining while the fleet serves, shows its failed backend in its own row
// but does not make the fleet unhealthy; the one tunnel left is the
// top-level listen and forward address.
func TestRetiringTunnelLeftOutOfFleetHealth(t *testing.T) {
	keep := newFakeTunnel("keep", "server", nil)
	old := newFakeTunnel("old", "server", nil)
	old.setState(StateStopping)
	old.setCheck(errors.New("connection refused"), 0)
	s := serve(t, Config{Addr: "http://127.0.0.1:0", Source: newFakeSource(keep, old)})
	code, st, raw := getStatus(t, httpEndpoint(t, s), "/_status")
	if code != http.StatusOK || !st.OK || st.Message != StateListening {
		t.Fatalf("a draining, removed tunnel made the fleet unhealthy: %d %s", code, raw)
	}
	if len(st.Tunnels) != 2 || st.Tunnels[1].BackendOK || st.Tunnels[1].BackendError == "" {
		t.Errorf("the draining tunnel's own row: %s", raw)
	}
	if !strings.Contains(string(raw), `"listen_address":"127.0.0.1:8443"`) {
		t.Errorf("no top-level listen address for the one current tunnel: %s", raw)
	}
}

// pendingTunnel is a fakeTunnel still getting its certificate.
type pendingTunnel struct{ *fakeTunnel }

func (t pendingTunnel) CertificatePending() bool { return t.Certificate() == nil }

// TestHTTPSWhileCertificatePending: with https asked for and the only
// tunnel still getting its certificate (ACME), the status port serves https
// from the start, and answers once the certificate is there.
func TestHTTPSWhileCertificatePending(t *testing.T) {
	f := newFleet(t)
	late := pendingTunnel{newFakeTunnel("acme", "server", nil)}
	s := serve(t, Config{Addr: "https://127.0.0.1:0", Source: &fakeSource{tunnels: []Tunnel{late}}})
	time.Sleep(100 * time.Millisecond)
	late.cert.Store(f.alpha.cert.Load())
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool(), ServerName: "alpha.example.com"}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + s.Addr().String() + "/_status")
	if err != nil {
		t.Fatalf("https after the certificate arrived: %v", err)
	}
	resp.Body.Close()
}
