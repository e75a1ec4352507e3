package main

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// landlockNetOrSkip skips unless the kernel enforces Landlock TCP rules
// (ABI 4 and later).
func landlockNetOrSkip(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("landlock is Linux only")
	}
	if abi, err := llsys.LandlockGetABIVersion(); err != nil || abi < 4 {
		t.Skipf("kernel landlock ABI %d (%v): TCP rules need ABI 4 or later; not tested", abi, err)
	}
}

// landlockFleet is a server tunnel and a client chained into it, plus any
// extra tunnel lines, with an HTTP status port.
func landlockFleet(t *testing.T, p *e2ePKI, head, status, srv, backend, cli string, extra ...string) string {
	t.Helper()
	body := fmt.Sprintf(`%sstatus: http://%s
defaults:
  cacert: %s
tunnels:
  - name: srv
    mode: server
    listen: %s
    target: %s
    keystore: %s
    allow-cn: [client]
  - name: cli
    mode: client
    listen: %s
    target: localhost:%s
    keystore: %s
%s`, head, status, p.ca.CAFile, srv, backend, p.server.Combined, cli, port(srv), p.client.Combined, strings.Join(extra, ""))
	return writeFile(t, filepath.Join(p.dir, "fleet.yaml"), body, 0o600)
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func extraTunnel(p *e2ePKI, listen, target string) string {
	return fmt.Sprintf(`  - name: extra
    mode: server
    listen: %s
    target: %s
    keystore: %s
    allow-cn: [client]
`, listen, target, p.server.Combined)
}

// lastReloadError is config.last_reload_error of /_status.
func lastReloadError(t *testing.T, status string) string {
	t.Helper()
	_, body := get(t, "http://"+status, "/_status")
	var st struct {
		Config struct {
			LastReloadOK    bool   `json:"last_reload_ok"`
			LastReloadError string `json:"last_reload_error"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/_status: %v: %s", err, body)
	}
	if st.Config.LastReloadOK {
		return ""
	}
	return st.Config.LastReloadError
}

// TestLandlockReloadNewPort: the sandboxed binary serves its fleet; a
// reload that adds a tunnel on a new port, or moves a target to a new
// port, is refused with the landlock message while the fleet keeps
// working; with disable-landlock the same reload applies.
func TestLandlockReloadNewPort(t *testing.T) {
	landlockNetOrSkip(t)
	p := newE2EPKI(t)
	backend, other := echoServer(t), echoServer(t)
	status, srv, cli, extra := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	path := landlockFleet(t, p, "", status, srv, backend, cli)
	pr := startProc(t, nil, "-config", path)
	for _, a := range []string{status, srv, cli} {
		waitListening(t, a)
	}
	pr.waitLog(`msg="landlock rules applied"`, 10*time.Second)
	if !strings.Contains(pr.out.String(), "scope=filesystem,network") {
		t.Fatalf("landlock log line lacks scope=filesystem,network:\n%s", pr.out.String())
	}
	// (1) The fleet works end to end inside the sandbox.
	echoThrough(t, cli, "through the sandbox")
	if _, err := tlsEcho(srv, p.clientTLS(), "direct"); err != nil {
		t.Fatal(err)
	}

	// (2) A tunnel on a new port, then a target on a new port: refused,
	// nothing changes.
	for _, tc := range []struct {
		name  string
		write func()
		want  string
	}{
		{"new listen port", func() { landlockFleet(t, p, "", status, srv, backend, cli, extraTunnel(p, extra, backend)) },
			fmt.Sprintf(`tunnel "extra": listen: the landlock sandbox does not allow it to bind TCP port %s; restart ghostunnel`, port(extra))},
		{"new target port", func() { landlockFleet(t, p, "", status, srv, other, cli) },
			fmt.Sprintf(`tunnel "srv": target: the landlock sandbox does not allow it to connect to TCP port %s; restart ghostunnel`, port(other))},
	} {
		tc.write()
		failures := pr.count("fleet reload failed, nothing changed")
		pr.signal(syscall.SIGHUP)
		pr.waitCount("fleet reload failed, nothing changed", failures+1, 10*time.Second)
		if got := lastReloadError(t, status); !strings.Contains(got, tc.want) || !strings.Contains(got, "disable-landlock: true") {
			t.Fatalf("%s: /_status last_reload_error %q lacks %q", tc.name, got, tc.want)
		}
		if strings.Contains(pr.out.String(), "fleet reload applied") {
			t.Fatalf("%s: the reload was applied:\n%s", tc.name, pr.out.String())
		}
		if c, err := net.DialTimeout("tcp", extra, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s: %s is listening after a refused reload", tc.name, extra)
		}
		echoThrough(t, cli, "still through the sandbox after: "+tc.name)
		pr.mustBeAlive(t)
	}
	pr.signal(syscall.SIGTERM)
	if code := pr.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// (3) With disable-landlock the same reload applies.
	status, srv, cli = freeAddr(t), freeAddr(t), freeAddr(t)
	path = landlockFleet(t, p, "disable-landlock: true\n", status, srv, backend, cli)
	pr = startProc(t, nil, "-config", path)
	for _, a := range []string{status, srv, cli} {
		waitListening(t, a)
	}
	pr.waitLog("landlock disabled by disable-landlock", 10*time.Second)
	landlockFleet(t, p, "disable-landlock: true\n", status, srv, backend, cli, extraTunnel(p, extra, other))
	pr.signal(syscall.SIGHUP)
	pr.waitLog("fleet reload applied", 10*time.Second)
	waitListening(t, extra)
	if _, err := tlsEcho(extra, p.clientTLS(), "through the added tunnel"); err != nil {
		t.Fatal(err)
	}
	echoThrough(t, cli, "through the first tunnel")
	pr.signal(syscall.SIGTERM)
	if code := pr.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
