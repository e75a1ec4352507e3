package supervisor

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReloadProcessWideRows covers the process-wide rows of the README's
// reload table: shutdown-timeout applies, settings set up once are reported
// as needing a restart while the rest of the file still applies, and POST
// /_reload (enable-reload) reloads like SIGHUP.
func TestReloadProcessWideRows(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	status := freePort(t)
	p1, p2 := freePort(t), freePort(t)
	head := func(prefix, timeout string) string {
		return fmt.Sprintf("status: http://%s\nenable-reload: true\nmetrics-prefix: %s\nshutdown-timeout: %s\ndefaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n",
			status, prefix, timeout, f.ca.CAFile)
	}
	path := f.write("fleet.yaml", head("ghostunnel", "5m")+serverTunnel("one", p1, b.addr(), f, ""))
	s := running(t, path)

	f.write("fleet.yaml", head("renamed", "7s")+serverTunnel("one", p1, b.addr(), f, "")+serverTunnel("two", p2, b.addr(), f, ""))
	resp, err := http.Post("http://"+status+"/_reload", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /_reload: %d %s", resp.StatusCode, body)
	}
	if err := echoTLS(p2, f.clientTLS(nil)); err != nil {
		t.Fatalf("the tunnel the reload added: %v", err)
	}
	if got := s.shutdownTimeout(); got != 7*time.Second {
		t.Fatalf("shutdown-timeout after reload = %v, want 7s", got)
	}
	st := statusBody(t, status)
	if !strings.Contains(st, `"needs_restart":["metrics-prefix"]`) {
		t.Fatalf("/_status does not report metrics-prefix as needing a restart:\n%s", st)
	}
	// The series keep the prefix the process started with.
	if n, _ := testutil.GatherAndCount(s.Registry(), "ghostunnel_accept_total"); n != 2 {
		t.Fatalf("%d ghostunnel_accept_total series, want 2", n)
	}

	// A broken file through POST /_reload: 500 with the error.
	f.write("fleet.yaml", head("renamed", "7s")+"  - name: [oops\n")
	resp, err = http.Post("http://"+status+"/_reload", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(body), path) {
		t.Fatalf("POST /_reload of a broken file: %d %s", resp.StatusCode, body)
	}
}

// TestBytesCountersMatchTraffic: the bytes counters count exactly what went
// through, in each direction.
func TestBytesCountersMatchTraffic(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	p1 := freePort(t)
	path := f.write("fleet.yaml", fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)+serverTunnel("one", p1, b.addr(), f, ""))
	s := running(t, path)
	c, err := tls.Dial("tcp", p1, f.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3<<20 + 17
	go func() {
		c.Write(make([]byte, n))
		c.CloseWrite()
	}()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.Copy(io.Discard, c)
	c.Close()
	if err != nil || got != n {
		t.Fatalf("echoed %d of %d: %v", got, n, err)
	}
	m := s.Tunnel("one").Metrics()
	waitFor(t, "the connection to close", func() bool { return m.ConnOpen() == 0 })
	in, out := m.BytesIn(), m.BytesOut()
	if in != n || out != n {
		t.Fatalf("bytes counted in %v out %v, want %d each", in, out, n)
	}
}
