//go:build !noopa

package tunnel

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

const policyQuery = "data.ghostunnel.allow"

// regoAllowCN is a Rego v1 module admitting the peer whose CN is cn.
func regoAllowCN(cn string) string {
	return `package ghostunnel

default allow := false

allow if { input.certificate.Subject.CommonName == "` + cn + `" }
`
}

// writePolicyDir writes module as the one file of a bundle directory.
func writePolicyDir(t testing.TB, dir, module string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(module), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *pki) otherClientTLS(t testing.TB) *tls.Config {
	other := p.ca.Issue("other", testpki.Options{CN: "other", Client: true})
	return &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{other.TLS()}}
}

func policyServer(t *testing.T, p *pki, bundle string) *Tunnel {
	t.Helper()
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	cfg.AllowAll = false
	cfg.AllowPolicy, cfg.AllowQuery = bundle, policyQuery
	return start(t, cfg)
}

func TestPolicyServerAllow(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicyDir(t, dir, regoAllowCN("client"))
	srv := policyServer(t, p, dir)
	addr := srv.Addr().String()
	if err := echoOK(addr, p.clientTLS()); err != nil {
		t.Fatalf("client admitted by the policy was refused: %v", err)
	}
	if err := echoOK(addr, p.otherClientTLS(t)); err == nil {
		t.Fatal("client the policy refuses got through")
	}
}

func TestPolicyServerTarGzBundle(t *testing.T) {
	p := newPKI(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	module := regoAllowCN("client")
	if err := tw.WriteHeader(&tar.Header{Name: "/policy.rego", Mode: 0o600, Size: int64(len(module)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(module))
	tw.Close()
	zw.Close()
	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(bundle, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := policyServer(t, p, bundle)
	if err := echoOK(srv.Addr().String(), p.clientTLS()); err != nil {
		t.Fatalf("client admitted by the bundle was refused: %v", err)
	}
	if err := echoOK(srv.Addr().String(), p.otherClientTLS(t)); err == nil {
		t.Fatal("client the bundle refuses got through")
	}
}

func TestPolicyServerRegoFileIsV0(t *testing.T) {
	p := newPKI(t)
	file := filepath.Join(t.TempDir(), "policy.rego")
	v0 := "package ghostunnel\n\ndefault allow = false\n\nallow { input.certificate.Subject.CommonName == \"client\" }\n"
	if err := os.WriteFile(file, []byte(v0), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := policyServer(t, p, file)
	if err := echoOK(srv.Addr().String(), p.clientTLS()); err != nil {
		t.Fatalf("client admitted by the v0 policy was refused: %v", err)
	}
}

func TestPolicyReload(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicyDir(t, dir, regoAllowCN("client"))
	srv := policyServer(t, p, dir)
	addr := srv.Addr().String()
	client, other := p.clientTLS(), p.otherClientTLS(t)
	client.ClientSessionCache, other.ClientSessionCache = nil, nil
	if echoOK(addr, client) != nil || echoOK(addr, other) == nil {
		t.Fatal("initial policy decides wrong")
	}

	writePolicyDir(t, dir, regoAllowCN("other"))
	if err := srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := echoOK(addr, other); err != nil {
		t.Fatalf("after reload, newly allowed client refused: %v", err)
	}
	if err := echoOK(addr, client); err == nil {
		t.Fatal("after reload, client no longer allowed got through")
	}

	writePolicyDir(t, dir, "package ghostunnel\n\nallow if {{ broken\n")
	if err := srv.Reload(); err == nil {
		t.Fatal("Reload of a broken policy succeeded")
	}
	if snap := srv.Snapshot(); snap.LastReloadError == "" {
		t.Error("broken policy not recorded as the last reload error")
	}
	if err := echoOK(addr, other); err != nil {
		t.Fatalf("after a failed reload the old policy should stand, refused: %v", err)
	}
	if err := echoOK(addr, client); err == nil {
		t.Fatal("after a failed reload the old policy should stand, got through")
	}
}

func TestPolicyMissingBundleFailsNew(t *testing.T) {
	p := newPKI(t)
	cfg := p.serverTunnel("127.0.0.1:1")
	cfg.AllowAll = false
	cfg.AllowPolicy, cfg.AllowQuery = filepath.Join(t.TempDir(), "nope"), policyQuery
	if tun, err := New(cfg, Deps{}); err == nil {
		tun.Close()
		t.Fatal("New with a missing bundle succeeded")
	}
}

func TestPolicyClientVerify(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	srv := start(t, p.serverTunnel(backend.addr()))
	target := "localhost:" + portOf(srv.Addr())
	allowLocalhost, allowDB := t.TempDir(), t.TempDir()
	writePolicyDir(t, allowLocalhost, regoAllowCN("localhost"))
	writePolicyDir(t, allowDB, regoAllowCN("db"))

	for _, tc := range []struct {
		name string
		set  func(c *configs.Tunnel)
		ok   bool
	}{
		{"policy admits", func(c *configs.Tunnel) { c.VerifyPolicy = allowLocalhost }, true},
		{"policy refuses", func(c *configs.Tunnel) { c.VerifyPolicy = allowDB }, false},
		{"verify-cn OR policy", func(c *configs.Tunnel) { c.VerifyPolicy, c.VerifyCN = allowDB, []string{"localhost"} }, true},
		{"verify-cn miss, policy admits", func(c *configs.Tunnel) { c.VerifyPolicy, c.VerifyCN = allowLocalhost, []string{"db"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := p.clientTunnel(target)
			cfg.VerifyQuery = policyQuery
			tc.set(&cfg)
			err := clientThrough(t, cfg)
			if tc.ok && err != nil {
				t.Fatalf("want through, got %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("want refused, got through")
			}
		})
	}
}

// TestPolicyInput pins the input document: upstream's shape, the leaf as
// encoding/json renders an x509.Certificate.
func TestPolicyInput(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicyDir(t, dir, `package ghostunnel

allow if {
	c := input.certificate
	c.Subject.CommonName == "client"
	c.Subject.OrganizationalUnit[_] == "team-a"
	c.DNSNames[_] == "client.example"
	c.IPAddresses[_] == "10.1.2.3"
	u := c.URIs[_]
	u.Scheme == "spiffe"
	u.Host == "example.org"
	u.Path == "/client/web"
	c.Issuer.CommonName != ""
	is_number(c.SerialNumber)
	time.parse_rfc3339_ns(c.NotAfter) > time.now_ns()
}
`)
	pol, err := loadPolicy(dir, policyQuery, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := pol.allows(p.client.Cert); err != nil {
		t.Fatalf("input document is not upstream's shape: %v", err)
	}
	if err := pol.allows(p.server.Cert); !errors.Is(err, errDenied) {
		t.Fatalf("server leaf: want errDenied, got %v", err)
	}
}

// TestPolicySlowRefuses: evaluation is bounded by the timeout and a policy
// that runs past it refuses the peer.
func TestPolicySlowRefuses(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writePolicyDir(t, dir, `package ghostunnel

allow if {
	count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000)]) > 0
}
`)
	pol, err := loadPolicy(dir, policyQuery, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = pol.allows(p.client.Cert)
	if err == nil || errors.Is(err, errDenied) {
		t.Fatalf("want an evaluation error, got %v", err)
	}
	if !strings.Contains(err.Error(), "cancel") && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("want a cancellation or deadline error, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("evaluation ran %v past a 50ms timeout", d)
	}
}

func TestPolicyLoadErrors(t *testing.T) {
	dir := t.TempDir()
	writePolicyDir(t, dir, regoAllowCN("x"))
	if pol, err := loadPolicy("", "", 0); pol != nil || err != nil {
		t.Fatalf("no policy: got %v, %v", pol, err)
	}
	if _, err := loadPolicy(dir, "", 0); err == nil {
		t.Fatal("bundle without a query loaded")
	}
	if _, err := loadPolicy(dir, "data.ghostunnel[", 0); err == nil {
		t.Fatal("invalid query loaded")
	}
}
