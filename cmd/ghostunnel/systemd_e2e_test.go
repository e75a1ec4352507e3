package main

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdActivationAndNotify passes the listening and status sockets
// as systemd does (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and reads the
// notify socket: READY, WATCHDOG, RELOADING then READY, STOPPING.
func TestSystemdActivationAndNotify(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, _ := ln.(*net.TCPListener).File()
	stFile, _ := st.(*net.TCPListener).File()
	addr, status := ln.Addr().String(), st.Addr().String()
	ln.Close()
	st.Close()

	sock := filepath.Join(t.TempDir(), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	pr := startActivated(t, []string{"LISTEN_FDNAMES=tunnel:status", "NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=200000"},
		[]*os.File{lnFile, stFile},
		"server", "--listen", "systemd:tunnel", "--status", "systemd:status", "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile, "--allow-all")
	lnFile.Close()
	stFile.Close()

	next := func(want string) {
		t.Helper()
		buf := make([]byte, 256)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			notify.SetReadDeadline(deadline)
			n, err := notify.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if msg := string(buf[:n]); strings.Contains(msg, want) {
				return
			}
		}
		t.Fatalf("no %s", want)
	}
	next("READY=1")
	next("WATCHDOG=1")

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{p.client.TLS()}})
	if err != nil {
		t.Fatalf("activated listener: %v", err)
	}
	roundTripE2E(t, c, "activated")
	c.Close()
	sc, err := tls.Dial("tcp", status, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("activated status socket: %v", err)
	}
	sc.Close()

	pr.signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	pr.signal(syscall.SIGTERM)
	next("STOPPING=1")
	if code := pr.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// TestSystemdSocketAcrossReload: a fleet reload that rebuilds the tunnel on
// a socket systemd passed (renamed here, so the old one leaves and a new one
// takes the same socket) gets the socket again; before, each socket could
// be taken once, and the reload failed with "no socket named".
func TestSystemdSocketAcrossReload(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, _ := ln.(*net.TCPListener).File()
	addr := ln.Addr().String()
	ln.Close()

	fleet := func(name string) string {
		return fleetYAML([]string{"shutdown-timeout: 5s"},
			[]string{"name: " + name, "mode: server", "listen: systemd:tunnel", "target: " + backend,
				"keystore: " + p.server.Combined, "cacert: " + p.ca.CAFile, "allow-all: true"})
	}
	cfg := writeFile(t, filepath.Join(p.dir, "fleet.yaml"), fleet("a"), 0o600)
	pr := startActivated(t, []string{"LISTEN_FDNAMES=tunnel"}, []*os.File{lnFile}, "-config", cfg)
	lnFile.Close()
	client := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{p.client.TLS()}}
	pr.waitLog("listening for connections", 10*time.Second)
	for _, name := range []string{"b", "a"} { // away and back: the socket is taken three times
		writeFile(t, cfg, fleet(name), 0o600)
		pr.signal(syscall.SIGHUP)
		pr.waitLog("fleet reload: tunnel added\" tunnel="+name, 10*time.Second)
		c, err := tls.Dial("tcp", addr, client)
		if err != nil {
			t.Fatalf("after the reload to %s: %v", name, err)
		}
		roundTripE2E(t, c, "again")
		c.Close()
	}
	if strings.Contains(pr.out.String(), "no socket named") {
		t.Fatal("a reload could not take the socket again")
	}
}
