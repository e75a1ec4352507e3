package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// fleetFile writes a three-tunnel fleet: two servers, and a client chained
// into the first server. It returns the file and the tunnels' addresses.
func fleetFile(t *testing.T, p *e2ePKI, status string) (path string, s1, s2, c1 string) {
	t.Helper()
	b1, b2 := echoServer(t), echoServer(t)
	s1, s2, c1 = freeAddr(t), freeAddr(t), freeAddr(t)
	// Certificates named after the tunnels, so SNI on the status port can
	// tell them apart.
	o1 := testpki.Localhost()
	o1.DNS = append(o1.DNS, "api.internal")
	o1.Server = true
	p.ca.Issue("api", o1)
	o2 := testpki.Localhost()
	o2.DNS = append(o2.DNS, "db.internal")
	o2.Server = true
	p.ca.Issue("db", o2)
	body := fmt.Sprintf(`# a fleet of three
status: %s
enable-pprof: true
defaults:
  cacert: ca.pem
  connect-timeout: 5s
tunnels:
  - name: api
    mode: server
    listen: %s
    target: %s
    cert: api.crt
    key: api.key
    allow-cn: [client]
  - name: db
    mode: server
    listen: %s
    target: %s
    keystore: db.pem
    allow-all: true
  - name: api-client
    mode: client
    listen: %s
    target: localhost:%s
    cert: client.crt
    key: client.key
`, status, s1, b1, s2, b2, c1, strings.Split(s1, ":")[1])
	path = filepath.Join(p.dir, "fleet.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, s1, s2, c1
}

func TestFleetFromBinary(t *testing.T) {
	p := newE2EPKI(t)
	status := freeAddr(t)
	path, s1, s2, c1 := fleetFile(t, p, status)
	pr := startProc(t, nil, "-config", path)
	for _, a := range []string{s1, s2, c1, status} {
		waitListening(t, a)
	}
	tlsCfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{p.client.TLS()}}
	for _, addr := range []string{s1, s2} {
		c, err := tls.Dial("tcp", addr, tlsCfg)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		roundTripE2E(t, c, "through "+addr)
		c.Close()
	}
	echoThrough(t, c1, "through the client into api")
	pr.waitLog(`tunnel=api-client msg="opening pipe"`, 5*time.Second)

	// SNI on the status port picks each tunnel's certificate.
	statusPort := strings.Split(status, ":")[1]
	for sni, want := range map[string]string{"api": "api", "db": "db", "db.internal": "db", "": "api", "nope": "api"} {
		c, err := tls.Dial("tcp", "127.0.0.1:"+statusPort, &tls.Config{RootCAs: p.ca.Pool(), ServerName: sni, InsecureSkipVerify: sni == "" || sni == "nope" || sni == "api" || sni == "db"})
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "localhost" {
			t.Fatalf("SNI %q: CN %q", sni, got)
		}
		dns := c.ConnectionState().PeerCertificates[0].DNSNames
		if !strings.Contains(strings.Join(dns, ","), want+".internal") {
			t.Fatalf("SNI %q: got the certificate with %v, want %s's", sni, dns, want)
		}
		c.Close()
	}

	// The commands of upstream's "Metrics & Profiling" page, verbatim but
	// for the address.
	if _, err := exec.LookPath("curl"); err == nil {
		base := "https://localhost:" + statusPort
		for _, tc := range []struct{ url, want string }{
			{base + "/_status", `"message":"listening"`},
			{base + "/_metrics?format=json", `"metric":"ghostunnel.accept.total"`},
			{base + "/_metrics/prometheus", `ghostunnel_accept_total{mode="server",tunnel="api"}`},
			{base + "/debug/pprof/goroutine?debug=1", "goroutine profile: total"},
		} {
			out, err := exec.Command("curl", "-sS", "--cacert", p.ca.CAFile, tc.url).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("curl %s: %v\n%s", tc.url, err, out)
			}
		}
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-seconds", "1", "https+insecure://localhost:"+statusPort+"/debug/pprof/profile").CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}

	// validate beside the running process: what a reload would change.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), "allow-cn: [client]", "allow-cn: [client, other]", 1)), 0o600)
	v := startProc(t, nil, "validate", "-config", path)
	if code := v.wait(20 * time.Second); code != 0 {
		t.Fatalf("validate exited %d:\n%s", code, v.out.String())
	}
	for _, want := range []string{"OK", "changed   api (allow-cn)", "unchanged db", "unchanged api-client"} {
		if !strings.Contains(v.out.String(), want) {
			t.Fatalf("validate output lacks %q:\n%s", want, v.out.String())
		}
	}

	// SIGHUP applies it.
	pr.signal(syscall.SIGHUP)
	pr.waitLog("fleet reload applied", 10*time.Second)
	pr.signal(syscall.SIGTERM)
	if code := pr.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestValidateErrors(t *testing.T) {
	p := newE2EPKI(t)
	path := filepath.Join(p.dir, "bad.yaml")
	os.WriteFile(path, []byte(`tunnels:
  - name: api
    mode: server
    listen: 127.0.0.1:8443
    target: 127.0.0.1:8080
    cert: missing.crt
    key: missing.key
    allow-all: true
    alow-cn: [x]
`), 0o600)
	v := startProc(t, nil, "validate", "--config", path)
	if code := v.wait(20 * time.Second); code == 0 {
		t.Fatal("validate of a bad file exited 0")
	}
	if out := v.out.String(); !strings.Contains(out, path+":9:") || !strings.Contains(out, "allow-cn") {
		t.Fatalf("validate output does not point at line 9 and suggest allow-cn:\n%s", out)
	}
	// Well-formed but the certificate is missing: validate loads it.
	os.WriteFile(path, []byte(strings.Replace(mustRead(t, path), "    alow-cn: [x]\n", "", 1)), 0o600)
	v = startProc(t, nil, "validate", "-config", path)
	if code := v.wait(20 * time.Second); code == 0 || !strings.Contains(v.out.String(), "missing.crt") {
		t.Fatalf("validate did not report the missing certificate (exit %d):\n%s", code, v.out.String())
	}
	// An expired certificate fails; one about to expire warns.
	exp := p.ca.Issue("expired", testpki.Options{CN: "localhost", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	soon := p.ca.Issue("soon", testpki.Options{CN: "localhost", NotAfter: time.Now().Add(48 * time.Hour)})
	for _, tc := range []struct {
		leaf *testpki.Leaf
		code int
		want string
	}{{exp, 1, "expired"}, {soon, 0, "warning: certificate"}} {
		os.WriteFile(path, []byte(fmt.Sprintf("tunnels:\n  - {name: api, mode: server, listen: \"127.0.0.1:8443\", target: \"127.0.0.1:8080\", keystore: %s, allow-all: true}\n", tc.leaf.Combined)), 0o600)
		v = startProc(t, nil, "validate", "-config", path)
		if code := v.wait(20 * time.Second); code != tc.code || !strings.Contains(v.out.String(), tc.want) {
			t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.want, v.out.String())
		}
	}
	// A policy that does not compile fails validate, as it fails the start.
	bad := filepath.Join(p.dir, "bad.rego")
	os.WriteFile(bad, []byte("package ghostunnel\nallow := {\n"), 0o600)
	os.WriteFile(path, []byte(fmt.Sprintf("tunnels:\n  - {name: api, mode: server, listen: \"127.0.0.1:8443\", target: \"127.0.0.1:8080\", keystore: %s, allow-policy: %s, allow-query: data.ghostunnel.allow}\n", p.server.Combined, bad)), 0o600)
	v = startProc(t, nil, "validate", "-config", path)
	if code := v.wait(20 * time.Second); code == 0 || !strings.Contains(v.out.String(), "bad.rego") {
		t.Fatalf("validate passed a policy that does not compile (exit %d):\n%s", code, v.out.String())
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFleetPortConflict: a tunnel that cannot bind stops the whole start,
// naming the tunnel, and nothing keeps running.
func TestFleetPortConflict(t *testing.T) {
	p := newE2EPKI(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	path := filepath.Join(p.dir, "fleet.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`defaults: {cacert: ca.pem, keystore: server.pem, allow-all: true}
tunnels:
  - {name: fine, mode: server, listen: "%s", target: "127.0.0.1:1"}
  - {name: clash, mode: server, listen: "%s", target: "127.0.0.1:1"}
`, freeAddr(t), taken.Addr())), 0o600)
	pr := startProc(t, nil, "--config", path)
	if code := pr.wait(20 * time.Second); code == 0 {
		t.Fatal("exit 0 with a port conflict")
	}
	if out := pr.out.String(); !strings.Contains(out, `tunnel "clash"`) || !strings.Contains(out, "address already in use") {
		t.Fatalf("error does not name the tunnel and the conflict:\n%s", out)
	}
}

func TestFromFlagsMigrates(t *testing.T) {
	p := newE2EPKI(t)
	pr := startProc(t, nil, "config", "from-flags", "server", "--listen", "127.0.0.1:8443", "--target", "127.0.0.1:8080",
		"--keystore", p.server.Combined, "--allow-cn", "web", "--allow-cn", "api")
	if code := pr.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, pr.out.String())
	}
	path := filepath.Join(p.dir, "migrated.yaml")
	os.WriteFile(path, []byte(pr.out.String()), 0o600)
	v := startProc(t, nil, "validate", "-config", path)
	if code := v.wait(20 * time.Second); code != 0 {
		t.Fatalf("the migrated file does not validate (exit %d):\n%s\n%s", code, pr.out.String(), v.out.String())
	}
}
