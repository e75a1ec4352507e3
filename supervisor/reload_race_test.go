package supervisor

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// slowFile is a FIFO: whatever reads it blocks until feed writes to it,
// which makes a reload's plan as slow as the test wants.
func slowFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "slow.pem")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// feed writes data to the FIFO for each reader until done yields, for at
// most 10 s; it returns what done yielded.
func feed(t *testing.T, fifo string, data []byte, done <-chan error) error {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Write(data)
			w.Close()
		}
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("the reload did not return within 10s")
	return nil
}

// TestReloadOvertakenByDrain: a reload whose plan is still being built when
// the drain begins starts none of its tunnels, and the process exits.
func TestReloadOvertakenByDrain(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	p1, p2, pz := freePort(t), freePort(t), freePort(t)
	fifo := slowFile(t, f.dir)
	head := "shutdown-timeout: 2s\ndefaults:\n  allow-all: true\ntunnels:\n"
	one := serverTunnel("one", p1, b.addr(), f, "    cacert: "+f.ca.CAFile+"\n")
	s, done := runSupervisor(t, f.write("fleet.yaml", head+one+serverTunnel("z", pz, b.addr(), f, "    cacert: "+f.ca.CAFile+"\n")))
	waitFor(t, "tunnel one", func() bool { return echoTLS(p1, f.clientTLS(nil)) == nil })

	// Add "two", and change "z", whose new CA file is slow to read.
	f.write("fleet.yaml", head+one+serverTunnel("z", pz, b.addr(), f, "    cacert: "+fifo+"\n")+
		serverTunnel("two", p2, b.addr(), f, "    cacert: "+f.ca.CAFile+"\n"))
	reloaded := make(chan error, 1)
	go func() { reloaded <- s.Reload() }()
	time.Sleep(100 * time.Millisecond) // the plan waits on the FIFO
	s.Shutdown()
	waitFor(t, "the drain", s.stopping.Load)
	ca, _ := os.ReadFile(f.ca.CAFile)
	if err := feed(t, fifo, ca, reloaded); err != nil {
		t.Fatalf("reload: %v", err)
	}
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		if tw := s.Tunnel("two"); tw != nil {
			tw.Stop()
		}
		<-done
		t.Fatal("Run still running 8 s after the drain began (shutdown timeout 2 s)")
	}
	if s.Tunnel("two") != nil {
		t.Error("the reload's tunnel joined the fleet after the drain began")
	}
	if err := echoTLS(p2, f.clientTLS(nil)); err == nil {
		t.Error("the reload's tunnel serves after the drain")
	}
}

// TestSlowReloadLeavesStatusAndDrain: while a reload builds a tunnel (its
// files slow to read), /_status's source answers and a drain stops the
// running tunnels at once.
func TestSlowReloadLeavesStatusAndDrain(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	p1, p2 := freePort(t), freePort(t)
	fifo := slowFile(t, f.dir)
	head := "defaults:\n  allow-all: true\ntunnels:\n"
	one := serverTunnel("one", p1, b.addr(), f, "    cacert: "+f.ca.CAFile+"\n")
	s := running(t, f.write("fleet.yaml", head+one))
	f.write("fleet.yaml", head+one+serverTunnel("two", p2, b.addr(), f, "    cacert: "+fifo+"\n"))
	reloaded := make(chan error, 1)
	go func() { reloaded <- s.Reload() }()
	time.Sleep(100 * time.Millisecond)

	answered := make(chan int, 1)
	go func() { answered <- len(s.Tunnels()) }()
	select {
	case <-answered:
	case <-time.After(2 * time.Second):
		t.Error("the status source waited on a reload's tunnel build")
	}
	s.Shutdown()
	waitFor(t, "tunnel one to stop accepting", func() bool { return echoTLS(p1, f.clientTLS(nil)) != nil })
	ca, _ := os.ReadFile(f.ca.CAFile)
	feed(t, fifo, ca, reloaded)
}

// TestFailedReloadKeepsDrainingSeries: a reload that fails after building
// a tunnel named like one still draining leaves the draining one its
// metric series.
func TestFailedReloadKeepsDrainingSeries(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	pa, pk := freePort(t), freePort(t)
	head := fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)
	keep := serverTunnel("keep", pk, b.addr(), f, "")
	path := f.write("fleet.yaml", head+keep+serverTunnel("a", pa, b.addr(), f, ""))
	s := running(t, path)
	c, err := tls.Dial("tcp", pa, f.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	st := startStream(t, c, 1)
	defer st.finish()
	series := func() int {
		n, _ := testutil.GatherAndCount(s.Registry(), "ghostunnel_conn_open")
		return n
	}

	f.write("fleet.yaml", head+keep) // a leaves and drains its stream
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := series(); n != 2 {
		t.Fatalf("%d conn_open series with a draining, want 2", n)
	}
	bad := strings.Replace(serverTunnel("bad", freePort(t), b.addr(), f, ""), f.server.CertFile, f.server.CertFile+".missing", 1)
	f.write("fleet.yaml", head+keep+serverTunnel("a", freePort(t), b.addr(), f, "")+bad)
	if err := s.Reload(); err == nil {
		t.Fatal("a reload with a missing certificate succeeded")
	}
	if n := series(); n != 2 {
		t.Fatalf("%d conn_open series after the failed reload, want 2: the draining tunnel lost its series", n)
	}
}

// TestModeChangeSeries: a tunnel replaced by one of another mode gets series
// labelled with the new mode; the old mode's go when the old tunnel has
// drained.
func TestModeChangeSeries(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	pa := freePort(t)
	head := fmt.Sprintf("defaults:\n  cacert: %s\ntunnels:\n", f.ca.CAFile)
	s := running(t, f.write("fleet.yaml", head+serverTunnel("a", pa, b.addr(), f, "    allow-all: true\n")))
	f.write("fleet.yaml", head+fmt.Sprintf("  - name: a\n    mode: client\n    listen: %s\n    target: %s\n    cert: %s\n    key: %s\n",
		pa, b.addr(), f.client.CertFile, f.client.KeyFile))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	modes := func() []string {
		mfs, _ := s.Registry().Gather()
		var out []string
		for _, mf := range mfs {
			if mf.GetName() != "ghostunnel_accept_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "mode" {
						out = append(out, l.GetValue())
					}
				}
			}
		}
		return out
	}
	waitFor(t, "the server tunnel to drain", func() bool { return len(s.Tunnels()) == 1 })
	if got := modes(); len(got) != 1 || got[0] != "client" {
		t.Fatalf("accept_total mode labels %v, want [client]", got)
	}
}

// TestListenAliases: two tunnels that name one address differently
// (localhost and 127.0.0.1) are refused at startup and by a reload; with
// SO_REUSEPORT both would bind and split the connections.
func TestListenAliases(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	_, port, _ := net.SplitHostPort(freePort(t))
	head := fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)
	a := serverTunnel("a", "127.0.0.1:"+port, b.addr(), f, "")
	alias := serverTunnel("b", "localhost:"+port, b.addr(), f, "")
	cfg, err := configs.Load(f.write("both.yaml", head+a+alias))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := New(cfg, Options{}); err == nil {
		s.closeAll()
		t.Fatal("startup accepted two tunnels on one address")
	} else if !strings.Contains(err.Error(), `"localhost:`+port+`"`) || !strings.Contains(err.Error(), `tunnel "a"`) {
		t.Errorf("startup error does not name both: %v", err)
	}

	path := f.write("fleet.yaml", head+a)
	s := running(t, path)
	f.write("fleet.yaml", head+a+alias)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), `tunnel "b"`) {
		t.Fatalf("reload adding an alias of a's address: %v", err)
	}
	if s.Tunnel("b") != nil {
		t.Fatal("the alias joined the fleet")
	}
}

// TestFailedReloadKeepsQueuedConnections: a reload that fails while it
// builds does not reset connections to a tunnel that another tunnel of the
// plan would have taken over on the same port.
func TestFailedReloadKeepsQueuedConnections(t *testing.T) {
	f := newFixture(t)
	bk := newBackend(t)
	p, pz := freePort(t), freePort(t)
	fifo := slowFile(t, f.dir)
	head := fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)
	s := running(t, f.write("fleet.yaml", head+serverTunnel("a", p, bk.addr(), f, "")))
	// Rename a to b on the same port, and add z, whose CA file is slow and
	// then not a certificate.
	f.write("fleet.yaml", head+serverTunnel("b", p, bk.addr(), f, "")+serverTunnel("z", pz, bk.addr(), f, "    cacert: "+fifo+"\n"))
	reloaded := make(chan error, 1)
	go func() { reloaded <- s.Reload() }()
	time.Sleep(100 * time.Millisecond)
	results := make(chan error, 20)
	for range 20 {
		go func() { results <- echoTLS(p, f.clientTLS(nil)) }()
	}
	time.Sleep(300 * time.Millisecond)
	if err := feed(t, fifo, []byte("not a certificate"), reloaded); err == nil {
		t.Fatal("the reload succeeded")
	}
	for range 20 {
		if err := <-results; err != nil {
			t.Fatalf("a connection to tunnel a failed across a reload that changed nothing: %v", err)
		}
	}
}

// TestFailedReloadKeepsNeedsRestart: a reload that changes nothing leaves
// the settings that still need a restart in /_status.
func TestFailedReloadKeepsNeedsRestart(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	head := fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)
	tun := serverTunnel("a", freePort(t), b.addr(), f, "")
	s := running(t, f.write("fleet.yaml", head+tun))
	f.write("fleet.yaml", "quiet: [conns]\n"+head+tun)
	s.Reload()
	f.write("fleet.yaml", "quiet: [conns]\n"+head+tun+"  - name: [oops\n")
	if err := s.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if got := fmt.Sprintf("%+v", s.configStatus()); !strings.Contains(got, "NeedsRestart:[quiet]") {
		t.Fatalf("after a failed reload: %s, want NeedsRestart:[quiet]", got)
	}
}

// TestReloadBeforeRun: a reload applied before Run begins leaves Run to
// serve the new tunnels once, and the ones it retired, which never served,
// are gone at once.
func TestReloadBeforeRun(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	pa := freePort(t)
	head := fmt.Sprintf("defaults:\n  cacert: %s\n  allow-all: true\ntunnels:\n", f.ca.CAFile)
	cfg, err := configs.Load(f.write("fleet.yaml", head+serverTunnel("a", pa, b.addr(), f, "")))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.write("fleet.yaml", head+serverTunnel("b", pa, b.addr(), f, "")) // a replaced by b, same port
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Tunnels()); n != 1 {
		t.Fatalf("%d tunnels in the status view before Run, want 1", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, Options{}) }()
	waitFor(t, "tunnel b", func() bool { return echoTLS(pa, f.clientTLS(nil)) == nil })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestFingerprintHidesURLPasswords: /_config/fingerprint's digest of a URL
// setting does not depend on the URL's password, so it cannot be used to
// test guesses of it.
func TestFingerprintHidesURLPasswords(t *testing.T) {
	with := func(pw string) Fingerprint {
		cfg := configs.DefaultConfig()
		cfg.MetricsURL = "https://push:" + pw + "@metrics.example.com/ingest"
		cfg.Tunnels = []configs.Tunnel{{Name: "a", Mode: "server", TargetStatus: "http://monitor:" + pw + "@127.0.0.1:8081/health"}}
		return FingerprintOf(&cfg)
	}
	a, b := with("hunter2"), with("s3cret")
	if a.Process["metrics-url"] != b.Process["metrics-url"] || a.Tunnels["a"]["target-status"] != b.Tunnels["a"]["target-status"] {
		t.Fatal("the served digests of URL settings depend on their passwords")
	}
}

// TestWatchdogAndStopDuringSlowReload: a reload that takes long (a new
// tunnel waiting for its Workload API) neither stops the systemd watchdog
// pings nor holds up SIGTERM; the drain starts at once and the reload
// starts nothing.
func TestWatchdogAndStopDuringSlowReload(t *testing.T) {
	f := newFixture(t)
	b := newBackend(t)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "200000") // a ping every 100 ms
	type msg struct {
		at  time.Time
		txt string
	}
	msgs := make(chan msg, 1000)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			select {
			case msgs <- msg{time.Now(), string(buf[:n])}:
			default:
			}
		}
	}()
	a := serverTunnel("a", freePort(t), b.addr(), f, "    allow-all: true\n")
	s := running(t, f.write("fleet.yaml", "tunnels:\n"+a))
	next := func(want string) msg {
		t.Helper()
		for deadline := time.After(10 * time.Second); ; {
			select {
			case m := <-msgs:
				if m.txt == want {
					return m
				}
			case <-deadline:
				t.Fatalf("no %s", want)
			}
		}
	}
	next("READY=1")
	// The new tunnel waits up to 3 s for an agent that is not there.
	f.write("fleet.yaml", "tunnels:\n"+a+"  - name: w\n    mode: server\n    listen: "+freePort(t)+"\n    target: "+b.addr()+
		"\n    use-workload-api: true\n    use-workload-api-addr: unix://"+filepath.Join(t.TempDir(), "agent.sock")+
		"\n    use-workload-api-timeout: 3s\n    allow-all: true\n")
	s.sigs <- syscall.SIGHUP
	start := next("RELOADING=1").at
	pings := 0
	for time.Since(start) < 1500*time.Millisecond {
		if m := next("WATCHDOG=1"); m.at.After(start) {
			pings++
		}
	}
	if pings < 3 {
		t.Fatalf("%d watchdog pings in the first 1.5 s of the reload, want a ping every 100 ms", pings)
	}
	s.sigs <- syscall.SIGTERM
	sent := time.Now()
	if d := next("STOPPING=1").at.Sub(sent); d > 1500*time.Millisecond {
		t.Fatalf("STOPPING=1 %v after SIGTERM during a reload", d)
	}
	if s.Tunnel("w") != nil {
		t.Fatal("the reload's tunnel joined the fleet after the drain began")
	}
}
