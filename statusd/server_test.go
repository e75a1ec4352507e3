package statusd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEndpoints exercises every endpoint over HTTPS, plain HTTP and a unix
// socket.
func TestEndpoints(t *testing.T) {
	f := newFleet(t)
	var shutdowns atomic.Int64
	base := Config{
		EnablePprof:    true,
		EnableShutdown: true,
		Shutdown:       func() { shutdowns.Add(1) },
		Source:         f.source,
		Gatherer:       f.registry,
		Hostname:       "testhost",
		Revision:       "rev1",
	}
	sock := shortSocketPath(t)
	endpoints := []func(t *testing.T) endpoint{
		func(t *testing.T) endpoint {
			cfg := base
			cfg.Addr = "127.0.0.1:0"
			return httpsEndpoint(t, serve(t, cfg), f.ca.Pool())
		},
		func(t *testing.T) endpoint {
			cfg := base
			cfg.Addr = "http://127.0.0.1:0"
			return httpEndpoint(t, serve(t, cfg))
		},
		func(t *testing.T) endpoint {
			cfg := base
			cfg.Addr = "unix:" + sock
			serve(t, cfg)
			return unixEndpoint(t, sock)
		},
	}
	for i, mk := range endpoints {
		shutdowns.Store(0)
		t.Run([]string{"https", "http", "unix"}[i], func(t *testing.T) {
			e := mk(t)
			checkJSON := func(path string, wantCode int) []byte {
				t.Helper()
				code, ct, body := e.get(t, path)
				if code != wantCode || ct != "application/json" {
					t.Fatalf("GET %s: %d %q, want %d application/json: %s", path, code, ct, wantCode, body)
				}
				if !json.Valid(body) {
					t.Fatalf("GET %s: invalid JSON: %s", path, body)
				}
				return body
			}
			var st struct {
				OK       bool   `json:"ok"`
				Message  string `json:"message"`
				Hostname string `json:"hostname"`
				Revision string `json:"revision"`
				Tunnels  []struct {
					Name string `json:"name"`
				} `json:"tunnels"`
			}
			if err := json.Unmarshal(checkJSON("/_status", http.StatusOK), &st); err != nil {
				t.Fatal(err)
			}
			if !st.OK || st.Message != "listening" || st.Hostname != "testhost" || st.Revision != "rev1" || len(st.Tunnels) != 3 {
				t.Errorf("/_status = %+v", st)
			}
			checkJSON("/_status/beta", http.StatusOK)
			checkJSON("/_status/nope", http.StatusNotFound)

			for _, p := range []string{"/_metrics", "/_metrics?format=json", "/_metrics/json"} {
				var points []map[string]any
				if err := json.Unmarshal(checkJSON(p, http.StatusOK), &points); err != nil || len(points) == 0 {
					t.Errorf("GET %s: %d points, %v", p, len(points), err)
				}
			}
			for _, p := range []string{"/_metrics/prometheus", "/_metrics?format=prometheus"} {
				code, ct, body := e.get(t, p)
				if code != http.StatusOK || !strings.HasPrefix(ct, "text/plain") || !bytes.Contains(body, []byte("ghostunnel_accept_total{")) {
					t.Errorf("GET %s: %d %q %.200s", p, code, ct, body)
				}
			}

			code, _, body := e.get(t, "/debug/pprof/goroutine?debug=1")
			if first, _, _ := strings.Cut(string(body), "\n"); code != http.StatusOK || !strings.HasPrefix(first, "goroutine profile: total") {
				t.Errorf("goroutine profile: %d %q", code, first)
			}
			for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/heap?debug=1", "/debug/pprof/trace?seconds=0.05"} {
				if code, _, body := e.get(t, p); code != http.StatusOK {
					t.Errorf("GET %s: %d %.200s", p, code, body)
				}
			}

			if code, _, _ := e.get(t, "/_shutdown"); code != http.StatusMethodNotAllowed {
				t.Errorf("GET /_shutdown: %d, want 405", code)
			}
			if shutdowns.Load() != 0 {
				t.Errorf("GET /_shutdown called Shutdown")
			}
			for range 2 {
				if code, _, _ := e.do(t, http.MethodPost, "/_shutdown"); code != http.StatusOK {
					t.Errorf("POST /_shutdown: %d, want 200", code)
				}
			}
			if n := shutdowns.Load(); n != 1 {
				t.Errorf("Shutdown called %d times, want 1", n)
			}

			for _, p := range []string{"/", "/nope", "/_statusx", "/debug/x"} {
				if code, _, _ := e.get(t, p); code != http.StatusNotFound {
					t.Errorf("GET %s: %d, want 404", p, code)
				}
			}
		})
	}
}

// TestCPUProfile fetches a (short) CPU profile over HTTPS.
func TestCPUProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a second")
	}
	f := newFleet(t)
	s := serve(t, Config{Addr: "127.0.0.1:0", EnablePprof: true, Source: f.source, Gatherer: f.registry})
	e := httpsEndpoint(t, s, f.ca.Pool())
	if code, _, body := e.get(t, "/debug/pprof/profile?seconds=1"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("profile: %d, %d bytes", code, len(body))
	}
}

// TestDisabledEndpoints checks that pprof and /_shutdown are 404 unless
// enabled.
func TestDisabledEndpoints(t *testing.T) {
	f := newFleet(t)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: f.source, Gatherer: f.registry})
	e := httpsEndpoint(t, s, f.ca.Pool())
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/profile", "/debug/pprof/symbol", "/debug/pprof/trace"} {
		if code, _, _ := e.get(t, p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if code, _, _ := e.do(t, m, "/_shutdown"); code != http.StatusNotFound {
			t.Errorf("%s /_shutdown: %d, want 404", m, code)
		}
	}
}

// TestPlainHTTPWithoutCertificates checks the fallback to plain HTTP when no
// tunnel has a certificate.
func TestPlainHTTPWithoutCertificates(t *testing.T) {
	src := newFakeSource(newFakeTunnel("a", "client", nil), newFakeTunnel("b", "client", nil))
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: src})
	e := httpEndpoint(t, s)
	if code, _, body := e.get(t, "/_status"); code != http.StatusOK {
		t.Errorf("plain GET /_status: %d %s", code, body)
	}
}

// TestAddressInUse checks that New binds, and reports a busy address by
// name.
func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, a := range []string{addr, "http://" + addr, "https://" + addr} {
		_, err := New(Config{Addr: a})
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("New(%q) = %v, want an error naming the address", a, err)
		}
	}

	sock := shortSocketPath(t)
	serve(t, Config{Addr: "unix:" + sock})
	if _, err := New(Config{Addr: "unix:" + sock}); err == nil || !strings.Contains(err.Error(), sock) {
		t.Errorf("New on a live socket = %v, want an error naming it", err)
	}

	// A regular file is never replaced.
	file := shortSocketPath(t)
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Addr: "unix:" + file}); err == nil {
		t.Errorf("New over a regular file succeeded")
	}
}

// TestUnixSocketLifecycle checks that a stale socket file is replaced and
// that the socket file is removed on shutdown.
func TestUnixSocketLifecycle(t *testing.T) {
	sock := shortSocketPath(t)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket: %v", err)
	}

	s, err := New(Config{Addr: "unix:" + sock, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New over a stale socket: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	e := unixEndpoint(t, sock)
	if code, _, _ := e.get(t, "/_metrics"); code != http.StatusOK {
		t.Errorf("GET /_metrics: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after shutdown: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestShutdownBeforeServe checks that a server never served still releases
// its address.
func TestShutdownBeforeServe(t *testing.T) {
	s, err := New(Config{Addr: "http://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("address not released: %v", err)
	}
	ln.Close()
}

// TestServerErrorLog checks that net/http's errors reach the go-kit logger.
func TestServerErrorLog(t *testing.T) {
	f := newFleet(t)
	logs := make(chan string, 16)
	logger := loggerFunc(func(kv ...any) {
		var b strings.Builder
		for _, v := range kv {
			b.WriteString(strings.TrimSpace(toString(v)))
			b.WriteByte(' ')
		}
		select {
		case logs <- b.String():
		default:
		}
	})
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: f.source, Logger: logger})
	// A plain-text request on the TLS port makes a handshake error.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_, _ = bufio.NewReader(c).ReadString('\n')
	c.Close()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-logs:
			if strings.Contains(l, "TLS handshake error") {
				return
			}
		case <-deadline:
			t.Fatal("no TLS handshake error logged")
		}
	}
}

// TestParseAddr checks the address forms.
func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in      string
		network string
		addr    string
		tls     bool
		bad     bool
	}{
		{in: "127.0.0.1:8081", network: "tcp", addr: "127.0.0.1:8081", tls: true},
		{in: "localhost:0", network: "tcp", addr: "localhost:0", tls: true},
		{in: "[::1]:99", network: "tcp", addr: "[::1]:99", tls: true},
		{in: "https://127.0.0.1:8081", network: "tcp", addr: "127.0.0.1:8081", tls: true},
		{in: "http://127.0.0.1:8081", network: "tcp", addr: "127.0.0.1:8081"},
		{in: "http://127.0.0.1:8081/", network: "tcp", addr: "127.0.0.1:8081"},
		{in: "unix:/run/gt.sock", network: "unix", addr: "/run/gt.sock"},
		{in: "systemd:status", network: "systemd", addr: "status", tls: true},
		{in: "launchd:status", network: "launchd", addr: "status", tls: true},
		{in: "", bad: true},
		{in: "unix:", bad: true},
		{in: "127.0.0.1", bad: true},
		{in: "http://127.0.0.1", bad: true},
		{in: "127.0.0.1:", bad: true},
		{in: "ftp://127.0.0.1:21", bad: true},
	} {
		network, addr, useTLS, err := ParseAddr(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseAddr(%q) = %q %q %v, want an error", tc.in, network, addr, useTLS)
			}
			continue
		}
		if err != nil || network != tc.network || addr != tc.addr || useTLS != tc.tls {
			t.Errorf("ParseAddr(%q) = %q %q %v %v, want %q %q %v", tc.in, network, addr, useTLS, err, tc.network, tc.addr, tc.tls)
		}
	}
}

// TestConfigListener serves on a listener passed in (as systemd does).
func TestConfigListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Addr: "systemd:status"}); err == nil {
		t.Error("systemd address without a listener accepted")
	}
	f := newFleet(t)
	s := serve(t, Config{Addr: "systemd:status", Listener: ln, Source: f.source})
	e := httpsEndpoint(t, s, f.ca.Pool())
	if code, _, _ := e.get(t, "/_status"); code != http.StatusOK {
		t.Errorf("GET /_status: %d", code)
	}
}

type loggerFunc func(kv ...any)

func (f loggerFunc) Log(kv ...any) error { f(kv...); return nil }

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case error:
		return v.Error()
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}
