package supervisor

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// stream keeps a connection busy with echoed data, checking every byte,
// until stopped.
type stream struct {
	c      net.Conn
	stop   chan struct{}
	done   chan struct{}
	err    error
	echoed int64
}

func startStream(t *testing.T, c net.Conn, seed uint64) *stream {
	s := &stream{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		r := rand.New(rand.NewPCG(seed, seed))
		out := make([]byte, 4096)
		in := make([]byte, 4096)
		for i := 0; i < 100000; i++ { // bounded; stop ends it long before
			select {
			case <-s.stop:
				return
			default:
			}
			n := 1 + r.IntN(len(out))
			for j := range out[:n] {
				out[j] = byte(r.Uint32())
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(out[:n]); err != nil {
				s.err = fmt.Errorf("write after %d bytes: %w", s.echoed, err)
				return
			}
			if _, err := io.ReadFull(c, in[:n]); err != nil {
				s.err = fmt.Errorf("read after %d bytes: %w", s.echoed, err)
				return
			}
			if !bytes.Equal(in[:n], out[:n]) {
				s.err = fmt.Errorf("corrupted after %d bytes", s.echoed)
				return
			}
			s.echoed += int64(n)
			time.Sleep(time.Millisecond)
		}
	}()
	return s
}

// finish stops the stream and returns its error.
func (s *stream) finish() error {
	close(s.stop)
	<-s.done
	s.c.Close()
	if s.err == nil && s.echoed == 0 {
		return fmt.Errorf("stream moved no data")
	}
	return s.err
}

func TestFleetReload(t *testing.T) {
	f := newFixture(t)
	bKeep, bACL, bOld, bNew, bGone, bAdd := newBackend(t), newBackend(t), newBackend(t), newBackend(t), newBackend(t), newBackend(t)
	pKeep, pACL, pRetarget, pGone, pAdd, pMove, pMoved := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	status := freePort(t)
	other := f.ca.Issue("other", testpki.Options{CN: "other", Client: true})

	head := fmt.Sprintf("status: http://%s\nenable-reload: true\ndefaults:\n  cacert: %s\ntunnels:\n", status, f.ca.CAFile)
	v1 := head +
		serverTunnel("keep", pKeep, bKeep.addr(), f, "    allow-all: true\n") +
		serverTunnel("acl", pACL, bACL.addr(), f, "    allow-cn: [client]\n") +
		serverTunnel("retarget", pRetarget, bOld.addr(), f, "    allow-all: true\n") +
		serverTunnel("gone", pGone, bGone.addr(), f, "    allow-all: true\n") +
		serverTunnel("move", pMove, bKeep.addr(), f, "    allow-all: true\n")
	v2 := head +
		serverTunnel("keep", pKeep, bKeep.addr(), f, "    allow-all: true\n") +
		serverTunnel("acl", pACL, bACL.addr(), f, "    allow-cn: [other]\n") +
		serverTunnel("retarget", pRetarget, bNew.addr(), f, "    allow-all: true\n") +
		serverTunnel("move", pMoved, bKeep.addr(), f, "    allow-all: true\n") +
		serverTunnel("added", pAdd, bAdd.addr(), f, "    allow-all: true\n")
	path := f.write("fleet.yaml", v1)
	s := running(t, path)

	perTunnel := 10 // 50 streams across the tunnels
	if testing.Short() {
		perTunnel = 2
	}
	dial := func(addr string) net.Conn {
		c, err := tls.Dial("tcp", addr, f.clientTLS(nil))
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		return c
	}
	var streams []*stream
	var goneStreams []*stream
	for i := 0; i < perTunnel; i++ {
		for _, p := range []string{pKeep, pACL, pRetarget, pMove} {
			streams = append(streams, startStream(t, dial(p), uint64(len(streams)+1)))
		}
		goneStreams = append(goneStreams, startStream(t, dial(pGone), uint64(100+i)))
	}
	time.Sleep(100 * time.Millisecond)
	keepAccepted := bKeep.count()

	f.write("fleet.yaml", v2)
	if err := s.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}

	// Unchanged: not rebound, open connections untouched (checked at the
	// end), new ones fine.
	if err := echoTLS(pKeep, f.clientTLS(nil)); err != nil {
		t.Fatalf("keep: %v", err)
	}
	// Changed allow-list: new connections follow the new rule at once.
	if err := echoTLS(pACL, f.clientTLS(nil)); err == nil {
		t.Fatal("acl: the client the new allow-list drops got through")
	}
	if err := echoTLS(pACL, f.clientTLS(other)); err != nil {
		t.Fatalf("acl: the newly allowed client was refused: %v", err)
	}
	// Changed target: new connections go to the new backend.
	before := bNew.count()
	if err := echoTLS(pRetarget, f.clientTLS(nil)); err != nil {
		t.Fatalf("retarget: %v", err)
	}
	if bNew.count() != before+1 {
		t.Fatal("retarget: a new connection did not reach the new target")
	}
	// Added tunnel serves and shows in /_status.
	if err := echoTLS(pAdd, f.clientTLS(nil)); err != nil {
		t.Fatalf("added: %v", err)
	}
	// Moved listener: the new address serves, the old one closed.
	if err := echoTLS(pMoved, f.clientTLS(nil)); err != nil {
		t.Fatalf("moved: %v", err)
	}
	if c, err := net.DialTimeout("tcp", pMove, time.Second); err == nil {
		c.Close()
		t.Fatal("moved: the old listen address still accepts")
	}
	// Removed tunnel: stops accepting, but its open connections drain.
	if c, err := net.DialTimeout("tcp", pGone, time.Second); err == nil {
		c.Close()
		t.Fatal("gone: still accepting after removal")
	}
	body := statusBody(t, status)
	for _, want := range []string{`"name":"added"`, `"name":"gone"`, `"generation":2`} {
		if !strings.Contains(body, want) {
			t.Fatalf("/_status lacks %s while gone drains:\n%s", want, body)
		}
	}
	for _, st := range goneStreams {
		if err := st.finish(); err != nil {
			t.Fatalf("draining tunnel lost a connection: %v", err)
		}
	}
	waitFor(t, "gone to leave /_status", func() bool { return !strings.Contains(statusBody(t, status), `"name":"gone"`) })
	waitFor(t, "gone's metrics to go", func() bool {
		n, _ := testutil.GatherAndCount(s.Registry(), "ghostunnel_accept_total")
		return n == 5
	})

	// Broken files change nothing.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	broken := map[string]string{
		"syntax error":   v2 + "  - name: [oops\n",
		"duplicate name": v2 + serverTunnel("keep", freePort(t), bKeep.addr(), f, "    allow-all: true\n"),
		"missing cert":   strings.Replace(v2, f.server.CertFile, f.server.CertFile+".missing", 1),
		"port taken":     v2 + serverTunnel("late", taken.Addr().String(), bKeep.addr(), f, "    allow-all: true\n"),
	}
	for name, content := range broken {
		f.write("fleet.yaml", content)
		err := s.Reload()
		if err == nil {
			t.Fatalf("%s: reload succeeded", name)
		}
		if !strings.Contains(err.Error(), path) {
			t.Fatalf("%s: error does not name the file: %v", name, err)
		}
		body := statusBody(t, status)
		if !strings.Contains(body, `"generation":2`) || !strings.Contains(body, `"last_reload_ok":false`) {
			t.Fatalf("%s: /_status does not show the failed reload:\n%s", name, body)
		}
		if err := echoTLS(pAdd, f.clientTLS(nil)); err != nil {
			t.Fatalf("%s: fleet broken after failed reload: %v", name, err)
		}
	}
	if v := testutil.ToFloat64(s.fm.reloads.WithLabelValues("failure")); v != 4 {
		t.Fatalf("reload failures counted %v, want 4", v)
	}
	if v := testutil.ToFloat64(s.fm.successful); v != 0 {
		t.Fatal("last_reload_successful not 0 after a failed reload")
	}

	for _, st := range streams {
		if err := st.finish(); err != nil {
			t.Fatalf("open connection across reloads: %v", err)
		}
	}
	if bKeep.count() < keepAccepted {
		t.Fatal("impossible backend count")
	}
}

func statusBody(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /_status HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(c)
	return string(b)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadChurnLeaksNothing reloads many times a second, adding and
// removing a tunnel, and checks goroutines, descriptors and series return
// to where they were.
func TestReloadChurnLeaksNothing(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	p1, p2 := freePort(t), freePort(t)
	head := fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)
	a := head + serverTunnel("one", p1, b.addr(), f, "")
	bb := a + serverTunnel("two", p2, b.addr(), f, "")
	path := f.write("fleet.yaml", a)
	s := running(t, path)
	if err := echoTLS(p1, f.clientTLS(nil)); err != nil {
		t.Fatal(err)
	}
	settle := func() (int, int) {
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		fds, _ := os.ReadDir("/proc/self/fd")
		return runtime.NumGoroutine(), len(fds)
	}
	g0, fd0 := settle()
	d := 5 * time.Second
	if testing.Short() {
		d = time.Second
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	n := 0
	for time.Now().Before(end) {
		<-tick.C
		content := a
		if n%2 == 0 {
			content = bb
		}
		f.write("fleet.yaml", content)
		if err := s.Reload(); err != nil {
			t.Fatalf("reload %d: %v", n, err)
		}
		n++
	}
	f.write("fleet.yaml", a)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "tunnel two to drain", func() bool { return len(s.Tunnels()) == 1 })
	if err := echoTLS(p1, f.clientTLS(nil)); err != nil {
		t.Fatal(err)
	}
	var g1, fd1 int
	for i := 0; i < 50; i++ {
		if g1, fd1 = settle(); g1 <= g0+2 && fd1 <= fd0+2 {
			break
		}
	}
	if g1 > g0+2 || fd1 > fd0+2 {
		t.Fatalf("after %d reloads: goroutines %d -> %d, fds %d -> %d", n, g0, g1, fd0, fd1)
	}
	if c, _ := testutil.GatherAndCount(s.Registry(), "ghostunnel_accept_total"); c != 1 {
		t.Fatalf("%d accept_total series after churn, want 1", c)
	}
	t.Logf("%d reloads in %v: goroutines %d -> %d, fds %d -> %d", n, d, g0, g1, fd0, fd1)
}
